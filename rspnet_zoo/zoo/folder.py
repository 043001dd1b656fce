"""Built folders: ``config.json`` + ``model.safetensors`` + ``README.md``, written atomically.

The folder is self-describing: config.json carries the canonical genotype in ``model_args``, so
``timm.create_model('local-dir:<folder>', pretrained=True)`` rebuilds it with nothing registered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
from rspnet_zoo.zoo.catalog import SHIPPED, pretrained_cfg_for
from rspnet_zoo.zoo.home import WEIGHTS_FILE
from rspnet_zoo.zoo.hub import front_matter
from rspnet_zoo.zoo.registry import create_genotype_net, first_conv_cfg
from rspnet_zoo.zoo.stats import count_flops, count_parameters, meta_model
from rspnet_zoo.zoo.timm_registration import GENERIC_ARCH
from rspnet_zoo.zoo.weights import (
    describe_status,
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
) -> dict[str, str]:
    """safetensors metadata holds strings only: the spec, what the weights are (``rspnet_zoo.zoo.weights``' status),
    and for trained weights the class names they predict and the ``input_size`` (C, H, W) they were
    evaluated at, which their timm cfg reports."""
    meta = {
        **status,
        "genotype": dump_spec(genotype),
        "genotype_sha256": spec_sha256(genotype),
        "format_version": str(FORMAT_VERSION),
        "rspnet_zoo_version": __version__,
    }
    if class_names:
        meta["class_names"] = json.dumps(list(class_names))
    if input_size:
        meta["input_size"] = json.dumps([int(v) for v in input_size])
    return meta


def state_mismatch(own: dict[str, torch.Tensor], state: dict) -> str | None:
    """What keeps ``state`` from loading strictly into a model whose state dict is ``own``, or None."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
    if not (missing or unexpected or wrong):
        return None
    first = (
        (missing and f"missing {missing[0]}")
        or (unexpected and f"unexpected {unexpected[0]}")
        or f"{wrong[0]} has shape {tuple(getattr(state[wrong[0]], 'shape', ()))}, "
        f"the spec needs {tuple(own[wrong[0]].shape)}"
    )
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors ({first})"


def load_weights(model: torch.nn.Module, file: Path) -> dict[str, str]:
    """Strict load of a safetensors file, with a one-line error when it is corrupted or does not fit the
    model; returns the file's metadata."""
    state, metadata = read_weights(file)
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise ZooError(f"{file} does not match the spec: {problem}")
    model.load_state_dict(state)
    return metadata


def output_description(model: GenotypeNet) -> str:
    if model.output_reduction is None:
        return f"(B, {model.num_classes}) class logits"
    if model.output_reduction == 1:
        return f"(B, {model.num_classes}, H, W) at the input resolution"
    return f"(B, {model.num_classes}, H/{model.output_reduction}, W/{model.output_reduction}) (ceil)"


def model_card(
    genotype: Genotype,
    folder_name: str,
    model: GenotypeNet,
    stats: dict[str, int],
    status: Mapping[str, str],
    note: str = "",
    results: dict | None = None,
    license: str = "apache-2.0",
) -> str:
    """The README of a built folder: the Hub front matter timm writes (``hub.front_matter``), then the card."""
    num_classes = model.num_classes
    p = genotype.provenance
    c, h, w = genotype.defaults.input_size
    rows = [(k, v) for k, v in p.model_dump(exclude_none=True).items()]
    provenance = "\n".join(f"| {k} | {v} |" for k, v in rows)
    meta = front_matter(
        segmentation=not model.is_classifier,
        tags=[p.searcher] if p.searcher else [],
        license=license,
        name=Path(folder_name).name,
        results=results,
    )
    return f"""{meta}# {genotype.name} {genotype.version}

{genotype.description or "A genotype spec compiled by rspnet-zoo."}

| | |
|---|---|
| weights | {describe_status(status)} |
| genotype sha256 | `{spec_sha256(genotype)}` |
| format_version | {FORMAT_VERSION} |
| classes | {num_classes} |
| parameters | {stats["parameters"]:,} |
| FLOPs at 1x{c}x{h}x{w} | {stats["flops"] / 1e9:.2f} G (torch.utils.flop_counter) |
| rspnet-zoo | {__version__} |
{note}
## Provenance

| field | value |
|---|---|
{provenance}

## Use

```python
import timm, rspnet_zoo  # rspnet_zoo registers the zoo's architectures with timm
model = timm.create_model("local-dir:{folder_name}", pretrained=True).eval()
logits = model(images)  # {output_description(model)}
```

Pushed to the Hugging Face Hub (`rspnet-zoo push`), the same folder loads with
`timm.create_model("hf-hub:OWNER/NAME", pretrained=True)` after `import rspnet_zoo`.
"""


def check_build_target(out_dir: Path, folder_name: str, genotype: Genotype, force: bool = False) -> Path:
    """Refuse, before any work, a built folder that must not be written: a ``folder_name`` that is not
    NAME or NAME.TAG (so the folder stays inside ``out_dir``), a spec named like a registered network but
    not it, an existing folder that is not a built one (never replaced: its files are the user's), or one
    built from another spec (replaced only with ``force``). A rebuild of the same spec replaces its folder.
    Returns the folder, ``out_dir / folder_name``."""
    folder = out_dir / check_name(folder_name, "built folder name", FOLDER)
    writable_output(folder, folder=True, within=out_dir)
    sha = spec_sha256(genotype)
    registered = SHIPPED.get(genotype.name)
    if registered is not None and spec_sha256(registered) != sha and not force:
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
    card_note: str = "",
    folder_name: str | None = None,
    class_names: Sequence[str] | None = None,
    model_args: dict[str, Any] | None = None,
    cfg_overrides: dict[str, Any] | None = None,
    model: GenotypeNet | None = None,
    status: Mapping[str, str] | None = None,
    input_size: Sequence[int] | None = None,
    results: dict | None = None,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Compile ``genotype`` into ``out_dir/<folder_name or name>/``; the folder appears whole or not at all,
    and replaces an older one without a moment of no folder (``fsutil.atomic_dir``).

    The weights are ``model``'s (a trained model), else a ``weights`` file's, else a fresh initialisation
    from ``seed`` (drawn from a forked RNG: the caller's random state is left as it was).
    ``class_names`` (trained weights) replace the spec's default label names in the cfg and metadata.
    ``model_args`` (e.g. ``aux_head``) are stored for timm to rebuild the model with; ``cfg_overrides``
    are the weights' own preprocessing facts (imported weights: normalisation, crop, notes).
    ``status`` (``weights.trained``/``imported``) says what ``model``'s weights are; a ``weights`` file
    keeps its own status (else counts as imported from that file), and a fresh one is ``initialised``.
    ``input_size`` (trained weights) is the (C, H, W) they were evaluated at: their cfg's ``input_size``,
    so timm's ``resolve_data_config`` + ``create_transform`` prepare images as the weights saw them.
    ``results`` (trained weights: data set, split, metrics) go into the card's Hub front matter.
    What may be replaced is ``check_build_target``'s rule (``force``: a folder built from another spec).
    """
    model_args = dict(model_args or {})
    num_classes = genotype.defaults.num_classes if num_classes is None else num_classes
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_genotype_net(genotype.name, genotype, num_classes=num_classes, **model_args)
        status = initialised(seed)
        if weights is not None:
            status = status_facts(load_weights(model, weights)) or imported(str(weights))
    elif status is None:
        raise TypeError("build_folder(model=...) needs the status of the model's weights")
    stats = dict(
        parameters=count_parameters(model),
        flops=count_flops(meta_model(genotype, num_classes), genotype.defaults.input_size),
    )
    registered = genotype.name in SHIPPED
    cfg = pretrained_cfg_for(genotype, num_classes=num_classes)
    if class_names:
        cfg["label_names"] = tuple(class_names)
    if input_size:
        cfg["input_size"] = tuple(input_size)
    cfg["first_conv"] = first_conv_cfg(model)
    cfg.update(cfg_overrides or {})
    config = {
        "architecture": genotype.name if registered else GENERIC_ARCH,
        "num_classes": num_classes,
        "num_features": model.num_features,
        "model_args": {"genotype": canonical_dict(genotype), "num_classes": num_classes, **model_args},
        "pretrained_cfg": {k: v for k, v in cfg.items() if k not in ("url", "architecture")},
    }
    folder_name = folder_name or genotype.name
    final = out_dir / folder_name
    with locked(out_dir):  # one writer in a zoo at a time; the other waits
        check_build_target(out_dir, folder_name, genotype, force)
        clean_leftovers(out_dir, folder_name)
        with atomic_dir(final) as tmp:
            metadata = weights_metadata(genotype, status, class_names, input_size)
            save_weights(model.state_dict(), tmp / WEIGHTS_FILE, metadata)
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            card = model_card(genotype, str(final), model, stats, status, card_note, results, cfg["license"])
            (tmp / "README.md").write_text(card)
    return final, dict(
        name=genotype.name,
        path=str(final),
        sha256=spec_sha256(genotype),
        num_classes=num_classes,
        weights=dict(status),
        **stats,
    )
