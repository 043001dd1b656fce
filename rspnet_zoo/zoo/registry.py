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
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg

from rspnet_zoo.errors import SpecError, WeightsError, ZooError, pointer
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.io import genotype_from_dict, load_spec, spec_sha256
from rspnet_zoo.spec.models import MAX_CLASSES, Genotype
from rspnet_zoo.spec.plan import lower
from rspnet_zoo.zoo.catalog import SHIPPED, default_tag, pretrained_cfg_for, tag_weights, trained_cfg
from rspnet_zoo.zoo.home import WEIGHTS_FILE, weights_path, zoo_home
from rspnet_zoo.zoo.weights import INITIALISED, describe_status, read_weights, weights_status

ALLOW_UNTRAINED_ENV = "RSPNET_ZOO_ALLOW_UNTRAINED"


def _untrained_allowed_by_env() -> bool:
    return os.environ.get(ALLOW_UNTRAINED_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _weights_file(name: str, pretrained_cfg: Any) -> Path | None:
    """The file ``pretrained=True`` will read, when it is a local one we can check up front."""
    if pretrained_cfg is None:
        return weights_path(name)
    if isinstance(pretrained_cfg, dict):
        if pretrained_cfg.get("source") == "local-dir":
            return Path(pretrained_cfg["file"]) / WEIGHTS_FILE
        if pretrained_cfg.get("file"):
            return Path(pretrained_cfg["file"])
    return None


def create_genotype_net(
    name: str,
    genotype: Genotype | dict,
    pretrained: bool = False,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict | None = None,
    allow_untrained: bool = False,
    **kwargs: Any,
) -> GenotypeNet:
    """One path for every zoo model: timm's ``build_model_with_cfg`` with local weights checked first
    (intact, from this spec, and trained or imported unless ``allow_untrained``)."""
    if not isinstance(genotype, Genotype):
        genotype = genotype_from_dict(genotype)
    num_classes = kwargs.get("num_classes")
    if num_classes is not None and not 0 <= num_classes <= MAX_CLASSES:  # 0: timm's "no classifier"
        raise ZooError(f"num_classes={num_classes}: the spec format allows 0 to {MAX_CLASSES:,} classes")
    allow_untrained = allow_untrained or _untrained_allowed_by_env()
    if pretrained and pretrained_cfg is None and name in SHIPPED:  # a bare name: its default tag, as in timm
        pretrained_cfg = default_tag(name, allow_untrained)
    if isinstance(pretrained_cfg, str):  # a tag, as timm passes 'rspnet_small.synth'
        file = tag_weights(name, pretrained_cfg)
        if file is None:
            raise WeightsError(
                f"no weights for '{name}.{pretrained_cfg}' in {zoo_home()} or the package: "
                f"train them with `rspnet-zoo train {name} --tag {pretrained_cfg}`"
            )
        pretrained_cfg = trained_cfg(genotype, file)
    overlay = dict(pretrained_cfg_overlay or {})
    if pretrained:
        file = _weights_file(name, pretrained_cfg)
        if file is not None:
            if not file.is_file():
                hint = f"rspnet-zoo build {name}" if name in SHIPPED else "rspnet-zoo build SPEC --out DIR"
                raise WeightsError(f"no weights for '{name}' at {file}: run `{hint}` to make them")
            _, metadata = read_weights(file)  # refuses corrupted or non-finite tensors
            sha, expected = metadata.get("genotype_sha256"), spec_sha256(genotype)
            if sha != expected:
                raise WeightsError(
                    f"{file} was built from spec {str(sha)[:12]}, "
                    f"not from this '{name}' spec ({expected[:12]}): rebuild it"
                )
            if weights_status(metadata) == INITIALISED and not allow_untrained:
                train = f"rspnet-zoo train {name if name in SHIPPED else 'SPEC'}"
                raise WeightsError(
                    f"{file}: {describe_status(metadata)}; train them (`{train}`) or build from "
                    f"trained weights (`rspnet-zoo build SPEC --weights FILE`), or pass allow_untrained=True "
                    f"(CLI: {ALLOW_UNTRAINED_ENV}=1) to load them anyway"
                )
            if pretrained_cfg is None:
                overlay["file"] = str(file)
    if pretrained_cfg is None and name not in SHIPPED:
        pretrained_cfg = pretrained_cfg_for(genotype, architecture=name)
    model = build_model_with_cfg(
        GenotypeNet,
        name,
        pretrained,
        pretrained_cfg=pretrained_cfg,
        pretrained_cfg_overlay=overlay or None,
        feature_cfg=dict(feature_cls="getter", out_indices=_feature_levels(genotype, kwargs)),
        genotype=genotype,
        **kwargs,
    )
    _name_first_conv(model)
    return model


def _feature_levels(genotype: Genotype, kwargs: dict) -> tuple[int, ...]:
    """Every feature level a features_only model returns by default (a spec may have fewer than five;
    timm's fx extractor indexes them all)."""
    return tuple(range(len(lower(genotype).features) if kwargs.get("features_only") else 5))


def first_conv_cfg(model: GenotypeNet) -> str | list[str]:
    """timm's cfg form of the convs that read the image: one name, or a list when a cell reads it twice."""
    names = model._traits["first_conv"]
    return names[0] if len(names) == 1 else list(names)


def _name_first_conv(model: Any) -> None:
    """timm's cfg names the convs that read the image; ours depend on the spec, so the built model fills
    them in (a features_only wrapper too, from the model it wraps)."""
    net = model if isinstance(model, GenotypeNet) else getattr(model, "model", None)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(net, GenotypeNet) and isinstance(cfg, dict):
        model.pretrained_cfg = model.default_cfg = {**cfg, "first_conv": first_conv_cfg(net)}


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


# What timm's local-dir: loader and resolve_genotype read from a built folder's config.json.
FOLDER_CONFIG = (
    (("architecture",), str),
    (("num_classes",), int),
    (("pretrained_cfg",), dict),
    (("model_args",), dict),
    (("model_args", "genotype"), dict),
)
FOLDER_CONFIG_KINDS = {str: "a string", int: "an integer", dict: "an object"}


def _folder_config(path: Path) -> dict:
    file = path / "config.json"
    if not file.is_file():
        raise WeightsError(
            f"{path}: not a built folder (no config.json); make one with `rspnet-zoo build` or `rspnet-zoo train`"
        )
    try:
        config = json.loads(file.read_text())
    except ValueError as e:
        raise ZooError(f"{file}: not JSON ({e})") from None
    for key, kind in FOLDER_CONFIG:
        value = config
        for part in key:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, kind):
            where = pointer(*key)
            raise ZooError(
                f"{file}: {where}: missing or not {FOLDER_CONFIG_KINDS[kind]}; not a folder built by rspnet-zoo"
            )
    return config


@functools.lru_cache(maxsize=64)
def _cached_spec(path: Path, resolved: Path, mtime_ns: int, size: int) -> Genotype:
    return load_spec(path)


def _load_spec_file(path: Path) -> Genotype:
    """Read and validated once per version (path, mtime, size), so building a model many times in one
    process costs the build alone."""
    try:
        resolved = path.resolve()
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
        try:
            return genotype_from_dict(_folder_config(r.path)["model_args"]["genotype"])
        except SpecError as e:
            raise SpecError(
                pointer("model_args", "genotype") + e.pointer, e.reason, str(r.path / "config.json")
            ) from None
    return _load_spec_file(r.path)


def load_trained(ref: str, **kwargs: Any) -> GenotypeNet:
    """A model with its weights, for eval and predict: a registered name, optionally tagged
    ('rspnet_small', 'rspnet_small.synth'), or a built folder."""
    import timm

    r = resolve_ref(ref)
    if r.kind == "registered":
        return timm.create_model(ref, pretrained=True, **kwargs).eval()
    if r.kind == "folder":
        _folder_config(r.path)
        return timm.create_model(f"local-dir:{r.path}", pretrained=True, **kwargs).eval()
    if r.path.is_file():
        raise WeightsError(
            f"{r.path}: a spec has no weights; train it (`rspnet-zoo train {r.path} --tag TAG`) "
            f"and pass the folder it writes"
        )
    raise ZooError(f"unknown model '{ref}': neither a registered name[.tag] nor a built folder {SEE_LIST}")
