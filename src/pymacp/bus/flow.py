"""Flow control between peers: bounded output queues and paused inputs.

Every peer of the bus, a client connection or a worker, has an :class:`Outbox` (what the
bus writes to it) and an :class:`Inbox` (what the bus reads from it). Writes never block:
the transport queues what the peer has not read yet and writes the rest when it can, so a
line of any size arrives whole (the kernel drops the newline after a short write).

Backpressure works per pair. When a line from peer A leaves peer B's outbox above
``max_output_queue``, A's inbox is *held*: the bus stops reading from A until B has read
enough (the transport's low-water mark), then A is released. Memory therefore stays bounded
by the limit per peer, and only the peer that feeds a slow reader is slowed down. An outbox
that stays full for ``backpressure_timeout_sec`` calls its ``on_stuck`` (the owner closes
that peer), as the kernel does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol


class Sink(Protocol):
    """The part of an asyncio write transport an :class:`Outbox` uses."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class Outbox:
    def __init__(self, limit: int, stuck_after_s: float, on_stuck: Callable[[], None]) -> None:
        self.limit = limit
        self._stuck_after_s = stuck_after_s
        self._on_stuck = on_stuck
        self._sink: Sink | None = None
        self._full = False
        self._waiting: list[Callable[[], None]] = []
        self._stuck_timer: asyncio.TimerHandle | None = None

    def attach(self, sink: Sink) -> None:
        self._sink = sink
        set_limits = getattr(sink, "set_write_buffer_limits", None)
        if set_limits is not None:  # asyncio transports: pause_writing() fires above the limit
            set_limits(high=self.limit, low=self.limit // 2)

    @property
    def open(self) -> bool:
        return self._sink is not None and not self._sink.is_closing()

    @property
    def full(self) -> bool:
        return self._full

    def write(self, line: bytes) -> bool:
        """Queue one line (the newline is added); False when the peer is gone."""
        if self._sink is None or self._sink.is_closing():
            return False
        self._sink.write(line + b"\n")
        return True

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this outbox is below the limit again (at once if it is)."""
        if self._full:
            self._waiting.append(callback)
        else:
            callback()

    def close(self) -> None:
        """Close after the queued bytes are written; held inboxes are released."""
        if self._sink is not None and not self._sink.is_closing():
            self._sink.close()
        self.resume_writing()

    # called by the transport through the peer's protocol

    def pause_writing(self) -> None:
        self._full = True
        if self._stuck_timer is None:
            self._stuck_timer = asyncio.get_running_loop().call_later(self._stuck_after_s, self._stuck)

    def resume_writing(self) -> None:
        self._full = False
        if self._stuck_timer is not None:
            self._stuck_timer.cancel()
            self._stuck_timer = None
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    def _stuck(self) -> None:
        self._stuck_timer = None
        if self._full:
            self._on_stuck()


class Reading(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class Inbox:
    """Counts holds on one peer's input; reading is paused while any hold remains."""

    def __init__(self) -> None:
        self._reading: Reading | None = None
        self._holds = 0

    def attach(self, reading: Reading) -> None:
        self._reading = reading

    @property
    def held(self) -> bool:
        return self._holds > 0

    def hold_until_drained(self, outbox: Outbox) -> None:
        """Stop reading this peer until ``outbox`` has room again."""
        self._holds += 1
        if self._holds == 1 and self._reading is not None:
            self._reading.pause_reading()
        outbox.when_drained(self._release)

    def _release(self) -> None:
        self._holds -= 1
        if self._holds == 0 and self._reading is not None:
            with contextlib.suppress(RuntimeError):  # the transport closed meanwhile
                self._reading.resume_reading()


def forward(line: bytes, source: Inbox, destination: Outbox) -> bool:
    """Write ``line`` to ``destination``; hold ``source`` if that filled it. False if it is gone."""
    if not destination.write(line):
        return False
    if destination.full:
        source.hold_until_drained(destination)
    return True
