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

    async def get(self) -> T | None:
        """The next item; None once closed and drained. Raises :class:`Lagged` if cut off."""
        while True:
            if self.lagged:
                raise Lagged(self._capacity)
            if self._items:
                return self._items.popleft()
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    async def get_batch(self, limit: int) -> list[T] | None:
        """At least one item and whatever else is already waiting (up to ``limit``); None at the end."""
        first = await self.get()
        if first is None:
            return None
        batch = [first]
        while self._items and len(batch) < limit:
            batch.append(self._items.popleft())
        return batch

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
