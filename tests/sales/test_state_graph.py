"""The sales state graph, derived from the state classes themselves (in the spirit of machine-check).

Each state class declares in ``transitions`` the states its ``run`` and hooks may return. This test

1. derives the same set from the code (every state class constructed in a ``return`` of the class's methods, plus
   ``Errored`` for every state that does not end a sale, since the agent turns an unexpected exception of any
   ``run`` into ``Errored``) and requires the two to agree — an undeclared or a stale declaration fails;
2. checks the graph: every state is reachable from Preparing or Unknown, the graph has no cycle and every state
   without a way out is terminal (so every path ends in a terminal state), terminal states declare nothing;
3. runs every terminal state and checks that it runs the clean-up, exactly once.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from typing import cast

import pytest
from salesfakes import SalesEnv

import codex_node.sales.states as states_package
from codex_node.errors import SaleError
from codex_node.sales.states.base import SaleState

ENTRY_STATES = {"Preparing", "Unknown", "Resuming"}


def state_classes() -> dict[str, type[SaleState]]:
    for module in pkgutil.iter_modules(states_package.__path__):
        importlib.import_module(f"{states_package.__name__}.{module.name}")
    found: dict[str, type[SaleState]] = {}
    todo = list(SaleState.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith(f"{states_package.__name__}."):  # not the test doubles of other tests
            found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


STATES = state_classes()


def returned_states(cls: type[SaleState]) -> set[str]:
    """Names of state classes constructed in ``return`` statements of ``cls``'s own methods and its bases'."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is SaleState or not issubclass(klass, SaleState):
            continue
        tree = ast.parse(inspect.getsource(klass))
        for node in ast.walk(tree):
            if isinstance(node, ast.Return) and node.value is not None:
                for call in ast.walk(node.value):
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in STATES:
                        names.add(call.func.id)
    if not cls.terminal:
        names.add("Errored")  # SalesAgent.on_run_error: an unexpected exception of run
    return names


def graph() -> dict[str, set[str]]:
    return {name: set(cls.transitions) for name, cls in STATES.items()}


def test_every_state_of_the_issue_exists_in_its_own_module() -> None:
    expected = {
        "Preparing", "SlotReserving", "Downloading", "InitialProving", "Filling", "Filled", "Proving",
        "ProvingSimulated", "Payout", "Finished", "Cancelled", "Failed", "Errored", "Ignored", "Unknown", "Resuming",
    }  # fmt: skip
    assert set(STATES) == expected
    for name, cls in STATES.items():
        assert cls.__module__.rsplit(".", 1)[1] == name.lower()


@pytest.mark.parametrize("name", sorted(STATES))
def test_declared_transitions_are_exactly_what_the_code_returns(name: str) -> None:
    cls = STATES[name]
    assert set(cls.transitions) <= set(STATES), "declares a state that does not exist"
    assert returned_states(cls) == set(cls.transitions)


@pytest.mark.parametrize("name", sorted(STATES))
def test_hooks_return_only_declared_states(name: str) -> None:
    state = sample(STATES[name])
    for hook in (state.on_cancelled, state.on_failed, state.on_slot_filled):
        result = hook()
        assert result is None or type(result).__name__ in STATES[name].transitions


def test_every_state_is_reachable_from_preparing_or_unknown() -> None:
    g = graph()
    seen = set(ENTRY_STATES)
    todo = list(ENTRY_STATES)
    while todo:
        for nxt in g[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(STATES)


def test_every_path_ends_in_a_terminal_state() -> None:
    g = graph()
    # No cycle: a path cannot go on forever…
    order: list[str] = []
    marks: dict[str, str] = {}

    def visit(name: str) -> None:
        assert marks.get(name) != "open", f"cycle through {name}"
        if marks.get(name) == "done":
            return
        marks[name] = "open"
        for nxt in g[name]:
            visit(nxt)
        marks[name] = "done"
        order.append(name)

    for name in g:
        visit(name)
    # …and where a path stops, the state is terminal (and terminal states lead nowhere).
    for name, nexts in g.items():
        assert (not nexts) == STATES[name].terminal, name


@pytest.mark.parametrize("name", sorted(n for n, c in STATES.items() if c.terminal))
async def test_every_terminal_state_runs_the_clean_up_exactly_once(name: str, env: SalesEnv) -> None:
    agent = env.agent(0)
    state = sample(STATES[name])
    assert await state.run(agent) is None
    assert len(env.hooks.cleaned) == 1
    assert agent.ended
    await state.run(agent)  # running an ending again must not return anything twice
    assert len(env.hooks.cleaned) == 1


def sample(cls: type[SaleState]) -> SaleState:
    """An instance of any state class, whatever its constructor needs."""
    args = {
        "Errored": (SaleError("sample"),),
        "Filling": (object(),),
        "ProvingSimulated": (2,),
    }.get(cls.__name__, ())
    if cls.__name__ == "Ignored":
        return cast(SaleState, cls(reprocess=False, reason="sample"))  # type: ignore[call-arg]
    return cls(*args)
