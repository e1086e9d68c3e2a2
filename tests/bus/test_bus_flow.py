"""Backpressure: a line that fills a peer's queue pauses the peer it came from, until it drains."""

from __future__ import annotations

import asyncio

from pymacp.bus.flow import Inbox, Outbox, forward


class FakeSink:
    """A write transport that pauses its protocol above ``high`` bytes, like asyncio's."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.buffered += len(data)
        if self.buffered > self.outbox.limit and not self.outbox.full:
            self.outbox.pause_writing()

    def drain(self) -> None:
        self.buffered = 0
        self.outbox.resume_writing()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeReading:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def peers(limit: int, stuck_after_s: float = 60.0) -> tuple[Outbox, FakeSink, list[str]]:
    stuck: list[str] = []
    outbox = Outbox(limit, stuck_after_s, lambda: stuck.append("stuck"))
    sink = FakeSink(outbox)
    outbox.attach(sink)
    return outbox, sink, stuck


async def test_a_full_destination_holds_every_source_that_fed_it_until_it_drains() -> None:
    outbox, sink, _ = peers(limit=10)
    first, second = Inbox(), Inbox()
    first_reading, second_reading = FakeReading(), FakeReading()
    first.attach(first_reading)
    second.attach(second_reading)
    assert forward(b"12345", first, outbox) and not first_reading.paused
    assert forward(b"1234567890", first, outbox) and first_reading.paused
    assert forward(b"x", second, outbox) and second_reading.paused  # still full: this source waits too
    sink.drain()
    assert not first_reading.paused and not second_reading.paused


async def test_a_destination_that_stays_full_is_reported_stuck() -> None:
    outbox, sink, stuck = peers(limit=1, stuck_after_s=0.05)
    forward(b"too much", Inbox(), outbox)
    deadline = asyncio.get_running_loop().time() + 5
    while not stuck and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert stuck == ["stuck"]
    sink.drain()


async def test_a_closed_destination_refuses_lines() -> None:
    outbox, sink, _ = peers(limit=100)
    outbox.close()
    assert sink.closing
    assert not forward(b"late", Inbox(), outbox)
