"""``htcgrid.graph``: reading deps, the blob's round trip, the cycle check (iterative, so a
chain of any length is checked) and what the agent and the worker make of a task's inputs."""

from __future__ import annotations

import pytest

from htcgrid import pickled
from htcgrid.agent.inputs import bundle, read_inputs, with_inputs
from htcgrid.errors import ValidationError
from htcgrid.graph import GraphBuilder, decode, from_lists


def test_deps_keep_the_order_they_were_named_in_any_order_of_tasks() -> None:
    builder = GraphBuilder("s", 4)
    builder.add(3, [2, "s_0", "other_7"])
    builder.add(1, [0])
    builder.add(2, ("s_1",))
    graph = decode(builder.build().encode())
    assert [graph.dep_ids("s", i) for i in range(4)] == [
        [],
        ["s_0"],
        ["s_1"],
        ["s_2", "s_0", "other_7"],
    ]
    assert graph.external_sessions() == {"other": [(0, 7)]}
    assert graph.edges == 5 and not graph.has_deps(0)


def test_no_edges_is_no_graph() -> None:
    assert from_lists("s", None, 3) is None
    assert from_lists("s", [None, [], ()], 3) is None


def test_a_long_chain_is_checked_without_recursion() -> None:
    n = 100_000
    graph = from_lists("s", [None] + [[i - 1] for i in range(1, n)], n)
    assert graph is not None
    graph.check()
    looped = from_lists("s", [[n - 1]] + [[i - 1] for i in range(1, n)], n)
    assert looped is not None
    with pytest.raises(ValidationError) as refused:
        looped.check()
    message = str(refused.value)
    assert message.startswith("the dependencies form a cycle: task 0 needs task 99999 needs")
    assert message.endswith("…") and "\n" not in message


def test_a_cycle_behind_a_valid_prefix_is_named() -> None:
    graph = from_lists("s", [None, [0, 3], [1], [2]], 4)
    assert graph is not None
    with pytest.raises(
        ValidationError, match=r"^the dependencies form a cycle: task 1 needs task 3"
    ):
        graph.check()


def test_inputs_travel_inline_by_key_or_bundled() -> None:
    stored = {"k1": b'{"big":1}', "bundle": bundle((b'{"a":1}', "k1"))}
    assert read_inputs((b'{"a":1}', "k1"), None, stored.__getitem__) == [{"a": 1}, {"big": 1}]
    assert read_inputs(None, "bundle", stored.__getitem__) == [{"a": 1}, {"big": 1}]
    assert with_inputs({"x": 1}, [2]) == {"x": 1, "inputs": [2]}
    assert with_inputs({"inputs": 0}, [2]) == {"inputs": 0}
    assert with_inputs([1], [2]) == [1]


def test_a_pickled_call_gets_its_dependencies_values() -> None:
    output = {"results": pickled.b64(pickled.dumps([41]))}
    call = ((pickled.Input(0), 1), {"k": pickled.Input(1, pickled=False)})
    assert pickled.with_values(call, [output, {"raw": True}]) == ((41, 1), {"k": {"raw": True}})
