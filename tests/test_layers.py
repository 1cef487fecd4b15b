"""Imports only point down the layers of ARCHITECTURE.md, and no two parts import each other (issue 8 item 2).

Every ``import`` in ``codex_node`` counts — top-level, inside a function (lazy) and under ``TYPE_CHECKING`` alike —
because each is a dependency a reader has to hold in their head. A *part* is a subpackage (``market``, ``stores``,
…) or a top-level module (``cli``, ``config``, …); the layer of each part is written once, in :data:`LAYERS`.
``testing/`` sits beside what it fakes: each fake module has the layer of the part it stands in for, and no
production module imports it.

Three narrower rules state what the layers alone cannot:

* the cross-cutting parts every layer uses (:data:`CROSS_CUTTING`: logging, metrics) import only the bottom layer;
* the API's wire models (:data:`WIRE`) are the API's: other parts hand it domain values and it converts them;
* a part's own metrics module (``<part>.metrics``) serves that part and the composition root only — a helper
  every part needs lives in the ``metrics`` part.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import codex_node

PACKAGE_DIR = Path(codex_node.__file__).resolve().parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "utils", "errors", "clock", "units", "buildinfo"),
    ("data",),
    ("stores", "logutils", "metrics"),
    ("config",),
    ("market",),
    ("proofs",),
    ("sales", "purchasing", "peers", "blockexchange", "validation"),
    ("monitor",),
    ("api", "client"),
    ("marketplace", "node"),
    ("cli", "deploycmd", "clientcli", "checkcmd", "statuscmd", "keycmd", "scrubcmd"),
)
"""ARCHITECTURE.md's layers, lowest first. ``buildinfo`` (version and revision) sits with the generic helpers,
``blockexchange`` with ``peers`` (the network), ``validation`` (the validator) with ``sales``, ``monitor`` (the
operator's readings and alerts) between sales and the API that serves them, ``client`` (the API's other end) with
``api``, and the CLI subcommands (``deploycmd``, ``clientcli``, ``checkcmd``, ``statuscmd``, ``keycmd``,
``scrubcmd``) with ``cli``."""

FAKES: dict[str, str] = {
    "testing": "__init__",
    "testing.fakeclock": "clock",
    "testing.memorykv": "stores",
    "testing.fakequota": "stores",
    "testing.mockledger": "market",
    "testing.mockmarket": "market",
    "testing.staticpeers": "peers",
    "testing.fakepeerwire": "peers",
    "testing.faultychaindb": "market",
}
"""Each fake in ``codex_node/testing/`` and the part it stands in for."""

CROSS_CUTTING = ("logutils", "metrics")
WIRE = ("api.schemas",)
COMPOSITION = ("marketplace", "node")

LAYER_OF: dict[str, int] = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every ``codex_node`` module that ``source`` imports, relative to the package root, wherever the import is."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
                base_name = "codex_node" + ("." + target if target else "")
            else:
                base_name = node.module or ""
            # ``from codex_node.x import y``: y may be a module (codex_node.x.y) or a name in codex_node.x.
            names = [base_name] + [f"{base_name}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "codex_node" or name.startswith("codex_node."):
                found.add(name.removeprefix("codex_node").removeprefix("."))
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """``module -> modules it imports``, both relative to ``codex_node`` (the package itself is ``__init__``)."""
    files = {
        module_name(p) if p.parent != package_dir or p.name != "__init__.py" else "__init__": p
        for p in package_dir.rglob("*.py")
    }
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        raw = imports_of(path.read_text(), module if module != "__init__" else "", path.name == "__init__.py")
        graph[module] = {_resolve(name, known) for name in raw if _resolve(name, known)}
        graph[module].discard(module)
    return graph


def _resolve(name: str, known: set[str]) -> str:
    """The module ``name`` denotes: itself, or (for ``from pkg import value``) the nearest enclosing module."""
    if name == "":
        return "__init__"
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def part_of(module: str) -> str:
    if module.startswith("testing.") or module == "testing":
        return module
    return module.split(".")[0]


def layer_of(module: str) -> int:
    part = part_of(module)
    if part.startswith("testing"):
        if part not in FAKES:
            raise AssertionError(f"{module}: a fake without an entry in FAKES (which part does it stand in for?)")
        return LAYER_OF[FAKES[part]]
    if part not in LAYER_OF:
        raise AssertionError(f"{module}: part {part!r} has no layer in LAYERS (add it where ARCHITECTURE.md puts it)")
    return LAYER_OF[part]


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if part_of(target).startswith("testing") and not part_of(module).startswith("testing"):
                problems.append(f"{module} imports the fake {target}")
            elif part_of(module) != part_of(target) and layer_of(target) > layer_of(module):
                problems.append(
                    f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)}), a higher layer"
                )
    return problems


def narrower_rules(graph: Mapping[str, Iterable[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        part = part_of(module)
        for target in sorted(targets):
            other = part_of(target)
            if part == other:
                continue
            if part in CROSS_CUTTING and layer_of(target) > 0:
                problems.append(f"{module} is used by every layer but imports {target} (layer {layer_of(target)})")
            if target in WIRE:
                problems.append(f"{module} imports the API's wire model module {target} (hand the API a domain value)")
            if target == f"{other}.metrics" and part not in COMPOSITION:
                problems.append(f"{module} imports {target}, the metrics of another part (generic helpers: metrics)")
    return problems


def part_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Cycles between parts: each strongly connected set of more than one part (Tarjan), with a module path."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            a, b = part_of(module), part_of(target)
            if a != b:
                parts.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in parts.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(parts):
        if v not in index:
            visit(v)
    return found


def edges_between(graph: Mapping[str, Iterable[str]], members: list[str]) -> list[str]:
    return sorted(
        f"{m} -> {t}"
        for m, ts in graph.items()
        for t in ts
        if part_of(m) in members and part_of(t) in members and part_of(m) != part_of(t)
    )


def test_every_part_has_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_no_import_points_up_a_layer() -> None:
    assert upward_imports(import_graph()) == []


def test_no_two_parts_import_each_other() -> None:
    graph = import_graph()
    assert [edges_between(graph, c) for c in part_cycles(graph)] == []


def test_cross_cutting_parts_wire_models_and_part_metrics_stay_where_they_belong() -> None:
    assert narrower_rules(import_graph()) == []


def problems(graph: Mapping[str, Iterable[str]]) -> list[str]:
    return upward_imports(graph) + narrower_rules(graph) + [str(c) for c in part_cycles(graph)]


# Each tie issue 8 item 2 found, as the import that made it (the module it came from may have moved since).
OLD_TIES = {
    "config reads the deployment file with the market's parser": ("config", "market.deployment"),
    "cli and deploycmd import each other": ("deploycmd", "cli"),
    "marketplace builds the API's ChainInfo": ("marketplace", "api.schemas"),
    "node holds the API's ChainInfo": ("node", "api.schemas"),
    "the market interface imports the proofs package": ("market.market", "proofs"),
    "the embedded chain uses the stores' metrics helper": ("market.embedded", "stores.metrics"),
    "the prover uses the stores' metrics helper": ("proofs.prover", "stores.metrics"),
    "logutils imports the data layer's Cid": ("logutils", "data.cid"),
}


@pytest.mark.parametrize("tie", OLD_TIES)
def test_each_tie_the_review_found_would_fail_this_test(tie: str) -> None:
    source, target = OLD_TIES[tie]
    graph = {m: set(ts) for m, ts in import_graph().items()}
    assert problems(graph) == []
    graph.setdefault(source, set()).add(target)
    graph.setdefault(target, set())
    assert problems(graph) != []
