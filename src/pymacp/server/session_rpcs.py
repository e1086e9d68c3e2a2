"""Session RPCs: Send, StreamSession, Get/Cancel/Suspend/Resume, List/WatchSessions, signals,
what-if replay and decision receipts."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from typing import TypeAlias

from macp.v1 import core_pb2, envelope_pb2, policy_pb2

from ..kernel import Envelope, ErrorCode, Identity, Rejection
from ..kernel.envelope import SESSION_START
from ..runtime.core import Ack, Refused
from ..runtime.feed import Feed, Frame
from ..runtime.topic import Lagged, Subscription
from . import convert
from .base import Context, ServiceBase
from .errors import abort

log = logging.getLogger("pymacp.server")
STREAM_OUT_BUFFER = 64


Control: TypeAlias = "core_pb2.StreamSessionResponse | Rejection"


class _Stream:
    """One StreamSession call: the session it follows, and what its response side sends next.

    The response generator waits on one event for both sources: control items (inline
    errors, or a rejection that ends the call) queued by the task reading the request side,
    and the session's feed. Live envelopes go from the session's subscription straight to
    the generator, with no task in between.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.session_id = ""
        self.feed: Feed | None = None
        self.ended = False  # the request side is done: send what is left, then end the call
        self.wake = asyncio.Event()
        self._control: deque[Control] = deque()
        self._room = asyncio.Event()

    def follow(self, session_id: str, feed: Feed) -> None:
        self.session_id = session_id
        self.feed = feed
        feed.live.wake_with(self.wake)
        self.wake.set()  # there may be a replay to send

    async def put(self, item: Control) -> None:
        """Queue a control item; waits while the response side is STREAM_OUT_BUFFER items behind."""
        while len(self._control) >= STREAM_OUT_BUFFER:
            self._room.clear()
            await self._room.wait()
        self._control.append(item)
        self.wake.set()

    def end(self) -> None:
        if self.feed is not None:
            self.feed.close()
        self.ended = True
        self.wake.set()

    def control(self) -> list[Control]:
        items = list(self._control)
        self._control.clear()
        self._room.set()
        return items

    async def frames(self) -> list[Frame]:
        """The next envelopes to send, without waiting for live ones. Raises Lagged."""
        return [] if self.feed is None else await self.feed.next()

    @property
    def finished(self) -> bool:
        return self.ended and not self._control and (self.feed is None or self.feed.drained)


class SessionRPCs(ServiceBase):
    async def Send(self, request: core_pb2.SendRequest, context: Context) -> core_pb2.SendResponse:
        identity = await self.identity(context)
        if not request.HasField("envelope"):
            await abort(context, Rejection(ErrorCode.INVALID_REQUEST, "SendRequest.envelope is required"))
        try:
            ack = await self.runtime.send(identity, Envelope.from_proto(request.envelope))
        except Refused as exc:
            await self.refuse(context, exc)
        return core_pb2.SendResponse(ack=convert.ack(ack))

    async def GetSession(
        self, request: core_pb2.GetSessionRequest, context: Context
    ) -> core_pb2.GetSessionResponse:
        identity = await self.identity(context)
        try:
            session = await self.runtime.get_session(identity, request.session_id)
        except Refused as exc:
            await self.refuse(context, exc)
        return core_pb2.GetSessionResponse(metadata=convert.metadata(session))

    async def CancelSession(
        self, request: core_pb2.CancelSessionRequest, context: Context
    ) -> core_pb2.CancelSessionResponse:
        identity = await self.identity(context)
        ack = await self._lifecycle(
            context, self.runtime.cancel(identity, request.session_id, request.reason)
        )
        return core_pb2.CancelSessionResponse(ack=ack)

    async def SuspendSession(
        self, request: core_pb2.SuspendSessionRequest, context: Context
    ) -> core_pb2.SuspendSessionResponse:
        identity = await self.identity(context)
        ack = await self._lifecycle(
            context, self.runtime.suspend(identity, request.session_id, request.reason)
        )
        return core_pb2.SuspendSessionResponse(ack=ack)

    async def ResumeSession(
        self, request: core_pb2.ResumeSessionRequest, context: Context
    ) -> core_pb2.ResumeSessionResponse:
        identity = await self.identity(context)
        ack = await self._lifecycle(
            context, self.runtime.resume(identity, request.session_id, request.reason)
        )
        return core_pb2.ResumeSessionResponse(ack=ack)

    async def _lifecycle(self, context: Context, call: Awaitable[Ack]) -> envelope_pb2.Ack:
        try:
            return convert.ack(await call)
        except Refused as exc:
            await self.refuse(context, exc)

    async def ListSessions(
        self, request: core_pb2.ListSessionsRequest, context: Context
    ) -> core_pb2.ListSessionsResponse:
        await self.identity(context)
        try:
            page, token = self.runtime.list_sessions(request.page_size, request.page_token)
        except Refused as exc:
            await self.refuse(context, exc)
        return core_pb2.ListSessionsResponse(
            sessions=[convert.metadata(s) for s in page], next_page_token=token
        )

    async def WatchSessions(
        self, request: core_pb2.WatchSessionsRequest, context: Context
    ) -> AsyncIterator[core_pb2.WatchSessionsResponse]:
        await self.identity(context)
        snapshot, sub = self.runtime.watch_sessions()
        try:
            for session in snapshot:
                yield convert.lifecycle_created(session)
            async for event in sub:
                yield convert.lifecycle(event)
        except Lagged:
            self.runtime.metrics.stream_lagged.labels("sessions").inc()
            await abort(context, _lagged("WatchSessions; reconcile with ListSessions"))
        finally:
            sub.close()

    async def WatchSignals(
        self, request: core_pb2.WatchSignalsRequest, context: Context
    ) -> AsyncIterator[core_pb2.WatchSignalsResponse]:
        await self.identity(context)
        sub = self.runtime.signals.subscribe(self.runtime.settings.stream_queue_capacity)
        try:
            async for event in sub:
                yield core_pb2.WatchSignalsResponse(
                    envelope=event.envelope.to_proto(), sender_authenticated=event.authenticated
                )
        except Lagged:
            self.runtime.metrics.stream_lagged.labels("signals").inc()
            await abort(context, _lagged("WatchSignals"))
        finally:
            sub.close()

    async def WhatIfReplay(
        self, request: policy_pb2.WhatIfReplayRequest, context: Context
    ) -> policy_pb2.WhatIfReplayResponse:
        identity = await self.identity(context)
        try:
            result = await self.runtime.what_if(identity, request.session_id, request.candidate)
        except Refused as exc:
            await self.refuse(context, exc)
        return convert.what_if(result)

    async def GetDecisionReceipt(
        self, request: core_pb2.GetDecisionReceiptRequest, context: Context
    ) -> core_pb2.GetDecisionReceiptResponse:
        identity = await self.identity(context)
        try:
            receipt = await self.runtime.receipt(identity, request.session_id)
        except Refused as exc:
            await self.refuse(context, exc)
        return core_pb2.GetDecisionReceiptResponse(receipt_json=receipt)

    async def GetReceiptKeys(
        self, request: core_pb2.GetReceiptKeysRequest, context: Context
    ) -> core_pb2.GetReceiptKeysResponse:
        return core_pb2.GetReceiptKeysResponse(jwks_json=self.runtime.receipts.jwks_json())

    # ---------------------------------------------------------------- StreamSession
    async def StreamSession(
        self, request_iterator: AsyncIterator[core_pb2.StreamSessionRequest], context: Context
    ) -> AsyncIterator[core_pb2.StreamSessionResponse | bytes]:
        identity = await self.identity(context)
        stream = _Stream(identity)
        reader = asyncio.create_task(self._read_frames(request_iterator, stream))
        try:
            while True:
                stream.wake.clear()  # what arrives from here on sets it again
                try:
                    frames = await stream.frames()
                except Lagged:
                    self.runtime.metrics.stream_lagged.labels("session").inc()
                    await abort(context, _lagged("the session stream; resubscribe with after_sequence"))
                for _, envelope in frames:
                    yield response_frame(envelope)
                control = stream.control()
                for item in control:
                    if isinstance(item, Rejection):
                        await abort(context, item)
                    yield item
                if frames or control:
                    continue
                if stream.finished:
                    return
                await stream.wake.wait()
        finally:
            reader.cancel()
            if stream.feed is not None:
                stream.feed.close()

    async def _read_frames(
        self, frames: AsyncIterator[core_pb2.StreamSessionRequest], stream: _Stream
    ) -> None:
        try:
            async for frame in frames:
                problem = await self._frame(frame, stream)
                if problem is not None:
                    await stream.put(problem)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # the transport broke; end the call
            log.debug("stream reader ended", exc_info=True)
        stream.end()  # half-close: stop following the session, send what is queued, end the call

    async def _frame(self, frame: core_pb2.StreamSessionRequest, stream: _Stream) -> Rejection | None:
        has_envelope = frame.HasField("envelope")
        if has_envelope and frame.subscribe_session_id:
            return Rejection(
                ErrorCode.INVALID_REQUEST, "a frame carries either an envelope or a subscription, not both"
            )
        if not has_envelope and not frame.subscribe_session_id:
            return Rejection(
                ErrorCode.INVALID_REQUEST, "a frame must carry an envelope or subscribe_session_id"
            )
        if frame.subscribe_session_id:
            return await self._subscribe(frame.subscribe_session_id, frame.after_sequence, stream)
        env = Envelope.from_proto(frame.envelope)
        if not env.session_id:
            await self._inline(
                stream,
                env.message_id,
                Rejection(
                    ErrorCode.INVALID_ENVELOPE,
                    "only session-scoped envelopes can be sent on a stream; use Send for signals",
                ),
            )
            return None
        if stream.session_id and env.session_id != stream.session_id:
            return Rejection(
                ErrorCode.INVALID_REQUEST, f"this stream is bound to session {stream.session_id!r}"
            )
        live: Subscription[Frame] | None = None
        if not stream.session_id:
            # Follow the session only if the caller may read it. Subscribe before sending, so the
            # caller's own envelope is echoed, but forward nothing until authorization is settled:
            # a SessionStart may yet be refused, or lose a race to someone else's.
            if env.message_type == SESSION_START:
                live = self.runtime.live(env.session_id)
            else:
                live = await self.runtime.follow_if_readable(stream.identity, env.session_id)
        ack = await self.runtime.send(stream.identity, env)
        if live is not None:
            if await self.runtime.may_read(stream.identity, env.session_id):
                stream.follow(env.session_id, self.runtime.follow(live))
            else:
                live.close()
        if not ack.ok and ack.rejection is not None:
            await self._inline(stream, env.message_id, ack.rejection)
        return None

    async def _subscribe(self, session_id: str, after: int, stream: _Stream) -> Rejection | None:
        if stream.session_id:
            return Rejection(
                ErrorCode.INVALID_REQUEST, f"this stream is already bound to session {stream.session_id!r}"
            )
        try:
            feed = await self.runtime.subscribe(stream.identity, session_id, after)
        except Refused as exc:
            if exc.rejection.code is ErrorCode.SESSION_NOT_FOUND:
                return exc.rejection  # ends the call with NOT_FOUND; clients retry this one
            await self._inline(stream, "", exc.rejection)
            return None
        stream.follow(session_id, feed)
        return None

    @staticmethod
    async def _inline(stream: _Stream, message_id: str, rejection: Rejection) -> None:
        error = envelope_pb2.MACPError(
            code=rejection.code.value,
            message=rejection.message,
            session_id=stream.session_id,
            message_id=message_id,
            details=rejection.details_bytes(),
        )
        await stream.put(core_pb2.StreamSessionResponse(error=error))


def response_frame(envelope: bytes) -> bytes:
    """``StreamSessionResponse{envelope}`` on the wire, built from the envelope's bytes as stored."""
    return b"\n" + _varint(len(envelope)) + envelope


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _lagged(what: str) -> Rejection:
    return Rejection(ErrorCode.STREAM_LAGGED, f"subscriber fell behind on {what}")
