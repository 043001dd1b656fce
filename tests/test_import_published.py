"""Importing the published genotype strings reproduces the shipped specs byte for byte."""

import json

import pytest
from published import (
    AUTODEEPLAB_CELL,
    AUTODEEPLAB_PATH,
    DARTS_V1,
    DARTS_V2,
    DPC_CITYSCAPES,
    NAS_SEGM_ARCH0,
    NAS_SEGM_ARCH1,
    PC_DARTS_CIFAR,
    PC_DARTS_IMAGE,
)

from rspnet_zoo.resources import data_dir


def _darts(genotype, network, cells, what, count):
    net = {
        "cifar": "CIFAR-10 evaluation network: 20 cells, C=36",
        "imagenet": "ImageNet (mobile) evaluation network: 14 cells, C=48",
    }
    return [
        "darts",
        genotype,
        "--network",
        network,
        "--description",
        f"{cells} cells in the DARTS {net[network]}; {count} parameters without the auxiliary head ({what}).",
    ]


def _autodeeplab(size, f, count):
    return [
        "autodeeplab",
        "--path",
        AUTODEEPLAB_PATH,
        "--cell",
        AUTODEEPLAB_CELL,
        "--filter-multiplier",
        str(f),
        "--description",
        f"Auto-DeepLab-{size}: the published Cityscapes network path and cell (NoamRosenberg/autodeeplab "
        f"a5b5710, run-time op pairing), F={f}, ASPP and the DeepLabv3+ decoder; {count} parameters "
        "(arXiv 1901.02985).",
    ]


def _nas_segm(arch, config, count):
    return [
        "nas-segm",
        config,
        "--description",
        f"nas-segm {arch} (Nekrasov et al., WACV 2020, template-based decoder, seed 003) on MobileNet-v2's "
        f"first stages; 19 classes at 1/4 of the input; {count} parameters.",
    ]


def _dpc(cell_file):
    return [
        "dpc",
        str(cell_file),
        "--description",
        "DPC (Chen et al., NeurIPS 2018, arXiv 1809.04184): DeepLab's published dense prediction cell "
        "(dense_prediction_cell_branch5_top1_cityscapes.json) on timm's xception71 at output stride 16, with "
        "DeepLab's decoder at 1/4 and 19 Cityscapes classes; 41,608,523 parameters.",
    ]


# spec name -> `rspnet-zoo import` arguments (without --name and --out)
PUBLISHED = {
    "darts_v1_cifar": _darts(DARTS_V1, "cifar", "DARTS V1 (first order)", "arXiv 1806.09055", "3,169,414"),
    "darts_v2_cifar": _darts(DARTS_V2, "cifar", "DARTS V2 (second order)", "arXiv 1806.09055", "3,349,342"),
    "pc_darts_cifar": _darts(PC_DARTS_CIFAR, "cifar", "PC-DARTS CIFAR-10", "arXiv 1907.05737", "3,634,678"),
    "darts_v1_imagenet": _darts(DARTS_V1, "imagenet", "DARTS V1 (first order)", "arXiv 1806.09055", "4,510,432"),
    "darts_v2_imagenet": _darts(DARTS_V2, "imagenet", "DARTS V2 (second order)", "arXiv 1806.09055", "4,718,752"),
    "pc_darts_imagenet": _darts(PC_DARTS_IMAGE, "imagenet", "PC-DARTS ImageNet", "arXiv 1907.05737", "5,342,464"),
    "autodeeplab_s": _autodeeplab("S", 20, "10,147,683"),
    "autodeeplab_m": _autodeeplab("M", 32, "21,622,707"),
    "autodeeplab_l": _autodeeplab("L", 48, "44,424,947"),
    "nas_segm_arch0": _nas_segm("arch0", NAS_SEGM_ARCH0, "280,147"),
    "nas_segm_arch1": _nas_segm("arch1", NAS_SEGM_ARCH1, "268,235"),
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_import_reproduces_the_shipped_spec(name, run_cli, tmp_path):
    code, out, err = run_cli("import", *PUBLISHED[name], "--name", name, "--out", str(tmp_path), "--json")
    _same_as_shipped(name, code, out, err, tmp_path)


def test_import_dpc_reproduces_the_shipped_spec(run_cli, tmp_path):
    """DeepLab's file as published, under its own name (the spec's notes name the file)."""
    cell = tmp_path / "cell" / "dense_prediction_cell_branch5_top1_cityscapes.json"
    cell.parent.mkdir()
    cell.write_text(DPC_CITYSCAPES)
    name = "dpc_xception71_cityscapes"
    code, out, err = run_cli("import", *_dpc(cell), "--name", name, "--out", str(tmp_path), "--json")
    _same_as_shipped(name, code, out, err, tmp_path)


def _same_as_shipped(name, code, out, err, tmp_path):
    assert code == 0, err
    info = json.loads(out)
    written = tmp_path / f"{name}.json"
    assert info["path"] == str(written)
    assert written.read_bytes() == (data_dir("genotypes") / f"{name}.json").read_bytes()
