"""Built folders: ``config.json`` + ``model.safetensors`` + ``README.md``, written atomically by one writer.

``write_folder`` takes the spec and a ``FolderWeights`` (a model, what its weights are, their card section
and cfg facts); its front ends are ``build_folder`` (fresh or copied weights: ``rspnet-zoo build``),
``training.loop.save_to_zoo`` (trained) and ``interop.convert.convert_checkpoint`` (imported). The folder is
self-describing: config.json carries the canonical genotype in ``model_args``, so
``timm.create_model('local-dir:<folder>', pretrained=True)`` rebuilds it with nothing registered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rspnet_zoo import __version__
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_dir, clean_leftovers, locked, writable_output
from rspnet_zoo.names import FOLDER, check_name
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.io import canonical_dict, dump_spec, spec_sha256
from rspnet_zoo.spec.models import FORMAT_VERSION, Genotype
from rspnet_zoo.zoo.card import README_FILE, model_card
from rspnet_zoo.zoo.catalog import SHIPPED, cfg_first_conv, pretrained_cfg_for
from rspnet_zoo.zoo.config import CONFIG_FILE, FolderConfig
from rspnet_zoo.zoo.home import WEIGHTS_FILE
from rspnet_zoo.zoo.registry import create_genotype_net
from rspnet_zoo.zoo.stats import count_flops, count_parameters, meta_model
from rspnet_zoo.zoo.timm_registration import GENERIC_ARCH
from rspnet_zoo.zoo.weights import (
    check_fit,
    check_tensors,
    imported,
    initialised,
    read_metadata,
    read_weights,
    save_weights,
    status_facts,
)


def weights_metadata(
    genotype: Genotype,
    status: Mapping[str, str],
    class_names: Sequence[str] | None = None,
    input_size: Sequence[int] | None = None,
    sha256: str | None = None,
) -> dict[str, str]:
    """safetensors metadata holds strings only: the spec (``sha256``, its hash, when the caller has it), what the
    weights are (``rspnet_zoo.zoo.weights``' status), and for trained weights the class names they predict and
    the ``input_size`` (C, H, W) they were evaluated at, which their timm cfg reports."""
    meta = {
        **status,
        "genotype": dump_spec(genotype),
        "genotype_sha256": sha256 or spec_sha256(genotype),
        "format_version": str(FORMAT_VERSION),
        "rspnet_zoo_version": __version__,
    }
    if class_names:
        meta["class_names"] = json.dumps(list(class_names))
    if input_size:
        meta["input_size"] = json.dumps([int(v) for v in input_size])
    return meta


def load_weights(model: torch.nn.Module, file: Path) -> dict[str, str]:
    """Strict load of a safetensors file through the checked reader, with a one-line error when it is
    corrupted or does not fit the model; returns the file's metadata."""
    state, metadata = read_weights(file)
    check_fit(model.state_dict(), state, str(file))
    model.load_state_dict(state)
    return metadata


@dataclass(frozen=True)
class FolderWeights:
    """A model with its weights and what they are: what a built folder holds besides its spec.

    ``status`` is ``zoo.weights``' (trained, imported, initialised); ``note`` the card's section on them
    (``zoo.card``); ``class_names`` (trained weights) replace the spec's label names in the cfg and metadata;
    ``input_size`` (C, H, W) is what trained weights were evaluated at, their cfg's ``input_size``, so that
    timm's ``resolve_data_config`` prepares images as the weights saw them; ``cfg`` the weights' own
    preprocessing facts (imported weights: normalisation, crop, notes); ``model_args`` what timm rebuilds the
    model with besides the spec (``aux_head``); ``results`` (trained: data set, split, metrics) go into the
    card's Hub front matter."""

    model: GenotypeNet
    status: Mapping[str, str]
    note: str = ""
    class_names: Sequence[str] | None = None
    input_size: Sequence[int] | None = None
    cfg: Mapping[str, Any] = field(default_factory=dict)
    model_args: Mapping[str, Any] = field(default_factory=dict)
    results: dict | None = None


def write_folder(
    genotype: Genotype, out_dir: Path, weights: FolderWeights, folder_name: str | None = None, force: bool = False
) -> tuple[Path, dict[str, Any]]:
    """The one writer of a built folder: ``out_dir/<folder_name or the spec's name>/`` holding ``config.json``
    (``zoo.config.FolderConfig``), ``model.safetensors`` and the ``README.md`` card. The folder appears whole or
    not at all, and replaces an older one without a moment of no folder (``fsutil.atomic_dir``); weights that
    are not finite are refused before anything is written. The spec is hashed once here, and the model's plan
    reused for its FLOP count. What may be replaced is ``check_build_target``'s rule, checked again under the
    lock (``force``: a folder built from another spec)."""
    model, status = weights.model, weights.status
    check_tensors(model.state_dict(), f"{genotype.name}: refused to write its weights")
    sha256 = spec_sha256(genotype)
    meta = meta_model(genotype, model.num_classes, plan=model.plan)
    size = (model.in_chans, *genotype.defaults.input_size[1:])
    stats = dict(parameters=count_parameters(model), flops=count_flops(meta, size))
    cfg = pretrained_cfg_for(
        genotype,
        num_classes=model.num_classes,
        first_conv=cfg_first_conv(model._traits["first_conv"]),
        **({"label_names": tuple(weights.class_names)} if weights.class_names else {}),
        **({"input_size": tuple(weights.input_size)} if weights.input_size else {}),
        **weights.cfg,
    )
    config = FolderConfig.model_validate(
        dict(
            architecture=genotype.name if genotype.name in SHIPPED else GENERIC_ARCH,
            num_classes=model.num_classes,
            num_features=model.num_features,
            model_args={"genotype": canonical_dict(genotype), "num_classes": model.num_classes, **weights.model_args},
            pretrained_cfg={k: v for k, v in cfg.items() if k not in ("url", "architecture")},
        )
    )
    final = out_dir / (folder_name or genotype.name)
    metadata = weights_metadata(genotype, status, weights.class_names, weights.input_size, sha256=sha256)
    card = model_card(genotype, sha256, final, model, stats, status, weights.note, weights.results, cfg["license"])
    with locked(out_dir):  # one writer in a zoo at a time; the other waits
        check_build_target(out_dir, final.name, genotype, force, sha256)
        clean_leftovers(out_dir, final.name)
        with atomic_dir(final) as tmp:
            save_weights(model.state_dict(), tmp / WEIGHTS_FILE, metadata)
            (tmp / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")
            (tmp / README_FILE).write_text(card)
    return final, dict(
        name=genotype.name,
        path=str(final),
        sha256=sha256,
        num_classes=model.num_classes,
        weights=dict(status),
        **stats,
    )


def check_build_target(
    out_dir: Path, folder_name: str, genotype: Genotype, force: bool = False, sha256: str | None = None
) -> Path:
    """Refuse, before any work, a built folder that must not be written: a ``folder_name`` that is not
    NAME or NAME.TAG (so the folder stays inside ``out_dir``), a spec named like a registered network but
    not it, an existing folder that is not a built one (never replaced: its files are the user's), or one
    built from another spec (replaced only with ``force``). A rebuild of the same spec replaces its folder.
    Returns the folder, ``out_dir / folder_name``. ``sha256``: the spec's, when the caller has it."""
    folder = out_dir / check_name(folder_name, "built folder name", FOLDER)
    writable_output(folder, folder=True, within=out_dir)
    sha = sha256 or spec_sha256(genotype)
    registered = SHIPPED.get(genotype.name)
    if registered is not None and registered != genotype and not force:
        raise ZooError(
            f"spec name '{genotype.name}' is a registered network, and this spec ({sha[:12]}) is not it: "
            "rename the spec, or pass --force to build it under that name anyway"
        )
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / "config.json").is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise ZooError(f"{folder}: exists and is not a built folder; it is not replaced (name another)")
        built = read_metadata(folder / WEIGHTS_FILE).get("genotype_sha256")
        if built != sha and not force:
            raise ZooError(
                f"{folder}: holds a build of another spec ({str(built)[:12]}, this one is {sha[:12]}); "
                "pass --force to replace it"
            )
    return folder


def build_folder(
    genotype: Genotype,
    out_dir: Path,
    num_classes: int | None = None,
    weights: Path | None = None,
    seed: int = 0,
    folder_name: str | None = None,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """``rspnet-zoo build``: the folder of ``genotype`` with a fresh initialisation from ``seed`` (drawn from a
    forked RNG: the caller's random state is left as it was), or a ``weights`` file's tensors through the
    checked reader, which keep that file's status (else count as imported from it). What may be replaced is
    ``check_build_target``'s rule (``force``: a folder built from another spec)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the encoders' pretrained weights only where no weights file replaces them
        model = create_genotype_net(
            genotype.name, genotype, num_classes=num_classes, pretrained_encoders=weights is None
        )
    status = initialised(seed)
    if weights is not None:
        status = status_facts(load_weights(model, weights)) or imported(str(weights))
    return write_folder(genotype, out_dir, FolderWeights(model, status), folder_name, force=force)
