"""The asyncio runtime: sessions serialized one by one, durably logged, published live.

Theory of operation. For every envelope the runtime takes the session's lock, lets the
kernel apply whatever time made due (:meth:`Kernel.advance`), asks the kernel to decide,
appends the resulting entries to the store — the ack waits for that append, which the
store group-commits with other sessions' appends — and only then adopts the new session,
publishes accepted envelopes to the session's subscribers and lifecycle events to
watchers. Publishing under the lock keeps every subscriber's order equal to the
acceptance order. Different sessions never wait for each other.

A passive subscriber is registered under the same lock, recording the last ordinal at
that moment; it then reads everything up to that ordinal from the store and continues
with the live buffer, so it sees each accepted envelope exactly once, with no gap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel import (
    Accepted,
    Broadcast,
    Duplicate,
    Envelope,
    ErrorCode,
    EventType,
    Identity,
    Kernel,
    Limits,
    PolicyDescriptor,
    Rejected,
    Rejection,
    Session,
    SessionState,
)
from ..kernel.decisions import Decision
from ..kernel.envelope import SESSION_START
from ..kernel.modes.descriptor import ModeDescriptor
from ..kernel.policy.registration import descriptor_from_proto
from ..kernel.replay import ReplayError
from ..kernel.session import IMPLEMENTATION
from ..kernel.whatif import WhatIfResult, what_if
from ..storage import StorageError, Store
from .clock import Clock, wall_clock_ms
from .config import Settings
from .feed import Feed, Frame
from .metrics import Metrics
from .ratelimit import RateLimiter
from .receipts import ReceiptError, ReceiptIssuer
from .registries import Registries
from .sessions import SessionSlot, SessionTable
from .summary import SessionSummary
from .sweeper import Sweeper
from .topic import Subscription, Topic

log = logging.getLogger("pymacp.runtime")
REPLAY_CHUNK = 1000
PAGE_TOKEN_PREFIX = "v1:"
MAX_PAGE_TOKEN = 1024


ControlVerb = Callable[[Session | None, Identity, str, int], Decision]


class Refused(Exception):
    """A request the runtime refuses with a registry code (for RPCs other than Send)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(code, message)


@dataclass(frozen=True, slots=True)
class Ack:
    ok: bool
    duplicate: bool
    message_id: str
    session_id: str
    accepted_at_ms: int
    state: SessionState
    rejection: Rejection | None = None


@dataclass(frozen=True, slots=True)
class SessionEvent:
    type: EventType
    session: SessionSummary
    at_ms: int


@dataclass(frozen=True, slots=True)
class SignalEvent:
    envelope: Envelope
    authenticated: bool


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock = wall_clock_ms,
        receipts: ReceiptIssuer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.kernel = Kernel(Limits(max_payload_bytes=settings.max_payload_bytes))
        self.sessions = SessionTable(store, self.kernel, self._summarize)
        self.registries = Registries(store, policies_dir=settings.policies_dir)
        self.receipts = receipts or ReceiptIssuer.ephemeral(settings.receipt_issuer)
        self.metrics = metrics or Metrics()
        self.metrics.watch_store(store)
        self.lifecycle: Topic[SessionEvent] = Topic()
        self.signals: Topic[SignalEvent] = Topic()
        self._streams: dict[str, Topic[Frame]] = {}
        self._start_limit = RateLimiter(settings.session_start_limit_per_minute)
        self._message_limit = RateLimiter(settings.message_limit_per_minute)
        self._sweeper = Sweeper(self._due, clock, settings.cleanup_interval_secs, self._maintenance)
        self._sweeper_task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle of the runtime
    async def start(self) -> None:
        await self.store.open()
        await self.registries.load(self.clock())
        recovered, skipped = await self.sessions.recover(strict=self.settings.strict_recovery)
        if skipped:
            self.metrics.replay_mismatches.inc(skipped)
        for summary in self.sessions.summaries():
            self._schedule(summary)
        self.metrics.sessions_loaded.set(self.sessions.hot())
        log.info("recovered %d sessions (%d skipped)", recovered, skipped)
        self._sweeper_task = asyncio.create_task(self._sweeper.run(), name="pymacp-sweeper")

    def end_streams(self) -> None:
        """End every stream and watcher (shutdown): subscribers see their streams close."""
        self.stopping.set()
        for topic in list(self._streams.values()):
            topic.close()
        self.lifecycle.close()
        self.signals.close()
        self.registries.policy_changes.close()
        self.registries.mode_changes.close()

    async def stop(self) -> None:
        if self._sweeper_task is not None:
            self._sweeper_task.cancel()
            await asyncio.gather(self._sweeper_task, return_exceptions=True)
        self.end_streams()
        await self.store.close()

    # ---------------------------------------------------------------- envelopes
    async def send(self, identity: Identity, env: Envelope) -> Ack:
        """Decide, persist and publish one envelope; the answer for Send and stream frames."""
        now = self.clock()
        limiter = self._start_limit if env.message_type == SESSION_START else self._message_limit
        if not limiter.allow(identity.sender, now):
            return self._nack(env, Rejection(ErrorCode.RATE_LIMITED, "rate limit exceeded; retry later"), now)
        if not env.session_id or env.is_ambient:
            return self._finish(env, self.kernel.decide(None, identity, env, now), None, now)
        if env.message_type == SESSION_START:
            slot: SessionSlot | None = self.sessions.reserve(env.session_id)
            if slot is not None and slot.session is None and slot.summary is not None:
                slot = await self._slot(env.session_id)  # an existing, cold session: replay it first
        else:
            slot = await self._slot(env.session_id)
        if slot is None:
            return self._finish(env, self.kernel.decide(None, identity, env, now), None, now)
        async with slot.lock:
            now = self.clock()
            try:
                await self._advance(slot, now)
                if slot.session is None and env.message_type == SESSION_START and self._over_quota(identity):
                    decision: Decision = Rejected(
                        Rejection(
                            ErrorCode.RATE_LIMITED, f"{identity.sender!r} has reached its max_open_sessions"
                        )
                    )
                else:
                    decision = self.kernel.decide(slot.session, identity, env, now, self.registries.snapshot)
                if isinstance(decision, Accepted):
                    await self._commit(slot, decision)
            except StorageError as exc:
                log.error("storage failure on session %s: %s", env.session_id, exc)
                decision = Rejected(
                    Rejection(ErrorCode.INTERNAL_ERROR, "the runtime could not store the envelope")
                )
            finally:
                self.sessions.release_if_empty(slot)
            return self._finish(env, decision, slot, now)

    def _over_quota(self, identity: Identity) -> bool:
        cap = identity.max_open_sessions
        return cap is not None and self.sessions.open_sessions_of(identity.sender) >= cap

    def _finish(self, env: Envelope, decision: Decision, slot: SessionSlot | None, now: int) -> Ack:
        mode_label = self.metrics.mode(env.mode)
        if isinstance(decision, Rejected):
            self.metrics.messages_rejected.labels(mode_label, decision.rejection.code.value).inc()
            if env.message_type == "Commitment":
                self.metrics.commitments_rejected.labels(mode_label).inc()
            return self._nack(env, decision.rejection, now)
        if isinstance(decision, Broadcast):
            self.signals.publish(SignalEvent(decision.envelope, authenticated=True))
            return Ack(True, False, env.message_id, env.session_id, now, SessionState.OPEN)
        state = slot.session.state if slot and slot.session else SessionState.UNSPECIFIED
        if isinstance(decision, Duplicate):
            return Ack(True, True, env.message_id, env.session_id, now, decision.session.state)
        self.metrics.messages_accepted.labels(mode_label).inc()
        return Ack(True, False, env.message_id, env.session_id, now, state)

    @staticmethod
    def _nack(env: Envelope, rejection: Rejection, now: int) -> Ack:
        return Ack(False, False, env.message_id, env.session_id, now, SessionState.UNSPECIFIED, rejection)

    async def _slot(self, session_id: str) -> SessionSlot | None:
        try:
            return await self.sessions.get(session_id)
        except (StorageError, ReplayError) as exc:
            log.error("could not load session %s: %s", session_id, exc)
            raise Refused(ErrorCode.INTERNAL_ERROR, "the runtime could not load the session") from None

    async def _advance(self, slot: SessionSlot, now: int) -> None:
        if slot.session is not None:
            due = self.kernel.advance(slot.session, now)
            if due is not None:
                await self._commit(slot, due)

    async def _commit(self, slot: SessionSlot, accepted: Accepted) -> None:
        """Persist, then adopt and publish. Called with the slot's lock held."""
        summary = self._summarize(accepted.session)
        with self.metrics.append_seconds.time():
            await self.store.append(slot.session_id, accepted.entries, summary.to_json())
        self.sessions.adopt(slot, accepted.session, summary)
        topic = self._streams.get(slot.session_id)
        if topic is not None:
            for entry in accepted.entries:
                if entry.streamable:  # serialized once, shared by every subscriber
                    topic.publish((entry.ordinal, entry.envelope.to_bytes()))
        label = self.metrics.mode(summary.mode)
        for event in accepted.events:
            self._count(event.type, label)
            self.lifecycle.publish(SessionEvent(event.type, summary, event.at_ms))
        if accepted.events:
            self.metrics.sessions_loaded.set(self.sessions.hot())
        self._schedule(summary)

    def _count(self, event: EventType, label: str) -> None:
        counter = {
            EventType.CREATED: self.metrics.sessions_started,
            EventType.RESOLVED: self.metrics.sessions_resolved,
            EventType.EXPIRED: self.metrics.sessions_expired,
            EventType.CANCELLED: self.metrics.sessions_cancelled,
            EventType.SUSPENDED: self.metrics.sessions_suspended,
            EventType.RESUMED: self.metrics.sessions_resumed,
        }[event]
        counter.labels(label).inc()
        if event is EventType.RESOLVED:
            self.metrics.commitments_accepted.labels(label).inc()

    # ---------------------------------------------------------------- cancel / suspend / resume
    async def cancel(self, identity: Identity, session_id: str, reason: str) -> Ack:
        return await self._control(identity, session_id, reason or "cancelled", self.kernel.cancel)

    async def suspend(self, identity: Identity, session_id: str, reason: str) -> Ack:
        return await self._control(identity, session_id, reason or "suspended", self.kernel.suspend)

    async def resume(self, identity: Identity, session_id: str, reason: str) -> Ack:
        return await self._control(identity, session_id, reason or "resumed", self.kernel.resume)

    async def _control(self, identity: Identity, session_id: str, reason: str, verb: ControlVerb) -> Ack:
        now = self.clock()
        slot = await self._slot(session_id)
        if slot is None:
            rejection = Rejection(ErrorCode.SESSION_NOT_FOUND, f"session {session_id!r} does not exist")
            return Ack(False, False, "", session_id, now, SessionState.UNSPECIFIED, rejection)
        async with slot.lock:
            now = self.clock()
            try:
                await self._advance(slot, now)
                decision: Decision = verb(slot.session, identity, reason, now)
                if isinstance(decision, Accepted):
                    await self._commit(slot, decision)
            except StorageError as exc:
                log.error("storage failure on session %s: %s", session_id, exc)
                decision = Rejected(
                    Rejection(ErrorCode.INTERNAL_ERROR, "the runtime could not store the change")
                )
            if isinstance(decision, Rejected):
                return Ack(False, False, "", session_id, now, SessionState.UNSPECIFIED, decision.rejection)
            assert slot.session is not None
            return Ack(True, False, "", session_id, now, slot.session.state)

    # ---------------------------------------------------------------- reads
    async def get_session(self, identity: Identity, session_id: str) -> SessionSummary:
        cold = self.sessions.loaded(session_id)
        if cold is not None and cold.summary is not None and cold.summary.state.is_terminal:
            if not cold.summary.may_read(identity):  # an ended session needs no replay to be read
                raise _not_a_reader(identity)
            return cold.summary
        slot = await self._readable(identity, session_id)
        async with slot.lock:
            try:
                await self._advance(slot, self.clock())
            except StorageError as exc:  # the read still answers from the last durable state
                log.error("could not record expiry of session %s: %s", session_id, exc)
            assert slot.summary is not None
            return slot.summary

    async def _readable(self, identity: Identity, session_id: str) -> SessionSlot:
        slot = await self._slot(session_id) if session_id else None
        if slot is None or slot.session is None:
            raise Refused(ErrorCode.SESSION_NOT_FOUND, f"session {session_id!r} does not exist")
        if not slot.session.may_read(identity):
            raise _not_a_reader(identity)
        return slot

    def list_sessions(self, page_size: int, page_token: str) -> tuple[list[SessionSummary], str]:
        """One page of sessions ordered by id (keyset pagination)."""
        size = page_size or self.settings.list_sessions_default_page_size
        size = min(size, self.settings.list_sessions_max_page_size)
        after = _decode_page_token(page_token) if page_token else ""
        ordered = sorted(self.sessions.summaries(), key=lambda s: s.session_id.encode())
        start = 0
        if after:
            start = next(
                (i for i, s in enumerate(ordered) if s.session_id.encode() > after.encode()), len(ordered)
            )
        page = ordered[start : start + size]
        more = start + size < len(ordered)
        token = _encode_page_token(page[-1].session_id) if more and page else ""
        return page, token

    def watch_sessions(self) -> tuple[list[SessionSummary], Subscription[SessionEvent]]:
        """Every known session now, and the live events from this instant on (no gap, no overlap)."""
        sub = self.lifecycle.subscribe(self.settings.stream_queue_capacity * 4)
        return self.sessions.summaries(), sub

    # ---------------------------------------------------------------- session streams
    def live(self, session_id: str) -> Subscription[Frame]:
        """Accepted envelopes of ``session_id`` from now on. Callers check authorization first."""
        topic = self._streams.get(session_id)
        if topic is None:
            topic = self._streams[session_id] = Topic(lambda: self._drop_stream_topic(session_id))
        return topic.subscribe(self.settings.stream_queue_capacity)

    def _drop_stream_topic(self, session_id: str) -> None:
        topic = self._streams.get(session_id)
        if topic is not None and not len(topic):
            del self._streams[session_id]

    async def may_read(self, identity: Identity, session_id: str) -> bool:
        slot = self.sessions.loaded(session_id)
        return slot is not None and slot.summary is not None and slot.summary.may_read(identity)

    async def follow_if_readable(self, identity: Identity, session_id: str) -> Subscription[Frame] | None:
        """Live envelopes of an existing session the caller may read; None otherwise."""
        if not await self.may_read(identity, session_id):
            return None
        slot = await self._slot(session_id)
        if slot is None:
            return None
        async with slot.lock:  # no envelope of this session is being published right now
            return self.live(session_id)

    async def subscribe(self, identity: Identity, session_id: str, after_sequence: int) -> Feed:
        """Accepted envelopes after ``after_sequence`` from the log, then live ones.

        Raises :class:`Refused` (SESSION_NOT_FOUND, FORBIDDEN) before anything is streamed.
        """
        # The summary knows the readers and the last ordinal: a cold session is not replayed
        # just to be streamed from its log.
        slot = self.sessions.loaded(session_id)
        if slot is None or slot.summary is None:
            raise Refused(ErrorCode.SESSION_NOT_FOUND, f"session {session_id!r} does not exist")
        if not slot.summary.may_read(identity):
            raise _not_a_reader(identity)
        async with slot.lock:  # nothing of this session is being published right now
            assert slot.summary is not None
            upto = slot.summary.last_ordinal
            live = self.live(session_id)
        read = functools.partial(self.store.read_stream_bytes, session_id)
        return Feed(live, read, after=after_sequence, upto=upto, chunk=REPLAY_CHUNK)

    @staticmethod
    def follow(live: Subscription[Frame]) -> Feed:
        """A live subscription as a feed with nothing to replay."""
        return Feed.live_only(live, chunk=REPLAY_CHUNK)

    # ---------------------------------------------------------------- what-if and receipts
    async def what_if(self, identity: Identity, session_id: str, candidate: object) -> WhatIfResult:
        slot = await self._readable(identity, session_id)
        parsed = descriptor_from_proto(candidate)
        if isinstance(parsed, Rejection):
            raise Refused(parsed.code, parsed.message)
        async with slot.lock:
            history = await self.store.read(session_id)
        result = what_if(history, parsed, self.kernel)
        if isinstance(result, Rejection):
            raise Refused(result.code, result.message)
        return result

    async def receipt(self, identity: Identity, session_id: str) -> str:
        slot = await self._readable(identity, session_id)
        session = slot.session
        assert session is not None
        if session.state is not SessionState.RESOLVED or session.resolved_by_index is None:
            raise Refused(
                ErrorCode.RECEIPT_UNAVAILABLE, f"session is {session.state.name}; no binding Commitment yet"
            )
        (entry,) = await self.store.read(session_id, session.resolved_by_index, 1)
        try:
            return self.receipts.receipt_json(
                session_id=session_id,
                mode=session.mode,
                commitment_payload=entry.envelope.payload,
                accepted_at_ms=entry.accepted_at_ms,
                semantics=(IMPLEMENTATION, session.semantics_rev),
            )
        except ReceiptError as exc:
            raise Refused(ErrorCode.RECEIPT_UNAVAILABLE, str(exc)) from None

    # ---------------------------------------------------------------- registries
    async def register_policy(self, identity: Identity, descriptor: object) -> Rejection | None:
        self._require_registry_rights(identity)
        parsed = descriptor_from_proto(descriptor)
        if isinstance(parsed, Rejection):
            return parsed
        return await self.registries.register_policy(parsed, self.clock())

    async def unregister_policy(self, identity: Identity, policy_id: str) -> Rejection | None:
        self._require_registry_rights(identity)
        return await self.registries.unregister_policy(policy_id)

    def policy(self, policy_id: str) -> PolicyDescriptor:
        found = self.registries.policy(policy_id)
        if found is None:
            raise Refused(ErrorCode.UNKNOWN_POLICY_VERSION, f"policy {policy_id!r} is not registered")
        return found

    async def register_ext_mode(self, identity: Identity, descriptor: ModeDescriptor) -> Rejection | None:
        self._require_registry_rights(identity)
        return await self.registries.register_ext_mode(descriptor)

    async def unregister_ext_mode(self, identity: Identity, mode: str) -> Rejection | None:
        self._require_registry_rights(identity)
        return await self.registries.unregister_ext_mode(mode)

    async def promote_mode(self, identity: Identity, mode: str, promoted_name: str) -> Rejection | None:
        self._require_registry_rights(identity)
        return await self.registries.promote_mode(mode, promoted_name)

    @staticmethod
    def _require_registry_rights(identity: Identity) -> None:
        if not identity.can_manage_mode_registry:
            raise Refused(ErrorCode.FORBIDDEN, f"{identity.sender!r} may not change the registries")

    # ---------------------------------------------------------------- time-driven work
    def _summarize(self, session: Session) -> SessionSummary:
        return SessionSummary.of(session, self.kernel.next_deadline(session))

    def _schedule(self, summary: SessionSummary) -> None:
        if summary.next_deadline_ms is not None:
            self._sweeper.schedule(summary.session_id, summary.next_deadline_ms)

    async def _due(self, session_id: str) -> None:
        slot = await self._slot(session_id)
        if slot is None or slot.session is None:
            return
        async with slot.lock:
            try:
                await self._advance(slot, self.clock())
            except StorageError as exc:
                log.error("could not record a timed transition of session %s: %s", session_id, exc)
            if slot.summary is not None:
                self._schedule(slot.summary)

    async def _maintenance(self) -> None:
        """Evict long-ended sessions from memory, and delete them from disk when configured."""
        now = self.clock()
        memory_cutoff = now - self.settings.session_retention_secs * 1000
        disk_cutoff = now - self.settings.session_disk_retention_secs * 1000
        for summary in self.sessions.summaries():
            if not summary.state.is_terminal or summary.ended_at_ms is None:
                continue
            if self.settings.session_disk_retention_secs and summary.ended_at_ms < disk_cutoff:
                await self.store.delete_session(summary.session_id)
                self.sessions.forget(summary.session_id)
            elif self.settings.session_retention_secs and summary.ended_at_ms < memory_cutoff:
                self.sessions.cool(summary.session_id)
        self.metrics.sessions_loaded.set(self.sessions.hot())


def _not_a_reader(identity: Identity) -> Refused:
    return Refused(
        ErrorCode.FORBIDDEN,
        f"{identity.sender!r} is neither the initiator, a participant nor an observer of this session",
    )


def _encode_page_token(session_id: str) -> str:
    return base64.urlsafe_b64encode((PAGE_TOKEN_PREFIX + session_id).encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> str:
    if len(token) > MAX_PAGE_TOKEN:
        raise Refused(ErrorCode.INVALID_REQUEST, "page_token is too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Refused(ErrorCode.INVALID_REQUEST, "page_token is not a token this runtime issued") from None
    if not raw.startswith(PAGE_TOKEN_PREFIX) or len(raw) == len(PAGE_TOKEN_PREFIX):
        raise Refused(ErrorCode.INVALID_REQUEST, "page_token is not a token this runtime issued")
    return raw[len(PAGE_TOKEN_PREFIX) :]
