"""The canonical JSON mapping of MACP envelopes (RFC-MACP-0001 §10).

An envelope in JSON keeps the proto field names in snake_case, with one rename:
``timestamp_unix_ms`` becomes ``timestamp``, an RFC 3339 UTC string with millisecond
precision. The payload travels either decoded, as ``payload`` (the proto3 JSON form of the
payload message: bytes as base64, enums by name, every field present so empty strings are
``""``), or opaque, as ``payload_b64`` (standard base64 of the bytes) -- never both.

Which payload message a (mode, message_type) pair carries is :func:`payload_class`: the
core types mean the same message in every mode, and mode types come from the built-in mode
tables. Decoding uses ``google.protobuf.json_format``; nothing here hand-rolls proto JSON.

Encoding (:func:`envelope_to_json`) is lossless: it writes ``payload`` only when the
payload type is known, the bytes decode, the decoded object passes the envelope schema's
checks for that type, and encoding that object again gives back exactly the same bytes.
Anything else -- unknown types, unknown fields, non-canonical encodings, payloads the schema
would refuse -- is written as ``payload_b64``. So every envelope survives
Envelope -> JSON -> Envelope unchanged, and the JSON written is valid against the schema
whenever the envelope's own fields are.

Decoding (:func:`envelope_from_json`) never raises: it returns an :class:`Envelope` or a
:class:`Rejection` whose message names the offending field. It checks, in this order:

1. the document is an object; keys starting with ``_`` (annotations) and unknown keys are
   ignored;
2. ``macp_version`` is a string (INVALID_ENVELOPE) shaped like a version per the schema
   pattern (UNSUPPORTED_PROTOCOL_VERSION); whether the version is *supported* is the
   engine's question, not this module's;
3. ``mode``, ``message_type``, ``message_id``, ``session_id``, ``sender`` and ``timestamp``
   are strings, and ``message_type``, ``message_id`` and ``sender`` are non-empty;
4. ``timestamp`` is an RFC 3339 date-time;
5. scope: a Signal has empty ``mode`` and ``session_id``, a Progress has both or neither,
   every other type has both;
6. exactly one of ``payload`` (an object) and ``payload_b64`` (valid standard base64);
7. a ``payload`` object meets the schema's ``$defs`` for the core types (SessionStart,
   Signal, Progress, Commitment, SessionCancel/Suspend/Resume), then encodes through
   ``ParseDict`` into the payload class (unknown fields ignored); a payload of an unknown
   type is stored as compact UTF-8 JSON with sorted keys.

Deliberate differences from ``macp-envelope.schema.json`` -- each makes this module
stricter, so every document the schema refuses is refused here too:

* ``payload`` must be a JSON object for every type (the schema leaves mode payloads
  unconstrained, so it admits ``"payload": null`` or a number there);
* ``timestamp`` must really be RFC 3339 (the schema's ``format`` is only an annotation
  under draft 2020-12); the year must be 0001-9999, a leap second ``:60`` is read as the
  next second, and digits past milliseconds are truncated;
* ``payload_b64`` must be valid standard base64 with padding (``contentEncoding`` is only
  an annotation);
* a payload object must also fit its protobuf class (types, integer ranges), and strings
  must be valid Unicode (no unpaired surrogates), since protobuf strings are UTF-8;
* patterns match the whole string (the schema's ``$`` would also admit a trailing newline).

On the other side, ``ParseDict`` is lenient where proto3 JSON is: it also accepts the
lowerCamelCase JSON names of payload fields (``ttlMs``), and reads ``bytes`` fields inside a
payload as standard or URL-safe base64, padded or not, skipping characters outside the
alphabet. Keys starting with ``_`` are ignored only at the envelope's top level, since inside
a payload they may be map keys.

Timestamps outside the years 0001-9999 have no RFC 3339 form: :func:`envelope_to_json`
clamps them to the nearest representable instant (the field is informational, §3.4), so
they alone do not round-trip.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from macp.modes.multi_round.v1 import multi_round_pb2
from macp.v1 import core_pb2

from .catalog import BUILTIN_SPECS
from .envelope import (
    COMMITMENT,
    PROGRESS,
    SESSION_CANCEL,
    SESSION_RESUME,
    SESSION_START,
    SESSION_SUSPEND,
    SIGNAL,
    Envelope,
)
from .errors import ErrorCode, Reject, Rejection, invalid

# Core types name one payload message in every mode (and for ambient Signals/Progress).
CORE_PAYLOADS: dict[str, type[Message]] = {
    SESSION_START: core_pb2.SessionStartPayload,
    COMMITMENT: core_pb2.CommitmentPayload,
    SIGNAL: core_pb2.SignalPayload,
    PROGRESS: core_pb2.ProgressPayload,
    SESSION_CANCEL: core_pb2.SessionCancelPayload,
    SESSION_SUSPEND: core_pb2.SessionSuspendPayload,
    SESSION_RESUME: core_pb2.SessionResumePayload,
}
# Mode rules whose payload decoder is not a protobuf class, mapped to their canonical message.
_JSON_OVERRIDES: dict[tuple[str, str], type[Message]] = {
    ("ext.multi_round.v1", "Contribute"): multi_round_pb2.ContributePayload,
}


def payload_class(mode: str, message_type: str) -> type[Message] | None:
    """The protobuf class of a (mode, message_type) payload, or None when it is not known."""
    core = CORE_PAYLOADS.get(message_type)
    if core is not None:
        return core
    override = _JSON_OVERRIDES.get((mode, message_type))
    if override is not None:
        return override
    spec = BUILTIN_SPECS.get(mode)
    rule = spec.rules.get(message_type) if spec is not None else None
    if rule is not None and isinstance(rule.payload, type) and issubclass(rule.payload, Message):
        return rule.payload
    return None


# --- The envelope schema, as checks on decoded JSON ------------------------------------
#
# A check takes a value and its path and returns what is wrong with it, or None. The table
# below mirrors the schema's top-level properties and its $defs, with jsonschema's notion of
# each JSON type (booleans are not numbers; 2.0 is an integer).

Check = Callable[[Any, str], str | None]

_VERSION = re.compile(r"[0-9]+\.[0-9]+(\.[0-9]+)?([-+][0-9A-Za-z.-]+)?")
_COMMITMENT_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A short, safe description of a JSON value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "an integer too large to represent"
    if value is None or isinstance(value, str | int | float | bool):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def _clip(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."


def _string(min_length: int = 0, pattern: re.Pattern[str] | None = None, shape: str = "") -> Check:
    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            return f"{path} must be a string"
        if len(value) < min_length:
            return f"{path} must not be empty"
        if pattern is not None and not pattern.fullmatch(value):
            return f"{path} must look like {shape}, not {_show(value)}"
        return None

    return check


def _integer(minimum: int) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not _is_integer(value) or value < minimum:
            return f"{path} must be an integer >= {minimum}, not {_show(value)}"
        return None

    return check


def _number(minimum: float | None = None) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not _is_number(value):
            return f"{path} must be a number, not {_show(value)}"
        if minimum is not None and value < minimum:
            return f"{path} must be >= {minimum}, not {_show(value)}"
        return None

    return check


def _boolean(value: Any, path: str) -> str | None:
    return None if isinstance(value, bool) else f"{path} must be true or false, not {_show(value)}"


def _array(items: Check) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, list):
            return f"{path} must be an array"
        for i, item in enumerate(value):
            problem = items(item, f"{path}[{i}]")
            if problem:
                return problem
        return None

    return check


def _map(values: Check) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return f"{path} must be an object"
        for key, item in value.items():
            problem = values(item, f"{path}[{_show(key)}]")
            if problem:
                return problem
        return None

    return check


def _object(required: tuple[str, ...], fields: Mapping[str, Check]) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return f"{path} must be a JSON object"
        for name in required:
            if name not in value:
                return f"{path}.{name} is required"
        for name, field_check in fields.items():
            if name in value:
                problem = field_check(value[name], f"{path}.{name}")
                if problem:
                    return problem
        return None

    return check


_TEXT = _string()
_NONEMPTY = _string(min_length=1)
_BASE64 = _string()  # the schema's Base64Bytes; ParseDict decodes it
_ROOT = _object(("uri",), {"uri": _NONEMPTY, "name": _TEXT})
_SHA256 = _string(pattern=_COMMITMENT_HASH, shape="sha256:<64 lowercase hex digits>")
_COMMITMENT_REF = _object(
    ("session_id", "commitment_hash"), {"session_id": _NONEMPTY, "commitment_hash": _SHA256}
)

SCHEMA_PAYLOADS: dict[str, Check] = {
    SIGNAL: _object(
        ("signal_type",),
        {"signal_type": _NONEMPTY, "data": _BASE64, "confidence": _number(), "correlation_session_id": _TEXT},
    ),
    SESSION_START: _object(
        ("ttl_ms", "mode_version", "configuration_version"),
        {
            "intent": _TEXT,
            "participants": _array(_TEXT),
            "mode_version": _NONEMPTY,
            "configuration_version": _NONEMPTY,
            "ttl_ms": _integer(1),
            "roots": _array(_ROOT),
            "policy_version": _TEXT,
            "context_id": _TEXT,
            "extensions": _map(_BASE64),
            "max_suspend_ms": _integer(0),
        },
    ),
    SESSION_CANCEL: _object(("reason",), {"reason": _NONEMPTY, "cancelled_by": _TEXT}),
    SESSION_SUSPEND: _object(("reason",), {"reason": _NONEMPTY, "suspended_by": _TEXT}),
    SESSION_RESUME: _object(
        ("reason",), {"reason": _NONEMPTY, "resumed_by": _TEXT, "banked_ms": _integer(0)}
    ),
    COMMITMENT: _object(
        ("commitment_id",),
        {
            "commitment_id": _NONEMPTY,
            "action": _TEXT,
            "authority_scope": _TEXT,
            "reason": _TEXT,
            "mode_version": _TEXT,
            "policy_version": _TEXT,
            "configuration_version": _TEXT,
            "outcome_positive": _boolean,
            "supersedes": _COMMITMENT_REF,
        },
    ),
    PROGRESS: _object(
        (),
        {
            "progress_token": _TEXT,
            "progress": _number(0),
            "total": _number(0),
            "message": _TEXT,
            "target_message_id": _TEXT,
        },
    ),
}
_ANY_OBJECT = _object((), {})

# Top-level string fields in the order they are checked; True where the schema needs them non-empty.
_STRING_FIELDS = (
    ("mode", False),
    ("message_type", True),
    ("message_id", True),
    ("session_id", False),
    ("sender", True),
)


# --- Envelope -> JSON ------------------------------------------------------------------


def envelope_to_json(env: Envelope) -> dict[str, Any]:
    """The canonical JSON object of ``env`` (see the module docstring for the payload form)."""
    doc: dict[str, Any] = {
        "macp_version": env.macp_version,
        "mode": env.mode,
        "message_type": env.message_type,
        "message_id": env.message_id,
        "session_id": env.session_id,
        "sender": env.sender,
        "timestamp": format_timestamp(env.timestamp_unix_ms),
    }
    decoded = _decoded_payload(env)
    if decoded is None:
        doc["payload_b64"] = base64.b64encode(env.payload).decode("ascii")
    else:
        doc["payload"] = decoded
    return doc


def _decoded_payload(env: Envelope) -> dict[str, Any] | None:
    cls = payload_class(env.mode, env.message_type)
    if cls is None:
        return None
    try:
        message = cls.FromString(env.payload)
    except DecodeError:
        return None
    obj: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    if SCHEMA_PAYLOADS.get(env.message_type, _ANY_OBJECT)(obj, "payload") is not None:
        return None
    if _encode_message(cls, obj) != env.payload:  # keep the JSON form lossless
        return None
    return obj


# --- JSON -> Envelope ------------------------------------------------------------------


def envelope_from_json(doc: object) -> Envelope | Rejection:
    """Read an envelope from its canonical JSON object; never raises on any input."""
    try:
        return _from_json(doc)
    except Reject as exc:
        return exc.rejection


def _from_json(doc: object) -> Envelope:
    if not isinstance(doc, Mapping):
        raise invalid(f"an envelope in JSON must be an object, not {type(doc).__name__}")
    fields = {k: v for k, v in doc.items() if isinstance(k, str) and not k.startswith("_")}

    version = _required_string(fields, "macp_version")
    if not _VERSION.fullmatch(version):
        raise Reject(
            ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"macp_version must be a version number such as '1.0', not {_show(version)}",
        )
    text: dict[str, str] = {}
    for name, nonempty in _STRING_FIELDS:
        text[name] = _required_string(fields, name)
        if nonempty and not text[name]:
            raise invalid(f"{name} must not be empty")
    timestamp_ms = parse_timestamp(_required_string(fields, "timestamp"))
    _check_scope(text["message_type"], text["mode"], text["session_id"])
    payload = _payload_bytes(fields, text["mode"], text["message_type"])
    return Envelope(
        macp_version=version,
        mode=text["mode"],
        message_type=text["message_type"],
        message_id=text["message_id"],
        session_id=text["session_id"],
        sender=text["sender"],
        timestamp_unix_ms=timestamp_ms,
        payload=payload,
    )


def _required_string(fields: Mapping[str, Any], name: str) -> str:
    if name not in fields:
        raise invalid(f"{name} is required")
    value = fields[name]
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string, not {type(value).__name__}")
    if not _is_unicode(value):
        raise invalid(f"{name} must be valid Unicode text; it contains an unpaired surrogate")
    return value


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_scope(message_type: str, mode: str, session_id: str) -> None:
    if message_type == SIGNAL:
        if mode or session_id:
            field = "mode" if mode else "session_id"
            raise invalid(
                f"a Signal is ambient: {field} must be empty "
                "(relate it to a session with payload.correlation_session_id)"
            )
    elif message_type == PROGRESS:
        if bool(mode) != bool(session_id):
            missing = "session_id" if mode else "mode"
            raise invalid(
                f"a Progress sets both mode and session_id (session-scoped) or neither (ambient); "
                f"{missing} is empty"
            )
    else:
        for name, value in (("mode", mode), ("session_id", session_id)):
            if not value:
                raise invalid(f"a {message_type} envelope is session-scoped: {name} must not be empty")


def _payload_bytes(fields: Mapping[str, Any], mode: str, message_type: str) -> bytes:
    has_payload, has_b64 = "payload" in fields, "payload_b64" in fields
    if has_payload and has_b64:
        raise invalid("an envelope carries payload or payload_b64, not both; drop one of them")
    if has_b64:
        return _decode_b64(fields["payload_b64"])
    if not has_payload:
        raise invalid("payload is required (or payload_b64 for opaque bytes)")
    obj = fields["payload"]
    problem = SCHEMA_PAYLOADS.get(message_type, _ANY_OBJECT)(obj, "payload")
    if problem:
        raise invalid(f"{message_type} {problem}")
    cls = payload_class(mode, message_type)
    if cls is None:
        return _encode_opaque(obj)
    try:
        return _encode_message(cls, obj)
    except (json_format.Error, ValueError, TypeError, RecursionError) as exc:
        raise invalid(f"payload does not fit {cls.DESCRIPTOR.full_name}: {_clip(str(exc))}") from None


def _decode_b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise invalid(f"payload_b64 must be a base64 string, not {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("payload_b64 must be standard base64 (RFC 4648 §4, padded)") from None


def _encode_message(cls: type[Message], obj: dict[str, Any]) -> bytes:
    data: bytes = json_format.ParseDict(obj, cls(), ignore_unknown_fields=True).SerializeToString()
    return data


def _encode_opaque(obj: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:
        raise invalid(f"payload is not encodable as JSON text: {_clip(str(exc))}") from None


# --- Timestamps ------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MS
_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC) - _EPOCH) // _MS
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def format_timestamp(unix_ms: int) -> str:
    """``unix_ms`` as RFC 3339 UTC with milliseconds, clamped to the years 0001-9999."""
    when = _EPOCH + min(max(unix_ms, _MIN_MS), _MAX_MS) * _MS
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T"
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )


def parse_timestamp(text: str) -> int:
    """Unix milliseconds of an RFC 3339 date-time; raises INVALID_ENVELOPE naming ``timestamp``."""
    match = _RFC3339.fullmatch(text)
    expected = "timestamp must be an RFC 3339 date-time such as '2026-07-07T00:00:00.000Z'"
    if match is None:
        raise invalid(f"{expected}, not {_show(text)}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10)
    offset = timedelta(0)
    if sign is not None:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            raise invalid(f"{expected}; the UTC offset in {_show(text)} is out of range")
        offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        offset = -offset if sign == "-" else offset
    leap = second == 60  # a leap second reads as the first instant of the next second
    try:
        when = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=timezone(offset))
    except ValueError as exc:
        raise invalid(f"{expected}; {_show(text)} is not a real date and time ({exc})") from None
    millis = int((fraction or "").ljust(3, "0")[:3])
    return (when - _EPOCH) // _MS + millis + (1000 if leap else 0)
