"""What the bus reads from a JSON-RPC line, and the error lines it writes itself.

The bus does not interpret the protocol. :func:`routing_of` parses a line once and keeps
only the top-level routing fields (``id``, ``method``, ``sessionId``, ``pool`` and whether
it is a response); the line itself is forwarded unchanged. The rules are the kernel's:

- ``id`` counts when it is a string or a number; numbers are compared as text, so ``1``
  and ``"1"`` are the same request id.
- ``sessionId`` counts only as a non-empty string; ``params.sessionId`` is not looked at.
- A line that is not a JSON *object* (garbage, an array, a bare string) gets
  :data:`PARSE_ERROR`.

Error codes: the bus's own frames use -32700 and -32600 like the kernel. For requests it
cannot deliver it uses the codes the stdiobus SDKs map to typed exceptions
(:data:`INVALID_ARGUMENT`, :data:`TRANSPORT_ERROR`, :data:`UNAVAILABLE`, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PARSE_ERROR_CODE = -32700
INVALID_REQUEST = -32600
# stdiobus SDK error codes (stdiobus.errors.ErrorCode)
INVALID_ARGUMENT = 1
TRANSPORT_ERROR = 5
UNAVAILABLE = 8
RESOURCE_EXHAUSTED = 9

_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Routing:
    """The routing fields of one message."""

    id: Any = None  # the id as sent (string or number), echoed in error replies
    id_key: str | None = None  # the id as text, the key of the pending table
    method: str | None = None
    session_id: str | None = None
    pool: str | None = None
    is_response: bool = False

    @property
    def is_request(self) -> bool:
        """A request expects an answer: it has both an id and a method."""
        return self.id_key is not None and self.method is not None


def routing_of(line: bytes) -> Routing | None:
    """The routing fields of ``line``, or None when it is not a JSON object."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
        return None
    if not isinstance(message, dict):
        return None
    raw_id = message.get("id")
    id_key = id_text(raw_id)
    method = message.get("method")
    session = message.get("sessionId")
    pool = message.get("pool")
    return Routing(
        id=raw_id if id_key is not None else None,
        id_key=id_key,
        method=method if isinstance(method, str) else None,
        session_id=session if isinstance(session, str) and session else None,
        pool=pool if isinstance(pool, str) else None,
        is_response="result" in message or "error" in message,
    )


def id_text(value: Any) -> str | None:
    """A request id as text (``1`` and ``"1"`` alike), or None when it is no usable id."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def id_from_head(head: bytes) -> Any:
    """The top-level ``id`` of a truncated JSON object, if it appears before the cut; else None.

    Used for lines too long to parse: their error reply can then name the request, so a
    client fails at once instead of waiting for a timeout. Only whole top-level values are
    decoded, so an ``id`` nested in ``params`` is never mistaken for the request's.
    """
    text = head.decode("utf-8", errors="replace")
    position = _skip_space(text, 0)
    if not text.startswith("{", position):
        return None
    position += 1
    try:
        while True:
            position = _skip_space(text, position)
            key, position = _decoder.raw_decode(text, position)
            position = _skip_space(text, position)
            if not isinstance(key, str) or not text.startswith(":", position):
                return None
            value, position = _decoder.raw_decode(text, _skip_space(text, position + 1))
            if key == "id":
                return value if id_text(value) is not None else None
            position = _skip_space(text, position)
            if not text.startswith(",", position):
                return None
            position += 1
    except (ValueError, RecursionError):  # the value cut off by the limit, or not JSON at all
        return None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def error_line(request_id: Any, code: int, message: str) -> bytes:
    """One JSON-RPC error response, without the newline."""
    reply = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return json.dumps(reply, separators=(",", ":"), ensure_ascii=False).encode()


PARSE_ERROR = error_line(None, PARSE_ERROR_CODE, "Parse error")
