"""convert: published reference checkpoints into built folders, and zoo weights back (--to)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.output import emit, shown
from rspnet_zoo.interop.conversions import ConversionError


class FamilyName(str, Enum):
    darts = "darts"
    autodeeplab = "autodeeplab"
    nas_segm = "nas-segm"


FAMILIES = ", ".join(f.value for f in FamilyName)


def convert(
    args: list[str] = typer.Argument(
        ...,
        metavar="FAMILY CHECKPOINT | MODEL",
        help=f"FAMILY ({FAMILIES}) and a reference checkpoint (.pt, .pth, .tar or .safetensors); "
        "with --to, a zoo MODEL (built folder or registered name[.tag]).",
    ),
    spec: str | None = typer.Option(None, "--spec", help="The spec (registered name or file) the checkpoint is of."),
    to: FamilyName | None = typer.Option(
        None, "--to", help="Write MODEL's weights as this family's reference state dict instead."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for the built folder; with --to, the file to write (a .safetensors name writes a flat "
        "state dict).",
        show_default="$RSPNET_ZOO_HOME; with --to, ./<model>.<family>.pth",
    ),
    name: str | None = typer.Option(None, "--name", help="Built folder name.", show_default="<spec>[.<tag>]"),
    tag: str | None = typer.Option(None, "--tag", help="Weights tag: the folder becomes <spec>.<tag>."),
    force: bool = typer.Option(
        False, "--force", help="Replace a folder built from another spec, or an existing file --out did not name."
    ),
    as_json: bool = options.JSON,
) -> None:
    """Import a published DARTS / PC-DARTS, Auto-DeepLab or nas-segm checkpoint into the zoo, or export one."""
    from rspnet_zoo.interop.convert import convert_checkpoint, export_checkpoint

    if to is not None:
        if len(args) != 1 or spec or name or tag:
            raise ConversionError("convert --to FAMILY takes one MODEL (and --out FILE), no --spec, --name or --tag")
        model = args[0]
        dest = out or Path(f"{Path(model).name}.{to.value}.pth")
        info = export_checkpoint(to.value, model, dest, replace=out is not None or force)

        def human_export(console):
            console.print(
                f"wrote {info['tensors']} reference tensors ({to.value} layout) -> {shown(dest)}", soft_wrap=True
            )

        emit(info, human_export, as_json)
        return
    if len(args) != 2:
        raise ConversionError(f"convert takes FAMILY CHECKPOINT (FAMILY: {FAMILIES}), or --to FAMILY MODEL")
    if spec is None:
        raise ConversionError("convert FAMILY CHECKPOINT needs --spec: the spec the checkpoint's network is built from")
    folder, info = convert_checkpoint(args[0], Path(args[1]), spec, out=out, name=name, tag=tag, force=force)

    def human(console):
        console.print(
            f"imported {info['tensors']} reference tensors into {info['name']} "
            f"({info['parameters']:,} parameters) -> {shown(folder)}",
            soft_wrap=True,
        )

    emit(info, human, as_json)
