"""The routing fields the bus reads from a line, with the kernel's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pymacp.bus.jsonrpc import PARSE_ERROR, Routing, error_line, id_from_head, routing_of


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"id": "a", "method": "m"}, Routing("a", "a", "m")),
        ({"id": 7, "method": "m"}, Routing(7, "7", "m")),
        ({"id": True, "method": "m"}, Routing(None, None, "m")),  # a bool is no id
        ({"id": None, "method": "m"}, Routing(None, None, "m")),
        ({"method": "m", "sessionId": "s"}, Routing(method="m", session_id="s")),
        ({"method": "m", "sessionId": ""}, Routing(method="m")),  # empty: no session
        ({"method": "m", "sessionId": 5}, Routing(method="m")),  # not a string: no session
        ({"method": "m", "params": {"sessionId": "s"}}, Routing(method="m")),  # top level only
        ({"id": 1, "result": {}}, Routing(1, "1", is_response=True)),
        ({"id": 1, "error": {}}, Routing(1, "1", is_response=True)),
        ({"method": "m", "pool": "p"}, Routing(method="m", pool="p")),
    ],
)
def test_routing_fields(message: dict[str, Any], expected: Routing) -> None:
    assert routing_of(json.dumps(message).encode()) == expected


def test_only_objects_route() -> None:
    for line in (b"[]", b"1", b'"s"', b"nul", b"\xff", b"[" * 50_000):
        assert routing_of(line) is None


def test_ids_are_compared_as_text() -> None:
    number, text = routing_of(b'{"id":1,"method":"m"}'), routing_of(b'{"id":"1","method":"m"}')
    assert number is not None and text is not None
    assert number.id_key == text.id_key == "1"
    assert number.is_request and text.is_request


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":"r-1","method":"m","params":{"blob":"xxxx', "r-1"),
        (b' { "id" : 12 , "params": {"blob": "x', 12),
        (b'{"params":{"id":"inner","blob":"xxxx', None),  # the nested id is not the request's
        (b'{"method":"m","params":{"blob":"xx"},"id":"late"', "late"),
        (b'{"id":{"x":1}}', None),
        (b"not json", None),
        (b'{"id"', None),
    ],
)
def test_the_id_of_a_truncated_line(head: bytes, expected: Any) -> None:
    assert id_from_head(head) == expected


def test_error_lines() -> None:
    assert json.loads(PARSE_ERROR) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error"},
    }
    assert json.loads(error_line("x", 8, "é")) == {
        "jsonrpc": "2.0",
        "id": "x",
        "error": {"code": 8, "message": "é"},
    }
