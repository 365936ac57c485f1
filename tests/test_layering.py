"""The import rules of ARCHITECTURE.md, read from the source: nothing imports upwards, and nothing imports in a cycle.

The table below is the one statement of the layering; ARCHITECTURE.md shows the same table (a test checks that
it does). A folder may import its own modules and those of any folder on an earlier row, except the folders it
`skips`; folders on the same row are peers and never import each other.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import cnnscope

ROOT = Path(cnnscope.__file__).parent
DOC = ROOT.parent.parent / "ARCHITECTURE.md"

# (folders on this row, folders below that they must not import: they go through another layer)
LAYERS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("base",), ()),
    (("model",), ()),
    (("data",), ()),
    (("trainer",), ()),
    (("runs",), ()),
    (("interop",), ()),
    (("inspect",), ()),
    (("plots",), ()),
    (("views",), ()),
    (("report",), ()),
    (("training",), ()),
    (("sweep", "serve"), ("inspect", "plots")),
    (("cli",), ("plots",)),
    (("package",), ()),
]
RANK = {folder: rank for rank, (folders, _) in enumerate(LAYERS) for folder in folders}
SKIPS = {folder: set(skips) for folders, skips in LAYERS for folder in folders}
SKIPS["sweep"] = {"inspect"}  # a study draws its own figures (plots/sweep.py); it computes nothing of a model
# The one import against the layering: the notebook display hook (base/display.py, inherited by Run, ModelSpec,
# Dataset, ViewResult) asks views/ for their HTML inside `_repr_html_`, when a notebook shows one, never at import.
DISPLAY_HOOK = ("cnnscope.base.display", "_repr_html_", "cnnscope.views.display")


def folder_of(module: str) -> str:
    """The layer of a cnnscope module: its folder below the package (`report` is a module of its own)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "package"
    return parts[1]


def module_name(path: Path) -> tuple[str, str]:
    """(module, package it lives in) for a source file."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imports(path: Path, top_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported cnnscope module) for every import in a file (or only those at module level); the display
    hook's import (DISPLAY_HOOK) is not counted."""
    module, package = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_only else list(ast.walk(tree))
    nodes = [n for n in nodes if n not in _hook_imports(module, tree)]
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if _is_module(target, node):
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "cnnscope"]


def _hook_imports(module: str, tree: ast.Module) -> list[ast.AST]:
    """The import nodes inside the display hook's `_repr_html_` (none outside base/display.py)."""
    hook_module, method, _ = DISPLAY_HOOK
    if module != hook_module:
        return []
    return [node for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name == method
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _is_module(target: str, node: ast.ImportFrom) -> bool:
    """`from cnnscope.x import y` where y is a module of the package x."""
    folder = ROOT.parent.joinpath(*target.split("."))
    return folder.is_dir() and all((folder / f"{a.name}.py").is_file() or (folder / a.name).is_dir()
                                   for a in node.names)


def allowed(here: str, there: str) -> bool:
    return here == there or (RANK[there] < RANK[here] and there not in SKIPS[here])


def test_every_folder_is_in_the_table():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert folders | modules == set(RANK) - {"package"}, "a new folder needs its row in LAYERS"


def test_nothing_imports_upwards():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        here = folder_of(module_name(path)[0])
        for line, target in imports(path):
            there = folder_of(target)
            if not allowed(here, there):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the layering of ARCHITECTURE.md:\n" + "\n".join(wrong)


def _graph() -> dict[str, set[str]]:
    modules = {module_name(p)[0]: p for p in ROOT.rglob("*.py")}
    return {m: {t for _, t in imports(p) if t in modules and t != m} for m, p in modules.items()}


def test_no_import_cycles_between_modules():
    # Imports inside functions count too: a cycle hidden in a function is still a cycle of the design.
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else nxt)
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # Package __init__ files that only hold a docstring or re-export their own modules are not cycles.
    cycles = [c for c in cycles if not _own_package_reexport(c)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _own_package_reexport(cycle: str) -> bool:
    names = cycle.split(" -> ")
    return any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(names, names[1:], strict=False))


def test_architecture_md_shows_the_same_table():
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, re.M)
    shown = [tuple(f.strip().strip("`/") for f in folders.split(",")) for _, folders in rows]
    assert shown == [folders for folders, _ in LAYERS], "ARCHITECTURE.md's layer table differs from LAYERS"


def test_the_display_hook_is_the_one_exception():
    # Guard the exception: base/display.py imports views/ only inside `_repr_html_`, and only views.display.
    path = ROOT / "base" / "display.py"
    hook_module, _, target = DISPLAY_HOOK
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _hook_imports(hook_module, tree)
    assert [node.module for node in hidden] == [target]
    assert imports(path) == [] and module_name(path)[0] == hook_module


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    # Guard the guard: a plots module importing views is caught, and the checker reads real imports.
    assert folder_of("cnnscope.plots.figures") == "plots" and folder_of("cnnscope.trainer.loop") == "trainer"
    assert not allowed("plots", "views") and not allowed("base", "model") and allowed("views", "plots")
    assert not allowed("serve", "inspect") and not allowed("sweep", "serve") and not allowed("serve", "sweep")
    probe = ROOT / "plots" / "activations.py"
    assert any(target.startswith("cnnscope.") for _, target in imports(probe))
