"""Completion callbacks: one signed POST per task, retried until the receiver takes it.

When a task with a callback reaches ``completed``, ``error`` or ``cancelled``, the
dispatcher POSTs ``{"event": <status>, "task": <the task as GET /dispatch/{id} shows it>}``
to the callback URL, with these headers:

- ``X-Pymacp-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Pymacp-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body`` under
  the service's callback secret (verify with :func:`verify`; reject old timestamps);
- ``X-Pymacp-Delivery``: the task id, the same on every attempt (an idempotency key);
- ``X-Pymacp-Event`` (the status), ``X-Pymacp-Attempt`` (1, 2, ...), and
  ``Authorization: Bearer <callback.bearer>`` when the dispatch named one.

Delivery is exactly-once from the dispatcher's side: attempts stop at the first 2xx. A
network error, a timeout, 408, 425, 429 or a 5xx is retried after ``backoffMs``, doubling
each time up to ``maxBackoffMs`` -- a fixed schedule, no jitter -- for ``maxAttempts`` in
all; any other status is final. The outcome (delivered, or failed with the last error) is
recorded on the task. Redirects are not followed: the bearer must not travel elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx

from .config import CallbackSettings
from .tasks import Task

log = logging.getLogger("pymacp.agents")

SIGNATURE_HEADER = "X-Pymacp-Signature"
TIMESTAMP_HEADER = "X-Pymacp-Timestamp"
DELIVERY_HEADER = "X-Pymacp-Delivery"
EVENT_HEADER = "X-Pymacp-Event"
ATTEMPT_HEADER = "X-Pymacp-Attempt"
TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, signature: str, body: bytes, now: float | None = None) -> bool:
    """True when ``signature`` is ours for ``body`` and ``timestamp`` is within five minutes."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > TOLERANCE_S:
        return False
    # bytes, not str: compare_digest refuses non-ASCII text, and a forged header may carry any
    return hmac.compare_digest(sign(secret, int(timestamp), body).encode(), signature.encode())


def schedule(settings: CallbackSettings) -> list[float]:
    """Seconds to wait before attempt 2, 3, ...: the whole retry schedule, known in advance."""
    delays = []
    for attempt in range(settings.max_attempts - 1):
        delays.append(min(settings.backoff_ms * 2**attempt, settings.max_backoff_ms) / 1000)
    return delays


def retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class CallbackSender:
    def __init__(self, settings: CallbackSettings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(follow_redirects=False, timeout=settings.timeout_ms / 1000)
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.secret is not None

    def deliver(self, task: Task) -> None:
        """Start delivering ``task``'s completion (once per task, whatever calls this again)."""
        if task.delivery is None or task.delivery.scheduled or not self.enabled:
            return
        task.delivery.scheduled = True
        job = asyncio.create_task(self._deliver(task), name=f"callback-{task.task_id}")
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def aclose(self, grace: float) -> None:
        """Give deliveries in flight ``grace`` seconds, then abandon them (recorded on the task)."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=grace)
        for job in self._pending:
            job.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._http.aclose()

    async def _deliver(self, task: Task) -> None:
        callback, delivery, secret = task.spec.callback, task.delivery, self.settings.secret
        assert callback is not None and delivery is not None and secret is not None
        body = json.dumps(
            {"event": task.status, "task": task.to_json(with_callback=False)}, separators=(",", ":")
        ).encode()
        delays = schedule(self.settings)
        try:
            for attempt in range(1, self.settings.max_attempts + 1):
                delivery.attempts = attempt
                final = await self._attempt(task, callback.url, callback.bearer, body, attempt, secret)
                if final:
                    return
                if attempt <= len(delays):
                    await asyncio.sleep(delays[attempt - 1])
            delivery.status = "failed"
            log.warning(
                "gave up on the callback of task %s after %d attempts: %s",
                task.task_id,
                delivery.attempts,
                delivery.last_error,
            )
        except asyncio.CancelledError:
            delivery.status = "failed"
            delivery.last_error = "the service stopped before the callback was delivered"
            raise

    async def _attempt(
        self, task: Task, url: str, bearer: str | None, body: bytes, attempt: int, secret: str
    ) -> bool:
        """One POST; True when nothing more should be tried (delivered, or refused for good)."""
        delivery = task.delivery
        assert delivery is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: task.task_id,
            EVENT_HEADER: task.status,
            ATTEMPT_HEADER: str(attempt),
        }
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            delivery.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return False
        if 200 <= response.status_code < 300:
            delivery.status = "delivered"
            delivery.last_error = None
            log.info("delivered the callback of task %s (attempt %d)", task.task_id, attempt)
            return True
        delivery.last_error = f"the receiver answered HTTP {response.status_code}"
        if retryable(response.status_code):
            return False
        delivery.status = "failed"
        log.warning(
            "the callback receiver of task %s refused it: HTTP %d", task.task_id, response.status_code
        )
        return True
