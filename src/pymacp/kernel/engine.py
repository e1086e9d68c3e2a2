"""The session engine: envelope in, decision out.

Theory of operation. :meth:`Kernel.decide` takes the session an envelope addresses (or
None), the authenticated caller, the envelope and the runtime clock ``now_ms``, and
returns an :mod:`~pymacp.kernel.decisions` value. It never mutates anything and never
reads a clock: the caller persists ``Accepted.entries`` and only then adopts
``Accepted.session``. A rejected envelope leaves no trace.

Time-driven transitions (TTL expiry, the suspension cap, the handoff implicit accept) are
not hidden inside ``decide``: the caller runs :meth:`Kernel.advance` first, and so does a
background sweeper. Both write what happened into history, so :func:`replay` rebuilds
the same session from the log alone.

Order of checks for a session-scoped envelope (it decides the error code):
sender authentication -> envelope shape -> identity mode allow-list -> reserved types and
ids -> session exists -> duplicate -> mode matches -> session OPEN -> mode rules
(authority, payload, phase, readiness, policy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import immutables
from macp.v1 import core_pb2

from . import catalog
from .decisions import Accepted, Broadcast, Decision, Duplicate, Rejected
from .envelope import (
    IMPLICIT_ACCEPT_PREFIX,
    PROGRESS,
    RUNTIME_ONLY_TYPES,
    SESSION_CANCEL,
    SESSION_EXPIRE,
    SESSION_RESUME,
    SESSION_START,
    SESSION_SUSPEND,
    SIGNAL,
    Envelope,
    check_shape,
    is_valid_session_id,
)
from .errors import ErrorCode, Reject, forbidden, invalid
from .identity import Identity
from .modes.base import Context, ModeSpec, StartContext, decode, nonblank
from .policy.descriptor import DEFAULT_POLICY_ID, PolicyDescriptor
from .registry import Registry
from .session import (
    SEMANTICS_REV,
    Activity,
    EntryKind,
    EventType,
    HistoryEntry,
    LifecycleEvent,
    Root,
    Session,
    SessionState,
    StartBinding,
)

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 1_048_576
    max_participants: int = 1000
    max_ttl_ms: int = DAY_MS
    default_max_suspend_ms: int = 7 * DAY_MS
    max_suspension_cycles: int = 1024


@dataclass(frozen=True, slots=True)
class Kernel:
    limits: Limits = Limits()

    # ---------------------------------------------------------------- envelopes
    def decide(
        self,
        session: Session | None,
        identity: Identity,
        env: Envelope,
        now_ms: int,
        registry: Registry | None = None,
    ) -> Decision:
        """Decide one client envelope. ``session`` is the one ``env.session_id`` names, if any."""
        try:
            if env.sender and env.sender != identity.sender:
                raise Reject(
                    ErrorCode.UNAUTHENTICATED,
                    f"envelope sender {env.sender!r} does not match the authenticated identity "
                    f"{identity.sender!r}; leave sender empty or set it to your own identity",
                )
            env = env.with_sender(identity.sender)
            if not env.sender:
                raise Reject(ErrorCode.UNAUTHENTICATED, "the caller has no sender identity")
            check_shape(env, self.limits.max_payload_bytes)
            if not identity.allows_mode(env.mode):
                raise forbidden(
                    f"identity {identity.sender!r} may not send in mode {env.mode or '(ambient)'!r}"
                )
            if env.message_type in RUNTIME_ONLY_TYPES:
                raise forbidden(f"{env.message_type} is written by the runtime only; use the matching RPC")
            if env.message_id.startswith(IMPLICIT_ACCEPT_PREFIX):
                raise invalid(f"message_id prefix {IMPLICIT_ACCEPT_PREFIX!r} is reserved for the runtime")
            if env.message_type == SIGNAL:
                return self._signal(env)
            if env.message_type == PROGRESS:
                return self._progress(session, env)
            if env.message_type == SESSION_START:
                if not identity.can_start_sessions:
                    raise forbidden(f"identity {identity.sender!r} may not start sessions")
                return self._start(session, env, now_ms, registry or Registry())
            return self._message(session, env, now_ms, EntryKind.CLIENT)
        except Reject as r:
            return Rejected(r.rejection)

    def _signal(self, env: Envelope) -> Decision:
        payload = decode(core_pb2.SignalPayload, env.payload, "Signal")
        if not nonblank(payload.signal_type):
            raise invalid("SignalPayload.signal_type must not be blank")
        return Broadcast(env)

    def _progress(self, session: Session | None, env: Envelope) -> Decision:
        decode(core_pb2.ProgressPayload, env.payload, "Progress")
        if env.is_ambient:
            return Broadcast(env)
        if session is None:
            raise Reject(ErrorCode.SESSION_NOT_FOUND, f"session {env.session_id!r} does not exist")
        if env.mode != session.mode:
            raise invalid(f"session {session.session_id!r} is in mode {session.mode!r}, not {env.mode!r}")
        if env.sender != session.initiator and env.sender not in session.participants:
            raise forbidden(f"{env.sender!r} is neither the initiator nor a participant of this session")
        if session.state is not SessionState.OPEN:
            raise Reject(ErrorCode.SESSION_NOT_OPEN, f"session is {session.state.name}")
        return Broadcast(env, session)

    # ---------------------------------------------------------------- SessionStart
    def _start(
        self,
        existing: Session | None,
        env: Envelope,
        now_ms: int,
        registry: Registry,
        binding: StartBinding | None = None,
    ) -> Decision:
        if existing is not None:
            if env.message_id in existing.seen:
                return Duplicate(existing)
            raise Reject(ErrorCode.SESSION_ALREADY_EXISTS, f"session {env.session_id!r} already exists")
        if not is_valid_session_id(env.session_id):
            raise Reject(
                ErrorCode.INVALID_SESSION_ID,
                f"session_id {env.session_id!r} is neither a lowercase UUID v4/v7 nor a base64url token "
                "of 22 to 128 characters",
            )
        descriptor = binding.mode_descriptor if binding else registry.mode_descriptor(env.mode)
        if descriptor is None:
            raise Reject(
                ErrorCode.MODE_NOT_SUPPORTED, f"mode {env.mode!r} is not registered with this runtime"
            )
        spec = catalog.spec_for(descriptor)
        start = decode(core_pb2.SessionStartPayload, env.payload, SESSION_START)
        participants = tuple(start.participants)
        self._check_start(spec, start, participants)

        mode_version = start.mode_version or ("" if spec.strict_start else descriptor.mode_version)
        if mode_version != descriptor.mode_version:
            raise invalid(
                f"mode_version {start.mode_version!r} is not supported for {env.mode}; "
                f"this runtime implements {descriptor.mode_version!r}"
            )
        policy = binding.policy if binding else self._resolve_policy(registry, start.policy_version, env.mode)
        if binding:
            max_suspend_ms = binding.max_suspend_ms
        else:
            max_suspend_ms = start.max_suspend_ms or self.limits.default_max_suspend_ms
        rules = spec.parse_rules(policy.rules)
        mode_state = spec.start(
            StartContext(
                session_id=env.session_id,
                mode=env.mode,
                initiator=env.sender,
                participants=participants,
                policy=policy,
                rules=rules,
                now_ms=now_ms,
            )
        )
        # The TTL runs from the SessionStart timestamp (RFC-MACP-0003 §2). A timestamp in the
        # future is clamped to the acceptance time so a client cannot stretch the TTL cap.
        origin = min(env.timestamp_unix_ms, now_ms) if env.timestamp_unix_ms > 0 else now_ms
        session = Session(
            session_id=env.session_id,
            mode=env.mode,
            mode_version=mode_version,
            configuration_version=start.configuration_version,
            policy=policy,
            mode_descriptor=descriptor,
            rules=rules,
            initiator=env.sender,
            participants=participants,
            intent=start.intent,
            context_id=start.context_id,
            extensions=dict(start.extensions),
            roots=tuple(Root(r.uri, r.name) for r in start.roots),
            ttl_ms=start.ttl_ms,
            started_at_ms=now_ms,
            deadline_ms=origin + start.ttl_ms,
            max_suspend_ms=max_suspend_ms,
            semantics_rev=binding.semantics_rev if binding else SEMANTICS_REV,
            state=SessionState.OPEN,
            mode_state=mode_state,
            seen=immutables.Map({env.message_id: 0}),
            last_ordinal=1,
            history_len=1,
            activity=immutables.Map({env.sender: Activity(1, now_ms)}),
        )
        entry = HistoryEntry(
            index=0,
            ordinal=1,
            kind=EntryKind.CLIENT,
            envelope=env,
            accepted_at_ms=now_ms,
            binding=binding
            or StartBinding(policy=policy, mode_descriptor=descriptor, max_suspend_ms=max_suspend_ms),
        )
        return Accepted(session, (entry,), (LifecycleEvent(EventType.CREATED, now_ms),))

    def _check_start(
        self, spec: ModeSpec[object], start: core_pb2.SessionStartPayload, participants: tuple[str, ...]
    ) -> None:
        if not 1 <= start.ttl_ms <= self.limits.max_ttl_ms:
            raise invalid(f"ttl_ms must be between 1 and {self.limits.max_ttl_ms}; got {start.ttl_ms}")
        if len(participants) > self.limits.max_participants:
            raise invalid(f"at most {self.limits.max_participants} participants; got {len(participants)}")
        if any(not nonblank(p) for p in participants):
            raise invalid("participant ids must not be blank")
        if len(set(participants)) != len(participants):
            raise invalid("participants must not repeat")
        if start.max_suspend_ms < 0:
            raise invalid("max_suspend_ms must not be negative (0 means the runtime default)")
        if spec.strict_start:
            if not nonblank(start.mode_version):
                raise invalid("mode_version must not be blank")
            if not nonblank(start.configuration_version):
                raise invalid("configuration_version must not be blank")

    @staticmethod
    def _resolve_policy(registry: Registry, policy_version: str, mode: str) -> PolicyDescriptor:
        policy_id = policy_version or DEFAULT_POLICY_ID
        policy = registry.policy(policy_id)
        if policy is None:
            raise Reject(ErrorCode.UNKNOWN_POLICY_VERSION, f"policy {policy_id!r} is not registered")
        if not policy.applies_to(mode):
            raise Reject(
                ErrorCode.INVALID_POLICY_DEFINITION,
                f"policy {policy_id!r} governs mode {policy.mode!r}, not {mode!r}",
            )
        return policy

    # ---------------------------------------------------------------- mode messages
    def _message(self, session: Session | None, env: Envelope, now_ms: int, kind: EntryKind) -> Decision:
        if session is None:
            raise Reject(ErrorCode.SESSION_NOT_FOUND, f"session {env.session_id!r} does not exist")
        if env.message_id in session.seen:
            return Duplicate(session)
        if env.mode != session.mode:
            raise invalid(f"session {session.session_id!r} is in mode {session.mode!r}, not {env.mode!r}")
        if session.state is SessionState.OPEN and now_ms > session.deadline_ms:
            raise Reject(ErrorCode.SESSION_NOT_OPEN, "session TTL has elapsed")
        if session.state is not SessionState.OPEN:
            raise Reject(ErrorCode.SESSION_NOT_OPEN, f"session is {session.state.name}, not OPEN")
        spec = catalog.spec_for(session.mode_descriptor)
        ctx = self.context(session, env, now_ms, runtime_emitted=kind is EntryKind.RUNTIME)
        mode_state, resolves = spec.step(session.mode_state, ctx, env)

        index = session.history_len
        ordinal = session.last_ordinal + 1
        previous = session.activity.get(env.sender)
        activity = Activity((previous.message_count if previous else 0) + 1, now_ms)
        updated = replace(
            session,
            mode_state=mode_state,
            seen=session.seen.set(env.message_id, index),
            last_ordinal=ordinal,
            history_len=index + 1,
            activity=session.activity.set(env.sender, activity),
        )
        events: tuple[LifecycleEvent, ...] = ()
        if resolves:
            updated = replace(
                updated,
                state=SessionState.RESOLVED,
                resolution=env.payload,
                resolved_by_index=index,
                ended_at_ms=now_ms,
            )
            events = (LifecycleEvent(EventType.RESOLVED, now_ms),)
        entry = HistoryEntry(index, ordinal, kind, env, now_ms)
        return Accepted(updated, (entry,), events)

    @staticmethod
    def context(session: Session, env: Envelope, now_ms: int, *, runtime_emitted: bool = False) -> Context:
        return Context(
            session_id=session.session_id,
            mode=session.mode,
            mode_version=session.mode_version,
            configuration_version=session.configuration_version,
            policy=session.policy,
            rules=session.rules,
            initiator=session.initiator,
            participants=session.participants,
            sender=env.sender,
            message_id=env.message_id,
            message_type=env.message_type,
            now_ms=now_ms,
            suspended_total_ms=session.suspended_total_ms,
            semantics_rev=session.semantics_rev,
            runtime_emitted=runtime_emitted,
        )

    # ---------------------------------------------------------------- time
    def advance(self, session: Session, now_ms: int) -> Accepted | None:
        """Apply every time-driven transition due at ``now_ms``; None when nothing is due."""
        entries: list[HistoryEntry] = []
        events: list[LifecycleEvent] = []
        current = session
        while True:
            step = self._next_due(current, now_ms)
            if step is None:
                break
            current = step.session
            entries.extend(step.entries)
            events.extend(step.events)
        if not entries:
            return None
        return Accepted(current, tuple(entries), tuple(events))

    def _next_due(self, session: Session, now_ms: int) -> Accepted | None:
        if session.state is SessionState.SUSPENDED:
            assert session.suspended_at_ms is not None
            if session.suspended_total_ms + (now_ms - session.suspended_at_ms) > session.max_suspend_ms:
                return self._expire(session, now_ms, "suspension cap exceeded")
            return None
        if session.state is not SessionState.OPEN:
            return None
        spec = catalog.spec_for(session.mode_descriptor)
        if spec.next_synthetic is not None:
            probe = Envelope("1.0", session.mode, "", "", session.session_id, "", now_ms, b"")
            due = spec.next_synthetic(session.mode_state, self.context(session, probe, now_ms))
            if due is not None and due[0] <= now_ms and due[0] <= session.deadline_ms:
                decision = self._synthesize(session, due[1], now_ms)
                if decision is not None:
                    return decision
        if now_ms > session.deadline_ms:
            return self._expire(session, now_ms, "ttl elapsed")
        return None

    def _synthesize(self, session: Session, env: Envelope, now_ms: int) -> Accepted | None:
        try:
            decision = self._message(session, env, now_ms, EntryKind.RUNTIME)
        except Reject:
            return None
        return decision if isinstance(decision, Accepted) else None

    def next_deadline(self, session: Session) -> int | None:
        """When :meth:`advance` next has work for this session (for a sweeper's timer wheel)."""
        if session.state is SessionState.SUSPENDED:
            assert session.suspended_at_ms is not None
            return session.suspended_at_ms + session.max_suspend_ms - session.suspended_total_ms + 1
        if session.state is not SessionState.OPEN:
            return None
        deadline = session.deadline_ms + 1
        spec = catalog.spec_for(session.mode_descriptor)
        if spec.next_synthetic is not None:
            probe = Envelope("1.0", session.mode, "", "", session.session_id, "", deadline, b"")
            due = spec.next_synthetic(session.mode_state, self.context(session, probe, deadline))
            if due is not None:
                deadline = min(deadline, due[0])
        return deadline

    # ---------------------------------------------------------------- lifecycle RPCs
    def suspend(self, session: Session | None, caller: Identity, reason: str, now_ms: int) -> Decision:
        try:
            session = self._controllable(session, caller, "suspend")
            if session.state is not SessionState.OPEN:
                raise Reject(
                    ErrorCode.SESSION_NOT_OPEN,
                    f"only an OPEN session can be suspended; it is {session.state.name}",
                )
            payload = core_pb2.SessionSuspendPayload(reason=reason, suspended_by=caller.sender)
            updated = replace(session, state=SessionState.SUSPENDED, suspended_at_ms=now_ms)
            return self._internal(
                session, updated, SESSION_SUSPEND, caller.sender, payload, now_ms, EventType.SUSPENDED
            )
        except Reject as r:
            return Rejected(r.rejection)

    def resume(self, session: Session | None, caller: Identity, reason: str, now_ms: int) -> Decision:
        """Resume a SUSPENDED session; the cycle cap expires it right after the resume it counts."""
        try:
            resumed = self._resume(session, caller, reason, now_ms)
        except Reject as r:
            return Rejected(r.rejection)
        if resumed.session.suspension_cycles < self.limits.max_suspension_cycles:
            return resumed
        expired = self._expire(resumed.session, now_ms, "suspension cycle cap reached")
        return Accepted(expired.session, resumed.entries + expired.entries, resumed.events + expired.events)

    def _resume(self, session: Session | None, caller: Identity, reason: str, now_ms: int) -> Accepted:
        session = self._controllable(session, caller, "resume")
        if session.state is not SessionState.SUSPENDED or session.suspended_at_ms is None:
            raise Reject(
                ErrorCode.SESSION_NOT_OPEN,
                f"only a SUSPENDED session can be resumed; it is {session.state.name}",
            )
        banked = session.deadline_ms - session.suspended_at_ms
        payload = core_pb2.SessionResumePayload(reason=reason, resumed_by=caller.sender, banked_ms=banked)
        updated = replace(
            session,
            state=SessionState.OPEN,
            deadline_ms=now_ms + banked,
            suspended_at_ms=None,
            suspended_total_ms=session.suspended_total_ms + (now_ms - session.suspended_at_ms),
            suspension_cycles=session.suspension_cycles + 1,
        )
        return self._internal(
            session, updated, SESSION_RESUME, caller.sender, payload, now_ms, EventType.RESUMED
        )

    def cancel(self, session: Session | None, caller: Identity, reason: str, now_ms: int) -> Decision:
        """Cancel an OPEN or SUSPENDED session; idempotent (a Duplicate) once it has ended."""
        try:
            session = self._controllable(session, caller, "cancel")
            if session.state.is_terminal:
                return Duplicate(session)
            payload = core_pb2.SessionCancelPayload(reason=reason, cancelled_by=caller.sender)
            updated = replace(session, state=SessionState.CANCELLED, ended_at_ms=now_ms)
            return self._internal(
                session, updated, SESSION_CANCEL, caller.sender, payload, now_ms, EventType.CANCELLED
            )
        except Reject as r:
            return Rejected(r.rejection)

    @staticmethod
    def _controllable(session: Session | None, caller: Identity, verb: str) -> Session:
        if session is None:
            raise Reject(ErrorCode.SESSION_NOT_FOUND, "session does not exist")
        if not session.may_control(caller.sender):
            raise forbidden(
                f"{caller.sender!r} may not {verb} this session (initiator or delegated authority only)"
            )
        return session

    def _expire(self, session: Session, now_ms: int, reason: str) -> Accepted:
        updated = replace(session, state=SessionState.EXPIRED, ended_at_ms=now_ms)
        payload = core_pb2.SessionCancelPayload(reason=reason)
        return self._internal(session, updated, SESSION_EXPIRE, "", payload, now_ms, EventType.EXPIRED)

    @staticmethod
    def _internal(
        before: Session,
        after: Session,
        message_type: str,
        sender: str,
        payload: object,
        now_ms: int,
        event: EventType,
    ) -> Accepted:
        index = before.history_len
        env = Envelope(
            macp_version="1.0",
            mode=before.mode,
            message_type=message_type,
            message_id=f"internal:{index}",
            session_id=before.session_id,
            sender=sender,
            timestamp_unix_ms=now_ms,
            payload=payload.SerializeToString(),  # type: ignore[attr-defined]
        )
        entry = HistoryEntry(index, 0, EntryKind.INTERNAL, env, now_ms)
        return Accepted(replace(after, history_len=index + 1), (entry,), (LifecycleEvent(event, now_ms),))

    # ---------------------------------------------------------------- replay
    def apply_entry(
        self, session: Session | None, entry: HistoryEntry, registry: Registry | None = None
    ) -> Decision:
        """Re-decide one recorded history entry (used by replay and what-if)."""
        env = entry.envelope
        now = entry.accepted_at_ms
        try:
            if entry.kind is EntryKind.INTERNAL:
                return self._apply_internal(session, entry)
            check_shape(env, max(self.limits.max_payload_bytes, len(env.payload)))
            if env.message_type == SESSION_START:
                return self._start(session, env, now, registry or Registry(), binding=entry.binding)
            return self._message(session, env, now, entry.kind)
        except Reject as r:
            return Rejected(r.rejection)

    def _apply_internal(self, session: Session | None, entry: HistoryEntry) -> Decision:
        env = entry.envelope
        now = entry.accepted_at_ms
        if session is None:
            raise Reject(ErrorCode.SESSION_NOT_FOUND, "no session to apply a lifecycle record to")
        if env.message_type == SESSION_EXPIRE:
            if session.state.is_terminal:
                raise Reject(ErrorCode.SESSION_NOT_OPEN, f"session is {session.state.name}")
            reason = core_pb2.SessionCancelPayload.FromString(env.payload).reason
            return self._expire(session, now, reason)
        if env.message_type == SESSION_SUSPEND:
            p = core_pb2.SessionSuspendPayload.FromString(env.payload)
            return self.suspend(session, Identity(p.suspended_by), p.reason, now)
        if env.message_type == SESSION_RESUME:
            # The cycle cap's expiry, if any, is its own SessionExpire entry right after this one.
            p = core_pb2.SessionResumePayload.FromString(env.payload)
            return self._resume(session, Identity(p.resumed_by), p.reason, now)
        if env.message_type == SESSION_CANCEL:
            p = core_pb2.SessionCancelPayload.FromString(env.payload)
            return self.cancel(session, Identity(p.cancelled_by), p.reason, now)
        raise invalid(f"unknown lifecycle record {env.message_type!r}")
