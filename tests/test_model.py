from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnscope.base.errors import SpecError
from cnnscope.model.network import CNN, MAX_PARAMS, build_model, check_model_size
from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec
from cnnscope.model.zoo import presets


def test_parameter_counts_equal_the_spec():
    for spec in presets.values():
        model = build_model(spec)
        assert sum(p.numel() for p in model.parameters()) == spec.trainable_params
        stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
        assert spec.trainable_params + stats == spec.total_params  # Keras counts the running statistics too


def test_every_layer_is_named_and_shapes_match_the_spec():
    spec = ModelSpec(conv=(ConvSpec(4, kernel=5, stride=2, padding="same", pool=PoolSpec()),
                           ConvSpec(6, padding="same", activation="elu")), dense=(DenseSpec(9),), dropout=0.1)
    model = build_model(spec, seed=0).eval()
    x = torch.randn(3, 1, 28, 28)
    for info in spec.layers():
        x = model.layer(info.name)(x)
        assert tuple(x.shape[1:]) == info.output_shape, info.name
    assert model.layer_names == spec.layer_names()


def test_seeded_build_is_deterministic_and_keras_initialised():
    a, b = build_model(presets["tiny"], seed=3), build_model(presets["tiny"], seed=3)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=False):
        assert torch.equal(pa, pb), name
    assert torch.count_nonzero(a.layer("Conv2D_1").conv.bias) == 0
    bound = (6 / (1 * 9 + 8 * 9)) ** 0.5  # Glorot uniform for Conv2D_1 of tiny
    assert a.layer("Conv2D_1").conv.weight.abs().max() <= bound


def test_regularization_loss_is_keras_l2_on_dense_kernels():
    spec = ModelSpec(conv=(ConvSpec(2),), dense=(DenseSpec(3),), regularizer=RegularizerSpec("l2", 0.01))
    model = build_model(spec, seed=0)
    expected = 0.01 * sum((m.weight ** 2).sum() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert torch.allclose(model.regularization_loss(), expected)
    spec_l1 = ModelSpec(conv=(ConvSpec(2),), regularizer=RegularizerSpec("l1", 0.5, conv=True))
    m1 = build_model(spec_l1, seed=0)
    expected = 0.5 * sum(m.weight.abs().sum() for m in m1.modules() if isinstance(m, (torch.nn.Linear,
                                                                                      torch.nn.Conv2d)))
    assert torch.allclose(m1.regularization_loss(), expected)


def test_probabilities_follow_output_activation():
    soft = build_model(presets["tiny"], seed=0)
    logits = torch.randn(4, 10)
    assert torch.allclose(soft.probabilities(logits).sum(1), torch.ones(4))
    sig = build_model(ModelSpec(conv=(ConvSpec(2),), output_activation="sigmoid"), seed=0)
    assert torch.allclose(sig.probabilities(logits), torch.sigmoid(logits))


def test_models_over_the_parameter_limit_are_refused_before_allocation(monkeypatch):
    allocated = []
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda *a, **k: allocated.append(a))
    spec = ModelSpec(conv=(ConvSpec(64),), dense=(DenseSpec(4096),))  # 64*26*26*4096 dense weights
    assert spec.total_params > MAX_PARAMS
    with pytest.raises(SpecError, match=rf"the model has {spec.total_params:,} parameters \(0.7 GiB at fp32\), "
                                        r"more than the limit of 100,000,000; use fewer filters or units"):
        build_model(spec)
    with pytest.raises(SpecError, match="more than the limit of 100,000,000"):
        CNN(spec)
    assert allocated == []


def test_models_with_huge_activations_are_refused():
    spec = ModelSpec(input_shape=(1, 4000, 4000), conv=(ConvSpec(2, kernel=1, pool=PoolSpec(size=100)),), dense=())
    assert spec.total_params < 100_000
    with pytest.raises(SpecError, match=r"the model produces 32,00\d,\d{3} activation values per image "
                                        r"\(122 MiB at fp32\), more than the limit of 25,000,000"):
        build_model(spec)


def test_models_at_the_limit_are_built():
    for spec in presets.values():
        check_model_size(spec)  # no error
    assert build_model(presets["seed-iv"]).spec.total_params == 208_982


# --- batch norm --------------------------------------------------------------------------------------------
BN_SPEC = ModelSpec(conv=(ConvSpec(6, batch_norm=True, pool=PoolSpec()), ConvSpec(8, batch_norm={"center": False},
                                                                                 pool=PoolSpec()),
                          ConvSpec(8, activation="elu", batch_norm=True)),
                    dense=(DenseSpec(12, activation="tanh", batch_norm=True),))


def _bn_model(seed=0):
    """A BN model whose running statistics and BN parameters are not the defaults (so order mistakes show)."""
    model = build_model(BN_SPEC, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                for tensor in (module.running_mean, module.weight, module.bias):
                    if tensor is not None:
                        tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5 + (tensor is module.weight))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def test_batch_norm_sits_between_the_conv_and_its_activation():
    model = _bn_model()
    x = torch.randn(3, 1, 28, 28)
    block = model.layer("Conv2D_3")
    h = model.layer("Max_Pool_2")(model.layer("Conv2D_2")(model.layer("Max_Pool_1")(model.layer("Conv2D_1")(x))))
    bn = block.bn
    z = block.conv(h)
    expected = torch.nn.functional.elu((z - bn.running_mean[:, None, None]) / torch.sqrt(
        bn.running_var[:, None, None] + 1e-5) * bn.weight[:, None, None] + bn.bias[:, None, None])
    torch.testing.assert_close(block(h), expected)
    from cnnscope.inspect import activations  # a layer's pre-activation output is after its batch norm

    pre = activations(model, "Conv2D_3", x, pre_activation=True)
    np.testing.assert_allclose(pre, block.bn(z).detach().numpy(), atol=1e-5)
    assert model.layer("Conv2D_2").bn.bias is None and model.layer("Conv2D_2").bn.weight is not None
    assert model.layer_names == BN_SPEC.layer_names()  # batch norm adds no layer: views show one map per conv
    assert model.layer("Dense_1").bn.momentum == 0.1 and model.layer("Dense_1").bn.eps == 1e-5


def test_batch_norm_weights_round_trip_through_safetensors(tmp_path):
    from cnnscope.base.errors import RunError
    from cnnscope.runs.checkpoint import check_weights_file, load_weights, save_weights

    model = _bn_model()
    with torch.no_grad():
        model.layer("Conv2D_1").bn.num_batches_tracked.fill_(7)
    path = tmp_path / "model.safetensors"
    save_weights(path, model)
    fresh = build_model(BN_SPEC, seed=5)
    check_weights_file(path, fresh)  # the running statistics and the batch counter are expected
    load_weights(path, fresh)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert int(fresh.layer("Conv2D_1").bn.num_batches_tracked) == 7
    plain = build_model(ModelSpec(conv=BN_SPEC.conv[:2] + (ConvSpec(8, activation="elu"),), dense=BN_SPEC.dense))
    with pytest.raises(RunError, match=r"unexpected layers.Conv2D_3.bn.bias and 4 more"):
        check_weights_file(path, plain)


def _stats(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_inspect_functions_never_change_batch_norm_statistics(trained_run, data_dir):
    """Every public inspect function (the recipes of test_inspect_pure), called on a BN model in train mode,
    leaves its running statistics and batch counter as they were."""
    import cnnscope
    import cnnscope.inspect as ci
    from test_inspect_pure import FUNCTIONS, RECIPES

    run = cnnscope.load_run(trained_run)
    rng = np.random.default_rng(0)
    raw = np.asarray(run.dataset(data_dir).test_x[:4], np.float32)
    ctx = SimpleNamespace(
        run=run, model=_bn_model(0), model_b=_bn_model(1), data_dir=data_dir, png=None, x=torch.from_numpy(raw),
        xn=raw, labels=np.array([0, 1, 2, 3]), grey=(rng.random((28, 28)) * 255).astype(np.uint8), blank=raw[0] * 0,
        maps=rng.normal(size=(5, 4, 4)).astype(np.float32), heat=rng.random((4, 28, 28)).astype(np.float32),
        cost=rng.random((4, 5)), corr=rng.uniform(-1, 1, (4, 4)), values=rng.random((4, 6)).astype(np.float32),
        probs=rng.dirichlet(np.ones(10), 4).astype(np.float32),
        raws=rng.integers(0, 256, (4, 28, 28)).astype(np.uint8))
    called = 0
    for name in FUNCTIONS:
        args, kwargs = RECIPES[name](ctx)
        if any(a is None for a in args):  # picture files: no model involved
            continue
        ctx.model.train()
        ctx.model_b.train()
        before, before_b = _stats(ctx.model), _stats(ctx.model_b)
        result = getattr(ci, name)(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
        for key, value in _stats(ctx.model).items():
            assert torch.equal(value, before[key]), f"{name} changed {key}"
        assert all(torch.equal(v, before_b[k]) for k, v in _stats(ctx.model_b).items()), name
        assert ctx.model.training and ctx.model_b.training, f"{name} did not restore train mode"
        called += 1
    assert called >= len(FUNCTIONS) - 3


def test_training_updates_batch_norm_and_callbacks_find_train_mode_restored(tmp_path, data_dir):
    """Evaluation and the probe run in eval mode each epoch; the loop is back in train mode for the next one,
    so the running statistics keep moving, and the saved run reloads them."""
    import cnnscope
    from cnnscope.training.probe import Probe

    spec = ModelSpec(conv=(ConvSpec(4, batch_norm=True, pool=PoolSpec()),), dense=(DenseSpec(8, batch_norm=True),))
    seen = []

    def record(log):
        seen.append((log.model.training, log.model.layer("Conv2D_1").bn.running_mean.clone()))

    ds = cnnscope.load_dataset("mnist", data_dir=data_dir, limit_train=256, limit_test=64)
    config = cnnscope.TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=0.003, seed=0)
    run = cnnscope.train(spec, ds, config, out=tmp_path / "run", progress=False, plot=False,
                         callbacks=[Probe(3), record])
    assert [training for training, _ in seen] == [True, True]
    assert not torch.equal(seen[0][1], seen[1][1])  # epoch 2 trained in train mode
    torch.testing.assert_close(run.model.layer("Conv2D_1").bn.running_mean, seen[1][1])
    assert int(run.model.layer("Conv2D_1").bn.num_batches_tracked) == 8  # 2 epochs × 4 steps
    assert run.metrics["test_accuracy"] > 0.2
