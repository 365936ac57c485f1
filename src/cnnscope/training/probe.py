"""Watching a network learn: a training callback that stores, every epoch, the first conv layer's filters and the
activation maps of one test image, in the run's probe.safetensors (written and read by cnnscope.runs.probe)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnscope.base.errors import CnnscopeError, ConfigError, RunError
from cnnscope.base.fileio import read_json
from cnnscope.data.dataset import Preprocessor, load_dataset
from cnnscope.inspect.activations import capture
from cnnscope.model.layers import CONV
from cnnscope.model.network import build_model
from cnnscope.runs.checkpoint import load_weights
from cnnscope.runs.layout import INITIAL, PREPROCESS, PROBE
from cnnscope.runs.load import read_run_config
from cnnscope.runs.probe import ProbeData, read_probe, write_probe

log = logging.getLogger("cnnscope")


class Probe:
    """Training callback: `cnnscope.train(..., callbacks=[Probe(12)])` records test image 12 every epoch.

    The image is read from the run's own data (its saved config and preprocessing) at the first epoch, so the
    callback needs nothing but the index. Epoch 0 (the initial weights, from initial.safetensors) is recorded too.
    """

    def __init__(self, index: int, split: str = "test") -> None:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(f"--probe expects a test image index >= 0, received {index!r}")
        self.index = index
        self.split = split
        self._x: torch.Tensor | None = None  # (1, C, H, W) preprocessed
        self._data: ProbeData | None = None
        self._sample: tuple[np.ndarray, int, np.ndarray] | None = None  # (1, C, H, W) input, label, raw pixels
        self._disabled = False

    def check(self, spec: Any, dataset: Any) -> None:
        """ConfigError unless the image exists in `dataset` and `spec` has a conv layer; train() calls this first.

        Keeps the image, so recording needs no second read of the data.
        """
        x, labels, raw = dataset.split(self.split)
        if self.index >= len(x):
            raise ConfigError(f"--probe {self.index} is out of range: the {self.split} set holds {len(x):,} "
                              f"images (0 to {len(x) - 1})")
        if not spec.layer_names(CONV):
            raise ConfigError("--probe needs a model with at least one conv layer")
        self._sample = (np.array(x[self.index:self.index + 1]), int(labels[self.index]), np.array(raw[self.index]))

    def _prepare(self, run_dir: Path) -> None:
        config = read_run_config(run_dir)
        if self._sample is None:  # called outside train(): read the run's own data once
            preprocessor = Preprocessor.from_dict(read_json(run_dir / PREPROCESS, RunError))
            self.check(config.model, load_dataset(config=config.data, preprocessor=preprocessor))
        assert self._sample is not None
        x, label, raw = self._sample
        self._x = torch.as_tensor(x)
        layers = config.model.map_layer_names()
        convs = config.model.layer_names(CONV)
        self._data = ProbeData(self.index, self.split, label, raw, convs[0], layers)
        previous = read_probe(run_dir) if (run_dir / PROBE).is_file() else None
        if previous is not None and previous.index == self.index and previous.split == self.split:
            self._data.epochs = list(previous.epochs)  # resuming: keep what earlier sessions recorded
            self._data.filters = dict(previous.filters)
            self._data.maps = dict(previous.maps)

    def _record(self, epoch: int, model: torch.nn.Module) -> None:
        data = self._data
        assert data is not None and self._x is not None
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            with torch.no_grad():
                outputs, _ = capture(model, data.layers, self._x.to(device))
        finally:
            model.train(was_training)
        data.maps[epoch] = {name: outputs[name][0].float().cpu().numpy() for name in data.layers}
        data.filters[epoch] = model.layers[data.filters_layer].conv.weight.detach().float().cpu().numpy().copy()
        if epoch not in data.epochs:
            data.epochs = sorted([*data.epochs, epoch])

    def __call__(self, entry: Any) -> None:
        """Record this epoch (an EpochLog with .epoch, .model, .run_dir) and rewrite probe.safetensors."""
        run_dir = Path(entry.run_dir)
        if self._disabled:
            return
        if self._data is None:
            try:
                self._prepare(run_dir)
            except CnnscopeError as exc:  # a bad index must not stop the training it rides along with
                log.warning("probe disabled: %s", exc)
                self._disabled = True
                return
            data = self._data
            assert data is not None
            # Epochs at or after this one belong to an older, overwritten history.
            for epoch in [e for e in data.epochs if e >= entry.epoch]:
                data.epochs.remove(epoch)
                data.filters.pop(epoch, None)
                data.maps.pop(epoch, None)
            if entry.epoch == 1 and (run_dir / INITIAL).is_file():
                self._record(0, _initial_model(run_dir))
        self._record(entry.epoch, entry.model)
        try:
            write_probe(run_dir, self._data)
        except OSError as exc:  # disk full: the training's own checkpoint matters more than the probe
            log.warning("probe disabled: %s could not be written (%s)", run_dir / PROBE, exc.strerror or exc)
            self._disabled = True


def _initial_model(run_dir: Path) -> torch.nn.Module:
    model = build_model(read_run_config(run_dir).model)
    load_weights(run_dir / INITIAL, model)
    return model.eval()
