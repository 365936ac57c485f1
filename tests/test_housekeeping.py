"""House rules read from the source: exceptions live in errors.py, private names stay in their module, every
public function and class says what it does in a docstring, and modules stay readable."""

from __future__ import annotations

import ast
import builtins
from functools import cache
from pathlib import Path

import cnnscope

ROOT = Path(cnnscope.__file__).parent
SOURCES = sorted(ROOT.rglob("*.py"))
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path) -> str:
    parts = ["cnnscope", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SOURCES}


def base_name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def test_every_exception_class_lives_in_errors_py():
    outside = []
    for path in SOURCES:
        if path.name == "errors.py":
            continue
        known = set(BUILTIN_EXCEPTIONS)  # plus any exception class found earlier in this module
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.ClassDef):
                names = {base_name(b) for b in node.bases}
                if names & known or any(name.endswith(("Error", "Exception", "Warning")) for name in names):
                    known.add(node.name)
                    outside.append(f"{where(path, node)} {node.name}")
    assert not outside, "exception classes outside errors.py:\n" + "\n".join(outside)


def imported_from(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom reads from."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    package = package[:len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def module_aliases(path: Path, module: ast.Module) -> set[str]:
    """Names bound to cnnscope modules: import cnnscope.x (as y), from . import x, from cnnscope.pkg import x."""
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            names |= {alias.asname or "cnnscope" for alias in node.names if alias.name.split(".")[0] == "cnnscope"}
        elif isinstance(node, ast.ImportFrom):
            source = imported_from(path, node)
            names |= {alias.asname or alias.name for alias in node.names if f"{source}.{alias.name}" in MODULES}
    return names


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def private_uses(path: Path, module: ast.Module) -> list[str]:
    """`from x import _name` and `mod._name` (mod an imported cnnscope module) in `module`, read from `path`."""
    aliases = module_aliases(path, module)
    uses = []
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom):
            uses += [f"{where(path, node)} imports {alias.name}" for alias in node.names if private(alias.name)]
        elif isinstance(node, ast.Attribute) and private(node.attr) and root_name(node.value) in aliases:
            uses.append(f"{where(path, node)} reads {ast.unparse(node)}")
    return sorted(uses, key=lambda use: int(use.split(" ")[0].rsplit(":", 1)[1]))


def test_no_private_name_is_used_outside_its_module():
    crossing = [use for path in SOURCES for use in private_uses(path, tree(path))]
    assert not crossing, "private names used outside their module:\n" + "\n".join(crossing)


def test_the_private_name_check_flags_module_attributes_only():
    code = ("from . import attribution\nfrom .. import errors as e\nfrom .activations import capture\n"
            "import cnnscope.model\nfrom .attribution import _score, __doc__\n"
            "attribution._score(1)\ne.__doc__\ncnnscope.model.CNN._x\nself._y\ncapture._z\nx = e.brief\n")
    uses = private_uses(ROOT / "inspect" / "example.py", ast.parse(code))
    assert [use.split(" ", 1)[1] for use in uses] == [
        "imports _score", "reads attribution._score", "reads cnnscope.model.CNN._x"]


def _public_defs(path: Path):
    module = tree(path)
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                        if not any(getattr(d, "id", getattr(d, "attr", "")) in ("setter", "deleter")
                                   for d in item.decorator_list):
                            yield item


def test_every_public_function_and_class_has_a_docstring():
    missing = [f"{where(path, node)} {node.name}" for path in SOURCES if "cli" not in path.parts
               for node in _public_defs(path) if not ast.get_docstring(node)]
    assert not missing, "public functions/classes without a docstring:\n" + "\n".join(missing)


def test_modules_stay_under_500_lines():
    long = [f"{path.relative_to(ROOT)} ({n} lines)" for path in SOURCES
            if (n := len(path.read_text(encoding="utf-8").splitlines())) >= 500]
    assert not long, "\n".join(long)
