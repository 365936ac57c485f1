import json

import pytest

from cnnscope.base.errors import SpecError
from cnnscope.model.spec import BatchNormSpec, ConvSpec, DenseSpec, ModelSpec, PoolSpec
from cnnscope.model.summary import summary_dict, summary_table
from cnnscope.model.zoo import get_preset, load_spec, presets


def test_preset_parameter_counts_match_the_series():
    assert presets["seed-ii"].total_params == 96_844
    assert presets["seed-iv"].total_params == 208_982


def test_receptive_fields_match_the_series():
    layers = {layer.name: layer.receptive_field for layer in presets["seed-iv"].layers()}
    assert [layers[n] for n in ("Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3")] == [
        (3, 3), (4, 4), (8, 8), (10, 10), (18, 18)]


def test_default_names_and_shapes():
    layers = presets["seed-iv"].layers()
    assert [(layer.name, layer.output_shape) for layer in layers] == [
        ("Conv2D_1", (32, 26, 26)), ("Max_Pool_1", (32, 13, 13)), ("Conv2D_2", (64, 11, 11)),
        ("Max_Pool_2", (64, 5, 5)), ("Conv2D_3", (128, 3, 3)), ("Flatten_1", (1152,)), ("Dense_1", (100,)),
        ("Dense_2", (10,))]


def test_same_padding_and_stride_shapes():
    spec = ModelSpec(conv=(ConvSpec(4, kernel=5, stride=2, padding="same"), ConvSpec(4, kernel=3, padding="same",
                                                                                  pool=PoolSpec("average", 3))))
    shapes = [layer.output_shape for layer in spec.layers()[:3]]
    assert shapes == [(4, 14, 14), (4, 14, 14), (4, 4, 4)]


def test_layer_too_small_for_kernel_is_a_precise_error():
    with pytest.raises(SpecError, match=r"^Conv2D_3: input is 2×2, smaller than its 3×3 kernel$"):
        ModelSpec(conv=(ConvSpec(8, pool=PoolSpec(size=3)), ConvSpec(8, pool=PoolSpec(size=3)), ConvSpec(8)))


def test_bad_values_list_valid_choices():
    with pytest.raises(SpecError, match="unknown activation 'relux'; valid: relu, sigmoid, elu, selu, tanh, gelu"):
        ConvSpec(8, activation="relux")
    with pytest.raises(SpecError, match="dense units must be a positive integer, received 0"):
        DenseSpec(0)
    with pytest.raises(SpecError, match="unknown preset 'seed-v'; valid: seed-ii, seed-iv, tiny, seed-iv-bn, "
                                        "seed-iv-bn-same, cifar-small"):
        get_preset("seed-v")


def test_unknown_keys_are_errors():
    with pytest.raises(SpecError, match=r"model.conv\[0\]: unknown key 'filter'; valid: filters, kernel"):
        ModelSpec.from_dict({"conv": [{"filter": 3}]})
    with pytest.raises(SpecError, match="model: unknown key 'layers'"):
        ModelSpec.from_dict({"layers": []})


def test_duplicate_and_invalid_names():
    with pytest.raises(SpecError, match="layer name 'A' is used twice"):
        ModelSpec(conv=(ConvSpec(4, name="A"), ConvSpec(4, name="A")))
    with pytest.raises(SpecError, match="layer name 'a.b' is invalid"):
        ModelSpec(conv=(ConvSpec(4, name="a.b"),))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_save_load_roundtrip(tmp_path, suffix):
    spec = ModelSpec(conv=(ConvSpec(4, kernel=(3, 5), pool=PoolSpec("average", 2, name="P")),),
                     dense=(DenseSpec(7, "tanh"),), dropout=0.25, output_activation="sigmoid")
    path = tmp_path / f"spec{suffix}"
    spec.save(path)
    assert ModelSpec.load(path) == spec


def test_load_spec_accepts_preset_table_and_modelspec_load_names_it(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[model]\npreset = "seed-ii"\n')
    assert load_spec(path) == presets["seed-ii"]
    with pytest.raises(SpecError, match="names a preset; read it with cnnscope.model.zoo.load_spec"):
        ModelSpec.load(path)


def test_summary_table_and_dict():
    text = summary_table(presets["seed-ii"])
    assert "Total params: 96,844" in text and "Conv2D_3 (Conv2D)" in text and "18×18" in text
    data = summary_dict(presets["seed-iv"])
    assert data["total_params"] == 208_982
    conv3 = json.loads(json.dumps(data))["layers"][4]
    assert (conv3["receptive_field"], conv3["jump"], conv3["start"]) == ([18, 18], [4, 4], [8.5, 8.5])
    assert data["layers"][5]["receptive_field"] is None and data["layers"][5]["kind"] == "flatten"


def test_summary_is_per_axis_for_rectangular_kernels():
    spec = ModelSpec(conv=(ConvSpec(2, kernel=(5, 3), pool=PoolSpec("average", (2, 1))),
                           ConvSpec(2, kernel=(1, 3), stride=(1, 2), padding="same")))
    rows = {row["name"]: row for row in summary_dict(spec)["layers"]}
    assert (rows["Conv2D_1"]["receptive_field"], rows["Conv2D_1"]["jump"], rows["Conv2D_1"]["start"]) == (
        [5, 3], [1, 1], [2, 1])
    assert (rows["Avg_Pool_1"]["receptive_field"], rows["Avg_Pool_1"]["jump"], rows["Avg_Pool_1"]["start"]) == (
        [6, 3], [2, 1], [2.5, 1])
    # same padding on 26 columns with stride 2: 1 zero column, after the image, so the start does not move back
    assert (rows["Conv2D_2"]["receptive_field"], rows["Conv2D_2"]["jump"], rows["Conv2D_2"]["start"]) == (
        [6, 5], [2, 2], [2.5, 2])
    assert rows["Conv2D_2"]["output_shape"] == [2, 12, 13]
    table = summary_table(spec)
    assert [line.split()[-1] for line in table.splitlines() if line.startswith(("Conv2D", "Avg_"))] == [
        "5×3", "6×3", "6×5"]


def test_three_by_three_then_two_by_two_pool_starts():
    spec = ModelSpec(conv=(ConvSpec(4, pool=PoolSpec()),))
    assert [info.start for info in spec.layers()[:2]] == [(1, 1), (1.5, 1.5)]
    assert spec.geometry("Max_Pool_1").box(0, 0) == (0, 0, 4, 4)


def test_layer_kinds_vocabulary():
    spec = ModelSpec(conv=(ConvSpec(4, pool=PoolSpec()), ConvSpec(4)), dense=(DenseSpec(8),), dropout=0.5)
    assert [info.kind for info in spec.layers()] == [
        "conv", "pool", "conv", "flatten", "dropout", "dense", "dropout", "dense"]
    assert spec.map_layer_names() == ["Conv2D_1", "Max_Pool_1", "Conv2D_2"]
    assert spec.layer_names("conv") == ["Conv2D_1", "Conv2D_2"]
    assert spec.layer_names("dense", "dropout") == ["Dropout_1", "Dense_1", "Dropout_2", "Dense_2"]
    assert [info.has_maps for info in spec.layers()][:4] == [True, True, True, False]
    with pytest.raises(SpecError, match=r"^layer 'Dense_1' \(Dense\) has no receptive field; layers with maps: "
                                        r"Conv2D_1, Max_Pool_1, Conv2D_2$"):
        spec.geometry("Dense_1")


# --- batch norm --------------------------------------------------------------------------------------------
def test_batch_norm_true_false_or_a_table():
    assert ConvSpec(4, batch_norm=True).batch_norm == BatchNormSpec()
    assert ConvSpec(4, batch_norm=False).batch_norm is None and DenseSpec(4).batch_norm is None
    assert DenseSpec(4, batch_norm={"momentum": 0.3}).batch_norm == BatchNormSpec(momentum=0.3)
    assert (BatchNormSpec().epsilon, BatchNormSpec().momentum) == (1e-5, 0.1)  # PyTorch's defaults
    with pytest.raises(SpecError, match=r"^model.conv\[0\]: batch_norm: unknown key 'eps'; valid: epsilon, momentum, "
                                        r"center, scale$"):
        ModelSpec.from_dict({"conv": [{"filters": 2, "batch_norm": {"eps": 1}}]})
    with pytest.raises(SpecError, match=r"^model.dense\[0\]: batch_norm must be true, false or a table with epsilon, "
                                        r"momentum, center, scale; received 'yes'$"):
        ModelSpec.from_dict({"conv": [{"filters": 2}], "dense": [{"units": 3, "batch_norm": "yes"}]})
    with pytest.raises(SpecError, match=r"batch_norm momentum must be a finite number in \(0, 1\], received 0"):
        BatchNormSpec(momentum=0)
    with pytest.raises(SpecError, match="batch_norm center must be true or false, received 1"):
        BatchNormSpec(center=1)


def test_batch_norm_params_are_counted_as_keras_does():
    plain = ModelSpec(conv=(ConvSpec(4, pool=PoolSpec()),), dense=(DenseSpec(8),))
    normed = ModelSpec(conv=(ConvSpec(4, pool=PoolSpec(), batch_norm=True),),
                       dense=(DenseSpec(8, batch_norm={"center": False}),))
    assert normed.total_params == plain.total_params + 4 * 4 + 3 * 8  # gamma, beta, mean, var; no beta on dense
    assert normed.trainable_params == plain.total_params + 2 * 4 + 8
    assert [info.name for info in normed.layers()] == [info.name for info in plain.layers()]  # no extra layer
    data = summary_dict(normed)
    assert (data["total_params"], data["trainable_params"], data["non_trainable_params"]) == (
        normed.total_params, normed.trainable_params, 2 * 4 + 2 * 8)
    conv = data["layers"][0]
    assert (conv["batch_norm"], conv["batch_norm_params"], conv["non_trainable_params"]) == (True, 16, 8)
    assert data["layers"][1]["batch_norm"] is False
    table = summary_table(normed)
    lines = table.splitlines()
    row = lines.index(next(line for line in lines if line.startswith("Conv2D_1 (Conv2D)")))
    assert lines[row].split()[-2] == "40" and lines[row + 1].split()[-1] == "16"  # conv 4×(9+1), its BatchNorm
    assert lines[row + 1].startswith("  └ BatchNorm, before the activation")
    assert f"Total params: {normed.total_params:,}" in table
    assert f"Trainable params: {normed.trainable_params:,}" in table and "Non-trainable params: 24" in table
    assert "Non-trainable params: 0" in summary_table(plain)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_batch_norm_round_trips_through_files(tmp_path, suffix):
    spec = ModelSpec(conv=(ConvSpec(4, batch_norm=True), ConvSpec(2, batch_norm={"epsilon": 1e-5, "scale": False})),
                     dense=(DenseSpec(3, batch_norm=True),))
    assert spec.to_dict()["conv"][0]["batch_norm"] is True  # the default is written as `batch_norm = true`
    path = tmp_path / f"spec{suffix}"
    spec.save(path)
    assert ModelSpec.load(path) == spec
    toml = tmp_path / "written.toml"
    toml.write_text('[model]\n[[model.conv]]\nfilters = 4\nbatch_norm = true\n[[model.dense]]\nunits = 5\n'
                    'batch_norm = {momentum = 0.2}\n')
    loaded = ModelSpec.load(toml)
    assert loaded.conv[0].batch_norm == BatchNormSpec() and loaded.dense[0].batch_norm.momentum == 0.2


def test_recipe_presets():
    cifar = presets["cifar-small"]
    assert cifar.input_shape == (3, 32, 32) and 100_000 <= cifar.total_params <= 300_000
    assert all(c.batch_norm is not None for c in cifar.conv) and cifar.layer("Flatten_1").output_shape == (2048,)
    bn = presets["seed-iv-bn"]
    assert [info.output_shape for info in bn.layers()] == [info.output_shape for info in presets["seed-iv"].layers()]
    assert bn.total_params == 208_982 + 4 * (32 + 64 + 128 + 100)
    assert get_preset("cifar-small") is cifar
    same = presets["seed-iv-bn-same"]
    assert [c.padding for c in same.conv] == ["same", "valid", "valid"] and same.total_params == 299_878
    assert [info.output_shape for info in same.layers() if info.name.startswith("Conv2D")] == \
        [(32, 28, 28), (64, 12, 12), (128, 4, 4)]
