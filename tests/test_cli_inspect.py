"""`cnnscope activations` and `cnnscope filters`: exit codes, files written, error text."""

from __future__ import annotations

import pytest

from cnnscope.cli import main
from conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"




def test_activations_for_a_test_image(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "fig.png"
    code, stdout, _ = run_cli(capsys, "activations", trained_run, "--layer", "Conv2D_1", "--index", 3, "--scale",
                           "--cmap", "viridis", "--data-dir", data_dir, "--out", out)
    assert code == 0
    assert out.read_bytes()[:8] == PNG
    assert f"figure: {out}" in stdout
    assert "test image 3: predicted" in stdout and "true class" in stdout


def test_all_layers_from_the_train_set_with_svg(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "all.png"
    code, stdout, _ = run_cli(capsys, "activations", trained_run, "--all-layers", "--index", 0, "--set", "train",
                           "--data-dir", data_dir, "--out", out, "--svg", "--norm", "map")
    assert code == 0, stdout
    assert out.read_bytes()[:8] == PNG and (tmp_path / "all.svg").is_file()
    assert "train image 0" in stdout


def test_activations_for_a_users_picture(trained_run, tmp_path, capsys):
    from PIL import Image, ImageDraw

    picture = tmp_path / "my seven.jpg"
    img = Image.new("RGB", (300, 200), (240, 240, 235))
    ImageDraw.Draw(img).line([(60, 30), (200, 30), (110, 180)], fill=(10, 10, 40), width=14)
    img.save(picture)
    out = tmp_path / "mine.png"
    code, stdout, _ = run_cli(capsys, "activations", trained_run, "--layer", "Conv2D_2", "--image", picture,
                           "--pre-activation", "--norm", "fixed", "--range", "-2", "2", "--out", out)
    assert code == 0
    assert out.read_bytes()[:8] == PNG
    assert "inverted" in stdout and "centre of mass" in stdout and "my seven.jpg: predicted" in stdout


def test_norm_takes_one_value_so_the_run_directory_is_not_swallowed(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "map.png"
    code, stdout, err = run_cli(capsys, "activations", "--norm", "map", trained_run, "--layer", "Conv2D_1", "--index",
                             1, "--data-dir", data_dir, "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG and f"figure: {out}" in stdout
    code, _, err = run_cli(capsys, "activations", "--range", "0", "3", trained_run, "--layer", "Conv2D_1", "--index",
                        1, "--data-dir", data_dir, "--out", out)
    assert code == 0, err


def test_a_dense_layer_is_drawn_as_bars(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "dense.png"
    code, stdout, err = run_cli(capsys, "activations", trained_run, "--layer", "Dense_1", "--index", 2,
                             "--data-dir", data_dir, "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG


def test_filters(trained_run, tmp_path, capsys):
    out = tmp_path / "filters.png"
    code, stdout, _ = run_cli(capsys, "filters", trained_run, "--layer", "Conv2D_2", "--channel", 1, "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "input channel 1 of 6" in stdout


@pytest.mark.parametrize("argv, message", [
    (["activations", "{run}", "--layer", "Conv2D_9", "--index", "0"],
     "error: unknown layer 'Conv2D_9'; valid: Conv2D_1, Max_Pool_1, Conv2D_2, Max_Pool_2, Conv2D_3, Flatten_1"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "300"],
     "error: index 300 is outside the test set, which holds 300 images (valid: 0 to 299)"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--set", "holdout"],
     "error: unknown set 'holdout'; valid: train, test"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--cmap", "nope"],
     "error: unknown colour map 'nope'; valid: "),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--norm", "fixed", "--range", "2", "1"],
     "error: fixed range needs LO < HI, received 2 1"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--range", "1", "nan"],
     "error: fixed range needs LO < HI, received 1 nan"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--norm", "fixed"],
     "error: --norm fixed needs its range: add --range LO HI, e.g. --range 0 10"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--norm", "map", "--range", "0", "1"],
     "error: --range LO HI goes with --norm fixed, received --norm map; leave one out"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--range", "1"],
     "error: argument --range: expected 2 arguments; see 'cnnscope activations --help'"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--norm", "fixed", "1", "2"],
     "error: unexpected arguments 1 2 for 'cnnscope activations'; see 'cnnscope activations --help'"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--norm", "fixd"],
     "error: argument --norm: invalid choice: 'fixd' (choose from 'layer', 'map', 'fixed'); did you mean 'fixed'?"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--clip", "40"],
     "error: argument --clip: expected a percentile from 50 to 100, received '40'"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--norm", "layer", "--scale"],
     "cannot be combined with norm 'layer'"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--index", "0", "--out", "{tmp}/a.jpg"],
     "error: cannot write a figure as '.jpg'"),
    (["activations", "{run}", "--index", "0"], "error: name a layer with --layer NAME"),
    (["activations", "{run}", "--layer", "Conv2D_1", "--image", "{tmp}/none.png"], "error: image file not found"),
    (["activations", "{tmp}/no-run", "--layer", "Conv2D_1", "--index", "0"], "error: run directory not found"),
    (["filters", "{run}", "--layer", "Dense_1"], "error: layer 'Dense_1' is not a conv layer"),
    (["filters", "{run}", "--layer", "Conv2D_1", "--channel", "1"], "error: input channel 1 is outside Conv2D_1's"),
])
def test_bad_input_is_one_line_and_exit_2(trained_run, data_dir, tmp_path, capsys, argv, message):
    argv = [a.format(run=trained_run, tmp=tmp_path) for a in argv]
    if argv[0] == "activations":
        argv += ["--data-dir", str(data_dir)]
    code, stdout, stderr = run_cli(capsys, *argv)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not list(tmp_path.glob("*.png"))


def test_usage_errors(trained_run, capsys):
    assert main(["activations", str(trained_run), "--layer", "Conv2D_1"]) == 2  # neither --index nor --image
    assert main(["activations", str(trained_run), "--layer", "Conv2D_1", "--index", "0", "--cols", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
