"""The JSON-RPC methods spoken between the bridge and its workers, as plain functions.

Bridge → worker (notifications; every line also carries the top-level ``sessionId``, the
stdio_bus routing convention):

=====================  ==========================================================================
``macp/envelope``      ``{"sessionId", "participant", "envelope"}``: one accepted envelope of a
                       session that declares the worker's participant, in MACP's canonical JSON
                       (:mod:`pymacp.kernel.jsonmap`), in acceptance order. The worker's own
                       envelopes come back too (``envelope.sender == participant``). Other
                       participants' Progress envelopes, which the runtime broadcasts
                       instead of storing, arrive in no fixed order relative to the rest.
``macp/sessionEnded``  ``{"sessionId", "participant", "state"}``: the session is over
                       (``SESSION_STATE_RESOLVED`` / ``_EXPIRED`` / ``_CANCELLED``); nothing follows.
=====================  ==========================================================================

Worker → bridge:

- request ``macp/send`` ``{"sessionId", "envelope": {...}}``: send an envelope as the
  worker's participant. ``envelope`` is canonical JSON; only ``message_type`` and one of
  ``payload`` / ``payload_b64`` are needed. The bridge fills ``macp_version`` ("1.0"),
  ``session_id`` (from ``sessionId``), ``mode`` (the session's), ``message_id`` (a new UUID)
  and ``timestamp`` (now) when they are missing, and always sets ``sender`` to the
  participant: whatever the worker writes there is ignored. The result is the runtime's Ack
  in canonical JSON. Errors: :data:`INVALID_PARAMS` (the envelope cannot be built;
  ``data.code`` is the MACP code, e.g. ``INVALID_ENVELOPE``), :data:`REJECTED` (the runtime
  refused it; ``data.code`` is the MACP error code and ``data.ack`` the Ack),
  :data:`UNAVAILABLE` (the runtime could not be asked; ``data.code`` is the gRPC status; retry).
- notification ``session/update`` (ACP) whose ``params.update.sessionUpdate`` is
  ``agent_message_chunk``: the chunk's ``content.text`` becomes a ``Progress`` envelope in the
  session named by the top-level ``sessionId`` (or ``params.sessionId``), with
  ``progress_token`` "agent_message_chunk", ``progress`` the chunk's number in that session
  and ``message`` the text. Other updates are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from macp.v1 import core_pb2, envelope_pb2

from pymacp.kernel.envelope import PROGRESS, Envelope
from pymacp.kernel.errors import Rejection
from pymacp.kernel.jsonmap import envelope_from_json, envelope_to_json, format_timestamp

from .client import CallError

ENVELOPE = "macp/envelope"
SESSION_ENDED = "macp/sessionEnded"
SEND = "macp/send"
SESSION_UPDATE = "session/update"
CHUNK = "agent_message_chunk"

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
REJECTED = -32001
UNAVAILABLE = -32002

MACP_VERSION = "1.0"


@dataclass(frozen=True, slots=True)
class RpcError:
    code: int
    message: str
    data: Mapping[str, Any] | None = None


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def notification(method: str, session_id: str, params: Mapping[str, Any]) -> bytes:
    return _line({"jsonrpc": "2.0", "method": method, "params": dict(params), "sessionId": session_id})


def envelope_notification(participant: str, envelope: Envelope) -> bytes:
    params = {
        "sessionId": envelope.session_id,
        "participant": participant,
        "envelope": envelope_to_json(envelope),
    }
    return notification(ENVELOPE, envelope.session_id, params)


def session_ended_notification(participant: str, session_id: str, state: str) -> bytes:
    params = {"sessionId": session_id, "participant": participant, "state": state}
    return notification(SESSION_ENDED, session_id, params)


def result_line(request_id: Any, session_id: str | None, result: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": result}
    if session_id:
        message["sessionId"] = session_id
    return _line(message)


def error_line(request_id: Any, session_id: str | None, error: RpcError) -> bytes:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = dict(error.data)
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "error": body}
    if session_id:
        message["sessionId"] = session_id
    return _line(message)


def send_session(params: Any, routed: str | None) -> str:
    """The session a ``macp/send`` is for: ``params.sessionId``, else the line's ``sessionId``."""
    if isinstance(params, dict):
        named = params.get("sessionId")
        if isinstance(named, str):
            return named
        envelope = params.get("envelope")
        if isinstance(envelope, dict) and isinstance(envelope.get("session_id"), str):
            return str(envelope["session_id"])
    return routed or ""


def envelope_for_send(
    params: Any,
    *,
    participant: str,
    session_id: str,
    session_mode: str | None,
    now_ms: int,
    new_id: Callable[[], str],
) -> Envelope | RpcError:
    """The envelope a ``macp/send`` asks for, sent as ``participant``; or why it cannot be built."""
    if not isinstance(params, dict):
        return RpcError(INVALID_PARAMS, "macp/send params must be an object: {sessionId, envelope}")
    partial = params.get("envelope")
    if not isinstance(partial, dict):
        return RpcError(
            INVALID_PARAMS,
            "macp/send needs params.envelope: an envelope in canonical JSON with at least "
            "message_type and payload (or payload_b64)",
        )
    named = partial.get("session_id")
    if isinstance(named, str) and named and session_id and named != session_id:
        return RpcError(
            INVALID_PARAMS, f"envelope.session_id {named!r} differs from params.sessionId {session_id!r}"
        )
    document = dict(partial)
    document.setdefault("macp_version", MACP_VERSION)
    document.setdefault("session_id", session_id)
    document.setdefault("message_id", new_id())
    document.setdefault("timestamp", format_timestamp(now_ms))
    if "mode" not in document:
        if session_id and session_mode is None:
            return RpcError(
                INVALID_PARAMS,
                f"envelope.mode is required: session {session_id!r} is not one this worker was "
                "given, so the bridge does not know its mode",
            )
        document["mode"] = session_mode or ""
    document["sender"] = participant  # the identity comes from the pool's token, never the worker
    decoded = envelope_from_json(document)
    if isinstance(decoded, Rejection):
        return RpcError(INVALID_PARAMS, decoded.message, {"code": decoded.code.value})
    return decoded


def chunk_text(params: Any) -> str | None:
    """The text of an ACP ``agent_message_chunk`` update, or None for any other update."""
    if not isinstance(params, dict):
        return None
    update = params.get("update")
    if not isinstance(update, dict) or update.get("sessionUpdate") != CHUNK:
        return None
    content = update.get("content")
    text = content.get("text") if isinstance(content, dict) else None
    return text if isinstance(text, str) and text else None


def update_session(params: Any, routed: str | None) -> str | None:
    """The MACP session of a ``session/update``: the line's ``sessionId``, else ``params.sessionId``."""
    if routed:
        return routed
    named = params.get("sessionId") if isinstance(params, dict) else None
    return named if isinstance(named, str) and named else None


def progress_envelope(
    *, session_id: str, mode: str, participant: str, text: str, number: int, now_ms: int, message_id: str
) -> Envelope:
    payload = core_pb2.ProgressPayload(progress_token=CHUNK, progress=float(number), message=text)
    return Envelope(
        macp_version=MACP_VERSION,
        mode=mode,
        message_type=PROGRESS,
        message_id=message_id,
        session_id=session_id,
        sender=participant,
        timestamp_unix_ms=now_ms,
        payload=payload.SerializeToString(),
    )


def ack_json(ack: envelope_pb2.Ack) -> dict[str, Any]:
    """An Ack in canonical JSON: snake_case names, enums by name, every field present."""
    document: dict[str, Any] = json_format.MessageToDict(
        ack,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    return document


def rejection(ack: envelope_pb2.Ack) -> RpcError:
    code = ack.error.code or "REJECTED"
    message = ack.error.message or "the runtime refused the envelope"
    return RpcError(REJECTED, f"{code}: {message}", {"code": code, "ack": ack_json(ack)})


def call_failed(error: CallError) -> RpcError:
    """A Send that failed as a call, with no Ack: UNAVAILABLE when retrying can help, else REJECTED."""
    code = error.macp_code or error.status
    if error.transient:
        return RpcError(
            UNAVAILABLE, f"the runtime could not be reached ({error.status}): {error.message}", {"code": code}
        )
    # e.g. UNAUTHENTICATED: the pool's token was refused, or names another sender than its participant
    return RpcError(REJECTED, f"{code}: {error.message}", {"code": code, "status": error.status})
