"""Receptive-field geometry (cnnscope.model.geometry through ModelSpec.layers()) against brute force: the input
support of one output cell's gradient, on random specs with rectangular kernels, strides, `same` padding and
average pools."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnscope.base.errors import SpecError
from cnnscope.inspect import capture
from cnnscope.model.geometry import Geometry, same_padding, window_padding
from cnnscope.model.network import build_model
from cnnscope.model.spec import ConvSpec, ModelSpec, PoolSpec
from conftest import budget

pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))
strides = st.tuples(st.integers(1, 3), st.integers(1, 3))
pools = st.none() | st.builds(lambda size, stride: PoolSpec("average", size, stride),
                              st.tuples(st.integers(1, 3), st.integers(1, 3)), strides)
convs = st.builds(lambda kernel, stride, padding, pool: ConvSpec(1, kernel, stride, padding, "linear", pool),
                  pairs, strides, st.sampled_from(["valid", "same"]), pools)


def _spec(layers: list[ConvSpec], hw: tuple[int, int]) -> ModelSpec:
    try:
        return ModelSpec(conv=tuple(layers), input_shape=(1, *hw), num_classes=2)
    except SpecError:  # a layer larger than its input: not a spec to test
        assume(False)
        raise


def _support(model, layer: str, row: int, col: int, hw: tuple[int, int]) -> torch.Tensor:
    """Which input pixels the gradient of cell (row, col) of map 0 reaches: (H, W) bool."""
    x = torch.zeros(1, 1, *hw, dtype=torch.float64, requires_grad=True)
    outputs, _ = capture(model, [layer], x, stop_early=True)
    (grad,) = torch.autograd.grad(outputs[layer][0, 0, row, col], x)
    return grad[0, 0] != 0


def _check_axis(reached: torch.Tensor, first: int, last: int, centre: float, size: int) -> None:
    """`reached` (pixels one cell sees along an axis) against the unclipped field first..last (inclusive)."""
    rows = torch.nonzero(reached).ravel().tolist()
    assert rows, "the cell sees no pixel"
    assert first <= rows[0] and rows[-1] <= last  # nothing outside the field
    if first >= 0:
        assert rows[0] == first  # exact wherever the field is not clipped
    else:
        assert rows[0] == 0
    if last < size:
        assert rows[-1] == last
    assert centre == (first + last) / 2


@settings(max_examples=budget(25))
@given(layers=st.lists(convs, min_size=1, max_size=3), hw=st.tuples(st.integers(6, 20), st.integers(6, 20)),
       data=st.data())
def test_geometry_is_the_support_of_a_cells_gradient(layers, hw, data):
    spec = _spec(layers, hw)
    model = build_model(spec, seed=0).double().eval()
    x = torch.zeros(1, 1, *hw, dtype=torch.float64)
    outputs, _ = capture(model, spec.map_layer_names(), x)
    for info in spec.layers():
        if not info.has_maps:
            continue
        geometry = info.geometry
        assert tuple(outputs[info.name].shape[2:]) == info.output_shape[1:] == geometry.output_hw
        row = data.draw(st.integers(0, geometry.output_hw[0] - 1), label="row")
        col = data.draw(st.integers(0, geometry.output_hw[1] - 1), label="col")
        support = _support(model, info.name, row, col, hw)
        top, left, bottom, right = geometry.box(row, col, clip=False)
        cy, cx = geometry.centre(row, col)
        _check_axis(support.any(1), top, bottom - 1, cy, hw[0])
        _check_axis(support.any(0), left, right - 1, cx, hw[1])
        ctop, cleft, cbottom, cright = geometry.box(row, col)
        assert not support[:ctop].any() and not support[cbottom:].any()
        assert not support[:, :cleft].any() and not support[:, cright:].any()


def test_same_padding_is_tensorflows():
    assert same_padding(28, 3, 1) == (1, 1)
    assert same_padding(28, 4, 1) == (1, 2)  # the odd zero goes after
    assert same_padding(14, 3, 2) == (0, 1)
    assert same_padding(5, 1, 3) == (0, 0)
    assert window_padding((28, 14), (3, 3), (1, 2), "same") == ((1, 1), (0, 1))
    assert window_padding((28, 14), (3, 3), (1, 2), "valid") == ((0, 0), (0, 0))


def test_model_pads_as_the_spec_says():
    spec = ModelSpec(conv=(ConvSpec(2, kernel=(4, 3), stride=(1, 2), padding="same"),), input_shape=(1, 9, 14))
    pad = build_model(spec, seed=0).layer("Conv2D_1").pad.padding  # (left, right, top, bottom)
    (top, bottom), (left, right) = spec.layer("Conv2D_1").padding
    assert pad == (left, right, top, bottom) == (0, 1, 1, 2)


def test_geometry_steps_by_hand():
    g = Geometry.of_input((28, 20)).then((3, 5), (1, 1))
    assert (g.receptive_field, g.jump, g.start, g.offset, g.output_hw) == ((3, 5), (1, 1), (1, 2), (0, 0), (26, 16))
    p = g.then((2, 2), (2, 2))
    assert (p.receptive_field, p.jump, p.start, p.offset, p.output_hw) == ((4, 6), (2, 2), (1.5, 2.5), (0, 0),
                                                                           (13, 8))
    s = Geometry.of_input((28, 28)).then((3, 3), (1, 1), ((1, 1), (1, 1)))
    assert (s.start, s.offset, s.output_hw) == ((0, 0), (-1, -1), (28, 28))
    assert s.box(0, 0) == (0, 0, 2, 2) and s.box(0, 0, clip=False) == (-1, -1, 2, 2)
    assert p.to_dict() == {"receptive_field": [4, 6], "jump": [2, 2], "start": [1.5, 2.5], "offset": [0, 0]}


@pytest.mark.parametrize("name", ["Conv2D_1", "Max_Pool_1", "Conv2D_2"])
def test_geometry_of_a_layer_is_its_layer_infos(name):
    spec = ModelSpec(conv=(ConvSpec(4, pool=PoolSpec()), ConvSpec(4)))
    assert spec.geometry(name) is not None and spec.geometry(name) == spec.layer(name).geometry
