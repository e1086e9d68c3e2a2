"""Load generators: client processes that drive a server over loopback gRPC.

A *job* is a small frozen dataclass describing what one client process does. :func:`run_jobs`
starts one process per job with the ``spawn`` start method (a clean interpreter, no state
inherited from the parent); each process runs ``asyncio`` with one ``grpc.aio`` channel,
prepares (connects, warms up), waits at a barrier shared with every other job of the
measurement, then runs and sends back a picklable result. Time is read with
``time.monotonic`` (CLOCK_MONOTONIC, one clock for every process of the machine), so the
parent can compare timestamps taken in different processes.

"N clients" means N calls in flight at once: N asyncio workers, each sending its next call
as soon as the previous one is answered, spread over ``min(N, 4)`` processes (one process
is not enough to saturate a server with 64 callers, and more than four would only take CPU
from the server on a small machine). Each worker owns a disjoint slice of the sessions, so
no two in-flight calls wait on the same session lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import queue
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2

from .processes import BenchError
from .workload import (
    CALL_TIMEOUT_S,
    INITIATOR,
    WORKER,
    accept_envelope,
    bearer,
    request_envelope,
    start_envelope,
    update_envelope,
)

MAX_PROCESSES = 4
BARRIER_TIMEOUT_S = 600.0  # preparing may include subscribing to a long replay
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]

Ready = Callable[[], Awaitable[None]]


class Job(Protocol):
    @property
    def target(self) -> str: ...

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> Any: ...


@dataclass(slots=True)
class CallStats:
    """What one or more client processes observed."""

    calls: int = 0
    errors: int = 0
    first_error: str = ""
    elapsed_s: float = 0.0
    samples_s: list[float] = field(default_factory=list)  # latencies or round times, when recorded

    def record(self, error: str | None) -> None:
        if error is None:
            self.calls += 1
        else:
            self.errors += 1
            self.first_error = self.first_error or error

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @classmethod
    def merge(cls, parts: Sequence[CallStats]) -> CallStats:
        merged = cls()
        for part in parts:
            merged.calls += part.calls
            merged.errors += part.errors
            merged.first_error = merged.first_error or part.first_error
            merged.elapsed_s = max(merged.elapsed_s, part.elapsed_s)
            merged.samples_s.extend(part.samples_s)
        return merged


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def send(stub: Any, env: envelope_pb2.Envelope, sender: str) -> str | None:
    """One Send; None when acknowledged, otherwise what went wrong."""
    try:
        response = await stub.Send(
            core_pb2.SendRequest(envelope=env), metadata=bearer(sender), timeout=CALL_TIMEOUT_S
        )
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    if not response.ack.ok:
        return f"{response.ack.error.code}: {response.ack.error.message}"
    return None


# -- jobs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    """Make sessions ready for TaskUpdates (or only start them), ``concurrency`` at a time.

    No new session is begun once ``budget_s`` has passed; ``calls`` says how far it got.
    """

    target: str
    sessions: tuple[str, ...]
    concurrency: int
    start_only: bool = False
    budget_s: float = math.inf

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> CallStats:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        await ready()
        stats = CallStats()
        pending = iter(self.sessions)
        began = time.monotonic()

        async def worker() -> None:
            for session_id in pending:
                if time.monotonic() - began > self.budget_s:
                    return
                stats.record(await send(stub, start_envelope(session_id), INITIATOR))
                if not self.start_only:
                    stats.record(await send(stub, request_envelope(session_id), INITIATOR))
                    stats.record(await send(stub, accept_envelope(session_id), WORKER))

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        stats.elapsed_s = time.monotonic() - began
        return stats


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """Workers ``workers`` (of ``total_workers``) each keep one TaskUpdate in flight for ``duration_s``."""

    target: str
    sessions: tuple[str, ...]
    workers: tuple[int, ...]
    total_workers: int
    duration_s: float

    def _plan(self, worker: int) -> tuple[str, ...]:
        own = self.sessions[worker :: self.total_workers]
        return own or (self.sessions[worker % len(self.sessions)],)

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> CallStats:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        plans = [self._plan(w) for w in self.workers]
        await asyncio.gather(*(send(stub, update_envelope(plan[0]), WORKER) for plan in plans))  # warm up
        await ready()
        stats = CallStats()
        began = time.monotonic()
        deadline = began + self.duration_s

        async def worker(plan: tuple[str, ...]) -> None:
            turn = 0
            while time.monotonic() < deadline:
                stats.record(await send(stub, update_envelope(plan[turn % len(plan)]), WORKER))
                turn += 1

        await asyncio.gather(*(worker(plan) for plan in plans))
        stats.elapsed_s = time.monotonic() - began
        return stats


@dataclass(frozen=True, slots=True)
class Paced:
    """Open loop: start a TaskUpdate every ``1 / rate_per_s`` seconds, whether or not earlier ones returned.

    Latency is measured from the moment a call was due, not from when it was sent, so a
    stalled server cannot hide its queueing delay (no coordinated omission).
    """

    target: str
    sessions: tuple[str, ...]
    offset: int
    rate_per_s: float
    duration_s: float
    max_outstanding: int = 10_000

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> CallStats:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        await send(stub, update_envelope(self.sessions[self.offset % len(self.sessions)]), WORKER)
        await ready()
        stats = CallStats()
        in_flight: set[asyncio.Task[None]] = set()

        async def timed(due: float, session_id: str) -> None:
            error = await send(stub, update_envelope(session_id), WORKER)
            stats.record(error)
            if error is None:
                stats.samples_s.append(time.monotonic() - due)

        began = time.monotonic()
        for i in range(int(self.rate_per_s * self.duration_s)):
            due = began + i / self.rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= self.max_outstanding:
                stats.record("overloaded: too many calls outstanding")
                continue
            session_id = self.sessions[(self.offset + i) % len(self.sessions)]
            task = asyncio.create_task(timed(due, session_id))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
        stats.elapsed_s = time.monotonic() - began
        return stats


@dataclass(frozen=True, slots=True)
class Rounds:
    """``rounds`` times: one TaskUpdate to each of ``sessions`` at once; records each round's wall time."""

    target: str
    sessions: tuple[str, ...]
    rounds: int

    async def execute(self, channel: grpc.aio.Channel, ready: Ready) -> CallStats:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        await self._round(stub, CallStats())  # warm up
        await ready()
        stats = CallStats()
        began = time.monotonic()
        for _ in range(self.rounds):
            stats.samples_s.append(await self._round(stub, stats))
        stats.elapsed_s = time.monotonic() - began
        return stats

    async def _round(self, stub: Any, stats: CallStats) -> float:
        envelopes = [update_envelope(session_id) for session_id in self.sessions]
        began = time.monotonic()
        errors = await asyncio.gather(*(send(stub, env, WORKER) for env in envelopes))
        elapsed = time.monotonic() - began
        for error in errors:
            stats.record(error)
        return elapsed


# -- running jobs in processes ---------------------------------------------------------------


def _child(index: int, job: Job, barrier: Any, results: Any) -> None:
    try:
        result = asyncio.run(_execute(job, barrier))
    except BaseException:
        barrier.abort()  # release everyone waiting for this process
        results.put((index, None, traceback.format_exc()))
        return
    results.put((index, result, ""))


async def _execute(job: Job, barrier: Any) -> Any:
    async def ready() -> None:
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S)

    async with grpc.aio.insecure_channel(job.target, options=CHANNEL_OPTIONS) as channel:
        return await job.execute(channel, ready)


def run_jobs(jobs: Sequence[Job], timeout: float = 1800.0) -> list[Any]:
    """Run each job in its own spawned process, start them together, return their results in order."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs) + 1)
    results = context.Queue()
    processes = [
        context.Process(target=_child, args=(i, job, barrier, results), name=f"bench-client-{i}", daemon=True)
        for i, job in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, tuple[Any, str]] = {}
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a client failed; its error arrives below
            barrier.wait(BARRIER_TIMEOUT_S)
        deadline = time.monotonic() + timeout
        while len(outcomes) < len(jobs) and time.monotonic() < deadline:
            try:
                index, result, error = results.get(timeout=1.0)
            except queue.Empty:
                if all(not p.is_alive() for p in processes):  # died without reporting
                    break
                continue
            outcomes[index] = (result, error)
    finally:
        complete = len(outcomes) == len(jobs)
        for process in processes:
            process.join(5.0 if complete else 0.1)
            if process.is_alive():
                process.terminate()
                process.join()
    failures = [f"client {i}: {outcomes[i][1]}" for i in sorted(outcomes) if outcomes[i][1]]
    missing = [str(i) for i in range(len(jobs)) if i not in outcomes]
    if failures or missing:
        raise BenchError(
            "load client processes failed:\n"
            + "\n".join(failures)
            + (f"\nno result from {missing}" if missing else "")
        )
    return [outcomes[i][0] for i in range(len(jobs))]


# -- measurements built from jobs -------------------------------------------------------------


def processes_for(clients: int) -> int:
    return max(1, min(clients, MAX_PROCESSES))


def setup_sessions(
    target: str,
    sessions: Sequence[str],
    *,
    start_only: bool = False,
    concurrency: int = 64,
    budget_s: float = math.inf,
) -> CallStats:
    parts = processes_for(concurrency)
    shares = spread(concurrency, parts)
    jobs = [Setup(target, tuple(sessions[p::parts]), shares[p], start_only, budget_s) for p in range(parts)]
    return CallStats.merge(run_jobs(jobs))


def closed_loop(target: str, sessions: Sequence[str], clients: int, duration_s: float) -> CallStats:
    """Throughput with ``clients`` calls in flight (see the module docstring)."""
    parts = processes_for(clients)
    workers = [tuple(range(clients))[p::parts] for p in range(parts)]
    jobs = [ClosedLoop(target, tuple(sessions), w, clients, duration_s) for w in workers]
    return CallStats.merge(run_jobs(jobs))


def paced(target: str, sessions: Sequence[str], rate_per_s: float, duration_s: float) -> CallStats:
    """Per-call latencies of an open-loop sender at ``rate_per_s`` in total, over MAX_PROCESSES processes."""
    parts = MAX_PROCESSES
    jobs = [Paced(target, tuple(sessions), p, rate_per_s / parts, duration_s) for p in range(parts)]
    return CallStats.merge(run_jobs(jobs))


def rounds(target: str, sessions: Sequence[str], count: int) -> CallStats:
    return CallStats.merge(run_jobs([Rounds(target, tuple(sessions), count)]))
