"""Streaming load: passive subscribers, the single fan-out writer, and the replay reader.

These are jobs for :func:`pymacp.bench.load.run_jobs`. A subscriber opens
``StreamSession`` with a subscribe frame (``after_sequence=0``) and keeps its request side
open; it counts as subscribed once it has received the envelopes the session already held
(the runtime registers the live subscription before it replays, so from then on nothing
is missed), and only then does it pass the start barrier with the writer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from macp.v1 import core_pb2, core_pb2_grpc

from .load import CallStats, Ready, processes_for, run_jobs, send, spread
from .workload import INITIATOR, WORKER, bearer, update_envelope


@dataclass(slots=True)
class Timeline:
    """When a streaming job started and finished (``time.monotonic``), and what it counted."""

    started: float = 0.0
    finished: float = 0.0
    count: int = 0
    errors: int = 0
    first_error: str = ""

    def fail(self, error: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or error


class _Subscription:
    """One StreamSession call subscribed to a session; counts envelopes, remembers the last arrival."""

    def __init__(self, stub: core_pb2_grpc.MACPRuntimeServiceStub, session_id: str) -> None:
        self.stub = stub
        self.session_id = session_id
        self.subscribed = asyncio.Event()
        self.count = 0
        self.last = 0.0
        self.error = ""

    async def run(self, preexisting: int, expected: int) -> None:
        done = asyncio.Event()

        async def frames() -> AsyncIterator[core_pb2.StreamSessionRequest]:
            yield core_pb2.StreamSessionRequest(subscribe_session_id=self.session_id, after_sequence=0)
            await done.wait()

        if preexisting == 0:
            self.subscribed.set()
        call = self.stub.StreamSession(frames(), metadata=bearer(INITIATOR))
        try:
            async for response in call:
                if response.HasField("error"):
                    self.error = f"{response.error.code}: {response.error.message}"
                    return
                self.count += 1
                if self.count == preexisting:
                    self.subscribed.set()
                elif self.count > preexisting:
                    self.last = time.monotonic()
                if self.count >= preexisting + expected:
                    return
            self.error = "the stream ended early"
        except grpc.RpcError as exc:
            self.error = f"{exc.code().name}: {exc.details()}"
        finally:
            self.subscribed.set()  # never leave the barrier waiting for a failed stream
            done.set()
            call.cancel()


@dataclass(frozen=True, slots=True)
class Subscribers:
    """``streams`` passive subscribers that each wait for ``expected`` new envelopes."""

    target: str
    session_id: str
    streams: int
    preexisting: int
    expected: int
    timeout_s: float

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> Timeline:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        subscriptions = [_Subscription(stub, self.session_id) for _ in range(self.streams)]
        tasks = [asyncio.create_task(s.run(self.preexisting, self.expected)) for s in subscriptions]
        await asyncio.gather(*(s.subscribed.wait() for s in subscriptions))
        await ready()
        began = time.monotonic()
        _, pending = await asyncio.wait(tasks, timeout=self.timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        timeline = Timeline(started=began)
        for s in subscriptions:
            timeline.count += max(0, s.count - self.preexisting)
            timeline.finished = max(timeline.finished, s.last)
            if s.error:
                timeline.fail(s.error)
            elif s.count < self.preexisting + self.expected:
                timeline.fail(f"timed out with {s.count - self.preexisting} of {self.expected} envelopes")
        return timeline


@dataclass(frozen=True, slots=True)
class Writer:
    """One writer: ``count`` TaskUpdates to one session, each sent when the previous one is acked."""

    target: str
    session_id: str
    count: int

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> Timeline:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        await ready()
        stats = CallStats()
        timeline = Timeline(started=time.monotonic())
        for _ in range(self.count):
            stats.record(await send(stub, update_envelope(self.session_id), WORKER))
        timeline.finished = time.monotonic()
        timeline.count = stats.calls
        timeline.errors = stats.errors
        timeline.first_error = stats.first_error
        return timeline


@dataclass(frozen=True, slots=True)
class Replay:
    """Subscribe with after_sequence=0 and time until ``expected`` envelopes have arrived."""

    target: str
    session_id: str
    expected: int
    timeout_s: float

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> Timeline:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        await channel.channel_ready()
        await ready()
        subscription = _Subscription(stub, self.session_id)
        timeline = Timeline(started=time.monotonic())
        try:
            await asyncio.wait_for(subscription.run(0, self.expected), self.timeout_s)
        except TimeoutError:
            timeline.fail(f"timed out after {subscription.count} of {self.expected} envelopes")
        if subscription.error:
            timeline.fail(subscription.error)
        timeline.count = subscription.count
        timeline.finished = subscription.last
        return timeline


@dataclass(frozen=True, slots=True)
class FanOut:
    """Envelopes delivered to all subscribers together, from the writer's first send to the last arrival."""

    delivered: int
    elapsed_s: float
    written: int
    errors: int
    first_error: str

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0


def fan_out(
    target: str, session_id: str, subscribers: int, messages: int, preexisting: int, timeout_s: float
) -> FanOut:
    parts = processes_for(subscribers)
    jobs: list[Subscribers | Writer] = [
        Subscribers(target, session_id, n, preexisting, messages, timeout_s)
        for n in spread(subscribers, parts)
    ]
    jobs.append(Writer(target, session_id, messages))
    results: Sequence[Timeline] = run_jobs(jobs)
    writer, readers = results[-1], results[:-1]
    errors = writer.errors + sum(r.errors for r in readers)
    first = writer.first_error or next((r.first_error for r in readers if r.first_error), "")
    finished = max(r.finished for r in readers)
    return FanOut(
        delivered=sum(r.count for r in readers),
        elapsed_s=max(0.0, finished - writer.started),
        written=writer.count,
        errors=errors,
        first_error=first,
    )


def replay(target: str, session_id: str, expected: int, timeout_s: float) -> Timeline:
    result: Timeline = run_jobs([Replay(target, session_id, expected, timeout_s)])[0]
    return result
