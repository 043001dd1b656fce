"""The Hugging Face Hub side of a built folder: the model-card front matter timm's ``push_to_hf_hub``
writes, and ``push``, which uploads a folder as it is.

A built folder already is what timm's Hub loader reads (``config.json`` with the architecture and
``model_args``, ``model.safetensors``), so pushing is one ``upload_folder``; nothing is re-saved.
The front matter follows ``timm.models._hub.generate_readme`` field by field (tags, pipeline_tag,
library_name, license, datasets), and adds the Hub's ``metrics`` and ``model-index`` for trained weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import read_capped
from rspnet_zoo.zoo.home import MAX_CONFIG_BYTES

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FOLDER_FILES = ("config.json", "model.safetensors", "README.md")
# the Hub's metric ids for what evaluate() reports
HUB_METRICS = {
    "miou": "mean_iou",
    "mean_acc": "mean_accuracy",
    "pixel_acc": "accuracy",
    "fw_iou": "frequency_weighted_iou",
}


def front_matter(
    *,
    segmentation: bool,
    tags: Sequence[str] = (),
    license: str = "apache-2.0",
    name: str = "",
    results: dict | None = None,
) -> str:
    """YAML front matter, in the order and form of timm's ``generate_readme``. ``results`` (trained weights):
    ``dict(dataset=..., split=..., metrics={key: value})`` with the keys of ``HUB_METRICS``."""
    task = "image-segmentation" if segmentation else "image-classification"
    lines = ["---", "tags:", *(f"- {t}" for t in (task, "timm", "rspnet-zoo", *tags))]
    lines += [f"pipeline_tag: {task}", "library_name: timm", f"license: {license}"]
    if results:
        dataset = results["dataset"].lower()
        metrics = {HUB_METRICS[k]: v for k, v in results["metrics"].items() if k in HUB_METRICS and v is not None}
        lines += ["datasets:", f"- {dataset}", "metrics:", *(f"- {m}" for m in metrics)]
        lines += [
            "model-index:",
            f"- name: {name}",
            "  results:",
            "  - task:",
            f"      type: {task}",
            "    dataset:",
            f"      name: {dataset}",
            f"      type: {dataset}",
            f"      split: {results['split']}",
            "    metrics:",
        ]
        for metric, value in metrics.items():
            lines += [f"    - type: {metric}", f"      value: {round(float(value), 4)}"]
    return "\n".join([*lines, "---", ""])


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.fullmatch(repo_id):
        raise ZooError(f"'{repo_id}' is not a Hub repo id: give OWNER/NAME, e.g. my-org/rspnet_small")
    return repo_id


def check_folder(folder: Path) -> Path:
    """A folder timm's Hub loader can read: the three files, and a config.json naming an architecture."""
    missing = [f for f in FOLDER_FILES if not (folder / f).is_file()]
    if missing:
        raise ZooError(f"{folder}: not a built folder (no {', '.join(missing)}); make one with `rspnet-zoo build`")
    try:
        config = json.loads(read_capped(folder / "config.json", MAX_CONFIG_BYTES))
    except OSError as e:
        raise ZooError(f"{folder / 'config.json'}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise ZooError(f"{folder / 'config.json'}: not JSON ({e})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise ZooError(f"{folder / 'config.json'}: no 'architecture' for timm to build")
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
