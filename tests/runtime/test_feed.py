"""A session feed: stored frames, then live ones, without gap or duplicate, pulled or iterated."""

from __future__ import annotations

import asyncio

import pytest

from pymacp.runtime.feed import Feed, Frame
from pymacp.runtime.topic import Lagged, Topic


def frame(ordinal: int) -> Frame:
    return (ordinal, f"envelope {ordinal}".encode())


class Log:
    """Stored frames 1..n, read in chunks; records each read."""

    def __init__(self, n: int) -> None:
        self.frames = [frame(i) for i in range(1, n + 1)]
        self.reads: list[tuple[int, int]] = []

    async def read(self, after: int, limit: int) -> list[Frame]:
        self.reads.append((after, limit))
        return [f for f in self.frames if f[0] > after][:limit]


def ordinals(frames: list[Frame]) -> list[int]:
    return [ordinal for ordinal, _ in frames]


async def test_pulling_replays_in_chunks_then_takes_live_frames_dropping_what_was_replayed() -> None:
    topic: Topic[Frame] = Topic()
    log = Log(5)
    feed = Feed(topic.subscribe(16), log.read, after=1, upto=5, chunk=3)
    wake = asyncio.Event()
    feed.live.wake_with(wake)
    # Accepted while the replay's end was being fixed: in the log and in the subscription.
    topic.publish(frame(5))
    topic.publish(frame(6))
    assert wake.is_set()
    assert feed.replaying
    assert ordinals(await feed.replay_chunk()) == [2, 3, 4]
    assert ordinals(await feed.replay_chunk()) == [5]
    assert not feed.replaying
    assert await feed.replay_chunk() == []
    assert log.reads == [(1, 3), (4, 1)]
    assert ordinals(feed.take()) == [6]  # 5 was replayed already
    assert feed.take() == []
    wake.clear()
    topic.publish(frame(7))
    assert wake.is_set()
    assert ordinals(feed.take()) == [7]


async def test_a_log_shorter_than_expected_ends_the_replay_and_the_feed_follows_live() -> None:
    topic: Topic[Frame] = Topic()
    feed = Feed(topic.subscribe(16), Log(2).read, after=0, upto=4, chunk=10)
    assert ordinals(await feed.replay_chunk()) == [1, 2]
    assert await feed.replay_chunk() == []
    assert not feed.replaying
    topic.publish(frame(3))
    assert ordinals(feed.take()) == [3]


async def test_wake_with_signals_at_once_if_something_is_already_waiting_or_closed() -> None:
    topic: Topic[Frame] = Topic()
    pending = topic.subscribe(4)
    topic.publish(frame(1))
    early = asyncio.Event()
    pending.wake_with(early)
    assert early.is_set()

    closed = topic.subscribe(4)
    closed.close()
    late = asyncio.Event()
    closed.wake_with(late)
    assert late.is_set()

    idle = topic.subscribe(4)
    quiet = asyncio.Event()
    idle.wake_with(quiet)
    assert not quiet.is_set()
    idle.close()
    assert quiet.is_set()


async def test_take_is_bounded_and_a_cut_off_subscription_raises_lagged() -> None:
    topic: Topic[Frame] = Topic()
    sub = topic.subscribe(3)
    for i in range(1, 4):
        topic.publish(frame(i))
    assert ordinals(sub.take(2)) == [1, 2]
    assert ordinals(sub.take(2)) == [3]
    for i in range(4, 8):  # one more than the capacity
        topic.publish(frame(i))
    assert sub.lagged and sub.closed
    assert not sub.finished  # cut off is not the same as done
    with pytest.raises(Lagged):
        sub.take(10)


async def test_drained_only_once_closed_and_empty() -> None:
    topic: Topic[Frame] = Topic()
    feed = Feed(topic.subscribe(8), Log(0).read, after=0, upto=0, chunk=10)
    topic.publish(frame(1))
    feed.close()
    assert not feed.drained  # closed, but a frame is still waiting
    assert ordinals(feed.take()) == [1]
    assert feed.drained


async def test_iterating_waits_for_live_frames_and_ends_when_closed() -> None:
    topic: Topic[Frame] = Topic()
    feed = Feed(topic.subscribe(8), Log(2).read, after=0, upto=2, chunk=10)
    seen: list[list[int]] = []

    async def consume() -> None:
        async for batch in feed:
            seen.append(ordinals(batch))

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    topic.publish(frame(2))  # already replayed: dropped
    topic.publish(frame(3))
    await asyncio.sleep(0)
    topic.publish(frame(4))
    await asyncio.sleep(0)
    feed.close()
    await asyncio.wait_for(consumer, 5)
    assert [o for batch in seen for o in batch] == [1, 2, 3, 4]
    assert seen[0] == [1, 2]


async def test_a_live_only_feed_replays_nothing_and_hands_out_every_live_frame() -> None:
    topic: Topic[Frame] = Topic()
    feed = Feed.live_only(topic.subscribe(8), chunk=2)
    assert not feed.replaying
    assert await feed.replay_chunk() == []
    for ordinal in (1, 2, 3):
        topic.publish(frame(ordinal))
    assert ordinals(feed.take()) == [1, 2]  # at most one chunk per take
    assert ordinals(feed.take()) == [3]
    feed.close()
    assert feed.drained
