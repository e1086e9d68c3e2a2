"""The body of ``POST /dispatch``, validated field by field.

::

    {"pool": "tasks",                      (or "agent": "<participant id>"; exactly one)
     "task": {"title": "Summarise", "instructions": "...", "input": <any JSON>},
     "callback": {"url": "https://hooks.example/done", "bearer": "..."},   (optional)
     "ttlMs": 600000}                                                       (optional)

``input`` travels in the TaskRequest as its JSON text (UTF-8); a worker decodes
``payload.input`` (base64 in the canonical JSON) and parses it. Every problem is an
:class:`Invalid` naming the field, and unknown keys are refused so that a typo cannot
silently drop, say, a callback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config import MAX_TTL_MS
from .tasks import Callback

MAX_TITLE_CHARS = 1000
MAX_URL_CHARS = 2048


class Invalid(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Submission:
    pool: str | None
    agent: str | None
    title: str
    instructions: str
    input: bytes
    ttl_ms: int | None
    callback: Callback | None


def parse_submission(document: Any) -> Submission:
    if not isinstance(document, dict):
        raise Invalid("body", "must be a JSON object with 'pool' (or 'agent') and 'task'")
    _only(document, ("pool", "agent", "task", "callback", "ttlMs"), "")
    pool, agent = document.get("pool"), document.get("agent")
    if (pool is None) == (agent is None):
        raise Invalid("pool", "give exactly one of 'pool' (a pool id) and 'agent' (a participant id)")
    for name, value in (("pool", pool), ("agent", agent)):
        if value is not None and (not isinstance(value, str) or not value):
            raise Invalid(name, "must be a non-empty string")
    task = document.get("task")
    if not isinstance(task, dict):
        raise Invalid(
            "task", "is required: an object with 'title', and optionally 'instructions' and 'input'"
        )
    _only(task, ("title", "instructions", "input"), "task.")
    title = task.get("title")
    if not isinstance(title, str) or not title.strip():
        raise Invalid("task.title", "must be a non-empty string")
    if len(title) > MAX_TITLE_CHARS:
        raise Invalid("task.title", f"must be at most {MAX_TITLE_CHARS} characters")
    instructions = task.get("instructions", "")
    if not isinstance(instructions, str):
        raise Invalid("task.instructions", "must be a string")
    data = b""
    if "input" in task:
        try:
            data = json.dumps(
                task["input"], separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (ValueError, RecursionError):
            raise Invalid(
                "task.input", "must be plain JSON (no NaN or Infinity, not absurdly nested)"
            ) from None
    ttl = document.get("ttlMs")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL_MS):
        raise Invalid("ttlMs", f"must be an integer between 1 and {MAX_TTL_MS}")
    return Submission(
        pool=pool,
        agent=agent,
        title=title,
        instructions=instructions,
        input=data,
        ttl_ms=ttl,
        callback=_callback(document.get("callback")),
    )


def _only(document: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in document:
        if key not in allowed:
            raise Invalid(f"{prefix}{key}", f"unknown field; expected one of: {', '.join(allowed)}")


def _callback(raw: Any) -> Callback | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Invalid("callback", "must be an object with 'url' and optionally 'bearer'")
    _only(raw, ("url", "bearer"), "callback.")
    url = raw.get("url")
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise Invalid("callback.url", f"must be an http(s) URL of at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise Invalid("callback.url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise Invalid("callback.url", "must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise Invalid("callback.url", "must not carry credentials; put a token in callback.bearer")
    bearer = raw.get("bearer")
    if bearer is not None and (not isinstance(bearer, str) or not bearer or any(c in bearer for c in "\r\n")):
        raise Invalid("callback.bearer", "must be a non-empty string on one line")
    return Callback(url, bearer)
