import pytest
import torch

from cnnscope.errors import SpecError
from cnnscope.model import CNN, MAX_PARAMS, build_model, check_model_size
from cnnscope.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec, presets


def test_parameter_counts_equal_the_spec():
    for spec in presets.values():
        model = build_model(spec)
        assert sum(p.numel() for p in model.parameters()) == spec.total_params


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
