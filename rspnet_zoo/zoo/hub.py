"""The Hugging Face Hub side of a built folder: ``push``, which uploads a folder as it is, and ``download``,
the files a ``hf-hub:`` load reads (checked as a local folder's are). The card's front matter, which follows
timm's ``push_to_hf_hub``, is ``zoo.card``'s.

A built folder already is what timm's Hub loader reads (``config.json`` with the architecture and
``model_args``, ``model.safetensors``), so pushing is one ``upload_folder``; nothing is re-saved.
"""

from __future__ import annotations

import re
from pathlib import Path

from rspnet_zoo.errors import ZooError
from rspnet_zoo.zoo.card import README_FILE
from rspnet_zoo.zoo.config import CONFIG_FILE, read_folder_config
from rspnet_zoo.zoo.home import WEIGHTS_FILE

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FOLDER_FILES = (CONFIG_FILE, WEIGHTS_FILE, README_FILE)


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id):
        raise ZooError(f"'{repo_id}' is not a Hub repo id: give OWNER/NAME, e.g. my-org/rspnet_small")
    return repo_id


def check_folder(folder: Path) -> Path:
    """A folder timm's Hub loader can read: the three files, and a config.json the zoo reads (``zoo.config``)."""
    missing = [f for f in FOLDER_FILES if not (folder / f).is_file()]
    if missing:
        raise ZooError(f"{folder}: not a built folder (no {', '.join(missing)}); make one with `rspnet-zoo build`")
    read_folder_config(folder / CONFIG_FILE)
    return folder


def built_folder(ref: str) -> Path:
    """The folder a push names: a folder path, or a name[.tag] built or trained into the zoo home."""
    from rspnet_zoo.zoo.home import zoo_home

    for folder in (Path(ref), zoo_home() / ref):
        if folder.is_dir():
            return check_folder(folder)
    raise ZooError(
        f"'{ref}': no built folder here or in {zoo_home()}; "
        "make one with `rspnet-zoo build` or `rspnet-zoo train`, or give its path"
    )


def download(repo_id: str, filename: str) -> Path:
    """``filename`` of Hub repo ``repo_id`` as huggingface_hub caches it (the file timm's Hub loader reads);
    a failure to fetch it is one ZooError line."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as e:  # the network boundary, as in push
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"hf-hub:{repo_id}: cannot fetch {filename}: {type(e).__name__}: {first}") from None


def push(folder: Path, repo_id: str, *, token: str | None = None, private: bool = False) -> str:
    """Create ``repo_id`` on the Hub if needed and upload the built folder's files; returns the commit URL.
    Any failure to reach or use the Hub is one ZooError line."""
    from huggingface_hub import HfApi

    check_folder(folder)
    check_repo_id(repo_id)
    api = HfApi(token=token, library_name="rspnet-zoo")
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo.repo_id,
            folder_path=folder,
            allow_patterns=list(FOLDER_FILES),
            commit_message=f"Add {folder.name} (rspnet-zoo)",
        )
    except Exception as e:  # the network boundary: HTTP status, transport (its library varies by version), offline
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"push to {api.endpoint}/{repo_id} failed: {type(e).__name__}: {first}") from None
    return commit.commit_url
