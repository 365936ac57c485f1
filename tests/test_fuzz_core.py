"""Property tests (issue 8, point 8): hostile IDX files, config tables and run files only ever raise CnnscopeError.

Budgets come from the Hypothesis profiles in conftest.py ("ci" by default, `--hypothesis-profile=long`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from cnnscope.base.errors import CnnscopeError, DataError, RunError
from cnnscope.base.fileio import read_toml
from cnnscope.data.dataset import MAX_IDX_BYTES, DataConfig, read_idx
from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec
from cnnscope.report import check_history, check_metrics
from cnnscope.trainer.config import RunConfig, TrainConfig, build_run_config, load_config

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# --- IDX files ------------------------------------------------------------------------------------------------
def _write(folder: str, payload: bytes, gz: bool) -> Path:
    path = Path(folder) / ("f-idx-ubyte.gz" if gz else "f-idx-ubyte")
    if gz:
        path.write_bytes(gzip.compress(payload, compresslevel=1))
    else:
        path.write_bytes(payload)
    return path


def _read(path: Path) -> np.ndarray | None:
    """read_idx's array, or None when it refused the file with a DataError (anything else fails the test)."""
    try:
        return read_idx(path)
    except DataError as exc:
        assert "\n" not in str(exc)
        return None


@given(payload=st.binary(max_size=300), gz=st.booleans(), raw_gzip=st.booleans())
def test_random_bytes_are_an_array_or_a_data_error(payload, gz, raw_gzip):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, payload, gz)
        if raw_gzip:  # the bytes themselves, under a .gz name: mostly not gzip at all
            path.write_bytes(payload)
        _read(path)


_dim = st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1), st.sampled_from([2**31, 2**32 - 1, 2**16 + 1]))


def _reference_shape(blob: bytes) -> tuple[int, ...] | None:
    """The IDX format, read the obvious way: the shape of a well-formed file of unsigned bytes, else None."""
    if len(blob) < 4 or blob[:3] != b"\0\0\x08" or blob[3] not in (1, 3):
        return None
    ndim = blob[3]
    if len(blob) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim])
    if math.prod(max(d, 1) for d in shape) > MAX_IDX_BYTES:  # cnnscope's limit on absurd sizes
        return None
    return shape if len(blob) - 4 - 4 * ndim == math.prod(shape) else None


@given(ndim=st.sampled_from([1, 3, 1, 3, 0, 2, 4, 255]), dtype=st.sampled_from([0x08, 0x08, 0x08, 0x09, 0x0D]),
       dims=st.lists(_dim, min_size=0, max_size=5), exact=st.booleans(), extra=st.sampled_from([0, 0, 0, -1, 1, 3]),
       gz=st.booleans())
def test_random_headers_are_checked_before_the_payload(ndim, dtype, dims, exact, extra, gz):
    header = struct.pack(">HBB", 0, dtype, ndim) + b"".join(struct.pack(">I", d) for d in dims[:ndim])
    size = math.prod(dims[:ndim])
    length = size + extra if exact and 0 <= size + extra <= 4096 else min(size, 64) + max(extra, 0)
    blob = header + bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    with tempfile.TemporaryDirectory() as folder:
        array = _read(_write(folder, blob, gz))
    expected = _reference_shape(blob)
    event("accepted" if expected is not None else "refused")
    assert (None if array is None else array.shape) == expected
    if array is not None:
        assert array.dtype == np.uint8 and array.tobytes() == blob[4 + 4 * len(expected):]


# --- config tables and TOML files -----------------------------------------------------------------------------
def _fields(*classes) -> list[str]:
    return sorted({f.name for cls in classes for f in dataclasses.fields(cls)})


KEYS = st.one_of(st.sampled_from(_fields(TrainConfig, DataConfig, ModelSpec, ConvSpec, DenseSpec, PoolSpec,
                                         RegularizerSpec) + ["preset", "model", "train", "data"]),
                 st.text(max_size=6))
SCALARS = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.integers(-4, 40), st.floats(), st.floats(0, 1),
    st.text(max_size=8), st.sampled_from(["tiny", "seed-iv", "sgd", "cosine", "fashion-mnist", "same", "max",
                                          "l2", "reshuffle", "unit", "cpu", "bf16", "elu", "sigmoid"]),
    st.dates(), st.datetimes(), st.times(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                      max_leaves=12)
TABLES = st.dictionaries(KEYS, VALUES, max_size=6)
CONFIGS = st.one_of(
    st.fixed_dictionaries({}, optional={"model": TABLES, "train": TABLES, "data": TABLES}),
    st.dictionaries(KEYS, VALUES, max_size=4),
)


def _build(make) -> RunConfig | None:
    try:
        config = make()
    except CnnscopeError as exc:
        assert "\n" not in str(exc), str(exc)
        event(f"refused ({type(exc).__name__})")
        return None
    assert isinstance(config, RunConfig)
    event("accepted")
    return config


def _round_trips(config: RunConfig) -> None:
    """A config that was accepted is saved and read back unchanged."""
    with tempfile.TemporaryDirectory() as folder:
        config.save(Path(folder) / "config.toml")
        assert RunConfig.from_dict(read_toml(Path(folder) / "config.toml", CnnscopeError)) == config


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(tables=CONFIGS)
def test_random_tables_build_a_config_or_a_cnnscope_error(tables):
    config = _build(lambda: RunConfig.from_dict(tables))
    if config is not None:
        _round_trips(config)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(tables=CONFIGS, train=st.none() | TABLES, data=st.none() | TABLES)
def test_random_toml_files_build_a_config_or_a_cnnscope_error(tables, train, data):
    try:
        text = tomli_w.dumps(tables)
    except (TypeError, ValueError):  # not expressible in TOML
        assume(False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text(text, encoding="utf-8")
        _build(lambda: (load_config(path), build_run_config(path, train=train, data=data))[1])


@given(text=st.text(max_size=200) | st.sampled_from(["[train]\nlr = nan\n", "[train]\nmomentum = inf\n",
                                                       "[model]\npreset = 1\n", "train = 1\n", "[data.x]\n"]))
def test_random_toml_text_loads_or_a_cnnscope_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text(text, encoding="utf-8")
        _build(lambda: build_run_config(path))


# --- a run's history.json and metrics.json, as the report reads them -------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=10)
NUMBERS = st.lists(st.floats(allow_nan=True) | st.integers(-5, 5), max_size=4)
HISTORY_KEYS = st.sampled_from(["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "val_source", "x"])
HISTORIES = JSON | st.dictionaries(HISTORY_KEYS, NUMBERS | JSON, max_size=8)
METRICS = JSON | st.dictionaries(st.sampled_from(["test_loss", "status", "epochs_completed", "train_seconds",
                                                  "images_per_second", "x"]), JSON, max_size=6)


@settings(max_examples=min(settings().max_examples, 300))  # each accepted history draws a figure
@given(history=HISTORIES, metrics=METRICS)
def test_random_history_and_metrics_are_read_or_a_run_error(history, metrics):
    from cnnscope.plots import curves_figure

    run = SimpleNamespace(path=Path("run"), history=json.loads(json.dumps(history)), metrics=metrics)
    for check in (check_history, check_metrics):
        try:
            check(run)
        except RunError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("run/")
            return
    if run.history.get("epoch"):  # what the report then does with them works
        curves_figure(run.history).canvas.draw()
    for key in ("test_loss", "train_seconds", "images_per_second"):
        if key in metrics:
            assert f"{metrics[key]:.4f}"


# --- the same through the CLI: one line, exit 2 ----------------------------------------------------------------
@pytest.mark.parametrize(("name", "content", "message"), [  # load_run or the report refuses them, before any work
    ("history.json", "[1, 2]", "expected a JSON object of per-epoch lists"),
    ("history.json", '{"epoch": [1, 2], "loss": [0.5]}', "'loss' h"),
    ("history.json", '{"epoch": "1"}', "'epoch' must be a list of numbers"),
    ("metrics.json", '"done"', "expected a JSON object"),
    ("metrics.json", '{"test_loss": "low"}', "'test_loss'"),
])
def test_cli_report_refuses_corrupt_run_files_in_one_line(trained_run, tmp_path, capsys, name, content, message):
    from cnnscope.cli import main

    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / name).write_text(content)
    code = main(["report", str(run), "--out", str(tmp_path / "r.html")])
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {run / name}: "), lines
    assert message in lines[0] and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("history", "metrics", "message"), [
    ([1, 2], {}, r"run/history.json: expected a JSON object of per-epoch lists, found a list; the file is corrupt"),
    ({"epoch": [1, 2], "loss": [1, 2], "accuracy": [0, 1], "val_loss": [0.1]}, {},
     r"run/history.json: 'val_loss' holds 1 values for 2 epochs"),
    ({"lr": [True]}, {}, r"run/history.json: 'lr' must be a list of numbers, found a list"),
    ({"val_source": 3}, {}, r"run/history.json: 'val_source' must be a string, found a number"),
    ({}, None, r"run/metrics.json: expected a JSON object, found null"),
    ({}, {"train_seconds": [1]}, r"run/metrics.json: 'train_seconds' must be a number, found a list"),
    ({}, {"status": False}, r"run/metrics.json: 'status' must be a string, found a boolean"),
])
def test_report_checks_name_the_file_and_the_key(history, metrics, message):
    run = SimpleNamespace(path=Path("run"), history=history, metrics=metrics)
    with pytest.raises(RunError, match=message):
        check_history(run)
        check_metrics(run)
