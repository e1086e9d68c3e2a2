"""Cancelling a run -- which the console may do only on someone's behalf who allowed it.

The console is an observer: cancelling a session belongs to its initiator (or to whoever
the session's policy delegates). So a run can be cancelled from the console in exactly two
ways, chosen by the RunDescriptor's ``session.metadata``:

* **Option A, ``cancelCallback: {url, bearer?}``** -- the console POSTs ``{runId, reason}``
  to the initiator's URL (``Authorization: Bearer <bearer>`` when given, 5 s timeout); the
  initiator then calls CancelSession with its own identity. A network failure or non-2xx
  answer is refused with 502.
* **Option B, ``cancellationDelegated: true``** -- the console calls CancelSession with its
  own identity; the session's policy must make that identity a commitment authority. A
  runtime refusal is reported (502, or 409 when the session is no longer open), never
  swallowed.
* Neither: refused with 400.

In both options the run becomes ``cancelled`` only when the runtime reports the session
CANCELLED, never merely because a request was made. With option B that happens at once (the
runtime has cancelled it when it acks), so :func:`cancel_run` waits briefly for the observer
to record it; with option A it happens whenever the initiator acts. Either way a
``cancel.requested`` event records who was asked and what they answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .events import console_event
from .feed import FeedHub
from .models import Run
from .recorder import Recorder
from .runtime_client import CallError, RuntimeClient

CALLBACK_TIMEOUT_S = 5.0
CONFIRM_WAIT_S = 5.0  # how long option B waits for the observer to record CANCELLED


class CancelRefused(Exception):
    """A cancel the console could not carry out; ``http_status`` and ``code`` say why."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


@dataclass(frozen=True, slots=True)
class CancelContext:
    client: RuntimeClient
    recorder: Recorder
    hub: FeedHub
    nudge: Callable[[str], None]  # wake the run's observer: the session's state just changed


async def cancel_run(ctx: CancelContext, run: Run, reason: str | None, bearer: str | None) -> Run:
    if run.terminal:
        raise CancelRefused(409, "RUN_TERMINAL", f"run {run.run_id} has already ended ({run.status})")
    metadata = (run.descriptor or {}).get("session", {}).get("metadata", {})
    callback = metadata.get("cancelCallback")
    if isinstance(callback, dict) and isinstance(callback.get("url"), str):
        await _callback(ctx, run, str(callback["url"]), bearer, reason)
        return await _current(ctx, run)
    if metadata.get("cancellationDelegated") is True:
        return await _delegated(ctx, run, reason)
    raise CancelRefused(
        400,
        "CANCEL_NOT_DELEGATED",
        f"run {run.run_id} cannot be cancelled from the console: only the session's initiator may "
        "cancel it. Submit the run with session.metadata.cancelCallback (the initiator cancels "
        "when called) or cancellationDelegated: true (the session's policy must allow the "
        "console's identity to cancel)",
    )


async def _callback(ctx: CancelContext, run: Run, url: str, bearer: str | None, reason: str | None) -> None:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_S, follow_redirects=False) as http:
            response = await http.post(url, json={"runId": run.run_id, "reason": reason}, headers=headers)
    except httpx.HTTPError as exc:
        await _record(ctx, run, "callback", reason, "failed", f"{type(exc).__name__}: {exc}")
        raise CancelRefused(
            502,
            "CANCEL_CALLBACK_FAILED",
            f"the cancel callback could not be reached ({type(exc).__name__}: {exc})",
        ) from None
    if not 200 <= response.status_code < 300:
        await _record(ctx, run, "callback", reason, "refused", f"HTTP {response.status_code}")
        raise CancelRefused(
            502, "CANCEL_CALLBACK_FAILED", f"the cancel callback answered HTTP {response.status_code}"
        )
    await _record(ctx, run, "callback", reason, "accepted", f"HTTP {response.status_code}")


async def _delegated(ctx: CancelContext, run: Run, reason: str | None) -> Run:
    try:
        ack = await ctx.client.cancel_session(run.session_id, reason or "cancelled from the console")
    except CallError as error:
        await _record(ctx, run, "runtime", reason, "failed", str(error))
        status = 409 if error.status in ("NOT_FOUND", "FAILED_PRECONDITION") else 502
        raise CancelRefused(
            status, "RUNTIME_REFUSED", f"the runtime did not cancel the session: {error}"
        ) from None
    if not ack.ok:
        code = ack.error.code or "UNKNOWN"
        detail = f"{code}: {ack.error.message}"
        await _record(ctx, run, "runtime", reason, "refused", detail)
        status = 409 if code in ("SESSION_NOT_OPEN", "SESSION_NOT_FOUND") else 502
        raise CancelRefused(
            status, "RUNTIME_REFUSED", f"the runtime refused to cancel the session ({detail})"
        )
    await _record(ctx, run, "runtime", reason, "accepted", None)
    ctx.nudge(run.run_id)
    return await _confirmed(ctx, run)


async def _confirmed(ctx: CancelContext, run: Run) -> Run:
    """The run once the observer has recorded the cancellation (or as it stands after a short wait)."""
    with ctx.hub.open(run.run_id) as feed:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFIRM_WAIT_S
        while True:
            current = await _current(ctx, run)
            remaining = deadline - loop.time()
            if current.terminal or remaining <= 0:
                return current
            await feed.wait(remaining)


async def _record(
    ctx: CancelContext, run: Run, via: str, reason: str | None, outcome: str, detail: str | None
) -> None:
    event = console_event(
        "cancel.requested", ctx.recorder.clock(), via=via, reason=reason, outcome=outcome, detail=detail
    )
    await ctx.recorder.append(run.run_id, [event])


async def _current(ctx: CancelContext, run: Run) -> Run:
    return await ctx.recorder.run(run.run_id) or run
