"""cnnscope's optimizers against Keras 3's own steps (tests/fixtures/keras_optim, made by make_optim_fixtures.py).

A Keras CNN is imported from its .h5, trained 5 steps on the same batches with cnnscope's training step, and the
weights after every step are compared with Keras': relative distance ‖w_cnnscope − w_Keras‖ / ‖w_Keras − w₀‖ on
1,040 sampled coordinates (every layer), and the full ‖w − w₀‖ against the one Keras saved. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnscope.interop.keras.files import read_keras_file, read_weights
from cnnscope.interop.keras.importer import keras_shapes, load_keras_weights, translate
from cnnscope.model.network import build_model
from cnnscope.trainer.config import TrainConfig
from cnnscope.trainer.loop import Penalty, train_step
from cnnscope.trainer.optim import lr_at, make_optimizer

FIXTURES = Path(__file__).parent / "fixtures" / "keras_optim"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CASES = sorted(MANIFEST["cases"])
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def steps() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "steps.npz") as data:
        return {key: data[key] for key in data.files}


def imported(model_file: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The Keras model as cnnscope imports it, and where each of its parameters' values sits in Keras' flat
    vector (every layer's kernel then bias, Keras' layout): found by importing the coordinates themselves."""
    source = read_keras_file(FIXTURES / model_file)
    result = translate(source.config, model_file)
    model = build_model(result.spec, seed=0)
    shapes = keras_shapes(model, result.spec, result.bias_free, result.norms)
    load_keras_weights(model, result.spec, read_weights(source, shapes, model_file), result.bias_free, model_file)
    coordinates, start = {}, 0
    for layer, arrays in shapes.items():
        coordinates[layer] = []
        for _, shape in arrays:
            size = int(np.prod(shape))
            coordinates[layer].append(np.arange(start, start + size, dtype=np.float64).reshape(shape))
            start += size
    numbered = copy.deepcopy(model)
    load_keras_weights(numbered, result.spec, coordinates, result.bias_free, model_file)  # exact below 2^24
    position = torch.cat([p.detach().flatten() for p in numbered.parameters()]).round().long()
    assert sorted(position.tolist()) == list(range(start))
    return model, position


def replay(case: str, rules: str, steps: dict[str, np.ndarray]) -> list[np.ndarray]:
    """cnnscope's weights (Keras' flat layout, float64) at the start and after each step of `case`, with `rules`."""
    entry = MANIFEST["cases"][case]
    model, position = imported(entry["model"])
    model.train()

    def flat() -> np.ndarray:
        out = torch.empty(len(position), dtype=torch.float64)
        out[position] = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
        return out.numpy()

    config = TrainConfig(**entry["settings"], rules=rules)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum, config.nesterov,
                               config.weight_decay, config.rules)
    loop = SimpleNamespace(model=model, optimizer=optimizer, config=config, penalty=Penalty(model),
                           autocast=contextlib.nullcontext, totals_dtype=torch.float64)
    n, batch = MANIFEST["steps"], MANIFEST["batch"]
    x = torch.from_numpy(steps["x"].astype(np.float32) / np.float32(255.0)).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(steps["y"])
    out = [flat()]
    for step in range(n):
        lr = lr_at(config.schedule, config.lr, step, n, config.schedule_args)
        train_step(loop, x[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch], lr)
        out.append(flat())
    return out


def distances(case: str, rules: str, steps: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """Per step: the relative distance to Keras on the sampled coordinates, and the relative error of ‖w − w₀‖."""
    index = steps["index"]
    start, *ours = replay(case, rules, steps)
    relative, norm_error = [], []
    for t, weights in enumerate(ours):
        keras_delta = steps[case][t].astype(np.float64)
        relative.append(float(np.linalg.norm((weights - start)[index] - keras_delta) / np.linalg.norm(keras_delta)))
        keras_norm = steps[f"{case}_norm"][t]
        norm_error.append(float(abs(np.linalg.norm(weights - start) - keras_norm) / keras_norm))
    return relative, norm_error


@pytest.mark.parametrize("case", CASES)
def test_every_step_matches_keras(case, steps):
    relative, norm_error = distances(case, "keras", steps)
    assert max(relative) <= TOLERANCE, [f"{d:.2e}" for d in relative]
    assert max(norm_error) <= TOLERANCE, [f"{d:.2e}" for d in norm_error]


@pytest.mark.parametrize("case", ["rmsprop_series", "nadam", "sgd_momentum_power"])
def test_torch_rules_are_measurably_not_keras(case, steps):
    """The fixtures tell the rules apart where their maths differ (a check that the comparison can fail)."""
    relative, _ = distances(case, "torch", steps)
    assert max(relative) > 100 * TOLERANCE, relative


def test_fixtures_stay_small():
    assert sum(f.stat().st_size for f in FIXTURES.iterdir()) < 1_000_000
