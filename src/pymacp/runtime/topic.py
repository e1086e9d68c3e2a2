"""Bounded fan-out: one publisher, many subscribers, nobody slows anybody else down.

Every subscriber has its own bounded buffer. Publishing never waits: a subscriber whose
buffer is full is cut off (``lagged``) and must resubscribe and reconcile — losing items
silently would be worse, and blocking the publisher would let one slow reader stall every
session. Used for session streams, lifecycle events, signals and registry changes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lagged(Exception):
    """The subscriber fell behind by more than its buffer and was cut off."""

    def __init__(self, capacity: int) -> None:
        super().__init__(f"subscriber fell behind by more than {capacity} items; resubscribe and reconcile")
        self.capacity = capacity


class Subscription(Generic[T]):
    def __init__(self, topic: Topic[T], capacity: int) -> None:
        self._topic = topic
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._wakeup = asyncio.Event()
        self.lagged = False
        self.closed = False

    def offer(self, item: T) -> None:
        if self.closed:
            return
        if len(self._items) >= self._capacity:
            self.lagged = True
            self._items.clear()
            self.close()
            return
        self._items.append(item)
        self._wakeup.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._topic.discard(self)
            self._wakeup.set()

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` items that have arrived, without waiting. Raises :class:`Lagged` if cut off."""
        if self.lagged:
            raise Lagged(self._capacity)
        items = self._items
        if len(items) <= limit:
            batch = list(items)
            items.clear()
            return batch
        return [items.popleft() for _ in range(limit)]

    @property
    def finished(self) -> bool:
        """Closed, not cut off, and nothing left to take."""
        return self.closed and not self.lagged and not self._items

    async def wait(self) -> None:
        """Until there is something to take, or the subscription is closed or cut off."""
        while not self._items and not self.closed:
            self._wakeup.clear()
            await self._wakeup.wait()

    def wake_with(self, event: asyncio.Event) -> None:
        """Set ``event`` (shared with other sources) instead of an own one when an item arrives
        or the subscription closes; the consumer then waits on ``event`` and calls :meth:`take`."""
        self._wakeup = event
        if self._items or self.closed:
            event.set()

    async def get(self) -> T | None:
        """The next item; None once closed and drained. Raises :class:`Lagged` if cut off."""
        batch = await self.get_batch(1)
        return batch[0] if batch else None

    async def get_batch(self, limit: int) -> list[T] | None:
        """At least one item and whatever else is already waiting (up to ``limit``); None at the end."""
        while True:
            if batch := self.take(limit):
                return batch
            if self.closed:
                return None
            await self.wait()

    def pending(self) -> int:
        return len(self._items)

    async def __aiter__(self) -> AsyncIterator[T]:
        while (item := await self.get()) is not None:
            yield item


class Topic(Generic[T]):
    def __init__(self, on_empty: Callable[[], None] | None = None) -> None:
        self._subscribers: set[Subscription[T]] = set()
        self._on_empty = on_empty

    def subscribe(self, capacity: int) -> Subscription[T]:
        sub = Subscription(self, capacity)
        self._subscribers.add(sub)
        return sub

    def discard(self, sub: Subscription[T]) -> None:
        self._subscribers.discard(sub)
        if not self._subscribers and self._on_empty is not None:
            self._on_empty()

    def publish(self, item: T) -> None:
        for sub in list(self._subscribers):
            sub.offer(item)

    def close(self) -> None:
        for sub in list(self._subscribers):
            sub.close()

    def __len__(self) -> int:
        return len(self._subscribers)
