"""Models are bound per call and per context, never by a process-global switch; the house has no import cycle."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from station import agents, business_day, operations, receipts
from station.db import Customer, NoStationBound, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN

ROOT = Path(__file__).resolve().parent.parent


def test_a_model_query_with_nothing_bound_is_a_clear_error(make_station):
    make_station()
    with pytest.raises(NoStationBound, match="st.bound"):
        Customer.select().count()


def test_bindings_nest_and_restore(make_station):
    one, two = make_station("ST-0001", customers=3), make_station("ST-0002", customers=5)
    with one.bound():
        assert Customer.select().count() == 3
        with two.bound():
            assert Customer.select().count() == 5
        assert Customer.select().count() == 3
    with pytest.raises(NoStationBound):
        Customer.select().count()


def test_two_stations_used_alternately_from_two_threads_never_mix(make_station):
    stations = [make_station("ST-0001", customers=4), make_station("ST-0002", customers=4)]
    rounds = 12
    barrier = threading.Barrier(2)
    failures = []

    def counter(st, first):
        try:
            agent_id, _, _, pin = DEMO_AGENTS[0]
            session = agents.login_agent(st, agent_id, pin)
            business_day.open_day(st, session, {"10000": 100})
            with st.bound():
                customer = Customer.select().where(Customer.card_number.is_null(False)).first()
            auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
            for n in range(rounds):
                # Both threads are inside a call at the same moment, each with its own station bound.
                barrier.wait(timeout=30)
                if (n % 2 == 0) == first:
                    operations.deposit_cash(st, session, auth, "100", receipts.new_txn_id())
                else:
                    with st.bound():
                        Operation.select().count()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=counter, args=(st, i == 0)) for i, st in enumerate(stations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    for st in stations:
        with st.bound():
            deposits = list(Operation.select().where(Operation.type == "deposit"))
            assert len(deposits) == rounds // 2
            # Each deposit went to a customer of this station's own database.
            assert {op.customer.account_id for op in deposits} <= {c.account_id for c in Customer.select()}
        assert business_day.drawer_cash(st) == 100 * 100_00 + rounds // 2 * 100_00


def _imported_names(path: Path) -> set[str | tuple[str, str]]:
    """Dotted names ``path`` imports, at module level or inside functions (``from a import b`` gives ``a.b``
    when ``a.b`` is a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.update((base, f"{base}.{alias.name}") for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports, for ``station``, ``sync_server`` and ``dbkit`` (a package is its
    __init__)."""
    modules = {}
    for root in ("station", "sync_server", "dbkit"):
        for path in (ROOT / root).rglob("*.py"):
            modules[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for entry in _imported_names(path):
            if isinstance(entry, tuple):
                base, submodule = entry
                entry = submodule if submodule in modules else base
            if entry in modules and entry != name:
                targets.add(entry)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_house_has_no_import_cycle():
    graph = import_graph()
    assert "station.operations" in graph["station.ui.operations"]
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
