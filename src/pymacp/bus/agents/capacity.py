"""A pool's cap on concurrent tasks, and the bounded FIFO queue in front of it.

Admission is decided synchronously, at the moment POST /dispatch is answered: :meth:`enter`
either hands out a running slot, or a place in the queue, or raises :class:`QueueFull`.
So ``running <= cap`` and ``len(queue) <= queue_limit`` hold at every instant, however
many requests arrive together. A slot is handed to the head of the queue the moment it is
released, never left free while someone waits.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict


class QueueFull(Exception):
    pass


class Capacity:
    def __init__(self, cap: int, queue_limit: int) -> None:
        self.cap = cap
        self.queue_limit = queue_limit
        self.running = 0
        self._waiting: OrderedDict[str, asyncio.Future[bool]] = OrderedDict()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def enter(self, key: str) -> asyncio.Future[bool]:
        """A future that becomes True when ``key`` may run (at once if a slot is free), or False
        if it was withdrawn from the queue. Raises :class:`QueueFull`."""
        ticket: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.running < self.cap and not self._waiting:
            self.running += 1
            ticket.set_result(True)
            return ticket
        if len(self._waiting) >= self.queue_limit:
            raise QueueFull
        self._waiting[key] = ticket
        return ticket

    def position(self, key: str) -> int | None:
        """1 for the head of the queue; None when ``key`` is not waiting."""
        for index, waiting in enumerate(self._waiting, start=1):
            if waiting == key:
                return index
        return None

    def withdraw(self, key: str) -> bool:
        """Take ``key`` out of the queue (its ticket becomes False); False if it was not waiting."""
        ticket = self._waiting.pop(key, None)
        if ticket is None:
            return False
        if not ticket.done():
            ticket.set_result(False)
        return True

    def release(self) -> None:
        """A running task ended: its slot goes to the head of the queue, if any."""
        self.running -= 1
        while self._waiting:
            _, ticket = self._waiting.popitem(last=False)
            if not ticket.done():
                self.running += 1
                ticket.set_result(True)
                return
