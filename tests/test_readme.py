"""README: its examples are real (TOML parses into a valid model, pictures exist, commands exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnscope.cli import build_parser
from cnnscope.config import build_run_config

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
