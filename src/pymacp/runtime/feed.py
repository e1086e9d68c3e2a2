"""A session feed: the stored envelopes after a position, then the live ones, with no gap or duplicate.

The live subscription is registered (under the session's lock) before the replay's end is
fixed, so an envelope accepted after that point reaches the subscription, and one accepted
before it is in the log. The feed reads the log up to that end in chunks, then hands out
live frames, dropping any at or below the last ordinal it has already handed out.

A consumer either iterates the feed (each step one non-empty batch, waiting as needed) or,
to wait on other things as well, gives the subscription its own wake-up event
(:meth:`Subscription.wake_with`) and pulls with :meth:`Feed.next` until :attr:`Feed.drained`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from .topic import Subscription

Frame = tuple[int, bytes]  # (ordinal, the envelope's bytes as stored)
ReadChunk = Callable[[int, int], Awaitable[list[Frame]]]  # (after ordinal, at most) -> frames


class Feed:
    def __init__(
        self, live: Subscription[Frame], read: ReadChunk, *, after: int, upto: int, chunk: int
    ) -> None:
        self.live = live
        self._read = read
        self._position = after  # the last ordinal handed out (or skipped by the caller)
        self._upto = upto  # the last ordinal the replay reads from the log
        self._chunk = chunk

    @classmethod
    def live_only(cls, live: Subscription[Frame], *, chunk: int) -> Feed:
        """A feed of ``live`` alone, with nothing to replay from the log."""
        return cls(live, _nothing_stored, after=0, upto=0, chunk=chunk)

    @property
    def replaying(self) -> bool:
        return self._position < self._upto

    @property
    def drained(self) -> bool:
        """The replay is done and the live subscription closed with nothing left in it."""
        return not self.replaying and self.live.finished

    async def replay_chunk(self) -> list[Frame]:
        """The next chunk of stored envelopes; empty once the replay is done."""
        if not self.replaying:
            return []
        chunk = await self._read(self._position, min(self._chunk, self._upto - self._position))
        if not chunk:  # the log holds less than the summary said: stop replaying, follow live
            self._upto = self._position
            return []
        self._position = chunk[-1][0]
        return chunk

    def take(self) -> list[Frame]:
        """Live frames that have arrived, without waiting. Raises :class:`Lagged` if cut off."""
        batch = self.live.take(self._chunk)
        if batch and batch[0][0] <= self._position:
            batch = [frame for frame in batch if frame[0] > self._position]
        if batch:
            self._position = batch[-1][0]
        return batch

    async def next(self) -> list[Frame]:
        """The next envelopes without waiting for live ones: a stored chunk while replaying, then
        what has arrived live (empty if nothing has). Raises :class:`Lagged` if cut off."""
        if self.replaying and (chunk := await self.replay_chunk()):
            return chunk
        return self.take()

    def close(self) -> None:
        self.live.close()

    async def __aiter__(self) -> AsyncIterator[list[Frame]]:
        while True:
            if batch := await self.next():
                yield batch
            elif self.live.finished:
                return
            else:
                await self.live.wait()


async def _nothing_stored(after: int, limit: int) -> list[Frame]:
    return []
