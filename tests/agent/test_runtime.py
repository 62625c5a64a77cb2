"""Loading handlers the two ways HTC-Grid users name them, and refusing the rest clearly."""

from __future__ import annotations

import pytest
from sample_handlers_path import HERE

from htcgrid.agent.runtime import load_handler
from htcgrid.errors import ConfigurationError


@pytest.mark.parametrize("spec", ["sample_handlers.echo", "sample_handlers:echo"])
def test_module_dot_or_colon_function(spec: str) -> None:
    handler = load_handler(spec, [HERE])
    assert handler.__name__ == "echo" and handler.__module__ == "sample_handlers"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("echo", "module.function"),
        ("sample_handlers.", "module.function"),
        ("sample_handlers.nothing_here", "has no function 'nothing_here'"),
        ("sample_handlers.__doc__", "is not callable"),
    ],
)
def test_bad_handlers_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_handler(spec, [HERE])


def test_a_missing_module_raises_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_handler("no_such_module_anywhere.handler", [HERE])
