"""README: its examples are real (TOML parses into a valid model, pictures exist, commands exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnscope.cli import build_parser
from cnnscope.trainer.config import build_run_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_toml_examples_build_models(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", README, re.S)
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        spec = build_run_config(path).model
        assert spec.total_params > 0


def test_every_picture_the_readme_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) >= 5
    missing = [p for p in images if not (ROOT / p).is_file()]
    assert not missing


@pytest.mark.parametrize("command", sorted(set(re.findall(r"^cnnscope ([a-z-]+)", README, re.M))))
def test_commands_in_the_readme_exist(command):
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert command in choices


def _library_snippet() -> str:
    section = README[README.index("## The library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_library_snippet_runs_as_written(data_dir, tmp_path, monkeypatch):
    # As a reader would run it: data from CNNSCOPE_DATA_DIR (here tiny synthetic IDX files), their own picture
    # beside the script. Every name the snippet uses is defined in it.
    from PIL import Image, ImageDraw

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNSCOPE_DATA_DIR", str(data_dir))
    picture = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(picture).line([(60, 20), (60, 140)], fill=0, width=14)
    picture.save("my-digit.png")
    scope: dict = {}
    exec(compile(_library_snippet(), "README library snippet", "exec"), scope)
    assert scope["probs"].shape == (5, 10)
    assert scope["heat"].shape == (10, 28, 28)
    assert (tmp_path / "runs" / "x" / "report.html").is_file()
    assert (tmp_path / "my-digit-Conv2D_1.png").stat().st_size > 1000
    assert scope["mine"].notes  # what was done to the picture is said


def test_the_first_hour_reads_in_order():
    quick = README[README.index("## Quick start"):README.index("Then look inside:")]
    assert quick.index("offline") < quick.index("pip install -e .")  # data first, then the install
    assert "source .venv/bin/activate" in quick  # the look-inside commands call `cnnscope` from PATH
    assert "--seed 1 --out runs/seed-iv-seed1" in README  # how to make the run that `compare` compares with
