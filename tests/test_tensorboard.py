"""`cnnscope train --tensorboard DIR` and cnnscope.tboard.TensorBoardLogger: the event file read back equals
history.json; --probe adds the activation grids and the first layer's filters; a missing extra is one line."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest

from conftest import one_line_error, run_cli

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cnnscope.base.errors import ConfigError  # noqa: E402
from cnnscope.training.tensorboard import TensorBoardLogger, grid_image  # noqa: E402

TRAIN = ["train", "--preset", "tiny", "--epochs", "2", "--batch-size", "100", "--optimizer", "adam", "--lr", "0.003",
         "--limit-train", "400", "--limit-test", "100", "--no-report", "--no-plot", "-q"]


def _events(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def probed(tmp_path_factory, data_dir):
    """A tiny run trained 2 epochs with --tensorboard and --probe 3: (run dir, log dir, exit code)."""
    root = tmp_path_factory.mktemp("tb")
    from cnnscope.cli import main

    code = main([*TRAIN, "--data-dir", str(data_dir), "--out", str(root / "run"), "--tensorboard", str(root / "tb"),
                 "--probe", "3"])
    return root / "run", root / "tb", code


def test_scalars_equal_history(probed):
    run, logdir, code = probed
    assert code == 0
    history = json.loads((run / "history.json").read_text())
    acc = _events(logdir)
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/validation", "accuracy/train", "accuracy/validation", "lr"} <= tags
    for tag, key in (("loss/train", "data_loss"), ("loss/validation", "val_data_loss"), ("objective/train", "loss"),
                     ("accuracy/train", "accuracy"), ("accuracy/validation", "val_accuracy"),
                     ("loss_with_penalty/validation", "val_loss")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == history["epoch"] == [1, 2]
        np.testing.assert_allclose([e.value for e in events], history[key], rtol=1e-6)
    steps_per_epoch = len(history["lr"]) // 2
    lr = [e.value for e in acc.Scalars("lr")]
    np.testing.assert_allclose(lr, [history["lr"][steps_per_epoch - 1], history["lr"][-1]], rtol=1e-6)


def test_probe_writes_grids_and_filters_every_epoch(probed):
    _, logdir, _ = probed
    acc = _events(logdir)
    images = set(acc.Tags()["images"])
    assert images == {"activations/Conv2D_1", "activations/Max_Pool_1", "activations/Conv2D_2",
                      "activations/Max_Pool_2", "filters/Conv2D_1"}
    for tag in images:
        events = acc.Images(tag)
        assert [e.step for e in events] == [1, 2]
        assert events[0].width > 20 and events[0].height > 20
        assert events[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    # the two epochs' filters differ: the images are of the weights as they were at that epoch
    filters = acc.Images("filters/Conv2D_1")
    assert filters[0].encoded_image_string != filters[1].encoded_image_string


def test_scalars_only_without_probe(tmp_path, data_dir):
    logger = TensorBoardLogger(tmp_path / "tb")
    import cnnscope
    from cnnscope.model.zoo import get_preset

    ds = cnnscope.load_dataset("mnist", data_dir=data_dir, limit_train=200, limit_test=50)
    config = cnnscope.TrainConfig(epochs=1, batch_size=100, optimizer="adam", lr=0.003, seed=0)
    run = cnnscope.train(get_preset("tiny"), ds, config, out=tmp_path / "run", callbacks=[logger], progress=False,
                         plot=False)
    acc = _events(tmp_path / "tb")
    assert acc.Tags()["images"] == []
    assert [e.value for e in acc.Scalars("accuracy/validation")] == pytest.approx(run.history["val_accuracy"])


def test_logger_is_picklable_and_checks_probe(tmp_path):
    # deepcopy goes through the same __reduce_ex__ as sending the logger to a worker, without unpickling bytes
    logger = copy.deepcopy(TensorBoardLogger(tmp_path / "tb", probe=2))
    assert logger.probe == 2 and logger.logdir == tmp_path / "tb"
    with pytest.raises(ConfigError, match=r"--probe expects a test image index >= 0, received -1"):
        TensorBoardLogger(tmp_path, probe=-1)


def test_grid_image_is_rgb_and_leaves_input_alone():
    maps = np.random.default_rng(0).normal(size=(5, 4, 6)).astype(np.float32)
    before = maps.copy()
    rgb = grid_image(maps, min_cell=12)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape == (3 * (8 + 2) - 2, 2 * (12 + 2) - 2, 3)  # 3 rows × 2 cols of 4×6 cells enlarged twice, 2 px gaps
    np.testing.assert_array_equal(maps, before)


def test_missing_tensorboard_is_one_line(tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    code, _, err = run_cli(capsys, *TRAIN, "--data-dir", data_dir, "--out", tmp_path / "run", "--tensorboard",
                           tmp_path / "tb")
    assert code == 2
    assert one_line_error(err) == 'error: --tensorboard needs TensorBoard: pip install "cnnscope[tensorboard]"'
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_tensorboard_dir_that_is_a_file_is_refused(tmp_path, data_dir, capsys):
    (tmp_path / "tb").write_text("x")
    code, _, err = run_cli(capsys, *TRAIN, "--data-dir", data_dir, "--out", tmp_path / "run", "--tensorboard",
                           tmp_path / "tb")
    assert code == 2 and one_line_error(err) == f"error: --tensorboard {tmp_path / 'tb'} is a file; give a directory"


def test_probe_out_of_range_with_tensorboard(tmp_path, data_dir, capsys):
    code, _, err = run_cli(capsys, *TRAIN, "--data-dir", data_dir, "--out", tmp_path / "run", "--tensorboard",
                           tmp_path / "tb", "--probe", "100")
    assert code == 2
    assert one_line_error(err) == "error: --probe 100 is out of range: the test set holds 100 images (0 to 99)"
