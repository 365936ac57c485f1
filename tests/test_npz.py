"""`--dataset npz:FILE`: layouts and dtypes become raw pictures, a colour non-square file trains through the CLI
and its run reloads its data and class names, every bad file is one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnscope.base.errors import DataError
from cnnscope.data.dataset import DataConfig, class_names_of, load_dataset
from cnnscope.data.npz import to_raw
from conftest import one_line_error, run_cli


def colour_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, 10, 3) uint8 pictures whose class (0 red, 1 green, 2 blue) is the bright channel."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 40, (n, 12, 10, 3)).astype(np.uint8)
    x[np.arange(n), :, :, y] = 220
    return x, y


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture
def colour_npz(tmp_path) -> Path:
    (xt, yt), (xs, ys) = colour_arrays(48, 0), colour_arrays(24, 1)
    # the test split as float NCHW in 0..1: both conventions in one file
    return write_npz(tmp_path / "colours.npz", x_train=xt, y_train=yt, x_test=xs.transpose(0, 3, 1, 2) / 255.0,
                     y_test=ys, class_names=np.array(["red", "green", "blue"]))


def test_colour_npz_trains_through_the_cli_and_reloads(colour_npz, tmp_path, capsys):
    out = tmp_path / "run"
    code, text, err = run_cli(capsys, "train", "--dataset", f"npz:{colour_npz}", "--preset", "tiny", "--epochs",
                              "1", "--out", out, "--no-report", "--no-plot", "--batch-size", "16")
    assert code == 0, err
    assert "input shape and classes from the data" in text
    from cnnscope.runs.load import load_run
    from cnnscope.views.common import class_names

    run = load_run(out)
    assert run.spec.input_shape == (3, 12, 10) and run.spec.num_classes == 3
    assert run.data_config.dataset == f"npz:{colour_npz.resolve()}"
    assert class_names(run) == ["red", "green", "blue"]
    ds = run.dataset()
    assert ds.test_raw.shape == (24, 12, 10, 3) and ds.test_raw.dtype == np.uint8
    np.testing.assert_array_equal(ds.test_raw, colour_arrays(24, 1)[0])  # 0..1 floats scaled back exactly
    assert ds.name == "colours"
    code, text, err = run_cli(capsys, "evaluate", out, "--json")
    assert code == 0, err and '"blue"' in text


@pytest.mark.parametrize("layout", ["nhw", "nhw1", "n1hw", "nhw3", "n3hw"])
@pytest.mark.parametrize("scale", ["uint8", "unit", "float255"])
def test_layouts_and_dtypes_become_raw_pictures(layout, scale):
    rng = np.random.default_rng(3)
    colour = layout in ("nhw3", "n3hw")
    raw = rng.integers(0, 256, (4, 5, 7, 3) if colour else (4, 5, 7)).astype(np.uint8)
    x = {"nhw": raw, "nhw1": raw[..., None], "n1hw": raw[:, None], "nhw3": raw,
         "n3hw": raw.transpose(0, 3, 1, 2) if colour else raw}[layout]
    x = {"uint8": x, "unit": x / 255.0, "float255": x.astype(np.float32)}[scale]
    got = to_raw(x, "x_train")
    assert got.dtype == np.uint8 and got.shape == raw.shape
    np.testing.assert_array_equal(got, raw)


def test_class_names_default_to_numbers(tmp_path):
    x, y = colour_arrays(12, 0)
    path = write_npz(tmp_path / "d.npz", x_train=x[..., 0], y_train=y, x_test=x[:6, ..., 0], y_test=y[:6])
    ds = load_dataset(f"npz:{path}")
    assert ds.class_names == ("0", "1", "2") and ds.train_raw.shape == (12, 12, 10)
    assert ds.config.class_names == ("0", "1", "2")  # recorded, so a saved run needs no reload to name them
    assert class_names_of(ds.config) == ("0", "1", "2")


def bad_files(tmp_path: Path) -> dict[str, tuple[dict, str]]:
    x, y = colour_arrays(12, 0)
    good = {"x_train": x, "y_train": y, "x_test": x[:6], "y_test": y[:6]}
    return {
        "object": ({**good, "class_names": np.array(["a", 1, None], dtype=object)}, "object array"),
        "range": ({**good, "class_names": np.array(["a", "b"])}, "label 2 at index 2 is out of range"),
        "single": ({**good, "y_train": np.zeros(12, int), "y_test": np.zeros(6, int)}, "a single class"),
        "empty": ({**good, "x_test": x[:0], "y_test": y[:0]}, "x_test is empty"),
        "lengths": ({**good, "y_train": y[:11]}, "x_train holds 12 pictures but y_train 11 labels"),
        "shapes": ({**good, "x_test": x[:6, :, :8]}, "x_train pictures are 12×10×3 but x_test ones 12×8×3"),
        "missing": ({k: v for k, v in good.items() if k != "y_test"}, "lacks y_test"),
        "values": ({**good, "x_train": x * 2.0}, "pixels must lie in 0..1 or 0..255"),
    }


@pytest.mark.parametrize("case", ["object", "range", "single", "empty", "lengths", "shapes", "missing", "values"])
def test_bad_npz_is_one_line(case, tmp_path, capsys):
    arrays, message = bad_files(tmp_path)[case]
    path = write_npz(tmp_path / f"{case}.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(f"npz:{path}")
    code, _, err = run_cli(capsys, "data", f"npz:{path}")
    assert code == 2 and message in one_line_error(err)


def test_missing_and_non_npz_files(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--dataset", f"npz:{tmp_path / 'nope.npz'}", "--epochs", "1",
                           "--out", tmp_path / "r")
    assert code == 2 and "missing file" in one_line_error(err)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a valid .npz file"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DataError, match="needs a path after 'npz:'"):
        DataConfig("npz:")


def test_a_forced_input_shape_that_does_not_fit_is_one_line(colour_npz, tmp_path, capsys):
    config = tmp_path / "m.toml"
    config.write_text('[model]\ninput_shape = [1, 28, 28]\nconv = [{filters = 4}]\ndense = []\n')
    code, _, err = run_cli(capsys, "train", "--config", config, "--dataset", f"npz:{colour_npz}", "--epochs", "1",
                           "--out", tmp_path / "r", "--no-report")
    line = one_line_error(err)
    assert code == 2 and "sets input_shape = [1, 28, 28] but the data" in line and "3×12×10" in line


def test_changed_classes_are_refused_on_reload(colour_npz):
    config = DataConfig(f"npz:{colour_npz}", class_names=("a", "b", "c"))
    with pytest.raises(DataError, match="now holds classes red, green, blue, the run was trained on a, b, c"):
        load_dataset(config=config)


def test_folder_options_only_for_folders():
    with pytest.raises(DataError, match="image_size applies to folder:PATH datasets only"):
        DataConfig("mnist", image_size=(8, 8))
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        DataConfig("folder:/x", channels=2)
    assert DataConfig("folder:/x", image_size=[8, 9]).image_size == (8, 9)


# --- bounds (issue 21, item 3): checked from the headers, before a byte of data is inflated ----------------------
def _npz_with_header(path: Path, shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"") -> Path:
    """An npz whose x_train member's .npy header declares `shape` but holds only `payload`."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    small = {k: np.zeros(2, np.uint8) for k in ("y_train", "x_test", "y_test")}
    np.savez(path, **small)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("x_train.npy", header.getvalue() + payload)
    return path


@pytest.mark.parametrize(("shape", "dtype", "message"), [
    ((10**7, 10**6, 28), "<f4", r"x_train declares shape \(10000000, 1000000, 28\) \(1,120,000,000,000,000 bytes\) "
                                r"but holds 64; the file is corrupt"),
    ((2, 4, 4), "<c8", r"x_train has dtype complex64; expected uint8, integers or floats"),
    ((2, 4, 4), "|O", r"holds an object array \(pickled data\)"),
])
def test_declared_shapes_and_dtypes_are_checked_before_reading(tmp_path, capsys, shape, dtype, message):
    path = _npz_with_header(tmp_path / "big.npz", shape, dtype, payload=b"\0" * 64)
    with pytest.raises(DataError, match=message):
        load_dataset(config=DataConfig(f"npz:{path}"))
    code, _, err = run_cli(capsys, "data", f"npz:{path}", "--out", tmp_path / "d.png")
    assert code == 2 and "Traceback" not in err and str(path) in one_line_error(err)


def test_a_decompression_bomb_is_refused_from_its_zip_entry(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x_train=np.zeros((5000, 100, 100), np.uint8), y_train=np.zeros(5000, np.uint8),
                        x_test=np.zeros((2, 100, 100), np.uint8), y_test=np.zeros(2, np.uint8))
    assert path.stat().st_size < 500_000  # 50 MB of pixels in well under 0.5 MB
    with pytest.raises(DataError, match=r"x_train inflates [\d,]+ bytes to 50,000,128 \(more than 100×\); refused "
                                        r"as a decompression bomb"):
        load_dataset(config=DataConfig(f"npz:{path}"))


def test_the_declared_total_is_bounded(tmp_path, colour_npz, monkeypatch):
    from cnnscope.data import npz as npzdata

    monkeypatch.setattr(npzdata, "MAX_NPZ_BYTES", 10_000)
    with pytest.raises(DataError, match=r"its arrays declare 87,036 bytes, more than the 10,000 an npz dataset "
                                        r"may hold"):
        load_dataset(config=DataConfig(f"npz:{colour_npz}"))


def test_float_pictures_convert_chunk_by_chunk_to_the_same_pixels(monkeypatch):
    from cnnscope.data import npz as npzdata

    x = np.random.default_rng(0).random((7, 5, 3))
    whole = to_raw(x, "x")
    monkeypatch.setattr(npzdata, "CHUNK", 4)
    assert np.array_equal(to_raw(x, "x"), whole) and np.array_equal(whole, np.rint(x * 255).astype(np.uint8))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os
    import threading

    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    caught: list[BaseException] = []
    worker = threading.Thread(target=lambda: caught.append(pytest.raises(DataError, load_dataset,
                                                                         config=DataConfig(f"npz:{fifo}")).value))
    worker.start()
    worker.join(60)  # a bound for a regression, which would block on open(); the refusal is immediate
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader so the test ends
        worker.join(10)
        pytest.fail("npz:FIFO blocked")
    assert "is not a regular file" in str(caught[0])
