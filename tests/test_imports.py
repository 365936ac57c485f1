"""Cheap imports and a clean Ctrl-C at start-up (issue 9 item 5, issue 8 point 5): `import cnnscope` and the
command's parser load no heavy library; the public names still work; SIGINT while starting exits 130, one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "starlette", "h5py", "onnx", "captum")


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """The `modules` that a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])  # a list literal printed by the probe above


def test_import_cnnscope_loads_no_heavy_library():
    assert _loaded_after("import cnnscope", (*HEAVY, "torch")) == []


def test_the_commands_parser_loads_no_torch():
    code = "import cnnscope.cli\ncnnscope.cli.build_parser()"
    assert _loaded_after(code, (*HEAVY, "torch", "tqdm", "safetensors")) == []


def test_public_names_load_on_first_use():
    import cnnscope
    import cnnscope.training.api

    assert callable(cnnscope.train) and cnnscope.train is cnnscope.training.api.train  # the function, not the module
    assert cnnscope.resume is cnnscope.training.api.resume and cnnscope.EpochLog is cnnscope.trainer.loop.EpochLog
    assert set(cnnscope.__all__) <= set(dir(cnnscope))
    namespace: dict = {}
    exec("from cnnscope import *", namespace)
    assert set(cnnscope.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="module 'cnnscope' has no attribute 'trian'"):
        cnnscope.trian  # noqa: B018


def test_explain_help_names_every_registered_method():
    from cnnscope.cli import explain
    from cnnscope.inspect.methods import DEFAULT_METHOD, METHODS

    assert explain.METHODS == tuple(METHODS) and explain.DEFAULT_METHOD == DEFAULT_METHOD


# The child sends itself SIGINT the moment it starts importing `module`: the interrupt lands at a named point of
# start-up on any machine at any load (a sleep before the signal would race the start-up's own speed).
_INTERRUPT_AT = """
import importlib.abc, os, signal, sys
TARGET = sys.argv.pop(1)
class _Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == TARGET:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, _Interrupt())
from cnnscope.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
@pytest.mark.parametrize("module", ["torch", "cnnscope.training.api", "safetensors", "cnnscope.data.dataset"])
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(data_dir, tmp_path, module):
    argv = [sys.executable, "-c", _INTERRUPT_AT, module, "train", "--preset", "tiny", "--out", str(tmp_path / "r"),
            "--data-dir", str(data_dir), "--epochs", "1", "--limit-train", "100", "--no-report"]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert child.returncode == 130, (child.stdout, child.stderr)
    err = child.stderr.strip().splitlines()
    assert "Traceback" not in child.stderr and err == ["interrupted"], child.stderr
