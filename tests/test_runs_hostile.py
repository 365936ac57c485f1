"""Run directories someone sent you: every damaged or hostile file gives one RunError line, never a traceback."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnscope
from cnnscope.base.errors import CnnscopeError, RunError
from cnnscope.runs.layout import CONFIG, HISTORY, METRICS, PREPROCESS, STATE, STATE_META, WEIGHTS
from cnnscope.runs.load import MAX_CONFIG_BYTES, load_run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture(scope="module")
def small_ds(data_dir):
    return cnnscope.load_dataset("mnist", data_dir=data_dir, limit_train=100, limit_test=50)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, small_ds):
    """One epoch of a 2-layer model on 100 images, configured for 1 epoch (resume to 2 trains one more)."""
    spec = cnnscope.ModelSpec(conv=(cnnscope.ConvSpec(4, pool=cnnscope.PoolSpec()),), dense=(cnnscope.DenseSpec(8),))
    out = tmp_path_factory.mktemp("hostile") / "run"
    cnnscope.train(spec, small_ds, cnnscope.TrainConfig(epochs=1, batch_size=50, optimizer="adam", seed=0),
                   out=out, progress=False, plot=False)
    return out


@pytest.fixture()
def run_copy(small_run, tmp_path):
    return Path(shutil.copytree(small_run, tmp_path / "run"))


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# --- safetensors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "message"), [
    (b"", "its header length -1 does not fit the file's 0 bytes"),
    (struct.pack("<Q", 10**12) + b"{}", "its header length 1,000,000,000,000 does not fit the file's 10 bytes"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", r"its header is not JSON"),
    (_safetensors([1, 2]), "its header is not a JSON object"),
    (_safetensors({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "'w' has no valid dtype"),
    (_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "invalid shape"),
    (_safetensors({"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 4]}}, b"\0" * 4),
     "its data offsets do not match its shape and the file size"),
    (_safetensors({"__metadata__": {"epoch": 3}}), "its __metadata__ is not a table of strings"),
])
def test_safetensors_headers_are_checked_before_reading(run_copy, data, message):
    (run_copy / WEIGHTS).write_bytes(data)
    with pytest.raises(RunError, match="model.safetensors: not a valid safetensors file .*" + message):
        load_run(run_copy)


def test_weights_of_another_shape_dtype_or_name_are_named(run_copy):
    model = load_run(run_copy).model
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(iter(tensors))
    from safetensors.torch import save_file

    save_file({**tensors, name: tensors[name].double()}, str(run_copy / WEIGHTS))
    with pytest.raises(RunError, match=rf"{name} is F64 \[4, 1, 3, 3\] in the file, the spec needs F32 \[4, 1, 3, 3\]"):
        load_run(run_copy)
    save_file({**tensors, "extra": torch.zeros(2)}, str(run_copy / WEIGHTS))
    with pytest.raises(RunError, match=r"weights do not match the run's model spec \(unexpected extra\)"):
        load_run(run_copy)


def test_non_finite_weights_are_refused_unless_asked(run_copy):
    from safetensors.torch import save_file

    tensors = dict(load_run(run_copy).model.state_dict())
    name = "layers.Dense_2.bias"
    tensors[name] = tensors[name].clone()
    tensors[name][:3] = float("nan")
    save_file(tensors, str(run_copy / WEIGHTS))
    with pytest.raises(RunError, match=rf"model.safetensors: {name} holds 3 non-finite values \(NaN or ±inf\); "
                                       "the training diverged or the file was altered"):
        load_run(run_copy)
    run = load_run(run_copy, allow_nonfinite=True)
    assert torch.isnan(run.model.state_dict()[name]).sum() == 3


def test_a_huge_spec_is_refused_before_anything_is_allocated(run_copy):
    text = (run_copy / CONFIG).read_text()
    (run_copy / CONFIG).write_text(text.replace("units = 8", "units = 2000000000"))
    with pytest.raises(RunError, match="config.toml"):
        load_run(run_copy)


# --- JSON and TOML files -------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "changes", "message"), [
    (HISTORY, {"loss": "low"}, "history.json: 'loss' must be a list of numbers"),
    (HISTORY, {"epoch": [2]}, r"history.json: 'epoch' must count 1, 2, … up to the last completed epoch"),
    (HISTORY, {"accuracy": [0.5, 0.6]}, "history.json: 'accuracy' has 2 values for 1 epochs"),
    (METRICS, {"test_accuracy": "high"}, "metrics.json: 'test_accuracy' has the wrong type"),
    (PREPROCESS, {"shape": [2, 2], "mean": [0] * 4, "scale": [1] * 4},
     r"preprocess.json: statistics of shape \[2, 2\] do not fit the model's input \[1, 28, 28\]"),
    (PREPROCESS, {"kind": 3}, "preprocess.json: unknown preprocess 3"),
])
def test_json_files_of_the_wrong_type(run_copy, name, changes, message):
    _edit_json(run_copy / name, **changes)
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


@pytest.mark.parametrize("name", [HISTORY, METRICS, PREPROCESS])
def test_json_files_that_are_not_objects(run_copy, name):
    (run_copy / name).write_text("[1, 2]")
    with pytest.raises(RunError, match=f"{name}: expected a JSON object"):
        load_run(run_copy)


def test_config_toml_not_toml_or_too_large(run_copy):
    (run_copy / CONFIG).write_bytes(b"\xff\xfe = [")
    with pytest.raises(RunError, match="config.toml: not valid TOML"):
        load_run(run_copy)
    (run_copy / CONFIG).write_text("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(RunError, match=r"config.toml: 1,048,577 bytes is too large for this file "
                                       r"\(at most 1,048,576\)"):
        load_run(run_copy)


# --- training state ------------------------------------------------------------------------------
def test_state_files_of_the_wrong_type(run_copy, small_ds):
    _edit_json(run_copy / STATE_META, step="2")
    with pytest.raises(RunError, match="state.json: expected an object with integer 'step' and 'epoch' >= 0"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)
    _edit_json(run_copy / STATE_META, step=3)
    with pytest.raises(RunError, match=r"state.json: step 3 does not match epoch 1 × 2 steps per epoch"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)


def test_optimizer_state_of_the_wrong_shape_or_kind(run_copy, small_ds):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(run_copy / STATE))
    save_file({**tensors, "state.0.exp_avg": torch.zeros(5)}, str(run_copy / STATE), {"epoch": "1"})
    with pytest.raises(RunError, match=r"state.safetensors: state.0.exp_avg is F32 \[5\]; the model's parameter 0 "
                                       r"needs a float tensor \[4, 1, 3, 3\] or \[\]"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)
    save_file({k: v for k, v in tensors.items() if k != "state.0.exp_avg"}, str(run_copy / STATE),
              {"epoch": "1"})
    with pytest.raises(RunError, match=r"parameter 0 has optimizer state \['exp_avg_sq', 'step'\], this run's "
                                       r"optimizer keeps \['exp_avg', 'exp_avg_sq', 'step'\]"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)
    save_file({**tensors, "rng.torch": torch.zeros(3, dtype=torch.uint8)}, str(run_copy / STATE), {"epoch": "1"})
    with pytest.raises(RunError, match=r"rng.torch must be U8 \[5056\], the file holds U8 \[3\]"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)


def test_files_from_different_epochs_are_caught(run_copy, small_ds):
    _edit_json(run_copy / STATE_META, epoch=2, step=4)
    with pytest.raises(RunError, match=r"its files come from different epochs \(state.json: 2, history.json: 1, "
                                       r"model.safetensors: 1, state.safetensors: 1\); a save was cut off"):
        cnnscope.resume(run_copy, epochs=3, dataset=small_ds)


# --- fuzzing: mutated files never give anything but a CnnscopeError -------------------------------
FILES = (WEIGHTS, STATE, STATE_META, CONFIG, PREPROCESS, HISTORY, METRICS)

byte_mutation = st.one_of(
    st.binary(max_size=200).map(lambda b: ("replace", b)),
    st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16)).map(lambda t: ("overwrite", *t)),
    st.floats(0, 1).map(lambda f: ("truncate", f)),
)
def _containers(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           _containers, max_leaves=10)
toml_values = st.recursive(st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
                           | st.text(max_size=10), _containers, max_leaves=10)


def _mutate_bytes(path: Path, mutation: tuple) -> None:
    data = path.read_bytes()
    if mutation[0] == "replace":
        data = mutation[1]
    elif mutation[0] == "overwrite":
        at = int(mutation[1] * len(data))
        data = data[:at] + mutation[2] + data[at + len(mutation[2]):]
    else:
        data = data[:int(mutation[1] * len(data))]
    path.write_bytes(data)


def _mutate_value(path: Path, pick: int, value) -> None:
    """Replace one entry (a key of a table, for TOML) by `value`."""
    import tomli_w

    is_toml = path.suffix == ".toml"
    data = tomllib.loads(path.read_text()) if is_toml else json.loads(path.read_text())
    table = data
    if is_toml:
        table = data[sorted(data)[pick % len(data)]]
    keys = sorted(table)
    table[keys[pick % len(keys)] if keys else "x"] = value
    path.write_text(tomli_w.dumps(data) if is_toml else json.dumps(data))


def _load_and_resume(run_dir: Path, ds) -> None:
    """What a user may do with a run they received: load it, resume it. Only CnnscopeError may come out."""
    try:
        load_run(run_dir)
    except CnnscopeError:
        pass
    try:
        cnnscope.resume(run_dir, epochs=2, dataset=ds, progress=False, plot=False)
    except CnnscopeError:
        pass


fuzz = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)


@fuzz
@given(name=st.sampled_from(FILES), mutation=byte_mutation)
def test_fuzz_mutated_bytes(small_run, small_ds, tmp_path_factory, name, mutation):
    run_dir = Path(shutil.copytree(small_run, tmp_path_factory.mktemp("fuzz") / "run"))
    _mutate_bytes(run_dir / name, mutation)
    _load_and_resume(run_dir, small_ds)


@fuzz
@given(name=st.sampled_from((STATE_META, PREPROCESS, HISTORY, METRICS)),
       pick=st.integers(0, 50), value=json_values)
def test_fuzz_json_values_of_any_type(small_run, small_ds, tmp_path_factory, name, pick, value):
    run_dir = Path(shutil.copytree(small_run, tmp_path_factory.mktemp("fuzz") / "run"))
    _mutate_value(run_dir / name, pick, value)
    _load_and_resume(run_dir, small_ds)


@fuzz
@given(pick=st.integers(0, 50), value=toml_values)
def test_fuzz_config_values_of_any_type(small_run, small_ds, tmp_path_factory, pick, value):
    run_dir = Path(shutil.copytree(small_run, tmp_path_factory.mktemp("fuzz") / "run"))
    _mutate_value(run_dir / CONFIG, pick, value)
    _load_and_resume(run_dir, small_ds)


def test_unicode_digits_in_state_names_and_epoch_marks(run_copy, small_ds):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(run_copy / STATE))
    save_file({**tensors, "state.².exp_avg": torch.zeros(1)}, str(run_copy / STATE), {"epoch": "1"})
    with pytest.raises(RunError, match=r"unexpected entry 'state.².exp_avg'; expected state.<parameter 0-5>.<name>"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)
    save_file(tensors, str(run_copy / STATE), {"epoch": "²"})
    with pytest.raises(RunError, match=r"state.safetensors: -1\); a save was cut off"):
        cnnscope.resume(run_copy, epochs=2, dataset=small_ds)


@pytest.mark.parametrize("rules", ["torch", "keras"])
def test_a_valid_but_overflowing_setting_stops_training_with_one_line(run_copy, small_ds, rules, caplog):
    text = (run_copy / CONFIG).read_text()
    assert 'rules = "keras"' in text
    (run_copy / CONFIG).write_text(text.replace("lr = 0.001", "lr = 3.402823466385289e+38")
                                        .replace('rules = "keras"', f'rules = "{rules}"'))
    if rules == "torch":  # torch's rules pass lr as a float32 scalar: the step itself refuses
        with pytest.raises(RunError, match=r"training stopped at step 2 \(value cannot be converted to type float "
                                           r"without overflow\); .* keeps its last completed epoch \(1\)"):
            cnnscope.resume(run_copy, epochs=2, dataset=small_ds, progress=False, plot=False)
        return
    # Keras' rules multiply by lr inside tensors: the weights overflow to NaN, and the run says it diverged
    cnnscope.resume(run_copy, epochs=2, dataset=small_ds, progress=False, plot=False)
    assert "the training diverged" in caplog.text
