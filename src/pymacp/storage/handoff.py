"""Getting a write's outcome back to its caller, and when a write may skip the writer thread.

Normally a write crosses threads twice: the event loop hands it to the writer thread, and
the writer wakes the loop to resolve the caller's future. On a virtual machine each wake-up
of a sleeping thread costs tens of microseconds (the vCPU has to be woken too), and when
one client sends one envelope at a time the two of them are a large part of its wait.

So a write may be committed on the event-loop thread instead — *inline* — when the loop
would otherwise sit idle until it is done: it is the only write of its loop iteration,
nothing else is ready to run on the loop, the writer thread has nothing queued or in
progress, and recent commits have been quick (:class:`CommitPace`). The loop is then held
for about as long as the caller would have waited anyway; whatever arrives meanwhile waits
for that one quick commit. An unusually slow commit (SQLite's own bounded checkpoint, a
disk stall) lifts the running average above the limit, and the next commits take the
writer thread until it has come down again. Under concurrent load the loop always has other
work, writes arrive together, and everything goes through the writer thread, where group
commit packs them into shared transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence

from .base import StorageError

INLINE_COMMIT_LIMIT_S = 0.001  # commits slower than this on average always use the writer thread
_PACE_WEIGHT = 0.125  # weight of the newest commit in the running average

Settled = list[tuple["asyncio.Future[None]", StorageError | None]]


def loop_is_idle(loop: asyncio.AbstractEventLoop) -> bool:
    """True if nothing is scheduled to run on ``loop`` right now (callbacks, woken tasks).

    Reads the ready queue of asyncio's own event loops (``BaseEventLoop._ready``). A loop
    that does not have one is never called idle, so its writes all take the writer thread.
    """
    ready = getattr(loop, "_ready", None)
    return ready is not None and len(ready) == 0


class CommitPace:
    """A running average of how long commits take, so a slow disk never holds the event loop."""

    def __init__(self, limit_s: float = INLINE_COMMIT_LIMIT_S) -> None:
        if limit_s < 0:
            raise ValueError(f"the inline commit limit must be >= 0 seconds, got {limit_s}")
        self.limit_s = limit_s
        self.average_s: float | None = None  # unknown until the first commit

    def record(self, seconds: float) -> None:
        if self.average_s is None:
            self.average_s = seconds
        else:
            self.average_s += (seconds - self.average_s) * _PACE_WEIGHT

    @property
    def quick(self) -> bool:
        """Whether commits are quick enough to run one on the event loop."""
        return self.average_s is not None and self.average_s < self.limit_s


def settle(
    callers: Iterable[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]],
    outcomes: Sequence[StorageError | None],
) -> None:
    """From the writer thread: resolve every caller's future on its own loop, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, Settled] = {}
    for (loop, future), outcome in zip(callers, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, own_copy(outcome)))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(resolve, settled)


def resolve(settled: Settled) -> None:
    """On the caller's loop: set each future's result or exception."""
    for future, error in settled:
        if future.done():  # the caller was cancelled; the write happened regardless
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def own_copy(outcome: StorageError | None) -> StorageError | None:
    """A caller's own outcome: None for success, else its own copy of the error."""
    return None if outcome is None else copy_error(outcome)


def copy_error(error: StorageError) -> StorageError:
    """A fresh exception per caller, so concurrent tracebacks do not share one object."""
    copy = StorageError(*error.args)
    copy.__cause__ = error.__cause__
    return copy
