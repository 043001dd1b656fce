"""import darts | autodeeplab | nas-segm | dpc, and diff."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.output import emit, shown
from rspnet_zoo.fsutil import atomic_write_text, writable_output
from rspnet_zoo.spec.io import dump_spec, spec_sha256
from rspnet_zoo.spec.models import Genotype

JsonOpt = options.JSON
NameOpt = typer.Option(None, "--name", help="Spec name (lower-case identifier).", show_default="from the importer")
DescriptionOpt = typer.Option(None, "--description", help="Spec description.", show_default="a generic one")
OutOpt = typer.Option(
    None, "--out", help="Spec file to write, or a folder for <name>.json.", show_default="./<name>.json"
)
ClassesOpt = options.number(
    None, "--classes", kind=options.CLASSES, help="Number of classes.", show_default="the network's"
)
ForceOpt = typer.Option(False, "--force", help="Overwrite an existing spec file.")
CityscapesClassesOpt = options.number(19, "--classes", kind=options.CLASSES, help="Number of classes (19: Cityscapes).")
WIDTH = options.Number(int, 1, 4096)  # a channel count, at most the spec's MAX_CHANNELS

import_app = typer.Typer(help="Write a spec from a published genotype in its original encoding.", no_args_is_help=True)


class DartsNetwork(str, Enum):
    cifar = "cifar"
    imagenet = "imagenet"


def _write(genotype: Genotype, out: Path | None, force: bool, as_json: bool) -> None:
    from rspnet_zoo.zoo.stats import count_parameters, meta_model

    if out is None:
        dest = Path(f"{genotype.name}.json")
    elif out.is_dir():
        dest = out / f"{genotype.name}.json"
    else:
        dest = out
    writable_output(dest, replace=force)
    atomic_write_text(dest, dump_spec(genotype))
    info = dict(
        name=genotype.name,
        path=str(dest),
        sha256=spec_sha256(genotype),
        parameters=count_parameters(meta_model(genotype)),
    )

    def human(console):
        console.print(f"wrote {genotype.name} ({info['parameters']:,} parameters) -> {shown(dest)}", soft_wrap=True)

    emit(info, human, as_json)


@import_app.command("darts")
def import_darts(
    genotype: str = typer.Argument(
        ..., help="Genotype(normal=[(op, input), ...], normal_concat=..., reduce=[...], reduce_concat=...)"
    ),
    network: DartsNetwork = typer.Option(
        DartsNetwork.cifar, "--network", help="The DARTS evaluation network to build."
    ),
    channels: int | None = options.number(
        None,
        "--channels",
        "-C",
        kind=options.Number(int, 2, 4096),
        help="Initial C.",
        show_default="36 CIFAR, 48 ImageNet",
    ),
    layers: int | None = options.number(
        None,
        "--layers",
        kind=options.Number(int, 3, 510),
        help="Number of cells.",
        show_default="20 CIFAR, 14 ImageNet",
    ),
    num_classes: int | None = ClassesOpt,
    auxiliary: bool = typer.Option(
        True, "--auxiliary/--no-auxiliary", help="Declare DARTS's auxiliary head (built with aux_head=True)."
    ),
    name: str | None = NameOpt,
    description: str | None = DescriptionOpt,
    out: Path | None = OutOpt,
    force: bool = ForceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A DARTS / PC-DARTS genotype as the CIFAR or ImageNet evaluation network."""
    from rspnet_zoo.interop.importers.darts import darts_spec, parse_genotype

    g = darts_spec(
        parse_genotype(genotype),
        network.value,
        name=name,
        channels=channels,
        layers=layers,
        num_classes=num_classes,
        auxiliary=auxiliary,
        description=description,
    )
    _write(g, out, force, as_json)


@import_app.command("autodeeplab")
def import_autodeeplab(
    path: str = typer.Option(..., "--path", help="Network path: the level of each cell, e.g. 0,0,0,1,2,1,2,2,3,3,2,1."),
    cell: str = typer.Option(..., "--cell", help="Cell rows [[edge_index, op_index], ...], two per step."),
    filter_multiplier: int = options.number(
        20, "--filter-multiplier", "-F", kind=WIDTH, help="F: 20 (S), 32 (M), 48 (L)."
    ),
    num_classes: int = CityscapesClassesOpt,
    name: str | None = NameOpt,
    description: str | None = DescriptionOpt,
    out: Path | None = OutOpt,
    force: bool = ForceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """An Auto-DeepLab network path and cell, with ASPP and the DeepLabv3+ decoder."""
    from rspnet_zoo.interop.importers.autodeeplab import autodeeplab_spec, parse_cell, parse_path

    g = autodeeplab_spec(parse_path(path), parse_cell(cell), filter_multiplier, num_classes, name, description)
    _write(g, out, force, as_json)


@import_app.command("nas-segm")
def import_nas_segm(
    config: str = typer.Argument(
        ...,
        help="[[templates], [blocks]]: templates [op_a, op_b, agg], "
        "blocks [pos1, pos2, template, repeats-1, stride_exp].",
    ),
    agg_size: int = options.number(64, "--agg-size", kind=WIDTH, help="Width of the head's 1x1 conv."),
    num_classes: int = CityscapesClassesOpt,
    name: str | None = NameOpt,
    description: str | None = DescriptionOpt,
    out: Path | None = OutOpt,
    force: bool = ForceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A nas-segm (WACV 2020) template decoder on MobileNet-v2's first stages."""
    from rspnet_zoo.interop.importers.nas_segm import nas_segm_spec, parse_config

    templates, blocks = parse_config(config)
    _write(nas_segm_spec(templates, blocks, agg_size, num_classes, name, description), out, force, as_json)


class OutputStride(str, Enum):
    os16 = "16"
    os8 = "8"


@import_app.command("dpc")
def import_dpc(
    cell: Path = typer.Argument(
        ..., help="DeepLab's DPC JSON file, e.g. dense_prediction_cell_branch5_top1_cityscapes.json."
    ),
    encoder: str = typer.Option("xception71", "--encoder", help="The timm encoder (a name timm.list_models() knows)."),
    output_stride: OutputStride = typer.Option(
        OutputStride.os16, "--output-stride", help="The encoder's output stride; the cell's rates scale by 16 / it."
    ),
    low_level: int = options.number(
        4, "--low-level-reduction", kind=options.Number(int, 1, 64), help="The encoder level the decoder reads."
    ),
    pretrained: str | None = typer.Option(
        None, "--pretrained", help="timm's pretrained tag for the encoder (e.g. tf_in1k).", show_default="none"
    ),
    num_classes: int = CityscapesClassesOpt,
    name: str | None = NameOpt,
    description: str | None = DescriptionOpt,
    out: Path | None = OutOpt,
    force: bool = ForceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """DeepLab's dense prediction cell (its JSON) with DeepLab's decoder on a timm encoder."""
    from rspnet_zoo.interop.importers.dpc import dpc_spec, read_cell, timm_encoder

    branches = read_cell(cell)
    os_ = int(output_stride.value)
    spec_encoder, levels, norm = timm_encoder(encoder, os_, pretrained)
    g = dpc_spec(branches, spec_encoder, levels, norm, os_, low_level, num_classes, name, description, str(cell))
    _write(g, out, force, as_json)


def diff(
    a: str = typer.Argument(..., help="A registered name or a spec file."),
    b: str = typer.Argument(..., help="A registered name or a spec file."),
    sizes: bool = typer.Option(True, "--sizes/--no-sizes", help="Also compare parameters and FLOPs."),
    as_json: bool = JsonOpt,
) -> None:
    """What differs between two specs: cells, ops, paths, head, defaults and sizes. Exit 0 same, 1 different."""
    from rspnet_zoo.spec.diff import SECTIONS, diff_specs, size_words
    from rspnet_zoo.zoo.registry import resolve_genotype
    from rspnet_zoo.zoo.stats import spec_stats

    ga, gb = resolve_genotype(a), resolve_genotype(b)
    result = diff_specs(ga, gb, stats=spec_stats if sizes else None)

    def human(console):
        console.print(f"{ga.name} {result['a']['sha256'][:12]} -> {gb.name} {result['b']['sha256'][:12]}")
        if result["identical"]:
            console.print("identical specs")
        for section in SECTIONS:
            lines = [c["words"] for c in result["changes"] if c["section"] == section]
            if lines:
                console.print(f"{section} ({len(lines)} change{'s' if len(lines) > 1 else ''})")
                for line in lines:
                    console.print(f"  {shown(line)}", soft_wrap=True)
        for line in size_words(result.get("sizes")):
            console.print(f"sizes {line}")

    emit(result, human, as_json)
    if not result["identical"]:
        raise typer.Exit(1)  # as diff(1): 0 same, 1 different, 2 trouble
