"""A thin client for the runtime's public gRPC API, with the console's observer identity.

Only the read side and CancelSession are here: the console never sends envelopes (an
invariant test checks that no ``Send`` call exists in the console). Every call carries
``authorization: Bearer <token>`` in its own metadata. gRPC errors become
:class:`CallError`, which says whether retrying can help.

``connected`` follows the channel's connectivity state (READY or not), watched in the
background; a call that fails for authentication marks the client not ready too, because
a console that cannot authenticate cannot observe anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2

log = logging.getLogger("pymacp.console.runtime")

UNARY_TIMEOUT_S = 10.0
LIST_PAGE_SIZE = 500
MAX_LIST_PAGES = 10_000  # a runtime that never ends its pagination must not hang discovery
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Reconnect quickly once the runtime is back (gRPC's default backoff grows to 2 minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
AUTH_FAILURES = frozenset({grpc.StatusCode.UNAUTHENTICATED})


@dataclass(frozen=True, slots=True)
class CallError(Exception):
    """A failed runtime call: the gRPC status name, the MACP error code if the runtime sent one."""

    status: str
    macp_code: str
    message: str
    transient: bool

    def __str__(self) -> str:
        code = f" ({self.macp_code})" if self.macp_code and self.macp_code != self.status else ""
        return f"{self.status}{code}: {self.message}"


def call_error(exc: grpc.aio.AioRpcError) -> CallError:
    code = exc.code()
    macp_code = ""
    with contextlib.suppress(Exception):  # trailers are optional and vary by runtime
        for key, value in exc.trailing_metadata() or ():
            if key == "macp-error-code":
                macp_code = value if isinstance(value, str) else value.decode()
    return CallError(code.name, macp_code, exc.details() or "", code in TRANSIENT)


class RuntimeClient:
    def __init__(
        self, target: str, token: str | None, *, tls: bool = False, root_cert: str | None = None
    ) -> None:
        self.target = target
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._tls = tls
        self._root_cert = root_cert
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._connected = False
        self._auth_failed = False

    @property
    def ready(self) -> bool:
        return self._connected and not self._auth_failed

    async def start(self) -> None:
        if self._tls:
            root = Path(self._root_cert).read_bytes() if self._root_cert else None
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            self._channel = grpc.aio.secure_channel(self.target, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._stub = core_pb2_grpc.MACPRuntimeServiceStub(self._channel)
        self._watcher = asyncio.create_task(
            self._watch_connectivity(self._channel), name="console-connectivity"
        )

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
        self._connected = False

    async def _watch_connectivity(self, channel: grpc.aio.Channel) -> None:
        state = channel.get_state(try_to_connect=True)
        while True:
            self._connected = state == grpc.ChannelConnectivity.READY
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)

    def _note(self, error: CallError | None) -> None:
        if error is None:
            self._auth_failed = False
        elif error.status in {s.name for s in AUTH_FAILURES}:
            if not self._auth_failed:
                log.error("the runtime refused this client's token: %s", error)
            self._auth_failed = True

    async def _unary(self, method: str, request: Any) -> Any:
        try:
            response = await getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=UNARY_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            error = call_error(exc)
            self._note(error)
            raise error from None
        self._note(None)
        return response

    # ------------------------------------------------------------------ reads
    async def get_session(self, session_id: str) -> core_pb2.SessionMetadata | None:
        """The session's metadata, or None if the runtime does not know it (yet)."""
        try:
            response = await self._unary("GetSession", core_pb2.GetSessionRequest(session_id=session_id))
        except CallError as error:
            if error.status == "NOT_FOUND":
                return None
            raise
        return response.metadata

    async def list_sessions(self) -> list[core_pb2.SessionMetadata]:
        sessions: list[core_pb2.SessionMetadata] = []
        token = ""
        for _ in range(MAX_LIST_PAGES):
            request = core_pb2.ListSessionsRequest(page_size=LIST_PAGE_SIZE, page_token=token)
            response = await self._unary("ListSessions", request)
            sessions.extend(response.sessions)
            if not response.next_page_token or response.next_page_token == token:
                break
            token = response.next_page_token
        return sessions

    async def watch_sessions(self) -> AsyncIterator[core_pb2.SessionLifecycleEvent]:
        call = self._stub.WatchSessions(core_pb2.WatchSessionsRequest(), metadata=self._metadata)
        async for response in self._responses(call):
            yield response.event

    async def watch_signals(self) -> AsyncIterator[envelope_pb2.Envelope]:
        call = self._stub.WatchSignals(core_pb2.WatchSignalsRequest(), metadata=self._metadata)
        async for response in self._responses(call):
            yield response.envelope

    async def subscribe(
        self, session_id: str, after_sequence: int, *, drain: bool
    ) -> AsyncGenerator[core_pb2.StreamSessionResponse, None]:
        """Passive subscription: one subscribe frame, then read-only.

        ``drain=False`` keeps the write side open, so the runtime replays history after
        ``after_sequence`` and then forwards live envelopes until cancelled. ``drain=True``
        half-closes right after subscribing: the runtime replays what is stored and ends the
        call -- the way to read the rest of an ended session's history.
        """
        hold = asyncio.Event()

        async def frames() -> AsyncIterator[core_pb2.StreamSessionRequest]:
            yield core_pb2.StreamSessionRequest(
                subscribe_session_id=session_id, after_sequence=after_sequence
            )
            if not drain:
                await hold.wait()  # never set: the write side stays open until the call ends

        call = self._stub.StreamSession(frames(), metadata=self._metadata)
        async for response in self._responses(call):
            yield response

    async def _responses(self, call: Any) -> AsyncIterator[Any]:
        """A streaming call's responses; each one proves the runtime reachable, an error is noted
        and raised as :class:`CallError`, and the call is cancelled however the reader stops."""
        try:
            async for response in call:
                self._note(None)
                yield response
        except grpc.aio.AioRpcError as exc:
            error = call_error(exc)
            self._note(error)
            raise error from None
        finally:
            call.cancel()

    # ------------------------------------------------------------------ control and receipts
    async def cancel_session(self, session_id: str, reason: str) -> envelope_pb2.Ack:
        request = core_pb2.CancelSessionRequest(session_id=session_id, reason=reason)
        response = await self._unary("CancelSession", request)
        return response.ack

    async def decision_receipt(self, session_id: str) -> str:
        request = core_pb2.GetDecisionReceiptRequest(session_id=session_id)
        response = await self._unary("GetDecisionReceipt", request)
        return str(response.receipt_json)

    async def receipt_keys(self) -> str:
        response = await self._unary("GetReceiptKeys", core_pb2.GetReceiptKeysRequest())
        return str(response.jwks_json)
