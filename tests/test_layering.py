"""The import rules of ARCHITECTURE.md, read from the source: nothing imports upwards.

core (errors, fileio, spec, geometry, layers, model, data, optim, config, runs, loop, metrics, imaging,
  keras_*, export)
  -> inspect/ (arrays) -> plots/ (figures from arrays) -> views/ (+ probe: load, select, compute, draw)
  -> report, serve/, training (the public train/resume: the loop plus curves and report callbacks)
  -> cli/ (parses, calls views and the entry points) and the package's lazy public names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cnnscope

ROOT = Path(cnnscope.__file__).parent
UPPER = {"inspect", "plots", "views", "cli", "serve", "report", "probe"}
API = {"training", "sweep"}  # compose the core loop with upper layers (curves, report; sweeps)
ALLOWED = {
    "core": {"core"},
    "inspect": {"core", "inspect"},
    "plots": {"core", "inspect", "plots"},
    "views": {"core", "inspect", "plots", "views", "probe"},
    "probe": {"core", "inspect", "plots"},
    "report": {"core", "inspect", "plots", "views", "probe", "report"},
    "serve": {"core", "inspect", "plots", "views", "serve"},
    "api": {"core", "plots", "views", "report", "probe", "api"},
    # The CLI parses and calls views; it may read inspect's registries (method names) but never draws itself.
    "cli": {"core", "inspect", "views", "report", "serve", "probe", "cli", "api"},
    "package": {"core", "api", "plots"},  # plots only for the lazily loaded LivePlot
    "main": {"cli"},
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] == "__main__":
        return "main"
    if parts[1] in API:
        return "api"
    if parts[1] == "tboard":  # a training callback that draws, like probe
        return "probe"
    return parts[1] if parts[1] in UPPER else "core"


def module_name(path: Path) -> tuple[str, str]:
    """(module, package it lives in) for a source file."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported cnnscope module) for every import in a file, relative ones resolved."""
    module, package = module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not node.module:  # `from . import x`: x is a module of that package
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "cnnscope"]


def test_nothing_imports_upwards():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        module, _ = module_name(path)
        here = layer_of(module)
        for line, target in imports(path):
            there = layer_of(target)
            if there not in ALLOWED[here]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the layering of ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    # Guard the guard: a plots module importing views, written both ways, is caught.
    assert layer_of("cnnscope.plots.figures") == "plots"
    assert layer_of("cnnscope.loop") == "core" and layer_of("cnnscope.training") == "api"
    assert "views" not in ALLOWED["plots"] and "plots" not in ALLOWED["core"]
    probe = ROOT / "plots" / "activations.py"
    assert any(target.startswith("cnnscope.") for _, target in imports(probe))
