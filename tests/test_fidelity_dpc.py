"""DPC on Xception-71 (tensorflow/models research/deeplab): the published cell's exact parameter count, derived
part by part from the reference's layers, and the network through timm, ``features_only`` included.

The derivation (19 classes, output stride 16; every conv without bias and followed by a BN with scale and
offset, 2 parameters per channel; "sep(c, o)" is DeepLab's split separable conv, depthwise 3x3 -> BN ->
pointwise 1x1 -> BN = 9c + 2c + c*o + 2o):

- Encoder, Xception-71 (core/xception.py xception_71; timm's xception71 has the same layers at output stride 16,
  its blocks' separable convs also with a BN between depthwise and pointwise; shortcut = 1x1 conv + BN):
  - stem: 3x3 conv 3->32 + BN, 3x3 conv 32->64 + BN: 928 + 18,560 = 19,488
  - entry flow (three separable convs a block, the shortcut where the width or the stride changes):
    64->128 s2: sep(64,128) + 2 sep(128,128) + 64*128+256 = 9,152 + 36,096 + 8,448 = 53,696;
    128->256: 34,688 + 137,728 + 33,280 = 205,696; 256->256 s2: 3 * 68,864 + 66,048 = 272,640;
    256->728: 190,640 + 1,078,896 + 187,824 = 1,457,360; 728->728 s2: 3 * 539,448 + 531,440 = 2,149,784
  - middle flow: 16 blocks of 3 sep(728,728), no shortcut conv: 16 * 1,618,344 = 25,893,504
  - exit flow: 728->(728,1024,1024) s2 (a dilation at output stride 16): 539,448 + 755,528 + 1,061,888 +
    747,520 = 3,104,384; 1024->(1536,1536,2048), no skip: 1,587,200 + 2,379,264 + 3,166,720 = 7,133,184
  - encoder: 19,488 + 4,139,176 + 25,893,504 + 10,237,568 = 40,289,736
- Dense prediction cell (core/dense_prediction_cell.py, the published JSON): branch 0 reads the 2048-channel
  features, sep(2048,256) = 547,328; branches 1-4 read a branch, sep(256,256) = 68,864 each: 822,784;
  concat_projection 1x1 1280->256 + BN = 328,192; cell: 1,150,976
- Decoder (model.py refine_by_decoder, decoder_use_separable_conv): feature_projection0 1x1 256->48 + BN
  (Xception-71's stride-4 feature has 256 channels) = 12,384; decoder_conv0 sep(256+48, 256) = 81,680;
  decoder_conv1 sep(256,256) = 68,864; decoder: 162,928
- Logits (model.py get_branch_logits): 1x1 256->19 with bias = 4,883
- Total: 40,289,736 + 1,150,976 + 162,928 + 4,883 = 41,608,523
"""

import json

import pytest
import timm
import torch
from published import DPC_CITYSCAPES, DPC_COUNTS

import rspnet_zoo  # registers the specs with timm
from rspnet_zoo.interop.importers.dpc import dpc_spec, read_cell, timm_encoder
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.stats import count_parameters, meta_model

NAME = "dpc_xception71_cityscapes"
ENTRY_FLOW = [53_696, 205_696, 272_640, 1_457_360, 2_149_784]
MIDDLE_BLOCK = 1_618_344
EXIT_FLOW = [3_104_384, 7_133_184]


def meta_net(name=NAME):
    with torch.device("meta"):
        return timm.create_model(name)


def group(model, prefix: str) -> int:
    return sum(p.numel() for k, p in model.named_parameters() if k.startswith(prefix))


def test_parameter_count_is_exact():
    assert count_parameters(meta_net()) == DPC_COUNTS[NAME]


def test_component_breakdown_follows_the_reference_derivation():
    model = meta_net()
    encoder = "encoders.backbone."
    assert group(model, encoder + "stem") == 19_488
    blocks = [group(model, f"{encoder}blocks_{i}.") for i in range(23)]
    assert blocks == ENTRY_FLOW + [MIDDLE_BLOCK] * 16 + EXIT_FLOW
    assert count_parameters(model.encoders) == 40_289_736
    dpc = model.decoder.dpc
    assert [count_parameters(b) for b in dpc.branches] == [547_328] + [68_864] * 4
    assert count_parameters(dpc.project) == 328_192
    assert count_parameters(dpc) == 1_150_976
    refine = [count_parameters(m) for m in model.decoder.refine]
    assert (count_parameters(model.decoder.low_proj), *refine) == (12_384, 81_680, 68_864)
    assert count_parameters(model.decoder) - count_parameters(dpc) == 162_928
    assert count_parameters(model.classifier) == 4_883


def test_the_shipped_spec_is_the_published_cell_on_the_deepest_level_and_the_stride_4_level():
    g = SHIPPED[NAME]
    assert g.encoders["backbone"].model == "xception71"
    assert g.encoders["backbone"].kwargs == {"output_stride": 16}
    nodes = {n.id: n for n in g.network.nodes}
    assert (nodes[g.head.input].level, nodes[g.head.input].reduction, nodes[g.head.input].channels) == (4, 16, 2048)
    assert (nodes[g.head.low_level].reduction, nodes[g.head.low_level].channels) == (4, 256)
    published = [(b["kernel"], tuple(b["rate"]), b["input"]) for b in json.loads(DPC_CITYSCAPES)]
    assert [(b.kernel, b.rate, b.input) for b in g.head.branches] == published
    assert g.head.rate_multiplier == 1 and g.head.concat_dropout == pytest.approx(0.1)
    assert g.defaults.num_classes == 19 and g.provenance.searcher == "dpc"
    assert "tensorflow/models" in g.provenance.notes


def test_output_stride_8_doubles_the_rates_and_timm_drops_one_shortcut(tmp_path):
    """DeepLab's Xception keeps entry block 5's 1x1 shortcut at output stride 8; timm drops it once the block's
    stride is 1 and its width unchanged: 728*728 + 2*728 = 531,440 fewer than the reference."""
    cell = tmp_path / "cell.json"
    cell.write_text(DPC_CITYSCAPES)
    encoder, levels, norm = timm_encoder("xception71", 8, None)
    g = dpc_spec(read_cell(cell), encoder, levels, norm, output_stride=8, source=str(cell))
    assert g.head.rate_multiplier == 2
    assert [n.reduction for n in g.network.nodes] == [4, 8]
    assert count_parameters(meta_model(g)) == DPC_COUNTS[NAME] - 531_440


@pytest.mark.slow
def test_builds_runs_optimises_and_gives_features_through_timm():
    torch.manual_seed(0)
    model = timm.create_model(NAME).eval()
    x = torch.randn(1, 3, 67, 93)  # not a multiple of 16
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (1, 19, 67, 93)
        torch.testing.assert_close(rspnet_zoo.optimize(model)(x), logits, rtol=1e-4, atol=1e-4)
        features = timm.create_model(NAME, features_only=True).eval()(x)
    assert [f.shape[1:] for f in features] == [(256, 17, 24), (2048, 5, 6)]


@pytest.mark.slow
def test_onnx_export_matches_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    from rspnet_zoo.interop.export import export_model

    model = timm.create_model(NAME).eval()
    info = export_model(model, "onnx", tmp_path / f"{NAME}.onnx", (65, 97))
    assert info["max_abs_diff"] < 1e-4
