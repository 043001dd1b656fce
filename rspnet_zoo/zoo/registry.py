"""Building zoo models: the one factory behind every registered name (``create_genotype_net``), and what a
model reference on the command line resolves to (a registered name[.tag], a spec file or a built folder).

Registration itself is ``timm_registration``. Weights are local safetensors only:
``$RSPNET_ZOO_HOME/<name>/model.safetensors`` for the default tag (written by ``rspnet-zoo build``), a folder
for ``local-dir:``, and for a trained tag (``<name>.<tag>``) ``$RSPNET_ZOO_HOME/<name>.<tag>/model.safetensors``
(written by ``rspnet-zoo train``) or else the package data ``rspnet_zoo/weights/<name>.<tag>.safetensors``.

``pretrained=True`` loads trained or imported weights (``rspnet_zoo.zoo.weights``' status); initialised ones,
which ``build`` writes, are refused unless asked for: ``allow_untrained=True`` to ``create_model``, or
``RSPNET_ZOO_ALLOW_UNTRAINED=1`` in the environment (for the CLI's eval and predict). ``timm.list_pretrained()``
lists only names and tags whose files hold trained or imported weights.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg, resolve_pretrained_cfg

from rspnet_zoo.errors import WeightsError, ZooError
from rspnet_zoo.nn.encoders import encoder_first_convs
from rspnet_zoo.nn.model import GenotypeNet, first_conv_names
from rspnet_zoo.spec.io import genotype_from_dict, load_spec, spec_sha256
from rspnet_zoo.spec.models import MAX_CLASSES, Genotype
from rspnet_zoo.spec.plan import lower
from rspnet_zoo.zoo.catalog import SHIPPED, cfg_first_conv, default_tag, pretrained_cfg_for, tag_weights, trained_cfg
from rspnet_zoo.zoo.config import CONFIG_FILE, read_folder_config
from rspnet_zoo.zoo.home import WEIGHTS_FILE, weights_path, zoo_home
from rspnet_zoo.zoo.hub import download
from rspnet_zoo.zoo.weights import (
    INITIALISED,
    TENSORS_SHA256,
    check_fit,
    check_same,
    describe_status,
    read_weights,
    tensors_sha256,
    weights_status,
)

ALLOW_UNTRAINED_ENV = "RSPNET_ZOO_ALLOW_UNTRAINED"


def _untrained_allowed_by_env() -> bool:
    return os.environ.get(ALLOW_UNTRAINED_ENV, "").strip().lower() not in ("", "0", "false", "no")


def create_genotype_net(
    name: str,
    genotype: Genotype | dict,
    pretrained: bool = False,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict | None = None,
    allow_untrained: bool = False,
    **kwargs: Any,
) -> GenotypeNet:
    """One path for every zoo model: timm's ``build_model_with_cfg`` with the cfg resolved here once and, with
    ``pretrained``, the one weights file that cfg names checked before timm reads it (intact, from this spec,
    trained or imported unless ``allow_untrained``) and as timm loads it (``zoo.weights.check_loaded``: the
    tensors loaded are the ones checked, and fit the model)."""
    if not isinstance(genotype, Genotype):
        genotype = genotype_from_dict(genotype)
    num_classes = kwargs.get("num_classes")
    if num_classes is not None and not 0 <= num_classes <= MAX_CLASSES:  # 0: timm's "no classifier"
        raise ZooError(f"num_classes={num_classes}: the spec format allows 0 to {MAX_CLASSES:,} classes")
    allow_untrained = allow_untrained or _untrained_allowed_by_env()
    if pretrained and pretrained_cfg is None and name in SHIPPED and not (pretrained_cfg_overlay or {}).get("file"):
        pretrained_cfg = default_tag(name, allow_untrained)  # a bare name: its default trained tag, as in timm
    cfg = _resolved_cfg(name, genotype, pretrained, pretrained_cfg, pretrained_cfg_overlay)
    # timm's defaults for these two (build_model_with_cfg would apply them), applied here: the spec is lowered
    # once, at the model's arguments, and the cfg names the convs that read the image from that plan
    kwargs.setdefault("in_chans", cfg["input_size"][0])
    kwargs.setdefault("num_classes", cfg["num_classes"])
    if pretrained:  # the weights file holds the whole network, encoders included
        kwargs.setdefault("pretrained_encoders", False)
    plan = lower(genotype, kwargs["in_chans"], kwargs.get("output_stride"), kwargs["num_classes"])
    cfg["first_conv"] = cfg_first_conv(first_conv_names(plan) + encoder_first_convs(genotype, plan))
    levels = len(plan.features) if kwargs.get("features_only") else 5  # timm's fx extractor indexes them all
    return build_model_with_cfg(
        GenotypeNet,
        name,
        pretrained,
        pretrained_cfg=cfg,
        pretrained_filter_fn=_checked_load(name, genotype, cfg, allow_untrained) if pretrained else None,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(levels))),
        genotype=genotype,
        plan=plan,
        **kwargs,
    )


def _resolved_cfg(name: str, genotype: Genotype, pretrained: bool, pretrained_cfg: Any, overlay: dict | None) -> dict:
    """The cfg timm builds and loads with: a tag's (from its weights file), a folder's or Hub repo's (its
    ``config.json``, read through the closed ``FolderConfig``), one passed in, or the registered default; then
    ``overlay``. A bare name's weights are its zoo-home build unless the overlay names a file."""
    overlay = dict(overlay or {})
    if isinstance(pretrained_cfg, str):  # a tag, as timm passes 'rspnet_small.synth'
        file = tag_weights(name, pretrained_cfg)
        if file is None:
            raise WeightsError(
                f"no weights for '{name}.{pretrained_cfg}' in {zoo_home()} or the package: "
                f"train them with `rspnet-zoo train {name} --tag {pretrained_cfg}`"
            )
        pretrained_cfg = trained_cfg(genotype, file)
    elif isinstance(pretrained_cfg, dict) and pretrained_cfg.get("source") in ("local-dir", "hf-hub"):
        # closed: the model args timm passed on from the file are only those the builder writes
        read_folder_config(_config_file(pretrained_cfg))
    elif pretrained_cfg is None:
        if pretrained and not overlay.get("file"):
            overlay["file"] = str(weights_path(name))
        if name not in SHIPPED:
            pretrained_cfg = pretrained_cfg_for(genotype, architecture=name)
    return resolve_pretrained_cfg(name, pretrained_cfg, overlay).to_dict()


def _config_file(cfg: dict) -> Path | None:
    """The ``config.json`` timm read ``cfg`` from: a built folder's (``local-dir:``) or a Hub repo's."""
    if cfg.get("source") == "local-dir":
        return Path(str(cfg.get("file"))) / CONFIG_FILE
    if cfg.get("source") == "hf-hub":
        return download(str(cfg.get("hf_hub_id")), CONFIG_FILE)
    return None


def _weights_file(cfg: dict) -> Path:
    """The file timm's loader reads for ``cfg``, in its order of sources (a folder, the Hub, an in-memory
    state dict, a file). Any source but a local or Hub safetensors file (a URL, a state dict, another Hub
    file) is refused: it would load unchecked."""
    source, file = cfg.get("source"), cfg.get("file")
    if source == "local-dir":
        return Path(str(file)) / WEIGHTS_FILE  # timm's first choice in a folder
    if source == "hf-hub" or (not file and cfg.get("hf_hub_id") and cfg.get("state_dict") is None):
        hub_file = cfg.get("hf_hub_filename") or WEIGHTS_FILE
        if hub_file != WEIGHTS_FILE:
            raise WeightsError(f"hf_hub_filename={hub_file!r}: zoo models load the repo's {WEIGHTS_FILE} only")
        return download(str(cfg.get("hf_hub_id")), WEIGHTS_FILE)
    if cfg.get("state_dict") is not None or not file:
        where = "an in-memory state_dict" if cfg.get("state_dict") is not None else f"url {cfg.get('url')!r}"
        raise WeightsError(
            f"pretrained_cfg names {where}: zoo models load safetensors files only, checked as they load "
            "(pretrained_cfg_overlay=dict(file='model.safetensors'), or model.load_state_dict() after building)"
        )
    if Path(str(file)).suffix != ".safetensors":
        raise WeightsError(f"{file}: zoo weights are safetensors files ('.safetensors'), read without unpickling")
    return Path(str(file))


def _checked_load(name: str, genotype: Genotype, cfg: dict, allow_untrained: bool) -> Callable:
    """Read and check the file ``cfg`` loads now, before the model is built (intact, finite, of stated dtypes,
    from this spec, trained or imported unless ``allow_untrained``); return timm's ``pretrained_filter_fn``,
    which holds the tensors timm then reads from it to the ones checked, and to the model."""
    file = _weights_file(cfg)
    if not file.is_file():
        build = name if name in SHIPPED else "SPEC --out DIR"
        raise WeightsError(f"no weights for '{name}' at {file}: run `rspnet-zoo build {build}` to make them")
    state, metadata = read_weights(file)
    sha256 = metadata.get(TENSORS_SHA256) or tensors_sha256(state)
    del state  # timm reads the file again; the filter checks that it read these tensors
    recorded, expected = metadata.get("genotype_sha256"), spec_sha256(genotype)
    if recorded != expected:
        raise WeightsError(
            f"{file} was built from spec {str(recorded)[:12]}, "
            f"not from this '{name}' spec ({expected[:12]}): rebuild it"
        )
    if weights_status(metadata) == INITIALISED and not allow_untrained:
        train = f"rspnet-zoo train {name if name in SHIPPED else 'SPEC'}"
        raise WeightsError(
            f"{file}: {describe_status(metadata)}; train them (`{train}`) or build from "
            f"trained weights (`rspnet-zoo build SPEC --weights FILE`), or pass allow_untrained=True "
            f"(CLI: {ALLOW_UNTRAINED_ENV}=1) to load them anyway"
        )

    def check(loaded: dict, model: GenotypeNet) -> dict:
        check_same(file, loaded, sha256)
        check_fit(model.state_dict(), loaded, str(file), adapted=_adapted_keys(model, cfg))
        return loaded

    return check


def _adapted_keys(model: GenotypeNet, cfg: dict) -> set[str]:
    """The tensors timm adapts after the check: the convs that read the image when ``in_chans`` differs from
    the weights', the classifier when ``num_classes`` does."""
    keys: set[str] = set()
    if model.in_chans != cfg["input_size"][0]:
        keys |= {f"{conv}.weight" for conv in model._traits["first_conv"]}
    if model.num_classes != cfg["num_classes"]:
        keys |= {"classifier.weight", "classifier.bias"}
    return keys


# timm knows the zoo's names only in a process that imported rspnet_zoo: say so where a name is not found
SEE_LIST = "(see `rspnet-zoo list`; in Python, timm knows these names only after `import rspnet_zoo`)"


@dataclass(frozen=True)
class ModelRef:
    """What a model reference on the command line names: a registered name (with an optional tag), a
    spec file, or a built folder."""

    kind: str  # 'registered' | 'spec' | 'folder'
    ref: str
    name: str | None = None  # registered: the spec name
    path: Path | None = None  # spec or folder


def resolve_ref(ref: str) -> ModelRef:
    """Registered names and tags win over bare words: 'rspnet_small' is the registered spec even when a
    folder of that name is in the working directory ('./rspnet_small' names the folder)."""
    name = ref.split(".")[0]
    if name in SHIPPED and "/" not in ref and os.sep not in ref and not ref.endswith(".json"):
        return ModelRef("registered", ref, name=name)
    path = Path(ref)
    if path.is_dir():
        return ModelRef("folder", ref, path=path)
    if path.suffix == ".json" or path.exists() or "/" in ref or os.sep in ref:
        return ModelRef("spec", ref, path=path)
    raise ZooError(f"unknown model '{ref}': neither a registered name[.tag], a spec file nor a built folder {SEE_LIST}")


def ref_files(ref: str) -> list[Path]:
    """The files loading ``ref`` reads (a built folder's, a tag's or a name's weights, a spec file): what
    a command's outputs must never be."""
    try:
        r = resolve_ref(ref)
    except ZooError:
        return []
    if r.kind == "folder":
        return [r.path / CONFIG_FILE, r.path / WEIGHTS_FILE]
    if r.kind == "spec":
        return [r.path]
    name, _, tag = ref.partition(".")
    file = tag_weights(name, tag) if tag else weights_path(name)
    return [file] if file is not None else []


@functools.lru_cache(maxsize=64)
def _cached_spec(path: Path, resolved: Path, mtime_ns: int, size: int) -> Genotype:
    return load_spec(path)


def _load_spec_file(path: Path) -> Genotype:
    """Read and validated once per version (path, mtime, size), so building a model many times in one
    process costs the build alone."""
    try:
        resolved = Path(os.path.realpath(path))  # Path.resolve raises RuntimeError on a symlink loop (3.11)
        stat = resolved.stat()
    except OSError:
        return load_spec(path)  # its error names the file
    return _cached_spec(path, resolved, stat.st_mtime_ns, stat.st_size)


def resolve_genotype(ref: str) -> Genotype:
    """The spec a reference names: a registered name[.tag], a spec file, or a built folder's."""
    r = resolve_ref(ref)
    if r.kind == "registered":
        return SHIPPED[r.name]
    if r.kind == "folder":
        config = r.path / CONFIG_FILE
        return read_folder_config(config).genotype(str(config))
    return _load_spec_file(r.path)


def load_trained(ref: str, **kwargs: Any) -> GenotypeNet:
    """A model with its weights, for eval and predict: a registered name, optionally tagged
    ('rspnet_small', 'rspnet_small.synth'), or a built folder."""
    import timm

    r = resolve_ref(ref)
    if r.kind == "registered":
        return timm.create_model(ref, pretrained=True, **kwargs).eval()
    if r.kind == "folder":
        read_folder_config(r.path / CONFIG_FILE)  # timm would read it with json.load: no bounds, a traceback
        return timm.create_model(f"local-dir:{r.path}", pretrained=True, **kwargs).eval()
    if r.path.is_file():
        raise WeightsError(
            f"{r.path}: a spec has no weights; train it (`rspnet-zoo train {r.path} --tag TAG`) "
            f"and pass the folder it writes"
        )
    raise ZooError(f"unknown model '{ref}': neither a registered name[.tag] nor a built folder {SEE_LIST}")
