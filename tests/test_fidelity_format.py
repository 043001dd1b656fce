"""The format extensions the published architectures need: each new field is checked with a JSON pointer."""

import copy
import json

import pytest

from rspnet_zoo.errors import SpecError
from rspnet_zoo.spec.io import dump_spec, genotype_from_dict
from rspnet_zoo.zoo.catalog import SHIPPED


def doc_of(name):
    return json.loads(dump_spec(SHIPPED[name]))


def node(doc, node_id):
    return next(n for n in doc["network"]["nodes"] if n["id"] == node_id)


def index(doc, node_id):
    return next(i for i, n in enumerate(doc["network"]["nodes"]) if n["id"] == node_id)


def _template_channels(d):
    node(d, "block0")["channels"] = 48


def _template_reduction(d):
    node(d, "block0")["reduction"] = 16


def _template_on_layer(d):
    node(d, "layer2")["template"] = {"stride": 2}


def _widen_fixed_width_op(d):
    d["cells"]["t0"]["steps"][0]["edges"][0]["op"] = "max_pool_3x3"


def _template_two_paths(d):
    node(d, "block0")["inputs"][0]["paths"].append({"node": "layer4_2"})


def _via_with_factorized(d):
    node(d, "cell4")["downsample"] = "factorized"


def _aux_dangling(d):
    d["head"]["auxiliary"]["input"] = "cell99"


CASES = [
    ("template-channels", "nas_segm_arch0", _template_channels, ("block0", "channels"), "give 64 channels"),
    ("template-reduction", "nas_segm_arch0", _template_reduction, ("block0", "reduction"), "1/32"),
    ("template-on-layer", "nas_segm_arch0", _template_on_layer, ("layer2", "template"), "only cell nodes"),
    ("template-widens-fixed-op", "nas_segm_arch0", _widen_fixed_width_op, None, "keeps its width"),
    ("template-two-paths", "nas_segm_arch0", _template_two_paths, ("block0", "inputs", 0, "paths"), "exactly one path"),
    (
        "via-needs-bilinear",
        "autodeeplab_s",
        _via_with_factorized,
        ("cell4", "inputs", 0, "paths", 0, "via"),
        "bilinear",
    ),
    ("aux-dangling", "darts_v2_cifar", _aux_dangling, None, "dangling input"),
]


@pytest.mark.parametrize("case, name, mutate, where, words", CASES, ids=[c[0] for c in CASES])
def test_new_fields_are_checked_with_a_pointer(case, name, mutate, where, words):
    doc = copy.deepcopy(doc_of(name))
    mutate(doc)
    with pytest.raises(SpecError) as err:
        genotype_from_dict(doc)
    expected = {
        "template-widens-fixed-op": "/cells/t0/steps/0/edges/0/op",
        "aux-dangling": "/head/auxiliary/input",
    }.get(case) or "/network/nodes/" + "/".join(map(str, (index(doc, where[0]), *where[1:])))
    assert err.value.pointer == expected
    assert words in err.value.reason


def test_output_stride_past_a_template_node_is_refused_not_ignored():
    from rspnet_zoo.nn.model import GenotypeNet

    with pytest.raises(SpecError, match="template nodes do not trade stride for dilation"):
        GenotypeNet(SHIPPED["nas_segm_arch0"], output_stride=16)


def test_a_spec_without_the_new_fields_reads_as_before():
    doc = doc_of("rspnet_small")
    assert "template" not in json.dumps(doc) and "aggregate" not in json.dumps(doc)
    assert genotype_from_dict(doc) == SHIPPED["rspnet_small"]
