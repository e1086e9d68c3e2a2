"""One run's observer: find the session, follow its stream, end when the session ends.

Theory of operation. An observer owns one run and is the only writer of its envelopes.

1. **Attach.** Poll GetSession with exponential backoff (base, cap) until the session
   exists. NOT_FOUND past the deadline (run creation + poll timeout) fails the run; an
   unreachable runtime never does -- the observer just keeps trying. Likewise a session the
   runtime stops knowing later (NOT_FOUND for a whole poll timeout) fails the run as lost.
2. **Follow.** While the session is OPEN or SUSPENDED, hold a passive StreamSession
   subscription from ``after_sequence = last_ordinal`` (the store's count of envelopes
   received) with the write side open. Each envelope is stored in its own transaction
   together with its ordinal; an envelope whose message id is already stored is skipped, so
   resuming too low is harmless. When the stream ends or fails, ask GetSession and
   re-subscribe from the stored ordinal, with backoff. A quiet stream is never a failure.
3. **State.** The run's status changes only on what the runtime says about the session:
   GetSession (after every stream end, on a timer, after an accepted Commitment) and
   WatchSessions (pushed in by discovery through :meth:`Observer.notify`).
4. **Finish.** When the session is terminal, read the rest of its history with a
   subscribe-and-half-close call (the runtime replays what is stored and ends the call),
   check the decision receipt if it resolved, and only then store the terminal status --
   so a run's terminal status event is always its last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from macp.v1 import core_pb2, envelope_pb2

from pymacp.kernel.envelope import Envelope

from .events import console_event, envelope_event
from .models import Run
from .receipt import check_receipt
from .recorder import Recorder
from .runtime_client import CallError, RuntimeClient
from .status import REASON_BY_STATE, RESOLVED, TERMINAL_STATES, error_for, state_name, status_for
from .store import RunChanges

log = logging.getLogger("pymacp.console.observer")
STREAM_RETRY_MAX_S = 5.0
# An ended session's history is final, so a drain that has delivered nothing for this long is
# complete even on a runtime that does not end the call when the client half-closes.
DRAIN_IDLE_S = 10.0
_COMPACTED = re.compile(r"compacted.*?after_sequence\s*>=\s*(\d+)|before ordinal (\d+) was compacted", re.I)


@dataclass(frozen=True, slots=True)
class Timing:
    poll_base_s: float
    poll_max_s: float
    poll_timeout_ms: int
    reconcile_s: float


class Observer:
    def __init__(
        self, run: Run, client: RuntimeClient, recorder: Recorder, timing: Timing, drains: asyncio.Semaphore
    ) -> None:
        self.run_id = run.run_id
        self.session_id = run.session_id
        self._created_at_ms = run.created_at_ms
        self._client = client
        self._recorder = recorder
        self._timing = timing
        self._drains = drains
        self._wake = asyncio.Event()
        self._pushed: core_pb2.SessionMetadata | None = None

    def notify(self, metadata: core_pb2.SessionMetadata | None = None) -> None:
        """Something may have changed (a WatchSessions event, a cancel): look again now."""
        if metadata is not None:
            self._pushed = metadata
        self._wake.set()

    async def run(self) -> None:
        run = await self._recorder.run(self.run_id)
        if run is None or run.terminal:
            return
        if run.status == "queued":
            await self._recorder.append(
                self.run_id, changes=RunChanges(status="starting", reason="waiting for the session to start")
            )
        metadata = await self._attach()
        if metadata is None:
            return
        await self._follow(metadata)

    # ------------------------------------------------------------------ attach
    async def _attach(self) -> core_pb2.SessionMetadata | None:
        delay = self._timing.poll_base_s
        deadline_ms = self._created_at_ms + self._timing.poll_timeout_ms
        while True:
            try:
                metadata = await self._current()
            except CallError as error:
                if await self._refused(error):
                    return None
                await self._pause(delay)  # the runtime is away: keep trying, never time out on it
                delay = min(delay * 2, self._timing.poll_max_s)
                continue
            if metadata is not None:
                return metadata
            remaining_ms = deadline_ms - self._recorder.clock()
            if remaining_ms <= 0:
                await self._fail(
                    "session never started",
                    f"session {self.session_id} was not found within {self._poll_timeout_s:g} s; "
                    "the initiator must send SessionStart with this session id",
                )
                return None
            await self._pause(min(delay, remaining_ms / 1000))
            delay = min(delay * 2, self._timing.poll_max_s)

    async def _refused(self, error: CallError) -> bool:
        """Fail the run if the runtime will never let the console read this session."""
        if error.status != "PERMISSION_DENIED":
            return False
        await self._fail(
            "the console may not read the session",
            f"the runtime refused to show session {self.session_id} to the console "
            f"({error.message}); give the console an observer identity (a token with is_observer: true)",
        )
        return True

    async def _fail(self, reason: str, error: str) -> None:
        await self._recorder.append(
            self.run_id, changes=RunChanges(status="failed", reason=reason, error=error)
        )

    @property
    def _poll_timeout_s(self) -> float:
        return self._timing.poll_timeout_ms / 1000

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early when notified."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))
        self._wake.clear()

    # ------------------------------------------------------------------ follow
    async def _follow(self, metadata: core_pb2.SessionMetadata) -> None:
        failures = 0
        while True:
            await self._apply(metadata)
            if metadata.state in TERMINAL_STATES:
                await self._finish(metadata)
                return
            outcome, seen = await self._live()
            if outcome == "failed":
                failures += 1
            else:  # a stream the runtime ended by itself is retried soon, never in a tight loop
                failures = 1 if outcome == "ended" else 0
            latest = seen or await self._reconcile()
            if latest is None:
                return
            metadata = latest
            if metadata.state not in TERMINAL_STATES and failures:
                self._recorder.metrics.resubscribes.inc()
                await self._pause(_backoff(self._timing.poll_base_s, failures))

    async def _apply(self, metadata: core_pb2.SessionMetadata) -> None:
        """Store what the session's metadata says, except a terminal status (see _finish)."""
        status = status_for(metadata.state)
        changes = RunChanges(
            status=None if metadata.state in TERMINAL_STATES else status,
            reason=REASON_BY_STATE.get(metadata.state),
            session_state=state_name(metadata.state),
            mode_name=metadata.mode or None,
            participants=tuple(metadata.participants) or None,
        )
        await self._recorder.append(self.run_id, changes=changes)

    async def _live(self) -> tuple[str, core_pb2.SessionMetadata | None]:
        """Follow the stream until it ends or fails, or the session has ended.

        Returns ``("terminal", metadata)`` when GetSession says the session ended, else
        ``("ended" | "failed", None)`` for a stream the runtime closed or that broke, and
        ``("ended", None)`` when GetSession says the runtime no longer knows the session.
        """
        run = await self._recorder.run(self.run_id)
        assert run is not None
        consume = asyncio.create_task(
            self._consume(self._client.subscribe(self.session_id, run.last_ordinal, drain=False))
        )
        try:
            while not consume.done():
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {consume, woken}, timeout=self._timing.reconcile_s, return_when="FIRST_COMPLETED"
                )
                woken.cancel()
                if consume.done():
                    break
                self._wake.clear()
                try:
                    metadata = await self._current()
                except CallError:
                    continue  # the stream's own failure, if any, will say more
                if metadata is None:  # the runtime no longer knows the session: _reconcile decides
                    return "ended", None
                if metadata.state in TERMINAL_STATES:
                    return "terminal", metadata
                await self._apply(metadata)
        finally:
            if not consume.done():
                consume.cancel()
            await asyncio.gather(consume, return_exceptions=True)
        error = consume.exception() if not consume.cancelled() else None
        if error is not None:
            log.info(
                "stream of session %s ended: %s; resuming from the stored ordinal", self.session_id, error
            )
            return "failed", None
        return "ended", None

    async def _current(self) -> core_pb2.SessionMetadata | None:
        """GetSession, the authority on state. A pushed WatchSessions snapshot is only a hint,
        used when the runtime cannot be asked (it may be older than what GetSession knows)."""
        hint, self._pushed = self._pushed, None
        try:
            return await self._client.get_session(self.session_id)
        except CallError:
            if hint is not None:
                return hint
            raise

    async def _reconcile(self) -> core_pb2.SessionMetadata | None:
        """The session's current metadata, waiting out an unreachable runtime.

        None when the run has ended here: the console may not read the session, or the runtime
        has not known it for a whole poll timeout (see :meth:`_lost`).
        """
        failures = 0
        missing_since_ms: int | None = None
        while True:
            try:
                metadata = await self._current()
            except CallError as error:
                if await self._refused(error):
                    return None
                failures += 1
                await self._pause(_backoff(self._timing.poll_base_s, failures))
                continue
            if metadata is not None:
                return metadata
            # Known once, unknown now: a runtime that lost it, or another one at the same address.
            now_ms = self._recorder.clock()
            missing_since_ms = now_ms if missing_since_ms is None else missing_since_ms
            remaining_ms = missing_since_ms + self._timing.poll_timeout_ms - now_ms
            if remaining_ms <= 0:
                await self._lost()
                return None
            failures += 1
            await self._pause(min(_backoff(self._timing.poll_base_s, failures), remaining_ms / 1000))

    async def _lost(self) -> None:
        """Fail the run of a session the runtime stopped knowing: nothing more will ever arrive."""
        await self._fail(
            "session lost",
            f"the runtime no longer knows session {self.session_id}: not found for "
            f"{self._poll_timeout_s:g} s after the console had followed it (a runtime restarted "
            "without its data, or another runtime at the same address); the history received so "
            "far is kept",
        )

    async def _consume(
        self, frames: AsyncGenerator[core_pb2.StreamSessionResponse, None], idle_s: float | None = None
    ) -> None:
        """Store what the stream delivers; with ``idle_s``, stop after that long without a frame."""
        while True:
            try:
                frame = await asyncio.wait_for(anext(frames), idle_s)
            except StopAsyncIteration:
                return
            except TimeoutError:
                await frames.aclose()
                return
            if frame.HasField("envelope"):
                await self._store_envelope(frame.envelope)
            elif frame.HasField("error"):
                await self._inline_error(frame.error)

    async def _store_envelope(self, message: envelope_pb2.Envelope) -> None:
        envelope = Envelope.from_proto(message)
        if envelope.session_id != self.session_id:
            log.warning(
                "ignoring an envelope of session %r on the stream of %s", envelope.session_id, self.session_id
            )
            return
        # Shielded: a cancelled follower must not leave a half-told story; the write finishes.
        await asyncio.shield(self._recorder.append(self.run_id, [envelope_event(envelope, from_stream=True)]))
        if envelope.message_type == "Commitment":
            self.notify()  # the session has probably resolved: ask now rather than at the next tick

    async def _inline_error(self, error: envelope_pb2.MACPError) -> None:
        code, message = str(error.code), str(error.message)
        match = _COMPACTED.search(message) or _COMPACTED.search(code)
        if match is not None:
            base = int(match.group(1) or match.group(2))
            run = await self._recorder.run(self.run_id)
            after = run.last_ordinal if run is not None else 0
            await self._recorder.append(
                self.run_id,
                [
                    console_event(
                        "stream.gap",
                        self._recorder.clock(),
                        fromOrdinal=after + 1,
                        toOrdinal=base,
                        detail=message or code,
                    )
                ],
                RunChanges(skip_to_ordinal=base),
            )
            raise CallError("FAILED_PRECONDITION", code, message, transient=True)  # re-subscribe from base
        if code in ("FORBIDDEN", "PERMISSION_DENIED") or code.lower().startswith("forbidden"):
            raise CallError("PERMISSION_DENIED", code, message, transient=False)
        raise CallError("UNKNOWN", code, message or "inline error on the session stream", transient=True)

    # ------------------------------------------------------------------ finish
    async def _finish(self, metadata: core_pb2.SessionMetadata) -> None:
        failures = 0
        while True:
            run = await self._recorder.run(self.run_id)
            assert run is not None
            try:
                # Bounded: a console meeting a runtime full of ended sessions reads them a few at a time.
                async with self._drains:
                    frames = self._client.subscribe(self.session_id, run.last_ordinal, drain=True)
                    await self._consume(frames, idle_s=DRAIN_IDLE_S)
                break
            except CallError as error:
                if error.status in ("NOT_FOUND", "PERMISSION_DENIED"):
                    await self._recorder.append(
                        self.run_id,
                        [
                            console_event(
                                "stream.gap", self._recorder.clock(), detail=f"history unreadable: {error}"
                            )
                        ],
                    )
                    break
                failures += 1
                await self._pause(_backoff(self._timing.poll_base_s, failures))
        events = []
        if metadata.state == RESOLVED:
            events.append(await check_receipt(self._client, self._recorder, self.run_id, self.session_id))
        await self._recorder.append(
            self.run_id,
            events,
            RunChanges(
                status=status_for(metadata.state),
                reason=REASON_BY_STATE.get(metadata.state),
                session_state=state_name(metadata.state),
                error=error_for(metadata.state),
            ),
        )


def _backoff(base_s: float, failures: int) -> float:
    """Capped exponential backoff with jitter, so many observers do not reconnect in lockstep."""
    delay = min(base_s * 2 ** min(failures, 16), STREAM_RETRY_MAX_S)
    return float(delay * random.uniform(0.8, 1.2))
