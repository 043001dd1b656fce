"""Each extension table and everything derived from it agree: ops, heads, node kinds, budgets."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import torch
from torch import nn

from rspnet_zoo import SHIPPED
from rspnet_zoo.nn.heads import DECODERS
from rspnet_zoo.nn.model import NODE_MODULES
from rspnet_zoo.nn.ops import FACTORIES, OPS, make_op
from rspnet_zoo.spec import models as spec
from rspnet_zoo.spec.heads import HEADS
from rspnet_zoo.spec.ops import OP_TRAITS
from rspnet_zoo.spec.plan import NODE_LOWERING, EncoderPlan, edge_parameter_bound, lower
from rspnet_zoo.spec.schema import committed_schema
from rspnet_zoo.zoo.stats import count_parameters, meta_model
from searchers.rspnet.budgets import BUDGETS, budgets_help, budgets_markdown

ROOT = Path(__file__).resolve().parents[1]


def first_and_last(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    leaves = [m for m in module.modules() if not list(m.children())]
    return leaves[0], leaves[-1]


def test_every_op_and_head_name_has_both_its_torch_free_definition_and_its_module():
    assert FACTORIES.keys() == OP_TRAITS.keys() == OPS.keys()
    assert all(vars(OP_TRAITS[name]).items() <= vars(OPS[name]).items() for name in OPS)
    assert DECODERS.keys() == HEADS.keys()


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_has_the_properties_its_definition_declares(name):
    op = OPS[name]
    x = torch.randn(1, 8, 16, 16)
    for stride in (1, 2):
        y = make_op(name, 8, stride, 1).eval()(x)
        assert y.shape[-1] == 16 // stride**op.stride_repeats  # how often it applies the stride
    width = 16 if op.widens else 8
    assert make_op(name, 8, 1, 1, width).eval()(x).shape[1] == width
    if not op.widens:
        with pytest.raises(ValueError, match="keeps its width"):
            make_op(name, 8, 1, 1, 16)
    full = make_op(name, 8, 1, 1)
    first, last = first_and_last(full)
    assert isinstance(first, nn.ReLU) if op.pre_act else True
    assert isinstance(last, nn.BatchNorm2d) if op.norm else True
    bare = make_op(name, 8, 1, 1, affine=False, pre_act=False, norm=False)
    if op.pre_act:
        assert not isinstance(first_and_last(bare)[0], nn.ReLU)
    if op.norm:
        assert not isinstance(first_and_last(bare)[1], nn.BatchNorm2d)
    assert not any(m.affine for m in bare.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("chs", [(3, 3), (16, 32), (64, 128)])
def test_the_edge_parameter_bound_covers_every_op(name, chs):
    c, o = chs if OPS[name].widens else (chs[0], chs[0])
    assert count_parameters(make_op(name, c, 2, 1, o)) <= edge_parameter_bound(c, o)


def test_the_head_union_and_the_schema_are_the_heads_table():
    union = typing.get_args(typing.get_args(spec.Head)[0])
    assert union == tuple(d.spec for d in HEADS.values())
    for name, definition in HEADS.items():
        assert typing.get_args(definition.spec.model_fields["type"].annotation) == (name,)
    schema_heads = {
        d["properties"]["type"]["const"]
        for d in committed_schema()["$defs"].values()
        if "type" in d.get("properties", {}) and "const" in d["properties"]["type"]
    }
    assert schema_heads == set(HEADS)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_spec_stays_within_the_parameter_bound_and_its_head_table_entry(name):
    genotype = SHIPPED[name]
    plan = lower(genotype)
    definition = HEADS[genotype.head.type]
    model = meta_model(genotype)
    assert model.is_classifier == definition.classifies
    assert [f.state for f in plan.head_inputs] == [
        1 + [n.id for n in genotype.network.nodes].index(ref) for _, ref in definition.reads(genotype.head)
    ]
    head_params = count_parameters(model.decoder) + count_parameters(model.classifier)
    aux = definition.auxiliary(genotype.head)
    if aux is not None:
        head_params += count_parameters(meta_aux(genotype))
    bound = definition.max_parameters(plan.head_inputs, plan.aux_input, genotype.head, genotype.defaults.num_classes)
    assert head_params <= bound


def meta_aux(genotype) -> nn.Module:
    with torch.device("meta"):
        return type(meta_model(genotype))(genotype, aux_head=True).aux_head


def test_every_node_kind_lowers_and_builds_through_its_table():
    assert set(NODE_LOWERING) == {"cell", "template", "layer", "encoder"}
    kinds = {type(n) for g in SHIPPED.values() for n in lower(g).nodes}
    assert kinds | {EncoderPlan} == set(NODE_MODULES)  # encoder levels: tests/test_encoders.py


def test_budgets_give_the_cli_help_and_the_search_page():
    page = (ROOT / "docs" / "search.md").read_text()
    assert budgets_markdown() in page
    assert "[--budget " + "\\|".join(BUDGETS) + "]" in page
    for name, budget in BUDGETS.items():
        assert f"{name} ({budget.purpose}; {budget.duration})" in budgets_help()
    assert re.findall(r"`(\w+)` \|", budgets_markdown()) == list(BUDGETS)
