"""Every public `cnnscope.inspect` function leaves what it is given as it was (issue 8 point 7): tensors and arrays
(values, requires_grad, dtype, device, strides), the model's mode, its parameters (values, requires_grad, grad) and
the hooks on every module. The list of functions is `cnnscope.inspect.__all__`: a new function without a call
recipe below fails `test_every_public_function_has_a_recipe`."""

from __future__ import annotations

import inspect as pyinspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import cnnscope
import cnnscope.inspect as ci
from cnnscope.model.network import build_model

FUNCTIONS = sorted(n for n in ci.__all__ if callable(getattr(ci, n)) and not pyinspect.isclass(getattr(ci, n)))
NOT_FUNCTIONS = {"DEFAULT_METHOD", "METHODS"}  # data; the METHODS entries are called through `attribute`

RECIPES = {  # name -> (ctx) -> (args, kwargs)
    "activations": lambda c: ((c.model, "Conv2D_2", c.x), {}),
    "layer_output_shape": lambda c: ((c.model, "Conv2D_2"), {}),
    "activation_grid": lambda c: ((c.maps,), {"cols": 3, "scale": True}),
    "as_maps": lambda c: ((c.maps,), {}),
    "capture": lambda c: ((c.model, ["Conv2D_1", "Conv2D_3"], c.x), {}),
    "conv_filters": lambda c: ((c.model, "Conv2D_2"), {}),
    "conv_layers": lambda c: ((c.model,), {}),
    "display_maps": lambda c: ((c.maps,), {"norm": "map"}),
    "layer_display": lambda c: ((c.maps,), {"clip": 95}),
    "overview_displays": lambda c: (({"A": c.maps, "B": -c.maps},), {}),
    "map_layers": lambda c: ((c.model,), {}),
    "standardize_maps": lambda c: ((c.maps,), {}),
    "input_bounds": lambda c: ((c.xn,), {}),
    "map_statistics": lambda c: ((c.model, "Conv2D_2", c.xn), {"maps": "0:2"}),
    "maximize_activation": lambda c: ((c.model, "Conv2D_1"), {"maps": "0", "steps": 2, "restarts": 1}),
    "maximize_activation_result": lambda c: ((c.model, "Conv2D_1"), {"maps": [1], "steps": 2, "restarts": 2}),
    "parse_maps": lambda c: (("0:2,5", 8), {}),
    "attribute": lambda c: ((c.model, c.x, "integrated-gradients"), {"baseline": c.blank, "steps": 4}),
    "deeplift": lambda c: ((c.model, c.x), {"baseline": c.blank}),
    "deletion_score": lambda c: ((c.model, c.x, c.heat), {"raw": c.raws, "blank": c.blank, "random_draws": 1,
                                                           "fractions": (0, 0.1, 0.3)}),
    "deletion_scores": lambda c: ((c.model, c.x, {"a": c.heat, "b": c.heat}), {"raw": c.raws, "blank": c.blank,
                                                                               "fractions": (0, 0.2)}),
    "brightness_map": lambda c: ((c.raws,), {"background": 10}),
    "curve_area": lambda c: (((0, 0.1, 0.2, 0.3, 0.4, 0.5), c.values), {}),
    "get_method": lambda c: (("gradcam",), {}),
    "grad_cam": lambda c: ((c.model, c.x), {}),
    "guided_backprop": lambda c: ((c.model, c.x), {}),
    "guided_grad_cam": lambda c: ((c.model, c.xn), {"layer": "Conv2D_2"}),
    "input_x_gradient": lambda c: ((c.model, c.x), {}),
    "integrated_gradients": lambda c: ((c.model, c.x), {"steps": 4, "baseline": c.blank}),
    "last_conv_layer": lambda c: ((c.model,), {}),
    "occlusion": lambda c: ((c.model, c.x), {"window": 14, "stride": 14, "baseline": c.blank}),
    "saliency": lambda c: ((c.model, c.x), {}),
    "seen_pixels": lambda c: ((c.model,), {}),
    "smoothgrad": lambda c: ((c.model, c.x), {"samples": 2}),
    "activation_correlation": lambda c: ((c.model, c.model_b, "Conv2D_1", c.xn), {}),
    "class_profile": lambda c: ((c.model, "Conv2D_2", c.xn, c.labels), {}),
    "compare_runs": lambda c: ((c.model, c.model_b, "Conv2D_2", c.xn), {}),
    "field_geometry": lambda c: ((c.model.spec, "Conv2D_3"), {}),
    "kernel_correlation": lambda c: ((c.model, c.model_b, "Conv2D_1"), {}),
    "linear_assignment": lambda c: ((c.cost,), {}),
    "match_maps": lambda c: ((c.corr,), {}),
    "check_runs": lambda c: (([c.model, c.model_b], ["a", "b"], "Conv2D_2"), {}),
    "compare_many": lambda c: (([c.model, c.model_b, c.model], ["Conv2D_1", "Conv2D_2"], [c.xn, c.xn, c.xn]),
                               {"batch_size": 3}),
    "many_correlations": lambda c: (([c.model, c.model_b], ["Conv2D_2"], [c.xn, c.xn]), {"batch_size": 3}),
    "misclassified": lambda c: ((c.model, c.xn, c.labels), {}),
    "top_images": lambda c: ((c.model, "Conv2D_2", 1, c.xn), {"k": 2}),
    "class_means": lambda c: ((c.values, c.labels, 10), {}),
    "class_readout": lambda c: ((c.model, "Conv2D_3", c.xn), {"batch_size": 3}),
    "layer_means": lambda c: ((c.model, ["Conv2D_1", "Conv2D_3"], c.xn), {"batch_size": 3}),
    "map_peak_batches": lambda c: ((c.model, ["Conv2D_2"], c.xn), {"batch_size": 3}),  # a generator: run to its end
    "map_peaks": lambda c: ((c.model, ["Conv2D_1", "Conv2D_2"], c.xn), {"batch_size": 3}),
    "mistakes": lambda c: ((c.probs, c.labels), {}),
    "rank_images": lambda c: ((c.values[:, 0], 2), {}),
    "readout_batches": lambda c: ((c.model, "Conv2D_3", c.xn), {"batch_size": 3}),  # a generator: run to its end
    "class_profile_dead": lambda c: ((c.model, "Conv2D_2", c.xn, c.labels), {}),
    "dead_maps": lambda c: ((c.values[0],), {}),
    "layer_summary": lambda c: ((c.model, ["Conv2D_1", "Max_Pool_2"], c.xn), {"batch_size": 3}),
    "classify_by_patterns": lambda c: ((c.model, c.xn, c.labels, c.xn, c.labels),
                                       {"layers": ["input", "Conv2D_1"], "readout": ci.Readout(epochs=1),
                                        "max_features": 300, "batch_size": 3}),
}


def _strided(raw: np.ndarray) -> torch.Tensor:
    """A non-contiguous view (every other column of a wider tensor): strides a function must not change."""
    wide = torch.zeros(*raw.shape[:3], raw.shape[3] * 2)
    wide[..., ::2] = torch.from_numpy(raw)
    return wide[..., ::2]


@pytest.fixture(scope="module")
def ctx(trained_run, data_dir, tmp_path_factory):
    from PIL import Image

    run = cnnscope.load_run(trained_run)
    rng = np.random.default_rng(0)
    raw = np.asarray(run.dataset(data_dir).test_x[:4], np.float32)
    grey = (rng.random((28, 28)) * 255).astype(np.uint8)
    png = tmp_path_factory.mktemp("pure") / "digit.png"
    Image.fromarray(grey).save(png)
    return SimpleNamespace(
        run=run, model=run.model, model_b=build_model(run.model.spec, seed=1), data_dir=data_dir, png=png,
        x=_strided(raw),
        xn=np.asfortranarray(raw), labels=np.array([0, 1, 2, 3]), grey=grey,
        maps=np.asfortranarray(rng.normal(size=(5, 4, 4)).astype(np.float32)),
        blank=run.preprocessor(np.zeros((1, 28, 28), np.uint8))[0],
        heat=np.asfortranarray(rng.random((4, 28, 28)).astype(np.float32)),
        cost=rng.random((4, 5)), corr=rng.uniform(-1, 1, (4, 4)),
        values=np.asfortranarray(rng.random((4, 6)).astype(np.float32)),
        probs=np.asfortranarray(rng.dirichlet(np.ones(10), 4).astype(np.float32)),
        raws=np.asfortranarray(rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)))


def _snapshot(value):
    if torch.is_tensor(value):
        return ("tensor", value.detach().clone(), value.requires_grad, value.dtype, value.device, value.stride(),
                value.is_contiguous(), value.grad)
    if isinstance(value, np.ndarray):
        return ("array", value.copy(), value.dtype, value.strides, value.flags.writeable)
    if isinstance(value, torch.nn.Module):
        return ("module", value.training, [(m.training, dict(m._forward_hooks), dict(m._backward_hooks),
                                            dict(m._forward_pre_hooks)) for m in value.modules()],
                [(p.detach().clone(), p.requires_grad, p.grad) for p in value.parameters()])
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
    return value


def _assert_same(before, after, what: str):
    if isinstance(before, list):
        for b, a in zip(before, after, strict=True):
            _assert_same(b, a, what)
        return
    if not isinstance(before, tuple) or before[0] not in ("tensor", "array", "module"):
        assert before == after, what
        return
    kind = before[0]
    if kind == "tensor":
        assert torch.equal(before[1], after[1]), f"{what}: values changed"
        assert before[2:] == after[2:], f"{what}: requires_grad/dtype/device/strides/grad changed"
    elif kind == "array":
        np.testing.assert_array_equal(before[1], after[1], err_msg=f"{what}: values changed")
        assert before[2:] == after[2:], f"{what}: dtype/strides/writeable changed"
    else:
        assert before[1] == after[1], f"{what}: model.training changed"
        assert before[2] == after[2], f"{what}: a module's mode or hooks changed"
        for (v0, r0, g0), (v1, r1, g1) in zip(before[3], after[3], strict=True):
            assert torch.equal(v0, v1) and r0 == r1 and g0 is g1, f"{what}: a parameter changed"


def test_every_public_function_has_a_recipe():
    names = set(ci.__all__)
    missing = [n for n in FUNCTIONS if n not in RECIPES]
    assert not missing, f"public inspect functions without a call recipe in {__file__}: {missing}"
    assert not set(RECIPES) - names, "recipes for names no longer public"
    assert {n for n in names if not callable(getattr(ci, n))} <= NOT_FUNCTIONS


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_public_function_leaves_its_inputs_untouched(ctx, name, mode):
    if name not in RECIPES:
        pytest.fail(f"no call recipe for cnnscope.inspect.{name}")
    args, kwargs = RECIPES[name](ctx)
    models = [ctx.model, ctx.model_b]
    for model in models:
        model.train(mode == "train")
    ctx.model.layer("Conv2D_1").conv.bias.requires_grad_(False)  # a frozen parameter must stay frozen
    try:
        before = _snapshot([*args, *kwargs.values(), *models])
        result = getattr(ci, name)(*args, **kwargs)
        if pyinspect.isgenerator(result):  # the work happens while it is read
            assert list(result), f"{name} yielded nothing"
        _assert_same(before, _snapshot([*args, *kwargs.values(), *models]), f"{name} ({mode} mode)")
    finally:
        ctx.model.layer("Conv2D_1").conv.bias.requires_grad_(True)
        for model in models:
            model.eval()


@pytest.mark.parametrize("method", list(ci.METHODS))
def test_every_registered_method_leaves_its_inputs_untouched(ctx, method):
    options = {"steps": 4} if method == "integrated-gradients" else {"samples": 2} if method == "smoothgrad" else {}
    before = _snapshot([ctx.x, ctx.blank, ctx.model])
    ci.attribute(ctx.model, ctx.x, method, baseline=ctx.blank, **options)
    _assert_same(before, _snapshot([ctx.x, ctx.blank, ctx.model]), method)


def test_saliency_then_integrated_gradients_on_the_same_tensor(ctx):
    """The reported bug: saliency left the caller's x with requires_grad=True, so the next call raised."""
    x = ctx.x.clone()
    ci.saliency(ctx.model, x)
    assert not x.requires_grad and x.grad is None
    heat = ci.integrated_gradients(ctx.model, x, steps=4)
    assert heat.shape == (4, 28, 28)


@pytest.mark.parametrize("mutate", ["requires_grad", "values", "strides", "mode", "hook", "frozen", "array"])
def test_the_check_catches_each_kind_of_change(ctx, mutate):
    """The comparison above is not vacuous: each kind of change it promises to catch makes it fail."""
    x, arr, model = _strided(ctx.xn), ctx.xn.copy(order="F"), ctx.model
    assert not x.is_contiguous()
    before = _snapshot([x, arr, model])
    handle = None
    try:
        if mutate == "requires_grad":
            x.requires_grad_(True)
        elif mutate == "values":
            x[0, 0, 0, 0] += 1
        elif mutate == "strides":
            x.set_(x.detach().contiguous())
        elif mutate == "mode":
            model.train()
        elif mutate == "hook":
            handle = model.layer("Conv2D_2").register_forward_hook(lambda *a: None)
        elif mutate == "frozen":
            next(model.parameters()).requires_grad_(False)
        else:
            arr[0, 0, 0, 0] += 1
        with pytest.raises(AssertionError):
            _assert_same(before, _snapshot([x, arr, model]), mutate)
    finally:
        model.eval()
        next(model.parameters()).requires_grad_(True)
        if handle is not None:
            handle.remove()
