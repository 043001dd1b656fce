"""Settings of the template search: one validated config per run, from a named budget.

``paper`` is the published setting (Nekrasov et al., WACV 2020, Sect. 4): M = 3 templates, N = 7
blocks, each sample trained 10 epochs (5 on precomputed stem outputs, 5 end to end), Adam lr 7e-3,
batch 32, 321x321 crops, 48 channels before the classifier, the controller trained by PPO at lr 1e-4;
the paper sampled more than 2000 architectures. The paper does not state the number of strings per
PPO update, the clip range, the entropy weight, the baseline decay or the LSTM width: those are
ENAS's/PPO's usual values (8, 0.2, 1e-4, 0.95, 100). ``smoke`` trains 4 samples on 40 images of 32x32
and still shows the method at work: each sample trains 6 epochs on the frozen stem alone at lr 3e-2, on a
substitute stem of 10 steps (with 1 + 1 epochs at the paper's lr every sample predicted background only, so
all rewards were equal and the controller learned nothing). ``small`` is sized for minutes of one CPU core
(300 synthetic images of 64x64, 2 + 2 epochs per sample, 40 samples in 8 PPO updates, a 100-step substitute
stem; measured times are in docs/benchmarks.md); with 8 updates, lr 1e-4 would leave the controller where
it started, so it uses lr 5e-3 and entropy weight 1e-2 (the settings at which the unit test's toy reward is
learned within 150 updates).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rspnet_zoo.errors import ZooError


class TemplateBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: Annotated[int, Field(ge=1, le=8, description="M: templates per action string")] = 3
    blocks: Annotated[int, Field(ge=1, le=16, description="N: blocks per action string")] = 7
    max_repeats: Annotated[int, Field(ge=1, le=8, description="k: a block repeats its template 1..k times")] = 4
    image_size: Annotated[int, Field(ge=16, le=2048, description="square search images")] = 321
    images: Annotated[int, Field(ge=10, description="train-split images used: 90% meta-train, 10% meta-val")] = 2000
    frozen_epochs: Annotated[int, Field(ge=0, le=100, description="epochs on precomputed stem outputs")] = 5
    end_to_end_epochs: Annotated[int, Field(ge=0, le=100, description="epochs training the stem too")] = 5
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    lr: Annotated[float, Field(gt=0, description="Adam lr of a sample's training")] = 7e-3
    head_channels: Annotated[int, Field(ge=1, le=1024, description="width of the head's 1x1 conv")] = 48
    architectures: Annotated[int, Field(ge=1, description="action strings sampled in all")] = 2000
    strings_per_update: Annotated[int, Field(ge=1, le=256, description="sampled strings per PPO update")] = 8
    controller_lr: Annotated[float, Field(gt=0)] = 1e-4
    controller_hidden: Annotated[int, Field(ge=4, le=1024)] = 100
    ppo_epochs: Annotated[int, Field(ge=1, le=64)] = 4
    ppo_clip: Annotated[float, Field(gt=0, lt=1)] = 0.2
    entropy_weight: Annotated[float, Field(ge=0)] = 1e-4
    baseline_decay: Annotated[float, Field(ge=0, lt=1)] = 0.95
    stem_steps: Annotated[
        int, Field(ge=0, description="without --stem-weights: Adam steps training the substitute stem")
    ] = 500

    @model_validator(mode="after")
    def _trains(self):
        if self.frozen_epochs + self.end_to_end_epochs < 1:
            raise ValueError("a sample needs at least one epoch (frozen_epochs + end_to_end_epochs)")
        return self

    @property
    def epochs(self) -> int:
        return self.frozen_epochs + self.end_to_end_epochs


TEMPLATE_BUDGETS: dict[str, TemplateBudget] = {
    "smoke": TemplateBudget(
        templates=2,
        blocks=4,
        image_size=32,
        images=40,
        frozen_epochs=6,
        end_to_end_epochs=0,
        batch_size=8,
        lr=3e-2,
        head_channels=16,
        architectures=4,
        strings_per_update=2,
        controller_hidden=16,
        stem_steps=10,
    ),
    "small": TemplateBudget(
        image_size=64,
        images=300,
        frozen_epochs=2,
        end_to_end_epochs=2,
        batch_size=16,
        head_channels=32,
        architectures=40,
        strings_per_update=5,
        controller_lr=5e-3,
        entropy_weight=1e-2,
        stem_steps=100,
    ),
    "paper": TemplateBudget(),
}


PURPOSES = {
    "smoke": "a few samples in seconds, for tests and a first look",
    "small": "40 samples on small images, sized for minutes on a CPU",
    "paper": "the published setting, GPU-sized",
}


def budgets_help() -> str:
    """The --budget help of the template search, from the table."""
    return "Preset: " + "; ".join(f"{name} ({PURPOSES[name]})" for name in TEMPLATE_BUDGETS) + "."


def resolve_template_budget(budget: str, overrides: dict | None = None) -> TemplateBudget:
    """The named budget with ``overrides`` (field -> value) applied; every error is one ZooError line."""
    if budget not in TEMPLATE_BUDGETS:
        raise ZooError(f"unknown budget '{budget}' (known: {', '.join(TEMPLATE_BUDGETS)})")
    doc = TEMPLATE_BUDGETS[budget].model_dump()
    for key, value in (overrides or {}).items():
        if key not in doc:
            raise ZooError(f"unknown template search setting '{key}' (known: {', '.join(doc)})")
        doc[key] = value
    try:
        return TemplateBudget.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        raise ZooError(f"template search setting {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
