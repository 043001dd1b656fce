"""Built folders are Hub repos as timm reads them: front matter as timm writes it, hf-hub loading from a local
cache offline, and `rspnet-zoo push` against a local stand-in for the Hub's HTTP API."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import timm
import yaml
from safetensors.torch import load_file
from timm.models._hub import generate_readme

from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.training.loop import save_to_zoo
from rspnet_zoo.zoo.card import HUB_METRICS
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.hub import FOLDER_FILES

TINY = Path(__file__).parent / "data" / "tiny_net.json"
METRICS = dict(miou=0.5, mean_acc=0.6, fw_iou=0.7, pixel_acc=0.8, images=2, per_class_iou={"a": 0.5, "b": 0.5})


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture
def trained(zoo_home):
    """rspnet_small trained (so to speak) on a two-class data set: what `rspnet-zoo train` writes."""
    model = timm.create_model("rspnet_small", num_classes=2)
    return save_to_zoo(
        model,
        SHIPPED["rspnet_small"],
        "mine",
        ["a", "b"],
        METRICS,
        data="Folder",
        commands=["-"],
        input_size=(3, 40, 60),
    )


@pytest.fixture
def tiny(tmp_path):
    folder, _ = build_folder(load_spec(TINY), tmp_path / "built")
    return folder


def test_card_front_matter_is_timms_with_datasets_and_metrics_where_trained(trained, tiny):
    assert sorted(p.name for p in trained.iterdir()) == sorted(FOLDER_FILES)
    meta = front_matter((trained / "README.md").read_text())
    timms = front_matter(
        generate_readme(
            dict(tags=meta["tags"], license="apache-2.0", details=dict(Dataset="Folder")),
            "rspnet_small.mine",
            task_name="image-segmentation",
        )
    )
    assert {k: meta[k] for k in timms} == timms  # tags, pipeline_tag, library_name, license, datasets
    assert meta["library_name"] == "timm" and {"timm", "image-segmentation"} <= set(meta["tags"])
    assert meta["metrics"] == [HUB_METRICS[k] for k in ("miou", "mean_acc", "fw_iou", "pixel_acc")]
    [result] = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "rspnet_small.mine" and result["dataset"]["split"] == "val"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {HUB_METRICS[k]: METRICS[k] for k in HUB_METRICS}
    untrained = front_matter((tiny / "README.md").read_text())
    assert "datasets" not in untrained and "metrics" not in untrained and untrained["library_name"] == "timm"


def cache_as_hub_repo(folder: Path, cache: Path, repo_id: str) -> None:
    """The layout huggingface_hub downloads into: models--OWNER--NAME/{snapshots/REV/*, refs/main}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.mark.slow  # seconds of subprocesses or training; the default suite keeps a faster check of the same path
def test_hf_hub_loads_built_folders_offline_from_a_local_cache(trained, tiny, tmp_path):
    cache = tmp_path / "hf-home" / "hub"
    cache_as_hub_repo(trained, cache, "org/rspnet_small.mine")
    cache_as_hub_repo(tiny, cache, "org/tiny_net")
    script = """
import json, sys, timm, rspnet_zoo
out = {}
for repo in sys.argv[1:]:
    untrained = repo.endswith("tiny_net")  # a fresh build: pretrained=True refuses it as for a local folder
    if untrained:
        try:
            timm.create_model("hf-hub:" + repo, pretrained=True)
            raise SystemExit("initialised weights loaded from the Hub without allow_untrained")
        except rspnet_zoo.ZooError as e:
            assert "never trained" in str(e), e
    model = timm.create_model("hf-hub:" + repo, pretrained=True, allow_untrained=untrained)
    out[repo] = dict(cfg=model.pretrained_cfg, state={k: v.sum().item() for k, v in model.state_dict().items()})
print(json.dumps(out, default=list))
"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", script, "org/rspnet_small.mine", "org/tiny_net"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    for repo, folder in (("org/rspnet_small.mine", trained), ("org/tiny_net", tiny)):
        saved = load_file(str(folder / "model.safetensors"))
        state = loaded[repo]["state"]
        assert state.keys() == saved.keys()
        assert all(state[k] == pytest.approx(v.sum().item(), rel=1e-6, abs=1e-6) for k, v in saved.items()), repo
        assert loaded[repo]["cfg"]["hf_hub_id"] == repo
    cfg = loaded["org/rspnet_small.mine"]["cfg"]
    assert cfg["label_names"] == ["a", "b"] and cfg["input_size"] == [3, 40, 60]


class FakeHub(ThreadingHTTPServer):
    """Answers the four calls create_repo + upload_folder make, and records every request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.requests: list[tuple[str, str, bytes]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class FakeHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.requests.append(("GET", self.path, b""))
        self.reply(404, {"error": "not served here"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(("POST", self.path, body))
        if self.path == "/api/repos/create":
            doc = json.loads(body)
            return self.reply(200, {"url": f"{self.server.url}/{doc['organization']}/{doc['name']}"})
        if self.path == "/api/validate-yaml":
            return self.reply(200, {"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self.reply(
                200, {"files": [dict(path=f["path"], uploadMode="regular", shouldIgnore=False) for f in files]}
            )
        if "/commit/" in self.path:
            return self.reply(
                200, {"commitUrl": f"{self.server.url}/org/tiny/commit/{'a' * 40}", "commitOid": "a" * 40}
            )
        self.reply(404, {"error": "not served here"})


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    hub = FakeHub()
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # what HF_ENDPOINT sets when huggingface_hub loads
    yield hub
    hub.shutdown()
    thread.join()


def test_push_uploads_the_folder_as_it_is(run_cli, tiny, fake_hub):
    code, out, err = run_cli("push", str(tiny), "org/tiny", "--json")
    assert code == 0, err
    assert json.loads(out)["commit_url"].startswith(f"{fake_hub.url}/org/tiny/commit/")
    posts = {path: body for method, path, body in fake_hub.requests if method == "POST"}
    created = json.loads(posts["/api/repos/create"])
    assert created["name"] == "tiny" and created["organization"] == "org"
    lines = [json.loads(line) for line in posts["/api/models/org/tiny/commit/main"].splitlines()]
    uploaded = {f["value"]["path"]: base64.b64decode(f["value"]["content"]) for f in lines if f["key"] == "file"}
    assert uploaded == {name: (tiny / name).read_bytes() for name in FOLDER_FILES}


def test_push_failures_are_one_line(run_cli, tiny, fake_hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    code, _, err = run_cli("push", str(tiny), "not a repo")
    assert (
        code == 2
        and err.strip()
        == "rspnet-zoo: error: 'not a repo' is not a Hub repo id: give OWNER/NAME, e.g. my-org/rspnet_small"
    )
    code, _, err = run_cli("push", str(tmp_path / "nowhere"), "org/tiny")
    assert code == 2 and "no built folder here or in" in err
    assert fake_hub.requests == []  # nothing was sent
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    code, out, err = run_cli("push", str(tiny), "org/tiny")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"rspnet-zoo: error: push to {closed}/org/tiny failed: ")
