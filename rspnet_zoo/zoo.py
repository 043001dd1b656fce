"""The timm side of the zoo: every shipped spec becomes a registered architecture.

timm has no plugin discovery, so ``import rspnet_zoo`` is the contract: the cfgs below are defined
before the entrypoints are registered, exactly as a timm model module does it. Without that import timm
answers ``Unknown model (rspnet_small)``; nothing in timm can be hooked to say more, so the README and the
CLI's unknown-model message say it instead.
Weights are local safetensors only: ``$RSPNET_ZOO_HOME/<name>/model.safetensors`` for the default
tag (written by ``rspnet-zoo build``), a folder for ``local-dir:``, and for a trained tag
(``<name>.<tag>``) ``$RSPNET_ZOO_HOME/<name>.<tag>/model.safetensors`` (written by ``rspnet-zoo train``)
or else the package data ``rspnet_zoo/weights/<name>.<tag>.safetensors``.

``pretrained=True`` loads trained or imported weights (``weightsfile``'s status); initialised ones, which
``build`` writes, are refused unless asked for: ``allow_untrained=True`` to ``create_model``, or
``RSPNET_ZOO_ALLOW_UNTRAINED=1`` in the environment (for the CLI's eval and predict). ``timm.list_pretrained()``
lists only names and tags whose files hold trained or imported weights.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .errors import SpecError, WeightsError, ZooError, pointer
from .model import GenotypeNet
from .plan import lower
from .resources import shipped_specs
from .spec import MAX_CLASSES, Genotype
from .specfile import genotype_from_dict, load_spec, spec_sha256
from .weightsfile import INITIALISED, USABLE, describe_status, read_header, read_metadata, read_weights, weights_status

GENERIC_ARCH = "rspnet"
ALLOW_UNTRAINED_ENV = "RSPNET_ZOO_ALLOW_UNTRAINED"
WEIGHTS_FILE = "model.safetensors"
PACKAGE_WEIGHTS = Path(__file__).resolve().parent / "weights"


def zoo_home() -> Path:
    """``$RSPNET_ZOO_HOME``; empty counts as unset, so it never means the working directory."""
    return Path(os.environ.get("RSPNET_ZOO_HOME") or "~/.cache/rspnet-zoo").expanduser()


def weights_path(name: str) -> Path:
    return zoo_home() / name / WEIGHTS_FILE


def pretrained_cfg_for(genotype: Genotype, **extra: Any) -> dict[str, Any]:
    d = genotype.defaults
    cfg = dict(
        url="",
        num_classes=d.num_classes,
        input_size=tuple(d.input_size),
        fixed_input_size=False,
        pool_size=None,
        crop_pct=1.0,
        interpolation="bilinear",
        mean=tuple(d.mean),
        std=tuple(d.std),
        classifier="classifier",
        license="apache-2.0",
    )
    if d.class_names:
        cfg["label_names"] = tuple(d.class_names)
    cfg.update(extra)
    return cfg


def _load_shipped() -> dict[str, Genotype]:
    specs: dict[str, Genotype] = {}
    for path in shipped_specs():
        genotype = load_spec(path)
        if genotype.name != path.stem:
            raise ZooError(f"{path}: spec name '{genotype.name}' does not match its file name")
        specs[genotype.name] = genotype
    return specs


SHIPPED: dict[str, Genotype] = _load_shipped()


def trained_cfg(genotype: Genotype, file: Path) -> dict[str, Any]:
    """A trained tag's cfg, from its safetensors header alone: the class count is the classifier's
    width, the class names and ``input_size`` (the size it was evaluated at) are metadata training wrote."""
    shapes, metadata = read_header(file)
    try:
        names = json.loads(metadata.get("class_names", "null"))
        input_size = json.loads(metadata.get("input_size", "null"))
        num_classes = shapes["classifier.weight"][0]
    except (ValueError, KeyError, IndexError) as e:  # a foreign file, or metadata not written by training
        raise WeightsError(f"{file}: not the safetensors weights of a trained zoo model ({e!r})") from None
    extra = dict(input_size=tuple(input_size)) if input_size else {}
    return pretrained_cfg_for(
        genotype, file=str(file), num_classes=num_classes, label_names=tuple(names) if names else None, **extra
    )


def packaged_tags() -> dict[str, Path]:
    """``'<name>.<tag>' -> file`` for the trained weights shipped in the package."""
    files = sorted(PACKAGE_WEIGHTS.glob("*.safetensors")) if PACKAGE_WEIGHTS.is_dir() else []
    return {f.stem: f for f in files if f.stem.split(".")[0] in SHIPPED and "." in f.stem}


def home_tags() -> dict[str, Path]:
    """``'<name>.<tag>' -> file`` for the tags trained (or converted) into the zoo home."""
    home = zoo_home()
    files = sorted(home.glob(f"*.*/{WEIGHTS_FILE}")) if home.is_dir() else []
    return {f.parent.name: f for f in files if f.parent.name.split(".")[0] in SHIPPED}


def _usable(file: Path) -> bool:
    return file.is_file() and weights_status(read_metadata(file)) in USABLE


def tag_weights(name: str, tag: str) -> Path | None:
    """A tag trained here (zoo home) wins over the same tag shipped in the package."""
    trained = zoo_home() / f"{name}.{tag}" / WEIGHTS_FILE
    if trained.is_file():
        return trained
    return packaged_tags().get(f"{name}.{tag}")


def _pretrained_cfgs() -> dict[str, Any]:
    """The untagged cfg of each spec is the default tag ('name.*' marks it so for timm even without weights);
    it names the zoo-home file only when that holds trained or imported weights, since timm lists a cfg with
    a file as pretrained (create_model finds a build either way). Tags follow: shipped ones, then ones
    trained here, which win (as ``tag_weights`` reads them); initialised ones are left out."""
    return generate_default_cfgs(
        {
            **{
                key: trained_cfg(SHIPPED[key.split(".")[0]], file)
                for key, file in {**packaged_tags(), **home_tags()}.items()
                if _usable(file)
            },
            **{  # after the tags: timm makes a '*' key the default only over the tags registered before it
                f"{name}.*": pretrained_cfg_for(
                    g, **({"file": str(weights_path(name))} if _usable(weights_path(name)) else {})
                )
                for name, g in SHIPPED.items()
            },
        }
    )


default_cfgs = _pretrained_cfgs()


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
                hint = (
                    f"run `rspnet-zoo build genotypes/{name}.json`"
                    if name in SHIPPED
                    else "run `rspnet-zoo build SPEC --out DIR`"
                )
                raise WeightsError(f"no weights for '{name}' at {file}: {hint} to make them")
            _, metadata = read_weights(file)  # refuses corrupted or non-finite tensors
            sha, expected = metadata.get("genotype_sha256"), spec_sha256(genotype)
            if sha != expected:
                raise WeightsError(
                    f"{file} was built from spec {str(sha)[:12]}, "
                    f"not from this '{name}' spec ({expected[:12]}): rebuild it"
                )
            if weights_status(metadata) == INITIALISED and not (allow_untrained or _untrained_allowed_by_env()):
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


def _entrypoint(name: str) -> Callable[..., GenotypeNet]:
    def entrypoint(pretrained: bool = False, genotype: Genotype | dict | None = None, **kwargs: Any) -> GenotypeNet:
        return create_genotype_net(name, genotype or SHIPPED[name], pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = SHIPPED[name].description or f"The '{name}' genotype spec."
    return entrypoint


for _name in SHIPPED:
    register_model(_entrypoint(_name))


def refresh_tags() -> None:
    """Register again every spec whose trained tags changed since import (``rspnet-zoo train`` calls this
    after it writes a tag), so ``timm.list_pretrained()`` names exactly the tags that can be loaded now."""
    fresh = _pretrained_cfgs()
    for name in SHIPPED:
        if fresh[name] != default_cfgs[name]:
            default_cfgs[name] = fresh[name]  # timm's register_model reads this module's default_cfgs
            with warnings.catch_warnings():  # timm warns on every re-registration; this one is deliberate
                warnings.filterwarnings("ignore", message=f"Overwriting {name} in registry")
                register_model(_entrypoint(name))


DEFAULT_GENERIC = "rspnet_small"


@register_model
def rspnet(pretrained: bool = False, genotype: Genotype | dict | None = None, **kwargs: Any) -> GenotypeNet:
    """Any genotype spec, passed as ``genotype=``: how built folders of unregistered specs rebuild.
    Without one it builds the reference RSPNet, ``rspnet_small``."""
    if genotype is None:
        genotype = SHIPPED[DEFAULT_GENERIC]
    if not isinstance(genotype, Genotype):
        genotype = genotype_from_dict(genotype)
    return create_genotype_net(genotype.name, genotype, pretrained, **kwargs)


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
