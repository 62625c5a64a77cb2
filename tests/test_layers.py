"""The package's layers (README, Layout): each imports only the layers before it, and nothing
under ``htcgrid/client/`` reaches the server side but the in-process transport."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "htcgrid"

# The first name under htcgrid -> its layer; a module may import its own layer and those below.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["models", "errors", "settings", "urls", "registry", "retry", "evidence"], 0),
    **dict.fromkeys(["datadir", "handlers", "metrics", "pickled", "common_data"], 0),
    **dict.fromkeys(["pickled_packages", "frames"], 0),
    **dict.fromkeys(["store", "dataplane"], 1),
    **dict.fromkeys(["service", "functions", "ttl", "uploads", "presence", "scaling"], 2),
    **dict.fromkeys(["auth", "backends", "wire", "submission", "session_pages", "memo"], 2),
    **dict.fromkeys(["graph", "graph_submit", "graph_release"], 2),
    **dict.fromkeys(["task_names", "session_create"], 2),
    **dict.fromkeys(["shares"], 2),
    **dict.fromkeys(["api", "agent", "client", "local_agents"], 3),
    **dict.fromkeys(["cli", "connector", "compat", "__init__", "__main__"], 4),
}
# Within layer 3 the planes stay apart: the API, the agents and the client share nothing.
APART = {"api", "agent", "client"}
CLIENT_SIDE = {
    *("models", "errors", "settings", "urls", "retry", "client", "pickled", "common_data"),
    *("evidence", "pickled_packages", "frames"),
}
IN_PROCESS_TRANSPORT = "client/direct.py"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def top_name(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported(path: Path) -> set[str]:
    """The names under ``htcgrid`` this module imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = node.module.split(".")
            if module[0] == "htcgrid":
                if len(module) > 1:
                    names.add(module[1])
                else:
                    names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = alias.name.split(".")
                if module[0] == "htcgrid" and len(module) > 1:
                    names.add(module[1])
    return names - {"__version__"}


def test_every_module_has_a_layer() -> None:
    unknown = {top_name(p) for p in modules()} - LAYERS.keys()
    assert not unknown, f"give these a layer in tests/test_layers.py and the README: {unknown}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_its_layer_and_those_below(path: Path) -> None:
    own = top_name(path)
    if own not in LAYERS:
        pytest.skip("has no layer yet (see the test above)")
    wrong = set()
    for name in imported(path) - {own}:
        layer = LAYERS.get(name, 0)
        if layer > LAYERS[own] or (own in APART and name in APART):
            wrong.add(name)
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)} above its layer"


@pytest.mark.parametrize("path", sorted((PACKAGE / "client").glob("*.py")), ids=lambda p: p.name)
def test_the_client_reaches_the_server_side_only_through_its_in_process_transport(
    path: Path,
) -> None:
    server_side = imported(path) - CLIENT_SIDE
    if path.relative_to(PACKAGE).as_posix() == IN_PROCESS_TRANSPORT:
        assert server_side == {"backends", "service", "submission", "wire"}
    else:
        assert not server_side, f"{path.name} imports {sorted(server_side)}"


def test_the_checker_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from htcgrid.service import GridService\n")
    assert imported(module) == {"service"}
