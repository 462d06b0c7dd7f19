"""The layers call, they do not reach in: no import cycles between Mirage's modules
(type-only imports count), and ``mirage.security`` knows nothing of the server
state or of WebRTC (it is middleware and pure credential code)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mirage.state import MirageServer
from tests.server_fixtures import LOOPBACK

PACKAGE = Path(__file__).resolve().parents[1] / "mirage"
#: What ``mirage.security`` must never import, at any level (even for types).
NOT_IN_SECURITY = ("mirage.state", "mirage.webrtc", "mirage.app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(tree: ast.AST, module: str, is_package: bool, top_level: bool) -> set[str]:
    """The mirage modules ``tree`` imports (``top_level``: not those inside functions)."""
    found: set[str] = set()
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if top_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # a lazy import runs late: no cycle at import time
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES}


def _graph(top_level: bool) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", top_level)
        # A module's own packages are imported before it anyway: not an edge of a cycle.
        graph[name] = {m for m in edges if not name.startswith(m + ".") and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_no_import_cycles_even_for_types() -> None:
    cycles = _cycles(_graph(top_level=True))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_security_imports_no_server_state_or_webrtc() -> None:
    graph = _graph(top_level=False)
    bad = {
        (module, dep)
        for module, deps in graph.items()
        if module == "mirage.security" or module.startswith("mirage.security.")
        for dep in deps
        if dep.startswith(NOT_IN_SECURITY)
    }
    assert not bad, f"mirage.security reaches into the server: {sorted(bad)}"


def test_security_imports_alone_in_a_fresh_interpreter() -> None:
    """What the static checks say, seen by Python itself: importing the wall first
    (the order a cycle breaks in) loads neither the server state nor the handlers."""
    code = (
        "import sys; import mirage.security, mirage.security.turn; "
        "bad = sorted(m for m in sys.modules if m.startswith(('mirage.state', 'mirage.webrtc'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_server_state_changes_only_through_its_methods() -> None:
    """Handlers read the registry and the default portrait; they cannot write them."""
    server = MirageServer(LOOPBACK)
    with pytest.raises(TypeError):
        server.sessions["x"] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        server.reference = np.zeros((4, 4, 3), np.uint8)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        server.draining = True  # type: ignore[misc]
    portrait = np.zeros((8, 8, 3), np.uint8)
    server.set_default_reference(portrait)
    assert server.reference is portrait
    with server.admit():  # holds a place: a burst cannot overshoot max_sessions
        assert server._admitting == 1
    assert server._admitting == 0
