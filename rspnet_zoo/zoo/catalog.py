"""What the zoo holds: the shipped specs (``SHIPPED``), the trained tags shipped in the package and written
into the zoo home, and the timm pretrained cfg of each. Reads files only when asked, except the shipped specs
(package data) at import."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rspnet_zoo.errors import WeightsError, ZooError
from rspnet_zoo.names import TAG, check_name
from rspnet_zoo.resources import PACKAGE_WEIGHTS, shipped_specs
from rspnet_zoo.spec import Genotype, load_spec
from rspnet_zoo.spec.heads import feature_reduction
from rspnet_zoo.zoo.home import WEIGHTS_FILE, weights_path, zoo_home
from rspnet_zoo.zoo.weights import USABLE, read_header, weights_status


def pretrained_cfg_for(genotype: Genotype, **extra: Any) -> dict[str, Any]:
    """timm's cfg of ``genotype``, ``extra`` keys replacing the spec's defaults; the spec's class names are
    the ``label_names`` only while the class count is the spec's (names for other classes are not known).
    ``pool_size`` is the spatial size of ``forward_features``' map at ``input_size``, as timm's model tests
    check it."""
    d = genotype.defaults
    cfg = dict(
        url="",
        num_classes=d.num_classes,
        input_size=tuple(d.input_size),
        fixed_input_size=False,
        crop_pct=1.0,
        interpolation="bilinear",
        mean=tuple(d.mean),
        std=tuple(d.std),
        classifier="classifier",
        license="apache-2.0",
    )
    cfg.update(extra)
    reduction = feature_reduction(genotype)
    cfg["pool_size"] = tuple(-(-side // reduction) for side in cfg["input_size"][1:])
    if d.class_names and "label_names" not in extra and cfg["num_classes"] == d.num_classes:
        cfg["label_names"] = tuple(d.class_names)
    return cfg


def cfg_first_conv(names: Sequence[str]) -> str | list[str] | None:
    """timm's cfg form of the convs that read the image: one name, or a list when a cell reads it twice."""
    return names[0] if len(names) == 1 else list(names) or None


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
    shapes, metadata = _header(file)
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


@functools.lru_cache(maxsize=256)
def _cached_header(file: Path, mtime_ns: int, size: int) -> tuple[dict, dict]:
    return read_header(file)


def _header(file: Path) -> tuple[dict, dict]:
    """A weights file's header, read once per version of the file (path, mtime, size): every build of a zoo
    name refreshes the tags, which reads the header of every tag."""
    stat = file.stat()
    return _cached_header(file, stat.st_mtime_ns, stat.st_size)


def _usable(file: Path) -> bool:
    if not file.is_file():
        return False
    try:
        return weights_status(_header(file)[1]) in USABLE
    except WeightsError:  # not safetensors: listed nowhere
        return False


def tag_weights(name: str, tag: str) -> Path | None:
    """A tag trained here (zoo home) wins over the same tag shipped in the package. A tag that is not one
    (``names.TAG``) is refused before it is joined to any path."""
    trained = zoo_home() / f"{name}.{check_name(tag, 'tag', TAG)}" / WEIGHTS_FILE
    if trained.is_file():
        return trained
    return packaged_tags().get(f"{name}.{tag}")


def trained_tags(read_home: bool = True) -> dict[str, Path]:
    """``'<name>.<tag>' -> file`` of every tag with trained or imported weights: shipped ones first, then the
    zoo home's (which win for the same tag, as ``tag_weights`` reads them)."""
    tags = {**packaged_tags(), **(home_tags() if read_home else {})}
    return {key: file for key, file in tags.items() if _usable(file)}


def default_tag(name: str, allow_untrained: bool = False) -> str | None:
    """What a bare name with ``pretrained=True`` loads, as timm's default tag: the zoo-home build when it holds
    trained or imported weights (or any weights, with ``allow_untrained``), else the name's first trained tag
    (``rspnet_small`` -> ``synth`` on a fresh install), else None: the home build, refused with a hint."""
    built = weights_path(name)
    if _usable(built) or (allow_untrained and built.is_file()):
        return None
    return next((key.split(".", 1)[1] for key in trained_tags() if key.split(".")[0] == name), None)


def pretrained_cfgs(read_home: bool = True) -> dict[str, dict[str, Any]]:
    """timm's cfgs, keyed 'name.tag', then 'name.*': the spec's own cfg, which the '*' makes timm's default, so
    that ``create_model(name)`` keeps the spec's classes and input size (``pretrained=True`` on a bare name loads
    ``default_tag``). The untagged cfg names the home build only when that holds trained or imported weights,
    since timm lists a cfg with a file as pretrained. ``read_home=False`` leaves the zoo home unread (what
    registering at ``import timm`` uses)."""
    cfgs = {key: trained_cfg(SHIPPED[key.split(".")[0]], file) for key, file in trained_tags(read_home).items()}
    for name, genotype in SHIPPED.items():
        built = weights_path(name)
        extra = {"file": str(built)} if read_home and _usable(built) else {}
        cfgs[f"{name}.*"] = pretrained_cfg_for(genotype, **extra)
    return cfgs
