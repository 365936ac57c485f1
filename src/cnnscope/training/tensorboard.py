"""TensorBoard, for people who already use it: a training callback that writes each epoch's scalars (loss, data
loss and accuracy for training and validation, learning rate) and, with a probe image, that image's activation
grids for every conv and pooling layer and the first conv layer's filters, through `torch.utils.tensorboard`.

TensorBoard is the optional extra `cnnscope[tensorboard]`, imported only when a logger is made:
`cnnscope.train(..., callbacks=[TensorBoardLogger("tb/run1", probe=12)])` or `cnnscope train --tensorboard DIR`.
Scalars use the epoch (1, 2, …) as their step; images too. The grids are the ones the report and the viewer draw
(`inspect.activation_grid`, coloured by `imaging`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.errors import ConfigError
from cnnscope.base.imaging import colorize, layout
from cnnscope.inspect.activations import activation_grid, capture, conv_layers, map_layers
from cnnscope.inspect.filters import conv_filters
from cnnscope.model.layers import CONV

log = logging.getLogger("cnnscope")

INSTALL = 'needs TensorBoard: pip install "cnnscope[tensorboard]"'
# tag, EpochLog field: "loss" is the data loss, as everywhere; the training objective (label smoothing, penalty)
# is "objective"; the validation loss with the penalty (no smoothing) is named so
SCALARS = (("loss/train", "data_loss"), ("loss/validation", "val_data_loss"), ("objective/train", "loss"),
           ("loss_with_penalty/validation", "val_loss"), ("accuracy/train", "accuracy"),
           ("accuracy/validation", "val_accuracy"), ("lr", "lr"))


def summary_writer_class(what: str = "--tensorboard") -> type:
    """torch.utils.tensorboard.SummaryWriter; ConfigError saying how to install the extra when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"{what} {INSTALL}") from None
    return SummaryWriter


def grid_image(maps: np.ndarray, cmap: str = "magma", symmetric: bool = False, min_cell: int = 28) -> np.ndarray:
    """Maps (n, h, w) as one RGB picture (H, W, 3) uint8: an about square grid, cells enlarged to `min_cell`."""
    maps = np.asarray(maps, np.float32)
    n, h, w = maps.shape
    cols = max(1, min(n, math.ceil(math.sqrt(n * h / w))))
    rgb, _, _ = colorize(activation_grid(maps, cols), cmap, symmetric=symmetric)
    return layout(rgb, math.ceil(n / cols), cols, min_cell, gap=2)


class TensorBoardLogger:
    """Training callback writing to a TensorBoard log directory every epoch (see the module's docstring).

    probe: index of the image (of `split`) whose activation grids and the first conv layer's filters are written
    too (default: scalars only). Picklable until its first epoch, so a sweep can hand it to worker processes.
    """

    def __init__(self, logdir: str | Path, probe: int | None = None, split: str = "test") -> None:
        summary_writer_class()  # a missing extra fails here, before any training
        if probe is not None and (isinstance(probe, bool) or not isinstance(probe, int) or probe < 0):
            raise ConfigError(f"--probe expects a test image index >= 0, received {probe!r}")
        self.logdir = Path(logdir)
        self.probe = probe
        self.split = split
        self._x: np.ndarray | None = None  # (1, C, H, W) preprocessed probe image
        self._writer: Any = None

    def check(self, spec: Any, dataset: Any) -> None:
        """ConfigError unless the probe image exists and the model has a conv layer; train() calls this first."""
        if self.probe is None:
            return
        x, _, _ = dataset.split(self.split)
        if self.probe >= len(x):
            raise ConfigError(f"--probe {self.probe} is out of range: the {self.split} set holds {len(x):,} images "
                              f"(0 to {len(x) - 1})")
        if not conv_layers_of(spec):
            raise ConfigError("--probe needs a model with at least one conv layer")
        self._x = np.array(x[self.probe:self.probe + 1], np.float32)

    def __call__(self, entry: Any) -> None:
        """Write this epoch (an EpochLog) to the log directory and flush it."""
        if self._writer is None:
            self._writer = summary_writer_class()(log_dir=str(self.logdir))
        step = int(entry.epoch)
        for tag, key in SCALARS:
            value = float(getattr(entry, key, math.nan))
            if math.isfinite(value):
                self._writer.add_scalar(tag, value, step)
        if self._x is not None:
            self._images(entry.model, step)
        self._writer.flush()
        if entry.epoch >= entry.epochs:
            self.close()

    def _images(self, model: Any, step: int) -> None:
        """The probe image's grid for every conv/pool layer and the first conv layer's filters."""
        import torch

        layers = map_layers(model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                device = next(model.parameters()).device
                outputs, _ = capture(model, layers, torch.from_numpy(self._x).to(device))
        finally:
            model.train(was_training)
        for name in layers:
            maps = outputs[name][0].float().cpu().numpy()
            self._writer.add_image(f"activations/{name}", grid_image(maps), step, dataformats="HWC")
        first = conv_layers(model)[0]
        kernels = conv_filters(model, first).kernels
        self._writer.add_image(f"filters/{first}", grid_image(kernels, "RdBu_r", symmetric=True), step,
                               dataformats="HWC")

    def close(self) -> None:
        """Flush and close the event file (a later epoch opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the open writer (a copy sent to another process opens its own)."""
        return {**self.__dict__, "_writer": None}


def conv_layers_of(spec: Any) -> list[str]:
    """The conv layer names of a model spec."""
    return spec.layer_names(CONV)
