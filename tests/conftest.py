"""Shared fixtures: synthetic IDX datasets in the official layout and a tiny trained run."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from cnnscope.data.dataset import FILES

# Property-based tests: a small budget in the timed suite, a long one on demand (--hypothesis-profile=long).
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def budget(ci_examples: int) -> int:
    """Examples for a property test whose single example is slow: `ci_examples` in the timed suite, the profile's
    own count when a longer profile is loaded (--hypothesis-profile=long)."""
    return max(ci_examples, settings().max_examples) if settings().max_examples > 40 else ci_examples


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28×28 'digits': class k is a bright blob at one of 10 places, jittered, on noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.float32)
    for i, k in enumerate(labels):
        r, c = 4 + 10 * (k // 5), 2 + 5 * (k % 5)
        dr, dc = rng.integers(-1, 2, 2)
        images[i, r + dr:r + dr + 8, c + dc:c + dc + 5] = 255
    return images.astype(np.uint8), labels


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def make_data_dir(root: Path, n_train: int = 1200, n_test: int = 300) -> Path:
    for name in ("mnist", "fashion-mnist"):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        train_x, train_y = synthetic_images(n_train, 1)
        test_x, test_y = synthetic_images(n_test, 2)
        for key, arr in (("train_images", train_x), ("train_labels", train_y),
                         ("test_images", test_x), ("test_labels", test_y)):
            write_idx(folder / FILES[key], arr)
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A directory with mnist/ and fashion-mnist/ holding small synthetic IDX files."""
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    """Tests never depend on the caller's CNNSCOPE_DATA_DIR unless they set it."""
    monkeypatch.delenv("CNNSCOPE_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The shared real MNIST copy (../shared/data or $CNNSCOPE_REAL_DATA); tests skip without it."""
    candidates = [os.environ.get("CNNSCOPE_REAL_DATA"), os.environ.get("CNNSCOPE_DATA_DIR"),
                  str(Path(__file__).resolve().parents[1].parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mnist" / FILES["test_images"]).is_file():
            return Path(candidate)
    pytest.skip("real MNIST files not found (set CNNSCOPE_REAL_DATA)")


@pytest.fixture(scope="session")
def tiny_spec():
    from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec

    return ModelSpec(conv=(ConvSpec(6, pool=PoolSpec()), ConvSpec(12, pool=PoolSpec()), ConvSpec(16)),
                     dense=(DenseSpec(24),))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir, tiny_spec) -> Path:
    """A small model trained for a few epochs on the synthetic data (session-wide, read-only!)."""
    import cnnscope

    ds = cnnscope.load_dataset("mnist", data_dir=data_dir)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = cnnscope.TrainConfig(epochs=4, batch_size=32, optimizer="adam", lr=0.003, seed=0)
    run = cnnscope.train(tiny_spec, ds, config, out=out, progress=False)
    assert run.metrics["test_accuracy"] > 0.9, run.metrics
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`cnnscope ARGV` in-process: (exit code, stdout, stderr)."""
    from cnnscope.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The one `error:` line of a failed command (warnings may come first); no traceback, no usage block."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "usage:" not in err
    return lines[0]


def finite_readout(model, layer: str, x, m: int, eps: float = 1e-3):
    """(classes,) mean change of the logits when map m of `layer` rises by one everywhere, by finite difference:
    what a class read-out must equal."""
    import torch

    from cnnscope.inspect.activations import capture

    names = list(model.layers.keys())
    rest = [model.layers[n] for n in names[names.index(layer) + 1:]]

    def head(f):
        for module in rest:
            f = module(f)
        return f
    with torch.no_grad():
        features = capture(model, [layer], torch.as_tensor(x))[0][layer]
        bumped = features.clone()
        bumped[:, m] += eps
        return ((head(bumped) - head(features)) / eps).mean(0).numpy()


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true",
                     help="run the tests in reverse order (a check that no test depends on another's leftovers)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()
