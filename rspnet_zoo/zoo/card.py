"""The text of a built folder's model card (its ``README.md``), all of it: the Hub front matter timm writes, the
card every folder has, and the section on trained or imported weights.

``zoo.folder`` writes the card; the front ends that make weights (``training.loop.save_to_zoo``,
``interop.convert``) pass the facts of their section, not text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rspnet_zoo import __version__
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.models import FORMAT_VERSION, Genotype
from rspnet_zoo.zoo.weights import describe_status

README_FILE = "README.md"

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


def output_description(model: GenotypeNet) -> str:
    if model.output_reduction is None:
        return f"(B, {model.num_classes}) class logits"
    if model.output_reduction == 1:
        return f"(B, {model.num_classes}, H, W) at the input resolution"
    return f"(B, {model.num_classes}, H/{model.output_reduction}, W/{model.output_reduction}) (ceil)"


def model_card(
    genotype: Genotype,
    sha256: str,
    folder: Path,
    model: GenotypeNet,
    stats: Mapping[str, int],
    status: Mapping[str, str],
    note: str = "",
    results: dict | None = None,
    license: str = "apache-2.0",
) -> str:
    """The README of a built folder: the Hub front matter, then the card; ``note`` is the weights' own section
    (``trained_note``, ``imported_note``)."""
    p = genotype.provenance
    c, (h, w) = model.in_chans, genotype.defaults.input_size[1:]
    provenance = "\n".join(f"| {k} | {v} |" for k, v in p.model_dump(exclude_none=True).items())
    meta = front_matter(
        segmentation=not model.is_classifier,
        tags=[p.searcher] if p.searcher else [],
        license=license,
        name=folder.name,
        results=results,
    )
    return f"""{meta}# {genotype.name} {genotype.version}

{genotype.description or "A genotype spec compiled by rspnet-zoo."}

| | |
|---|---|
| weights | {describe_status(status)} |
| genotype sha256 | `{sha256}` |
| format_version | {FORMAT_VERSION} |
| classes | {model.num_classes} |
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
model = timm.create_model("local-dir:{folder}", pretrained=True).eval()
logits = model(images)  # {output_description(model)}
```

Pushed to the Hugging Face Hub (`rspnet-zoo push`), the same folder loads with
`timm.create_model("hf-hub:OWNER/NAME", pretrained=True)` after `import rspnet_zoo`.
"""


def trained_note(
    name: str, data: str, metrics: dict, commands: Sequence[str], input_size: Sequence[int] | None = None
) -> str:
    """Trained weights: the validation metrics, per class too, and the commands that reproduce them."""
    rows = "\n".join(f"| {c} | {'-' if iou is None else f'{iou:.4f}'} |" for c, iou in metrics["per_class_iou"].items())
    at = f" at {input_size[1]}x{input_size[2]} (the cfg's input_size)" if input_size else ""
    return f"""
## Trained weights `{name}`

Trained on the {data} data set. Validation split ({metrics["images"]} images{at}): **mIoU {metrics["miou"]:.4f}**,
mean accuracy {metrics["mean_acc"]:.4f}, frequency-weighted IoU {metrics["fw_iou"]:.4f},
pixel accuracy {metrics["pixel_acc"]:.4f}.

Reproduce with {"this command" if len(commands) == 1 else "these commands, in order"}

```
{chr(10).join(commands)}
```

and load with `timm.create_model("{name}", pretrained=True)` after `import rspnet_zoo`.

| class | val IoU |
|---|---|
{rows}
"""


def imported_note(
    *,
    family: str,
    origin: str,
    mapping_version: str,
    checkpoint: Path,
    sha256: str,
    report: Mapping[str, Any],
    parameters: int,
    aux: bool,
    notes: Sequence[str],
) -> str:
    """Imported weights: where they came from and how every reference tensor was mapped (``interop.convert``'s
    ``report``: tensors, aliases, reference_parameters, legacy_bn)."""
    bn = "absent in the source (saved before PyTorch 0.4.1), set to 0" if report["legacy_bn"] else "from the source"
    listed = "\n".join(f"- {line}" for line in notes)
    aliases = f" (+{report['aliases']} aliases of these)" if report["aliases"] else ""
    aux_row = (
        "| auxiliary head | imported: `local-dir:` builds it (model_args), a tag needs `aux_head=True` |\n"
        if aux
        else ""
    )
    return f"""
## Imported weights

**Imported** from a published reference checkpoint with `rspnet-zoo convert {family}`: not trained here, not
initialised. Every reference tensor was used exactly once and every parameter and BN buffer here filled from it.

| | |
|---|---|
| weights | imported |
| source checkpoint | `{checkpoint.name}` |
| source sha256 | `{sha256}` |
| family | {family} ({origin}) |
| mapping version | {mapping_version} |
| reference tensors mapped | {report["tensors"]}{aliases} |
| parameters, reference / zoo | {report["reference_parameters"]:,} / {parameters:,} |
| BN num_batches_tracked | {bn} |
{aux_row}
### Preprocessing and outputs

{listed}
"""
