"""The template search's action strings: what a hand-written string decodes to, and the published
arch0/arch1 strings decoding to the shipped specs byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rspnet_zoo.errors import ZooError
from rspnet_zoo.interop.importers.nas_segm import parse_config
from rspnet_zoo.nn.ops import NAS_SEGM_OPS
from rspnet_zoo.spec.io import load_spec, spec_sha256
from searchers.template.space import TemplateSpace, config_text

GENOTYPES = Path(__file__).resolve().parents[1] / "genotypes"
SEP3, MAXPOOL, SEP5 = (NAS_SEGM_OPS.index(f"nas_segm_{op}") for op in ("sep_conv_3x3", "max_pool_3x3", "sep_conv_5x5"))
SUM, CAT = 0, 1
L1, L2 = 0, 1  # pool positions of the stem outputs (1/4, 24 channels; 1/8, 32 channels)


def nodes_of(genotype) -> dict:
    return {n.id: n for n in genotype.network.nodes}


def inputs_of(node) -> list[str]:
    return [slot.paths[0].node for slot in node.inputs]


@pytest.mark.parametrize("arch", ["nas_segm_arch0", "nas_segm_arch1"])
def test_published_action_strings_decode_to_the_shipped_specs(arch):
    shipped = load_spec(GENOTYPES / f"{arch}.json")
    templates, blocks = parse_config(shipped.provenance.notes)  # the importer's action string
    space = TemplateSpace(templates=3, blocks=7)  # the published M and N
    actions = space.from_config(templates, blocks)
    assert space.to_config(actions) == (templates, blocks)
    decoded = space.decode(actions, name=arch, description=shipped.description)
    assert spec_sha256(decoded) == spec_sha256(shipped)


def test_the_published_space_has_42_templates_and_40_positions():
    space = TemplateSpace()
    assert space.unique_templates() == 42
    # 3 per template, 4 per block, and a stride for the first half of the blocks
    assert len(space.choices()) == 3 * 3 + 4 * 7 + 7 // 2
    assert [n for name, n in space.positions() if name.startswith("b6.")] == [2 + 6, 2 + 6, 3, 4]


def test_repeats_and_strides_decode_as_the_string_says():
    space = TemplateSpace(templates=1, blocks=4)  # blocks 0, 1 may stride; 2, 3 may not
    actions = (SEP3, MAXPOOL, CAT) + (L1, L2, 0, 1, 1) + (2, L1, 0, 0, 0) + (3, L2, 0, 2) + (L1, L1, 0, 0)
    g = space.decode(actions, num_classes=5)
    nodes = nodes_of(g)
    blocks = [n for n in nodes if n.startswith("block")]
    # k = 2, 1, 3, 1 repeats: one node per repeat, the last named after the block
    assert blocks == ["block0_r0", "block0", "block1", "block2_r0", "block2_r1", "block2", "block3"]
    # repeat 0 reads the two sampled locations; repeat r reads repeat r-1's second input and its output
    assert inputs_of(nodes["block0_r0"]) == ["layer3_1", "layer4_2"]
    assert inputs_of(nodes["block0"]) == ["layer4_2", "block0_r0"]
    assert inputs_of(nodes["block2_r1"]) == ["layer4_2", "block2_r0"]
    assert inputs_of(nodes["block2"]) == ["block2_r0", "block2_r1"]
    # the stride applies in every repeat of a strided block, the widening only in the first
    assert [nodes[b].template.stride for b in ("block0_r0", "block0", "block1", "block2")] == [2, 2, 1, 1]
    assert [nodes[b].template.widen for b in ("block0_r0", "block0")] == [True, False]
    # a separable conv applies the stride twice, a max pool once; the first half keeps the smaller size:
    # r0: l1 (1/4) -> sep3 -> 1/16, l2 (1/8) -> pool -> 1/16; r1: l2 -> sep3 -> 1/32, r0 -> pool -> 1/32
    assert nodes["block0_r0"].reduction == max(4 * 2 * 2, 8 * 2)
    assert nodes["block0"].reduction == max(8 * 2 * 2, nodes["block0_r0"].reduction * 2)
    # widths: repeat 0 multiplies both inputs by the stride, concat keeps the wider
    assert nodes["block0_r0"].channels == max(24 * 2, 32 * 2)
    assert space.downsampling(actions) == 2
    # pool outputs no later block reads are the head's inputs (block 0 and 1 are read, 2 and 3 not)
    assert g.head.inputs == ["block2", "block3"]


def test_first_half_resizes_to_the_lowest_resolution_second_half_to_the_highest():
    space = TemplateSpace(templates=1, blocks=2)  # block 0 is the first half, block 1 the second
    actions = (SEP3, SEP5, SUM) + (L1, L2, 0, 0, 0) + (L1, L2, 0, 0)
    nodes = nodes_of(space.decode(actions, num_classes=5))
    assert nodes["block0"].template.resize == "smaller"
    assert nodes["block0"].reduction == 8  # l1 at 1/4 and l2 at 1/8: the lower resolution
    assert nodes["block1"].template.resize == "larger"
    assert nodes["block1"].reduction == 4  # the same inputs: the higher resolution


def test_the_stem_keeps_only_the_stages_a_block_reads():
    space = TemplateSpace(templates=1, blocks=2)
    reads_l1_only = (SEP3, SEP3, SUM) + (L1, L1, 0, 0, 0) + (2, L1, 0, 0)
    layers = [n.id for n in space.decode(reads_l1_only, num_classes=5).network.nodes if n.layer]
    assert layers == ["layer1", "layer2", "layer3_0", "layer3_1"]


def test_stride_2_is_refused_where_the_block_would_end_below_1_64():
    space = TemplateSpace(templates=1, blocks=2)
    position = [name for name, _ in space.positions()].index("b0.stride")
    # l2 (1/8) through four repeats of a strided sep conv: 8 * 4**4, far below 1/64
    assert space.allowed(position, (SEP3, SEP3, SUM, L2, L2, 0, 3)) == (True, False)
    # one repeat of a strided max pool: 1/16
    assert space.allowed(position, (MAXPOOL, MAXPOOL, SUM, L2, L2, 0, 0)) is None
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):  # uniform samples respect the rule, so every one decodes
        space.decode(space.sample(generator), num_classes=5)


def test_strings_outside_the_space_are_refused_in_one_line():
    space = TemplateSpace(templates=1, blocks=2)
    with pytest.raises(ZooError, match="b0.loc_1 = 2: expected 0..1"):
        space.check((0, 0, 0) + (2, 0, 0, 0, 0) + (0, 0, 0, 0))
    with pytest.raises(ZooError, match="positions, not"):
        space.check((0, 0, 0))
    with pytest.raises(ZooError, match="strides are predicted for blocks 0..0"):
        space.from_config([[0, 0, 0]], [[0, 1, 0, 0, 0], [0, 1, 0, 0, 1]])
    assert config_text(space.to_config((0,) * 12)) == "[[[0, 0, 0]], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]]"
