"""Ambient Signals correlated with a session, from WatchSignals, stored on that session's run.

Signals are not part of a session's history (no ordinal, no replay), so a Signal sent while
the console was away is lost to it -- that is the protocol's design, not a console gap. A
Signal whose ``signal_type`` is ``policy.denied`` is how a participant can make a
POLICY_DENIED refusal visible: a rejected envelope is never broadcast, so an observer cannot
see denials any other way. Its ``data`` is expected to be UTF-8 JSON
(``{"messageId", "reasons", "denials"}``, the Ack's error details) and is shown as sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from google.protobuf.message import DecodeError
from macp.v1 import core_pb2, envelope_pb2

from pymacp.kernel.envelope import Envelope

from .events import NewEvent, envelope_event
from .runtime_client import CallError, RuntimeClient

log = logging.getLogger("pymacp.console.signals")
POLICY_DENIED_SIGNAL = "policy.denied"
RETRY_BASE_S = 0.2
RETRY_MAX_S = 5.0

SignalSink = Callable[[str, NewEvent], Awaitable[None]]


def signal_event(message: envelope_pb2.Envelope) -> tuple[str, NewEvent] | None:
    """(correlated session id, event) for a Signal that names a session; None otherwise."""
    if message.message_type != "Signal":
        return None
    try:
        payload = core_pb2.SignalPayload.FromString(message.payload)
    except DecodeError:
        return None
    if not payload.correlation_session_id:
        return None
    event = envelope_event(Envelope.from_proto(message), from_stream=False)
    if payload.signal_type == POLICY_DENIED_SIGNAL:
        event = replace(event, type="policy.denied")
    return payload.correlation_session_id, event


async def follow_signals(client: RuntimeClient, sink: SignalSink) -> None:
    delay = RETRY_BASE_S
    while True:
        try:
            async for message in client.watch_signals():
                delay = RETRY_BASE_S
                found = signal_event(message)
                if found is not None:
                    await sink(*found)
        except CallError as error:
            if error.status == "UNIMPLEMENTED":
                log.warning("the runtime has no WatchSignals; correlated signals will not be shown")
                return
            log.info("signal watch interrupted (%s); reconnecting in %.1fs", error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)
