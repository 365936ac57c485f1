"""The public surface the restructuring must not change: `cnnscope.*` names and the CLI's commands and flags.

tests/fixtures/public_api.json was written before the code moved into folders (issue 20); a change to the
public surface is a decision, made by rewriting that file on purpose (`python tests/test_public_api.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cnnscope
from cnnscope.cli import build_parser

SNAPSHOT = Path(__file__).parent / "fixtures" / "public_api.json"


def surface() -> dict:
    """Public names (and what kind of object each is) and every command with its option strings."""
    names = {name: type(getattr(cnnscope, name)).__name__ for name in cnnscope.__all__}
    parser = build_parser()
    commands = {}
    for action in parser._subparsers._group_actions:  # argparse keeps subcommands here
        for command, sub in action.choices.items():
            commands[command] = sorted(o for a in sub._actions for o in a.option_strings)
    return {"names": dict(sorted(names.items())), "commands": dict(sorted(commands.items()))}


def test_the_public_names_and_commands_are_those_of_the_snapshot():
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    now = surface()
    assert now["names"] == expected["names"]
    assert sorted(now["commands"]) == sorted(expected["commands"])
    for command, options in expected["commands"].items():
        assert now["commands"][command] == options, command


def test_every_public_name_resolves_after_a_plain_import():
    # Not only through the lazy table: each name is the object defined where the table says.
    for name in cnnscope.__all__:
        assert getattr(cnnscope, name) is not None, name


if __name__ == "__main__":  # rewrite the snapshot on purpose
    SNAPSHOT.write_text(json.dumps(surface(), indent=1) + "\n", encoding="utf-8")
    sys.exit(0)
