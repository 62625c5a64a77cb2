"""The fast JSON path (orjson) must give exactly the standard library's values: a payload or a
result never changes on its way through the grid, whatever numbers or text it holds."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from htcgrid.models import json_dumps, json_loads

DOCUMENTS = [
    b"12345678901234567890",  # beyond 64 bits: a float to orjson, an int to json
    b"-98765432109876543210",
    b"18446744073709551615",
    b"9223372036854775807",
    b'{"a":[1e19,10000000000000000000,3]}',
    b"NaN",
    b"[Infinity,-Infinity]",
    b'"\\ud800"',  # a lone surrogate, escaped
    b'[1.5,"x",null,true]',
    b'{"k":{"k":{"k":[]}}}',
    b'"\xe2\x80\xa8 and \xc3\xa9"',
    b"0.1",
    b"1e-7",
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("document", DOCUMENTS)
def test_reading_gives_the_standard_librarys_value(document: bytes) -> None:
    assert same(json_loads(document), json.loads(document))


VALUES: list[Any] = [
    2**70,
    -(2**64),
    float("nan"),
    [float("inf"), 1.0, 1e16, 1e-7],
    {"1": 2, "é": "\u2028"},
    "x" * 100_000,
    [[[[]]]],
    {"null": None},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_writing_reads_back_as_the_same_value(value: Any) -> None:
    expected = json.loads(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    assert same(json_loads(json_dumps(value)), expected)


def test_what_json_cannot_say_is_refused_as_by_the_standard_library() -> None:
    with pytest.raises(TypeError):
        json_dumps({"when": object()})
    with pytest.raises(UnicodeEncodeError):
        json_dumps("\ud800")
    with pytest.raises(ValueError):
        json_loads(b"{not json")
