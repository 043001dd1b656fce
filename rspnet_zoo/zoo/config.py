"""A built folder's ``config.json`` as a typed, closed model: what ``build``, ``train`` and ``convert`` write
(``zoo.folder``) and what every reader accepts (the CLI, timm's ``local-dir:`` and ``hf-hub:`` loading through
``create_genotype_net``, ``push``).

Unknown keys are refused at every level and values are bounded as the spec's are: a positive, finite ``std``
and a finite ``mean`` with one value per input channel, a class count the spec format allows and the same
in all three places it is written, one label name per class. The model args are the ones the builder records
(``genotype``, ``num_classes``, ``aux_head``): a flag that changes what is trusted (``allow_untrained``) is
never read from a file, and an argument the builder does not take is one line, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from rspnet_zoo.errors import SpecError, WeightsError, ZooError, pointer
from rspnet_zoo.spec.io import genotype_from_dict, strict_json
from rspnet_zoo.spec.models import MAX_CLASSES, Genotype, Identifier, Mean, Std, Strict

CONFIG_FILE = "config.json"

StrictInt = Annotated[int, Field(strict=True)]
ClassCount = Annotated[int, Field(strict=True, ge=1, le=MAX_CLASSES)]
Label = Annotated[str, Field(strict=True, max_length=64)]
Note = Annotated[str, Field(strict=True, max_length=4000)]
ModulePath = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$", max_length=256)]
# the image interpolations timm's transforms know
Interpolation = Literal["nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"]


class FolderCfg(Strict):
    """The ``pretrained_cfg`` timm reads: preprocessing and the classes the weights predict."""

    num_classes: ClassCount
    input_size: tuple[
        Annotated[int, Field(strict=True, ge=1, le=16)],
        Annotated[int, Field(strict=True, ge=1, le=8192)],
        Annotated[int, Field(strict=True, ge=1, le=8192)],
    ]
    fixed_input_size: Annotated[bool, Field(strict=True)] = False
    pool_size: (
        tuple[Annotated[int, Field(strict=True, ge=1, le=8192)], Annotated[int, Field(strict=True, ge=1, le=8192)]]
        | None
    ) = None  # forward_features' size at input_size, as timm's model tests check it
    crop_pct: Annotated[float, Field(strict=True, gt=0.0, le=2.0, allow_inf_nan=False)] = 1.0
    interpolation: Interpolation = "bilinear"
    mean: Annotated[tuple[Annotated[Mean, Field(strict=True)], ...], Field(min_length=1, max_length=16)]
    std: Annotated[tuple[Annotated[Std, Field(strict=True)], ...], Field(min_length=1, max_length=16)]
    classifier: Literal["classifier"] = "classifier"
    license: Annotated[str, Field(strict=True, pattern=r"^[a-z0-9][a-z0-9.+-]*$", max_length=64)] = "apache-2.0"
    label_names: Annotated[tuple[Label, ...], Field(max_length=MAX_CLASSES)] | None = None
    first_conv: ModulePath | Annotated[tuple[ModulePath, ...], Field(min_length=1, max_length=64)] | None = None
    notes: Annotated[tuple[Note, ...], Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _per_channel_and_class(self) -> FolderCfg:
        for key in ("mean", "std"):
            if len(getattr(self, key)) != self.input_size[0]:
                raise ValueError(f"'{key}' needs {self.input_size[0]} values, one per input channel")
        if self.label_names is not None and len(self.label_names) != self.num_classes:
            raise ValueError(f"'label_names' has {len(self.label_names)} names for {self.num_classes} classes")
        return self


class FolderModelArgs(Strict):
    """What timm passes to the builder when it rebuilds the folder's model."""

    genotype: dict[str, Any]
    num_classes: ClassCount
    aux_head: Annotated[bool, Field(strict=True)] = False


class FolderConfig(Strict):
    architecture: Identifier
    num_classes: ClassCount
    model_args: FolderModelArgs
    pretrained_cfg: FolderCfg
    num_features: Annotated[int, Field(strict=True, ge=1)]

    @model_validator(mode="after")
    def _one_class_count(self) -> FolderConfig:
        counts = {self.num_classes, self.model_args.num_classes, self.pretrained_cfg.num_classes}
        if len(counts) > 1:
            raise ValueError(
                f"'num_classes' is {self.num_classes}, 'model_args.num_classes' {self.model_args.num_classes} and "
                f"'pretrained_cfg.num_classes' {self.pretrained_cfg.num_classes}: one class count, three times"
            )
        return self

    def genotype(self, source: str) -> Genotype:
        """The spec the folder was built from, parsed and checked; errors point into ``source``."""
        try:
            return genotype_from_dict(self.model_args.genotype)
        except SpecError as e:
            raise SpecError(pointer("model_args", "genotype") + e.pointer, e.reason, source) from None

    def to_json(self) -> dict[str, Any]:
        """The JSON document, with exactly the keys that were set (what ``zoo.folder`` writes)."""
        return self.model_dump(mode="json", exclude_unset=True)


def read_folder_config(file: Path) -> FolderConfig:
    """``config.json`` of a built folder; every fault is one line naming the file and where in it."""
    if not file.is_file():
        raise WeightsError(
            f"{file.parent}: not a built folder (no {CONFIG_FILE}); make one with `rspnet-zoo build` or "
            "`rspnet-zoo train`"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"{file}: cannot read: {type(e).__name__}: {e}") from None
    doc = strict_json(text, str(file))
    try:
        return FolderConfig.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        reason = err["msg"].removeprefix("Value error, ")
        raise ZooError(f"{file}: {pointer(*err['loc']) or '/'}: {reason}; not a folder built by rspnet-zoo") from None
