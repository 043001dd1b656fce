"""The shipped specs' sha256s and state-dict layouts are pinned: refactoring the compiler must not move them.

``tests/data/shipped_pins.json`` was recorded from main at 8a1c904 (before the compiler/search seams
were restructured); the layout hash covers every state-dict key with its shape, so a renamed module or a
changed width shows up. ``rspnet_small`` and ``rspnet_c`` were re-pinned deliberately at their 3.0.0
versions (issue 10: emitted by the latency-targeted search); the published networks' pins are
those of 8a1c904. Regenerate it only with a change that means to alter the format:

    python tests/test_shipped_pins.py > tests/data/shipped_pins.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from rspnet_zoo import SHIPPED, GenotypeNet, spec_sha256
from rspnet_zoo.spec.models import Genotype

PINS = json.loads((Path(__file__).parent / "data" / "shipped_pins.json").read_text())


def layout_sha256(genotype: Genotype, **kwargs) -> str:
    with torch.device("meta"):
        state = GenotypeNet(genotype, **kwargs).state_dict()
    return hashlib.sha256("\n".join(f"{k} {tuple(v.shape)}" for k, v in state.items()).encode()).hexdigest()


def pins(genotype: Genotype) -> dict[str, str]:
    out = dict(spec_sha256=spec_sha256(genotype), state_dict_sha256=layout_sha256(genotype))
    if getattr(genotype.head, "auxiliary", None) is not None:
        out["aux_state_dict_sha256"] = layout_sha256(genotype, aux_head=True)
    return out


def test_every_shipped_spec_is_pinned():
    assert set(PINS) == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_spec_sha_and_state_dict_layout_are_unchanged(name):
    assert pins(SHIPPED[name]) == PINS[name]


def test_the_packaged_sizes_are_a_fresh_count_of_every_shipped_spec():
    """`rspnet-zoo list` reads them instead of counting; after a shipped spec changes, regenerate them with
    `python -m rspnet_zoo.zoo.stats`."""
    from rspnet_zoo.zoo.stats import SHIPPED_STATS, count_shipped

    assert json.loads(SHIPPED_STATS.read_text()) == count_shipped()


if __name__ == "__main__":
    print(json.dumps({name: pins(g) for name, g in sorted(SHIPPED.items())}, indent=1, sort_keys=True))
