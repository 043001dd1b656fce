"""The training loop: the loss falls, checkpoints are written each epoch, and --resume picks up exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from rspnet_zoo.data import build_dataset
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.training.loop import load_checkpoint, save_to_zoo, train
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.registry import create_genotype_net

TINY = Path(__file__).parent / "data" / "tiny_net.json"


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    g = load_spec(TINY)
    return create_genotype_net(g.name, g, num_classes=9)


def tiny_set(length: int = 16):
    return build_dataset("synthetic", "train", crop=(48, 48), train=True, length=length)


def test_a_few_iterations_on_synthetic_data_lower_the_loss():
    result = train(tiny_model(), tiny_set(), iterations=16, batch_size=4, lr=0.1)
    assert result.steps == 16 and len(result.losses) == 16
    first, last = sum(result.losses[:4]) / 4, sum(result.losses[-4:]) / 4
    assert last < 0.8 * first, result.losses
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert all(h["images_per_s"] > 0 for h in result.history)


def test_the_logged_learning_rate_is_the_one_each_step_trained_with():
    steps: list[dict] = []
    one = train(tiny_model(), tiny_set(4), iterations=1, batch_size=4, lr=0.01, on_step=steps.append)
    assert [s["lr"] for s in steps] == [0.01] and one.history[-1]["lr"] == 0.01  # not the schedule's end, 0
    steps.clear()
    three = train(tiny_model(), tiny_set(12), iterations=3, batch_size=4, lr=0.01, on_step=steps.append)
    assert steps[0]["lr"] == 0.01 and steps[0]["lr"] > steps[1]["lr"] > steps[2]["lr"] > 0  # poly decay
    assert three.history[-1]["lr"] == steps[-1]["lr"]


def test_a_small_synthetic_run_validates_in_proportion(tmp_path):
    from rspnet_zoo.errors import ZooError
    from rspnet_zoo.training.tasks import TrainRequest, run_train, validation_length

    assert validation_length(TrainRequest("m")) is None  # the split's fixed 100, as the cards report
    assert validation_length(TrainRequest("m", length=4)) == 4
    assert validation_length(TrainRequest("m", length=5000)) == 100
    assert validation_length(TrainRequest("m", length=4, val_length=30)) == 30
    with pytest.raises(ZooError, match="--val-length applies to the synthetic data set only"):
        validation_length(TrainRequest("m", data="camvid", val_length=3))
    request = TrainRequest(
        str(TINY), crop=(32, 32), length=4, batch_size=4, iterations=1, out=tmp_path / "run", val_length=6
    )
    info = run_train(request)
    assert info["val_images"] == info["metrics"]["images"] == 6
    assert "--val-length 6" in info["command"]


class Interrupt(Exception):
    pass


def test_resume_continues_from_the_saved_step_with_the_same_optimizer_state(tmp_path):
    data = tiny_set(8)  # 2 steps per epoch at batch 4
    whole = train(tiny_model(), data, epochs=3, batch_size=4, lr=0.05, checkpoint=tmp_path / "a.pt")

    def stop_in_epoch_3(step):
        if step["step"] == 5:
            raise Interrupt

    checkpoint = tmp_path / "b.pt"
    with pytest.raises(Interrupt):
        train(tiny_model(), data, epochs=3, batch_size=4, lr=0.05, checkpoint=checkpoint, on_step=stop_in_epoch_3)
    saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == 2 and saved["step"] == 4
    assert all("momentum_buffer" in s for s in saved["optimizer"]["state"].values())
    assert saved["scheduler"]["last_epoch"] == 4

    resumed = train(tiny_model(seed=1), data, epochs=3, batch_size=4, lr=0.05, checkpoint=checkpoint, resume=True)
    assert resumed.resumed_from == 4 and resumed.steps == 6 and len(resumed.losses) == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # the same weights as the run that was never interrupted: same momentum, same schedule, same data order
    assert resumed.losses == pytest.approx(whole.losses[4:], rel=1e-5)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    from rspnet_zoo.errors import ZooError

    checkpoint = tmp_path / "c.pt"
    train(tiny_model(), tiny_set(4), iterations=1, batch_size=4, checkpoint=checkpoint)
    other = torch.nn.Conv2d(3, 9, 1)
    with pytest.raises(
        ZooError,
        match=r"c.pt: does not fit this model: 2 missing, 60 unexpected, 0 mis-shaped tensors \(missing weight\)",
    ):
        train(other, tiny_set(4), iterations=2, batch_size=4, checkpoint=checkpoint, resume=True)
    checkpoint.write_bytes(b"garbage")
    with pytest.raises(ZooError, match=r"c.pt: not a readable checkpoint"):
        train(other, tiny_set(4), iterations=2, batch_size=4, checkpoint=checkpoint, resume=True)


def test_trained_weights_load_by_tag_through_timm(zoo_home):
    g = SHIPPED["rspnet_small"]
    torch.manual_seed(0)
    model = create_genotype_net(g.name, g, num_classes=3)
    metrics = dict(
        miou=0.5, mean_acc=0.6, fw_iou=0.7, pixel_acc=0.8, images=2, per_class_iou={"a": 0.5, "b": None, "c": 0.5}
    )
    folder = save_to_zoo(model, g, "mine", ["a", "b", "c"], metrics, data="folder", commands=["rspnet-zoo train ..."])
    assert folder == zoo_home / "rspnet_small.mine"
    loaded = timm.create_model("rspnet_small.mine", pretrained=True)
    assert loaded.num_classes == 3 and loaded.pretrained_cfg["label_names"] == ("a", "b", "c")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    card = (folder / "README.md").read_text()
    assert "mIoU 0.5000" in card and "rspnet-zoo train ..." in card and '"rspnet_small.mine"' in card
    assert json.loads((folder / "config.json").read_text())["pretrained_cfg"]["label_names"] == ["a", "b", "c"]


def test_an_untrained_tag_is_one_clear_error():
    from rspnet_zoo.errors import WeightsError

    with pytest.raises(
        WeightsError, match=r"no weights for 'rspnet_small.nothing'.*rspnet-zoo train rspnet_small --tag nothing"
    ):
        timm.create_model("rspnet_small.nothing", pretrained=True)
