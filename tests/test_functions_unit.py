"""The function registry's check at submit (``require``) with an injected clock: what another
server deploys is seen at once, what it deletes within NAMES_CACHE_SECONDS; and the rules of a
deploy that tests/test_functions.py does not name."""

from __future__ import annotations

import pytest

from htcgrid.dataplane import open_data_plane
from htcgrid.errors import NotFound, UnknownFunction, ValidationError
from htcgrid.functions import NAMES_CACHE_SECONDS, FunctionRegistry


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_default_function_needs_no_deploy() -> None:
    FunctionRegistry(open_data_plane("memory://")).require("default")


def test_an_unknown_function_is_refused_naming_the_deployed_ones() -> None:
    registry = FunctionRegistry(open_data_plane("memory://"))
    with pytest.raises(UnknownFunction, match=r"deployed: none yet"):
        registry.require("pricing")
    registry.deploy("risk", b"zip", "m.f")
    registry.deploy("pricing", b"zip", "m.f")
    with pytest.raises(
        UnknownFunction, match=r"no function named 'pricin' .*deployed: pricing, risk"
    ):
        registry.require("pricin")


def test_a_function_deployed_by_another_server_is_accepted_at_once() -> None:
    data = open_data_plane("memory://")
    clock = Clock()
    here, there = FunctionRegistry(data, clock), FunctionRegistry(data, clock)
    with pytest.raises(UnknownFunction):
        here.require("pricing")
    there.deploy("pricing", b"zip", "m.f")
    here.require("pricing")  # a miss is never cached


def test_a_function_deleted_by_another_server_is_refused_within_the_cache_time() -> None:
    data = open_data_plane("memory://")
    clock = Clock()
    here, there = FunctionRegistry(data, clock), FunctionRegistry(data, clock)
    there.deploy("pricing", b"zip", "m.f")
    here.require("pricing")
    there.delete("pricing")
    clock.now += NAMES_CACHE_SECONDS / 2
    here.require("pricing")  # still remembered
    clock.now += NAMES_CACHE_SECONDS / 2
    with pytest.raises(UnknownFunction):
        here.require("pricing")


def test_a_function_deleted_here_is_refused_at_once() -> None:
    registry = FunctionRegistry(open_data_plane("memory://"), Clock())
    registry.deploy("pricing", b"zip", "m.f")
    registry.require("pricing")
    registry.delete("pricing")
    with pytest.raises(UnknownFunction):
        registry.require("pricing")
    with pytest.raises(NotFound):
        registry.delete("pricing")
    assert registry.names() == []


def test_a_provided_runtime_needs_no_handler_and_a_python_one_does() -> None:
    registry = FunctionRegistry(open_data_plane("memory://"), Clock(5.0))
    custom = registry.deploy("native", b"zip", "", runtime="provided")
    assert (custom.runtime, custom.handler, custom.created_at) == ("provided", "", 5.0)
    with pytest.raises(ValidationError, match="needs a handler"):
        registry.deploy("py", b"zip", "")
    assert registry.names() == ["native"]


def test_versions_keep_counting_after_a_delete_of_another_function() -> None:
    registry = FunctionRegistry(open_data_plane("memory://"))
    registry.deploy("a", b"1", "m.f")
    registry.deploy("b", b"1", "m.f")
    registry.delete("a")
    assert registry.deploy("b", b"2", "m.f").version == 2
    assert registry.deploy("a", b"again", "m.f").version == 1  # a deleted name starts afresh
