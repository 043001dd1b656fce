"""Cityscapes with the Cityscapes team's own tools (``cityscapesscripts``, the ``cityscapes`` extra).

The class table comes from ``cityscapesscripts.helpers.labels`` when installed; the copy written out for
installs without it (and the torch-free class names of ``spec.constants``) must agree with it. ``predict
--format cityscapes`` writes what the official ``evalPixelLevelSemanticLabeling`` reads, and that script
scores a small Cityscapes-layout folder exactly as ``rspnet-zoo eval`` does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rspnet_zoo.data.cityscapes import WRITTEN_OUT, cityscapes_classes, official_classes
from rspnet_zoo.predict.infer import palette
from rspnet_zoo.spec.constants import CITYSCAPES_CLASSES

TINY = Path(__file__).parent / "data" / "tiny_net.json"
FRAMES = {"train": [("aachen", 0, 19), ("aachen", 1, 19)], "val": [("frankfurt", 0, 294), ("lindau", 0, 19)]}


def test_the_written_out_classes_are_the_official_ones():
    pytest.importorskip("cityscapesscripts")
    official = official_classes()
    assert official == WRITTEN_OUT
    assert official.names == CITYSCAPES_CLASSES  # the names specs and importers use without the package


def test_the_data_set_and_the_palette_use_the_table():
    classes = cityscapes_classes()
    assert classes.names == CITYSCAPES_CLASSES and len(classes.label_ids) == 19
    lut = classes.lut()
    assert lut[7] == 0 and lut[33] == 18 and lut[0] == lut[9] == 255  # road, bicycle; unlabeled, parking ignored
    assert palette(CITYSCAPES_CLASSES).tolist() == [list(c) for c in classes.colours]


def cityscapes_folder(root: Path) -> Path:
    """Generated frames in the official layout: leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png and
    gtFine/<split>/<city>/<frame>_gtFine_labelIds.png, every annotation id 0-33 drawn (ignored ones too)."""
    rng = np.random.default_rng(0)
    for split, frames in FRAMES.items():
        for city, sequence, frame in frames:
            stem = f"{city}_{sequence:06d}_{frame:06d}"
            images, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            images.mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(images / f"{stem}_leftImg8bit.png")
            ids = rng.integers(0, 34, (32, 64), dtype=np.uint8)
            ids[:8] = 7  # a band of road, so that one class is hit often
            Image.fromarray(ids).save(labels / f"{stem}_gtFine_labelIds.png")
    return root


def test_official_evaluation_of_predict_format_cityscapes_equals_eval(run_cli, tmp_path, zoo_home):
    pytest.importorskip("cityscapesscripts")
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    root = cityscapes_folder(tmp_path / "cityscapes")
    data = ("--data", "cityscapes", "--root", str(root))
    code, _, err = run_cli("train", str(TINY), *data, "--iterations", "2", "--crop", "32", "--batch-size", "2")
    assert code == 0, err
    model = str(zoo_home / "tiny_net.cityscapes")

    images = sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    predict = ("predict", model, *map(str, images), "--out", str(tmp_path / "pred"), "--format", "cityscapes")
    code, out, err = run_cli(*predict, "--json")
    assert code == 0, err
    predictions = [Path(r["label_ids"]) for r in json.loads(out)]
    assert [p.name for p in predictions] == [
        "frankfurt_000000_000294_labelIds.png",
        "lindau_000000_000019_labelIds.png",
    ]
    predicted = set(np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in predictions])).tolist())
    assert len(predicted) >= 2 and predicted <= set(WRITTEN_OUT.label_ids)

    truths = [
        root / "gtFine" / "val" / p.parent.name / p.name.replace("_leftImg8bit", "_gtFine_labelIds") for p in images
    ]
    args = copy.copy(official.args)
    args.quiet, args.evalInstLevelScore, args.JSONOutput = True, False, False
    scores = official.evaluateImgLists([str(p) for p in predictions], [str(t) for t in truths], args)

    code, out, err = run_cli("eval", model, *data, "--batch-size", "1", "--json")
    assert code == 0, err
    ours = json.loads(out)
    ids = list(WRITTEN_OUT.label_ids)  # every cell of the two confusion matrices: rows truth, columns prediction
    assert np.array(scores["confMatrix"])[np.ix_(ids, ids)].tolist() == ours["confusion"]
    official_iou = {name.replace(" ", "_"): iou for name, iou in scores["classScores"].items()}
    for name, iou in ours["per_class_iou"].items():
        assert np.isnan(official_iou[name]) if iou is None else iou == official_iou[name], name
    assert ours["miou"] == pytest.approx(scores["averageScoreClasses"], rel=1e-15, abs=0)
