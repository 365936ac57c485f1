"""Numbers of any size in every JSON/TOML file cnnscope reads (issue 21, item 1): a value or one CnnscopeError line.

A 5,000-digit integer used to stop `runs`, `serve` and `filters` with Python's "Exceeds the limit (4300 digits)"
ValueError and a traceback.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnscope.base.errors import CnnscopeError, RunError, SpecError
from cnnscope.base.fileio import MAX_INT_DIGITS, read_json, read_safetensors_header, read_toml
from cnnscope.model.spec import ModelSpec
from cnnscope.sweep.definition import read_study
from cnnscope.trainer.config import build_run_config, load_config
from conftest import one_line_error, run_cli
from test_catalog import copy_run

# integers of any size (up to 20,000 digits), floats far beyond float64, exponents of any size
NUMBERS = st.one_of(
    st.integers().map(str),
    st.builds(lambda sign, digit, n: sign + digit * n, st.sampled_from(["", "-"]), st.sampled_from("19"),
              st.integers(1, 20_000)),
    st.integers(1, 5_000).map(lambda n: "1" * n + ".5"),
    st.integers(-10**6, 10**6).map(lambda e: f"1e{e}"),
)
SLOW = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)


def _value_or_error(read, *args):
    """read(*args), or None after checking the CnnscopeError it raised is one line (anything else fails)."""
    try:
        return read(*args)
    except CnnscopeError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)[:300]
        return None


def _file(folder: str, name: str, text: str | bytes) -> Path:
    path = Path(folder) / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@SLOW
@given(number=NUMBERS)
def test_json_and_toml_readers_take_numbers_of_any_size(number):
    with tempfile.TemporaryDirectory() as folder:
        value = _value_or_error(read_json, _file(folder, "h.json", f'{{"epoch": [{number}], "x": {number}}}'),
                                RunError)
        if value is not None and "." not in number and "e" not in number:
            assert len(number.lstrip("-")) <= MAX_INT_DIGITS and value["x"] == int(number)
        _value_or_error(read_toml, _file(folder, "c.toml", f"[train]\nepochs = {number}\nlr = {number}\n"),
                        RunError)
        _value_or_error(read_study, _file(folder, "study.toml", f"[params]\nx = {number}\n[config]\n").parent)


@SLOW
@given(number=NUMBERS)
def test_safetensors_headers_take_numbers_of_any_size(number):
    raw = f'{{"w": {{"dtype": "F32", "shape": [{number}], "data_offsets": [0, {number}]}}}}'.encode()
    with tempfile.TemporaryDirectory() as folder:
        path = _file(folder, "model.safetensors", struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
        _value_or_error(read_safetensors_header, path, RunError)


@SLOW
@given(number=NUMBERS, suffix=st.sampled_from([".json", ".toml"]))
def test_model_specs_and_configs_take_numbers_of_any_size(number, suffix):
    with tempfile.TemporaryDirectory() as folder:
        if suffix == ".json":
            text = f'{{"conv": [{{"filters": {number}}}], "dense": [], "num_classes": {number}}}'
        else:
            text = f"[[conv]]\nfilters = {number}\n"
        _value_or_error(ModelSpec.load, _file(folder, "m" + suffix, text))
        config = _file(folder, "c.toml", f'[model]\npreset = "tiny"\n[train]\nepochs = {number}\n'
                                         f"batch_size = {number}\nlr = {number}\n")
        _value_or_error(load_config, config)
        _value_or_error(build_run_config, config)


@pytest.mark.parametrize("text", ["[", "1", "[1, 2]", '{"model": 3}', '{"conv": [{"filters": ' + "9" * 5000 + "}]}",
                                  "[" * 100_000])
def test_model_spec_json_is_one_spec_error(tmp_path, text):
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        ModelSpec.load(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


HUGE = "9" * 5000


@pytest.mark.parametrize(("name", "text"), [
    ("history.json", f'{{"epoch": [{HUGE}]}}'),
    ("metrics.json", f'{{"test_loss": {HUGE}}}'),
    ("preprocess.json", f'{{"kind": {HUGE}}}'),
    ("config.toml", f'[model]\npreset = "tiny"\n[train]\nepochs = {HUGE}\n'),
])
def test_a_huge_integer_in_a_run_is_one_line(trained_run, tmp_path, capsys, name, text):
    run = copy_run(trained_run, tmp_path / "runs" / "r")
    (run / name).write_text(text)
    code, out, err = run_cli(capsys, "filters", run, "--layer", "Conv2D_1", "--out", tmp_path / "f.png")
    line = one_line_error(err)
    assert code == 2 and str(run / name) in line and ("5,000 digits" in line or "4,300 digits" in line), line
    code, out, err = run_cli(capsys, "runs", tmp_path / "runs", "--json")
    assert code == 0 and "Traceback" not in err
    listed = json.loads(out)
    assert [e["name"] for e in listed["runs"]] == ["r"], listed


def test_a_huge_integer_in_the_weights_header_is_one_line(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "r")
    raw = f'{{"w": {{"dtype": "F32", "shape": [{HUGE}], "data_offsets": [0, 4]}}}}'.encode()
    (run / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    code, _, err = run_cli(capsys, "filters", run, "--layer", "Conv2D_1", "--out", tmp_path / "f.png")
    assert code == 2 and "5,000 digits" in one_line_error(err)


def test_the_dashboard_answers_a_huge_integer_with_json(trained_run, tmp_path, data_dir):
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

    from cnnscope.serve.dashboard import Dashboard, create_dashboard_app

    root = tmp_path / "runs"
    copy_run(trained_run, root / "ok")
    (copy_run(trained_run, root / "bad") / "preprocess.json").write_text(f'{{"kind": {HUGE}}}')
    (copy_run(trained_run, root / "bad2") / "history.json").write_text(f'{{"epoch": [{HUGE}]}}')
    board = Dashboard(root, data_dir, warm_up=False)
    try:
        with TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1",
                        raise_server_exceptions=False) as client:
            listing = client.get("/api/runs")
            assert listing.status_code == 200
            assert {e["name"] for e in listing.json()["runs"]} == {"ok", "bad", "bad2"}
            for name in ("bad", "bad2"):
                info = client.get(f"/runs/{name}/api/info")
                assert 400 <= info.status_code < 500 and "digits" in info.json()["error"], info.text
            assert client.get("/runs/ok/api/info").status_code == 200
    finally:
        board.close()
