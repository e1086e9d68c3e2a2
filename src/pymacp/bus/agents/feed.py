"""Follow one session's accepted envelopes, in order, without gaps or repeats.

A :class:`SessionFeed` holds a passive StreamSession subscription (write side open, so the
runtime replays the history after ``after_sequence`` and then forwards live envelopes) and
hands each envelope to a callback. Two rules make it exact:

- the resume point is the number of envelopes delivered so far (the runtime numbers a
  session's accepted envelopes 1, 2, ...; suspend, resume and cancel records take no
  number), so a reconnect continues where delivery stopped;
- an envelope whose message id was already delivered is skipped, so the overlap the
  runtime may produce between replay and live forwarding is harmless.

A live subscription does not end when the session does, so whoever knows the session ended
(a WatchSessions event) calls :meth:`SessionFeed.finish`: the live call is dropped and the
rest of the stored history is read with a subscribe-and-half-close call, which the runtime
answers with what it has and then ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pymacp.kernel.envelope import Envelope

from .client import AgentClient, CallError

log = logging.getLogger("pymacp.agents")

RETRY_BASE_S = 0.1
RETRY_MAX_S = 5.0
# Refusals that will not change by retrying: the identity may not read this session.
_FINAL = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT"})


class SessionFeed:
    def __init__(
        self, client: AgentClient, session_id: str, deliver: Callable[[Envelope], None], name: str
    ) -> None:
        self.session_id = session_id
        self.delivered = 0  # also the after_sequence to resume from
        self._client = client
        self._deliver = deliver
        self._name = name  # who follows, for log lines
        self._seen: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"feed-{self.session_id}")

    async def stop(self) -> None:
        """Stop following (nothing more is delivered after this returns)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def finish(self) -> None:
        """The session ended: stop following live, then deliver whatever is still unread."""
        await self.stop()
        try:
            async for response in self._client.subscribe(self.session_id, self.delivered, drain=True):
                if response.HasField("envelope"):
                    self._take(Envelope.from_proto(response.envelope))
        except CallError as error:
            log.warning("%s could not read the end of session %s: %s", self._name, self.session_id, error)

    async def _follow(self) -> None:
        delay = RETRY_BASE_S
        while True:
            try:
                async for response in self._client.subscribe(self.session_id, self.delivered, drain=False):
                    if response.HasField("envelope"):
                        self._take(Envelope.from_proto(response.envelope))
                        delay = RETRY_BASE_S
                    elif response.HasField("error"):
                        error = response.error
                        log.warning(
                            "%s: session %s refused the subscription: %s %s",
                            self._name,
                            self.session_id,
                            error.code,
                            error.message,
                        )
                        if error.code in ("FORBIDDEN", "UNAUTHENTICATED"):
                            return
            except CallError as error:
                if error.status in _FINAL:
                    log.error("%s cannot follow session %s: %s", self._name, self.session_id, error)
                    return
                log.info(
                    "%s: stream of session %s broke (%s); resubscribing", self._name, self.session_id, error
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _take(self, envelope: Envelope) -> None:
        if envelope.message_id in self._seen:
            return
        self._seen.add(envelope.message_id)
        self.delivered += 1
        try:
            self._deliver(envelope)
        except Exception:  # a consumer bug must not stop the feed
            log.exception("%s: handling an envelope of session %s failed", self._name, self.session_id)
