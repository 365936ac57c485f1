"""Issue 21, item 6: the smaller holes, one test each (links out of a served folder, the no-slash redirect, FIFOs,
control characters in names, links inside a study, --tensorboard that is not a directory, an edited data cache,
a huge --depth)."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error, run_cli
from test_catalog import copy_run

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.base.errors import SweepError  # noqa: E402
from cnnscope.data import cache as datacache  # noqa: E402
from cnnscope.serve.dashboard import Dashboard, create_dashboard_app  # noqa: E402


def _dashboard(root: Path, data_dir: Path):
    board = Dashboard(root, data_dir, warm_up=False)
    client = TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1",
                        raise_server_exceptions=False)
    return board, client


def test_the_dashboard_reads_no_file_or_data_outside_its_folder(trained_run, tmp_path, data_dir):
    root, outside = tmp_path / "served", copy_run(trained_run, tmp_path / "elsewhere")
    linked = copy_run(trained_run, root / "linked")
    (linked / "model.safetensors").unlink()
    (linked / "model.safetensors").symlink_to(outside / "model.safetensors")
    inner = copy_run(trained_run, root / "inner")  # a link to a place inside the folder is fine
    (inner / "history.json").unlink()
    (inner / "history.json").symlink_to(root / "linked" / "history.json")
    np.savez(tmp_path / "data.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2))
    far = copy_run(trained_run, root / "far")
    text = (far / "config.toml").read_text().replace('dataset = "mnist"', f'dataset = "npz:{tmp_path / "data.npz"}"')
    (far / "config.toml").write_text(text)
    board, client = _dashboard(root, data_dir)
    with client:
        answer = client.get("/runs/linked/api/info")
        assert answer.status_code == 403 and answer.json()["error"] == (
            "linked/model.safetensors leads outside served; the dashboard reads only files inside the folder it "
            "serves")
        answer = client.get("/runs/far/api/info")
        assert answer.status_code == 403 and "its data 'npz:" in answer.json()["error"]
        assert "lies outside served" in answer.json()["error"]
        assert client.get("/runs/inner/api/info").status_code == 200
    board.close()
    assert list(board.viewers) == ["inner"]


def test_the_no_slash_redirect_keeps_the_path_encoded(trained_run, tmp_path, data_dir):
    copy_run(trained_run, tmp_path / "served" / "q?x=1#frag")
    board, client = _dashboard(tmp_path / "served", data_dir)
    with client:
        answer = client.get("/runs/q%3Fx=1%23frag", follow_redirects=False)
    board.close()
    assert answer.status_code == 307 and answer.headers["location"] == "/runs/q%3Fx=1%23frag/"


def test_a_fifo_named_like_a_picture_is_not_opened(tmp_path, monkeypatch):
    from PIL import Image

    from cnnscope.data import folder as owndata

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for k in range(2):
        for i in range(2):
            (tmp_path / "f" / f"c{k}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 50 * k + i, np.uint8)).save(tmp_path / "f" / f"c{k}" / f"{i}.png")
    os.mkfifo(tmp_path / "f" / "c0" / "x.png")
    done: list = []
    worker = threading.Thread(target=lambda: done.append(owndata.load_own(str(tmp_path / "f"), test_size=2,
                                                                          progress=False)))
    worker.start()
    worker.join(120)  # a bound for a regression that blocks on the FIFO; the scan skips it at once
    if worker.is_alive():
        os.close(os.open(tmp_path / "f" / "c0" / "x.png", os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("a FIFO in the folder blocked the load")
    assert any("c0/x.png (not a regular file)" in note for note in done[0].notes), done[0].notes


def test_control_characters_in_names_are_printed_escaped(trained_run, tmp_path, capsys):
    name = "evil\x1b]0;owned\x07\x1b[2J"
    copy_run(trained_run, tmp_path / "runs" / name)
    code, out, err = run_cli(capsys, "runs", tmp_path / "runs")
    assert code == 0 and "\x1b" not in out + err and "evil\\x1b]0;owned\\x07\\x1b[2J" in out
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2), class_names=np.array(["a\x1b[31m", "b"]))
    code, out, err = run_cli(capsys, "data", f"npz:{tmp_path / 'd.npz'}", "--out", tmp_path / "d.png")
    assert code == 0 and "\x1b" not in out and "a\\x1b[31m" in out  # (matplotlib may warn of the glyph)


@pytest.mark.parametrize("link", ["trials", "study.db", ".lock"])
def test_links_inside_a_study_are_refused(tmp_path, link):
    from cnnscope.sweep.driver import study_lock

    study, target = tmp_path / "study", tmp_path / "elsewhere"
    study.mkdir()
    if link == "trials":
        target.mkdir()
    (study / link).symlink_to(target)  # study.db and .lock dangle
    with pytest.raises(SweepError, match=rf"holds symbolic links \({link}\); a sweep writes only real files"):
        with study_lock(study):
            pass
    assert not target.exists() or not any(target.iterdir())


@pytest.mark.parametrize("board", ["file", "/dev/null"])
def test_sweep_tensorboard_must_be_a_directory(tmp_path, data_dir, capsys, board):
    pytest.importorskip("optuna")
    if board == "file":
        board = tmp_path / "tb"
        board.write_text("x")
    toml = tmp_path / "base.toml"
    toml.write_text(f'[model]\npreset = "tiny"\n[train]\nepochs = 1\n[data]\ndata_dir = "{data_dir}"\n')
    code, _, err = run_cli(capsys, "sweep", "--config", toml, "--out", tmp_path / "study", "--param",
                           "train.lr=choice:0.1,0.2", "--tensorboard", board)
    assert code == 2 and one_line_error(err) == f"error: --tensorboard {board} is a file; give a directory"
    assert not (tmp_path / "study" / "trials").exists()


def test_an_edited_data_cache_is_a_miss(data_dir, tmp_path, monkeypatch):
    from safetensors.numpy import load_file, save_file

    import cnnscope
    from cnnscope.base.errors import DataError
    from cnnscope.base.fileio import read_safetensors_header

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNSCOPE_DATA_CACHE", "1")
    first = cnnscope.load_dataset("mnist", data_dir=data_dir)
    (path,) = (tmp_path / "cache" / "cnnscope" / "decoded").glob("mnist-*.safetensors")
    _, metadata = read_safetensors_header(path, DataError)
    arrays = load_file(str(path))
    arrays["train_y"] = (arrays["train_y"] + 1) % 10  # the labels shifted, the key (and checksum) kept
    save_file(arrays, str(path), metadata=metadata)
    second = cnnscope.load_dataset("mnist", data_dir=data_dir)
    assert np.array_equal(second.train_y, first.train_y)
    assert datacache.checksum(load_file(str(path))) == read_safetensors_header(path, DataError)[1]["checksum"]


def test_a_huge_depth_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "runs", tmp_path, "--depth", "999999999999999999999")
    assert code == 2 and one_line_error(err) == (
        "error: --depth must be at most 100, received 999999999999999999999")


def test_the_walk_stops_when_no_folder_is_left(tmp_path):
    from cnnscope.runs.catalog import walk

    (tmp_path / "a" / "b").mkdir(parents=True)
    assert walk(tmp_path, max_depth=10**18) == ([], [])  # returns at once instead of counting empty levels
