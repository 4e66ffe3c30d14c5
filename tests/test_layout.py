"""The code's shape: short modules, no import cycle, wire contracts the API server can import.

Each rule is a checker over a package directory, run on `src/convassist` and shown to catch
a synthetic package (written to tmp_path) that breaks it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "convassist"
MAX_LINES = 400
CONTRACT_THIRD_PARTY = frozenset({"pydantic"})


def modules(src: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `src`, by dotted name (a package is its __init__)."""
    found: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def long_modules(src: Path, package: str, limit: int = MAX_LINES) -> dict[str, int]:
    """Modules over `limit` lines, with their length."""
    lengths = {
        name: len(path.read_text().splitlines()) for name, path in modules(src, package).items()
    }
    return {name: n for name, n in lengths.items() if n > limit}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement anywhere in `node` (functions too), except `if TYPE_CHECKING:`."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    for field, value in ast.iter_fields(node):
        if isinstance(node, ast.If) and field == "body" and _is_type_checking(node.test):
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST):
                yield from _runtime_imports(child)


def _absolute(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from … import` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _resolve(dotted: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `dotted` names (`a.b.func` → `a.b`)."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or None


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules `name` imports at run time; `from a import b` is a.b if a module."""
    targets: set[str | None] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(_resolve(alias.name, known) for alias in node.names)
            continue
        base = _absolute(name, path, node)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.add(sub if sub in known else _resolve(base, known))
    return {t for t in targets if t is not None and t != name}


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    known = modules(src, package)
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a → b → … → a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def contract_violations(src: Path, package: str) -> dict[str, set[str]]:
    """Wire-contract modules (`<package>.ml.*.schemas`) importing beyond what the API server
    may load: the standard library, pydantic, `<package>.core` and other schemas modules."""
    known = modules(src, package)
    found: dict[str, set[str]] = {}
    for name, path in known.items():
        if not (name.startswith(f"{package}.ml.") and name.endswith(".schemas")):
            continue
        bad: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(name, path, node)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
                ]
            bad.update(t for t in targets if not _contract_may_import(t, package))
        if bad:
            found[name] = bad
    return found


def _contract_may_import(target: str, package: str) -> bool:
    top = target.split(".")[0]
    if top != package:
        return top == "__future__" or top in sys.stdlib_module_names or top in CONTRACT_THIRD_PARTY
    # The package's own __init__ (its constants) runs before any of its modules anyway.
    return (
        target in (package, f"{package}.core")
        or target.startswith(f"{package}.core.")
        or target.endswith(".schemas")
    )


def test_no_module_is_over_400_lines() -> None:
    assert long_modules(SRC, PACKAGE) == {}


def test_there_is_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(SRC, PACKAGE))
    assert cycle is None, " → ".join(cycle or [])


def test_wire_contracts_import_only_what_the_api_server_may_load() -> None:
    assert contract_violations(SRC, PACKAGE) == {}


def _package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_length_check_catches_a_long_module(tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/short.py": "x = 1\n" * MAX_LINES,
            "pkg/sub/__init__.py": "",
            "pkg/sub/long.py": "x = 1\n" * (MAX_LINES + 1),
        },
    )
    assert long_modules(src, "pkg") == {"pkg.sub.long": MAX_LINES + 1}


def test_the_cycle_check_follows_every_kind_of_import(tmp_path: Path) -> None:
    """A cycle closed by a function-level `from pkg.a import b` where b is a submodule, a
    relative import and a plain `import`; `if TYPE_CHECKING:` imports do not count."""
    src = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "",
            "pkg/a/b.py": "from ..c import helper\n",
            "pkg/c.py": "def helper() -> None:\n    import pkg.d\n",
            "pkg/d.py": "def late() -> None:\n    from pkg.a import b\n",
            "pkg/e.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.f import F\nelse:\n    import json\n"
            ),
            "pkg/f.py": "from pkg.e import TYPE_CHECKING\nclass F: ...\n",
        },
    )
    graph = import_graph(src, "pkg")
    assert graph["pkg.d"] == {"pkg.a.b"}  # the submodule, not pkg.a's __init__
    assert graph["pkg.a.b"] == {"pkg.c"} and graph["pkg.e"] == set()
    assert find_cycle(graph) == ["pkg.a.b", "pkg.c", "pkg.d", "pkg.a.b"]
    (src / "pkg/d.py").write_text("")
    assert find_cycle(import_graph(src, "pkg")) is None


def test_the_contract_check_catches_a_schema_importing_the_service(tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/core/__init__.py": "",
            "pkg/core/limits.py": "",
            "pkg/ml/__init__.py": "",
            "pkg/ml/good/__init__.py": "",
            "pkg/ml/good/schemas.py": (
                "import json\nfrom pydantic import BaseModel\nfrom pkg.core import limits\n"
                "from pkg.ml.bad import schemas\n"
            ),
            "pkg/ml/bad/__init__.py": "",
            "pkg/ml/bad/manager.py": "",
            "pkg/ml/bad/schemas.py": (
                "import numpy\nfrom . import manager\nfrom pkg import VERSION\n"
                "def later() -> None:\n    from pkg.ml import good\n"
            ),
        },
    )
    assert contract_violations(src, "pkg") == {
        "pkg.ml.bad.schemas": {"numpy", "pkg.ml.bad.manager", "pkg.ml.good"}
    }
