"""The RunDescriptor: the one body ``POST /runs`` accepts, parsed strictly.

Wire shape (camelCase)::

    {"mode": "live" | "sandbox",
     "runtime": {"kind": str, "version"?: str},
     "session": {"sessionId"?: str, "modeName": str, "modeVersion": str,
                 "configurationVersion": str, "policyVersion"?: str, "ttlMs": int,
                 "participants": [{"id": str}, ...], "metadata"?: {...}},
     "execution"?: {"idempotencyKey"?: str, "tags"?: [str], "requester"?: {"actorId"?: str,
                    "actorType"?: "user" | "service" | "system"}}}

Every object refuses keys it does not know, so stale fields (``kickoff``, a participant
``role``) are reported instead of silently dropped. ``session.metadata`` is the one open
object; its reserved keys (``source``, ``sourceRef``, ``environment``, ``scenarioRef``,
``cancelCallback``, ``cancellationDelegated``) are type-checked. All problems are collected
and reported together as ``(json path, message)`` pairs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pymacp.kernel.envelope import is_valid_session_id

MAX_PARTICIPANTS = 1000
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 512
MAX_TAGS = 64
MAX_TAG_CHARS = 128
MAX_METADATA_BYTES = 64 * 1024
# The protocol only says positive; a week is far beyond any runtime we know (pymacp caps at 24 h).
MAX_TTL_MS = 7 * 24 * 3600 * 1000
REDACTED = "***"

DescriptorMode = Literal["live", "sandbox"]
ActorType = Literal["user", "service", "system"]
_MODES: dict[str, DescriptorMode] = {"live": "live", "sandbox": "sandbox"}
_ACTOR_TYPES: dict[str, ActorType] = {"user": "user", "service": "service", "system": "system"}


class DescriptorError(ValueError):
    """The body is not a valid RunDescriptor; ``errors`` lists every problem found."""

    def __init__(self, errors: tuple[tuple[str, str], ...]) -> None:
        self.errors = errors
        summary = "; ".join(f"{path}: {message}" if path else message for path, message in errors)
        super().__init__(f"invalid run descriptor: {summary}")


@dataclass(frozen=True, slots=True)
class CancelCallback:
    url: str
    bearer: str | None


@dataclass(frozen=True, slots=True)
class SessionSpec:
    session_id: str | None  # None: the console allocates a UUID v4
    mode_name: str
    mode_version: str
    configuration_version: str
    policy_version: str | None
    ttl_ms: int
    participants: tuple[str, ...]
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunDescriptor:
    mode: DescriptorMode
    runtime_kind: str
    runtime_version: str | None
    session: SessionSpec
    idempotency_key: str | None
    tags: tuple[str, ...]
    requester_id: str | None
    requester_type: ActorType | None
    raw: Mapping[str, Any]  # the accepted document, for storage (see redacted())

    @property
    def cancel_callback(self) -> CancelCallback | None:
        callback = self.session.metadata.get("cancelCallback")
        if not isinstance(callback, Mapping):
            return None
        bearer = callback.get("bearer")
        return CancelCallback(url=str(callback["url"]), bearer=bearer if isinstance(bearer, str) else None)

    @property
    def cancellation_delegated(self) -> bool:
        return self.session.metadata.get("cancellationDelegated") is True

    def redacted(self, session_id: str | None = None) -> dict[str, Any]:
        """The document as stored and shown: secrets masked, the resolved session id filled in."""
        document = json.loads(json.dumps(self.raw))
        session = document["session"]
        if session_id is not None:
            session["sessionId"] = session_id
        callback = session.get("metadata", {}).get("cancelCallback")
        if isinstance(callback, dict) and "bearer" in callback:
            callback["bearer"] = REDACTED
        return dict(document)


class _Check:
    """Collects (path, message) pairs while walking the document."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def obj(self, value: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a JSON object, not {_kind(value)}")
            return None
        for key in sorted(set(value) - allowed, key=str):
            self.fail(
                _join(path, str(key)), f"unknown field; allowed fields are {', '.join(sorted(allowed))}"
            )
        return value

    def text(
        self, parent: Mapping[str, Any], key: str, path: str, *, required: bool, limit: int = MAX_TEXT_CHARS
    ) -> str | None:
        where = _join(path, key)
        if key not in parent:
            if required:
                self.fail(where, "is required")
            return None
        value = parent[key]
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {_kind(value)}")
            return None
        if not value.strip():
            self.fail(where, "must not be empty")
            return None
        if len(value) > limit:
            self.fail(where, f"must be at most {limit} characters")
            return None
        return value

    def choice(self, parent: Mapping[str, Any], key: str, path: str, options: tuple[str, ...]) -> str | None:
        value = parent.get(key)
        if key in parent and value in options:
            return str(value)
        if key not in parent:
            self.fail(_join(path, key), f"is required; one of {', '.join(options)}")
        else:
            self.fail(_join(path, key), f"must be one of {', '.join(options)}")
        return None


def parse_descriptor(document: object) -> RunDescriptor:
    """Validate a decoded JSON body; raise DescriptorError listing every problem."""
    check = _Check()
    top = check.obj(document, "", frozenset({"mode", "runtime", "session", "execution"}))
    if top is None:
        raise DescriptorError(tuple(check.errors))
    mode = check.choice(top, "mode", "", tuple(_MODES))
    runtime_kind, runtime_version = _runtime(check, top)
    session = _session(check, top.get("session"))
    idempotency_key, tags, requester_id, requester_type = _execution(check, top)
    if check.errors or session is None or mode is None or runtime_kind is None:
        raise DescriptorError(tuple(check.errors))
    return RunDescriptor(
        mode=_MODES[mode],
        runtime_kind=runtime_kind,
        runtime_version=runtime_version,
        session=session,
        idempotency_key=idempotency_key,
        tags=tags,
        requester_id=requester_id,
        requester_type=requester_type,
        raw=json.loads(json.dumps(top)),
    )


def _runtime(check: _Check, top: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if "runtime" not in top:
        check.fail("runtime", 'is required, e.g. {"kind": "macp"}')
        return None, None
    runtime = check.obj(top["runtime"], "runtime", frozenset({"kind", "version"}))
    if runtime is None:
        return None, None
    return (
        check.text(runtime, "kind", "runtime", required=True),
        check.text(runtime, "version", "runtime", required=False),
    )


def _session(check: _Check, value: object) -> SessionSpec | None:
    allowed = frozenset(
        {
            "sessionId",
            "modeName",
            "modeVersion",
            "configurationVersion",
            "policyVersion",
            "ttlMs",
            "participants",
            "metadata",
        }
    )
    if value is None:
        check.fail("session", "is required")
        return None
    session = check.obj(value, "session", allowed)
    if session is None:
        return None
    session_id = check.text(session, "sessionId", "session", required=False)
    if session_id is not None and not is_valid_session_id(session_id):
        check.fail(
            "session.sessionId",
            "must be a lowercase UUID v4/v7 or a base64url token of 22-128 characters; "
            "omit it to let the console allocate one",
        )
    mode_name = check.text(session, "modeName", "session", required=True)
    mode_version = check.text(session, "modeVersion", "session", required=True)
    configuration_version = check.text(session, "configurationVersion", "session", required=True)
    policy_version = check.text(session, "policyVersion", "session", required=False)
    ttl_ms = _ttl(check, session)
    participants = _participants(check, session.get("participants"))
    metadata = _metadata(check, session.get("metadata", {}))
    if None in (mode_name, mode_version, configuration_version, ttl_ms, participants, metadata):
        return None
    assert mode_name and mode_version and configuration_version and ttl_ms and participants is not None
    assert metadata is not None
    return SessionSpec(
        session_id=session_id,
        mode_name=mode_name,
        mode_version=mode_version,
        configuration_version=configuration_version,
        policy_version=policy_version,
        ttl_ms=ttl_ms,
        participants=participants,
        metadata=metadata,
    )


def _ttl(check: _Check, session: Mapping[str, Any]) -> int | None:
    if "ttlMs" not in session:
        check.fail("session.ttlMs", "is required (milliseconds, a positive integer)")
        return None
    value = session["ttlMs"]
    # JSON has one number type; 60000.0 is accepted as 60000, 1.5 and true are not.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        check.fail("session.ttlMs", f"must be an integer number of milliseconds, not {_kind(value)}")
        return None
    if not 1 <= value <= MAX_TTL_MS:
        check.fail("session.ttlMs", f"must be between 1 and {MAX_TTL_MS}; got {value}")
        return None
    return value


def _participants(check: _Check, value: object) -> tuple[str, ...] | None:
    path = "session.participants"
    if value is None:
        check.fail(path, 'is required: a list of {"id": ...} objects')
        return None
    if not isinstance(value, list):
        check.fail(path, f"must be a list, not {_kind(value)}")
        return None
    if not 1 <= len(value) <= MAX_PARTICIPANTS:
        check.fail(path, f"must list between 1 and {MAX_PARTICIPANTS} participants; got {len(value)}")
        return None
    ids: list[str] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        entry = check.obj(item, where, frozenset({"id"}))
        if entry is None:
            continue
        participant = check.text(entry, "id", where, required=True, limit=MAX_ID_CHARS)
        if participant is None:
            continue
        if participant in ids:
            check.fail(f"{where}.id", f"duplicate participant {participant!r}")
            continue
        ids.append(participant)
    return tuple(ids)


def _metadata(check: _Check, value: object) -> Mapping[str, Any] | None:
    path = "session.metadata"
    if not isinstance(value, Mapping):
        check.fail(path, f"must be a JSON object, not {_kind(value)}")
        return None
    try:
        size = len(json.dumps(value, allow_nan=False).encode())
    except ValueError:
        check.fail(path, "must be plain JSON (no NaN or infinity)")
        return None
    if size > MAX_METADATA_BYTES:
        check.fail(path, f"is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}")
        return None
    for key in ("source", "sourceRef", "environment", "scenarioRef"):
        check.text(value, key, path, required=False)
    if "cancellationDelegated" in value and not isinstance(value["cancellationDelegated"], bool):
        check.fail(f"{path}.cancellationDelegated", "must be true or false")
    if "cancelCallback" in value:
        _cancel_callback(check, value["cancelCallback"])
    return value


def _cancel_callback(check: _Check, value: object) -> None:
    path = "session.metadata.cancelCallback"
    callback = check.obj(value, path, frozenset({"url", "bearer"}))
    if callback is None:
        return
    url = check.text(callback, "url", path, required=True, limit=2048)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            check.fail(f"{path}.url", "must be an absolute http:// or https:// URL")
    check.text(callback, "bearer", path, required=False, limit=4096)


def _execution(
    check: _Check, top: Mapping[str, Any]
) -> tuple[str | None, tuple[str, ...], str | None, ActorType | None]:
    if "execution" not in top:
        return None, (), None, None
    execution = check.obj(top["execution"], "execution", frozenset({"idempotencyKey", "tags", "requester"}))
    if execution is None:
        return None, (), None, None
    key = check.text(execution, "idempotencyKey", "execution", required=False, limit=MAX_ID_CHARS)
    tags = _tags(check, execution.get("tags", []))
    requester_id: str | None = None
    requester_type: ActorType | None = None
    if "requester" in execution:
        requester = check.obj(
            execution["requester"], "execution.requester", frozenset({"actorId", "actorType"})
        )
        if requester is not None:
            requester_id = check.text(requester, "actorId", "execution.requester", required=False)
            if "actorType" in requester:
                kind = check.choice(requester, "actorType", "execution.requester", tuple(_ACTOR_TYPES))
                requester_type = _ACTOR_TYPES.get(kind or "")
    return key, tags, requester_id, requester_type


def _tags(check: _Check, value: object) -> tuple[str, ...]:
    path = "execution.tags"
    if not isinstance(value, list):
        check.fail(path, f"must be a list of strings, not {_kind(value)}")
        return ()
    if len(value) > MAX_TAGS:
        check.fail(path, f"must have at most {MAX_TAGS} tags; got {len(value)}")
        return ()
    tags: list[str] = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS:
            check.fail(
                f"{path}[{index}]", f"must be a non-empty string of at most {MAX_TAG_CHARS} characters"
            )
        elif tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
