"""Budgets and overrides: presets resolve, overrides reach the stage they name, bad ones are refused."""

from __future__ import annotations

import pytest

from rspnet_zoo.errors import ZooError
from searchers.rspnet.budgets import BUDGETS, resolve_config


def test_every_preset_is_a_valid_config_and_paper_follows_the_papers():
    assert set(BUDGETS) == {"smoke", "small", "mobile", "paper"}
    paper = resolve_config("paper")
    assert (paper.cell.layers, paper.cell.channels, paper.cell.steps, paper.cell.partial) == (8, 16, 4, 4)  # PC-DARTS
    assert (paper.cell.epochs, paper.cell.warmup_epochs, paper.batch_size) == (50, 15, 256)
    assert (paper.path.layers, paper.path.channels, paper.path.epochs, paper.path.warmup_epochs) == (
        12,
        8,
        40,
        20,
    )  # Auto-DeepLab


def test_mobile_is_the_small_schedule_on_the_fast_space():
    small, mobile = resolve_config("small"), resolve_config("mobile")
    assert mobile.cell == small.cell and (mobile.path.epochs, mobile.path.lr) == (small.path.epochs, small.path.lr)
    assert (mobile.path.stem_reduction, mobile.path.finest_layers) == (8, 2)
    assert min(mobile.path.latency_widths) < 0.5 < max(mobile.path.latency_widths) == 1.0


def test_overrides_reach_one_stage_or_every_stage_that_has_the_setting():
    cfg = resolve_config(
        "smoke", {"epochs": 5, "cell.layers": 3, "skip_cap": 0, "batch_size": 2, "path.two_back": True}
    )
    assert cfg.cell.epochs == cfg.path.epochs == 5
    assert cfg.cell.layers == 3 and cfg.path.layers == BUDGETS["smoke"].config.path.layers
    assert cfg.cell.skip_cap == 0 and cfg.batch_size == 2 and cfg.path.two_back
    assert BUDGETS["smoke"].config.cell.epochs == 2  # presets are not modified


@pytest.mark.parametrize(
    "budget, overrides, message",
    [
        ("tiny", {}, "unknown budget 'tiny'"),
        ("smoke", {"cell.wingspan": 1}, "unknown search setting 'cell.wingspan'"),
        ("smoke", {"head.layers": 1}, "unknown search setting 'head.layers'"),
        ("smoke", {"cell.order": 3}, "search setting cell.order"),
        ("smoke", {"path.rsp_depths": [0, 0, 1, 9]}, "rsp_depths are between 0 and 4"),
        ("smoke", {"cell.levels": 3}, "2 cells cannot walk down 3 levels"),
    ],
)
def test_bad_settings_are_one_zoo_error(budget, overrides, message):
    with pytest.raises(ZooError, match=message):
        resolve_config(budget, overrides)
