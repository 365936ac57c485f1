"""Receptive-field geometry, per axis (height, width): the one place where cnnscope works out output sizes,
`same` padding and where each cell of a conv/pool layer looks on the input.

Coordinates are input pixel indices, pixel 0's centre being 0. A window layer (conv or pool) with kernel k,
stride s and p zeros before the input maps its cell i onto its input cells i·s − p … i·s − p + k − 1, so through
the stack, per axis:

    receptive_field' = receptive_field + (k − 1)·jump      (input pixels one cell sees)
    start'           = start + ((k − 1)/2 − p)·jump        (input coordinate of the centre of cell 0)
    jump'            = jump·s                              (input pixels between neighbouring cells)

Everything is read from `ModelSpec.layers()` (`LayerInfo.geometry`) or `ModelSpec.geometry(name)`; nothing
else in cnnscope computes geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]  # ((top, bottom), (left, right)): zeros added around the input

NO_PADDING: Padding = ((0, 0), (0, 0))


def same_padding(size: int, kernel: int, stride: int) -> Pair:
    """TensorFlow's `same` padding along one axis: (before, after) zeros, the odd one after (output ceil(n/s))."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def window_padding(input_hw: Pair, kernel: Pair, stride: Pair, padding: str) -> Padding:
    """((top, bottom), (left, right)) zeros a conv or pool with this padding ("valid" or "same") adds."""
    if padding == "valid":
        return NO_PADDING
    return (same_padding(input_hw[0], kernel[0], stride[0]), same_padding(input_hw[1], kernel[1], stride[1]))


def _number(value: float) -> int | float:
    """An int where the value is whole (1.0 -> 1), else the float (1.5): tidy JSON."""
    return int(value) if float(value).is_integer() else float(value)


@dataclass(frozen=True)
class Geometry:
    """Where the cells of one conv/pool layer look on the input, per axis (height, width).

    Cell (r, c) is centred on input point (start[0] + r·jump[0], start[1] + c·jump[1]) and sees the
    receptive_field[0] × receptive_field[1] input pixels around it; its top-left pixel is offset + (r, c)·jump,
    where `offset` is negative when `same` padding puts zeros before the image. `input_hw` is the image's size,
    `output_hw` the layer's map size.
    """

    receptive_field: Pair
    jump: Pair
    start: tuple[float, float]
    input_hw: Pair
    output_hw: Pair = field(default=(0, 0))

    @classmethod
    def of_input(cls, input_hw: Pair) -> Geometry:
        """The input image itself: every pixel sees itself."""
        hw = (int(input_hw[0]), int(input_hw[1]))
        return cls((1, 1), (1, 1), (0.0, 0.0), hw, hw)

    def then(self, kernel: Pair, stride: Pair, padding: Padding = NO_PADDING) -> Geometry:
        """The geometry of a window layer (kernel, stride, ((top, bottom), (left, right)) zeros) on this layer."""
        rf, jump, start, out = [], [], [], []
        for axis in (0, 1):
            k, s, (before, after) = kernel[axis], stride[axis], padding[axis]
            rf.append(self.receptive_field[axis] + (k - 1) * self.jump[axis])
            start.append(self.start[axis] + ((k - 1) / 2 - before) * self.jump[axis])
            jump.append(self.jump[axis] * s)
            out.append(max((self.output_hw[axis] + before + after - k) // s + 1, 0))  # floor mode, as torch
        return Geometry((rf[0], rf[1]), (jump[0], jump[1]), (start[0], start[1]), self.input_hw, (out[0], out[1]))

    @property
    def offset(self) -> Pair:
        """(top, left) input pixel of cell (0, 0)'s field, before clipping to the image (negative under padding)."""
        return (int(self.start[0] - (self.receptive_field[0] - 1) / 2),
                int(self.start[1] - (self.receptive_field[1] - 1) / 2))

    def centre(self, row: float, col: float) -> tuple[float, float]:
        """Input coordinate (y, x) of the centre of cell (row, col)'s field."""
        return (self.start[0] + row * self.jump[0], self.start[1] + col * self.jump[1])

    def box(self, row: int, col: int, clip: bool = True) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) pixels cell (row, col) sees, bottom/right exclusive, clipped to the input."""
        top, left = self.offset[0] + row * self.jump[0], self.offset[1] + col * self.jump[1]
        bottom, right = top + self.receptive_field[0], left + self.receptive_field[1]
        if clip:
            h, w = self.input_hw
            top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        return (int(top), int(left), int(bottom), int(right))

    def to_dict(self) -> dict[str, Any]:
        """{"receptive_field": [h, w], "jump": [h, w], "start": [y, x], "offset": [top, left]} (JSON-ready)."""
        return {"receptive_field": list(self.receptive_field), "jump": list(self.jump),
                "start": [_number(v) for v in self.start], "offset": list(self.offset)}
