"""Scenarios over unary Send: throughput (1), fsync-contended commits (2), latency (3), durability (8).

They share one SQLite runtime and one no-op baseline server (:func:`unary_rig`), each with
the same ``Scale.sessions`` Task sessions set up, so the load clients send identical
TaskUpdates to both. Scenario 8 starts its own pair of fresh runtimes instead, SQLite and
memory-only, so the two it compares differ in nothing else.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .load import CallStats, closed_loop, paced, rounds, setup_sessions
from .machine import cpu_wait_seconds, process_cpu_seconds
from .processes import BaselineProcess, BenchError, RuntimeProcess, ServerProcess
from .report import Figure, compared, counted, median_pair, percentile
from .runner import Bench, Scale, Scenario
from .workload import new_session_id

STORAGE_COMMITS = "macp_storage_commits_total"
CONTENDED_SENDS = 8
FSYNC_TARGET = 1.5


@dataclass(frozen=True, slots=True)
class UnaryRig:
    runtime: RuntimeProcess
    baseline: BaselineProcess
    sessions: tuple[str, ...]


def checked(stats: CallStats, what: str) -> CallStats:
    if stats.errors:
        raise BenchError(f"{what}: {stats.errors} calls failed; the first: {stats.first_error}")
    return stats


def joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def errors_note(*stats: CallStats) -> str:
    failed = sum(s.errors for s in stats)
    if not failed:
        return ""
    first = next(s.first_error for s in stats if s.first_error)
    return f"{failed} calls failed (first: {first})"


def prepared_sessions(bench: Bench, targets: tuple[str, ...], count: int) -> tuple[str, ...]:
    sessions = tuple(new_session_id() for _ in range(count))
    for target in targets:
        checked(setup_sessions(target, sessions), f"setting up {count} sessions on {target}")
    return sessions


def unary_rig(bench: Bench) -> UnaryRig:
    runtime = bench.stack.enter_context(RuntimeProcess(bench.directory("sqlite"), bench.work_dir))
    baseline = bench.stack.enter_context(BaselineProcess("unary", bench.work_dir))
    runtime.start()
    baseline.start()
    bench.log(f"  setting up {bench.scale.sessions:,} Task sessions on the runtime and the baseline")
    sessions = prepared_sessions(bench, (runtime.target, baseline.target), bench.scale.sessions)
    return UnaryRig(runtime, baseline, sessions)


def max_rate(bench: Bench, rig: UnaryRig) -> float:
    """The runtime's throughput at the largest client count, from scenario 1 or measured now."""
    if "max_rate" not in bench.cache:
        clients = bench.scale.max_clients
        bench.cache["max_rate"] = closed_loop(
            rig.runtime.target, rig.sessions, clients, bench.scale.measure_s
        ).rate
    return bench.cache["max_rate"]


# -- 1 ------------------------------------------------------------------------------------------


def throughput(bench: Bench) -> list[Figure]:
    rig = bench.shared("unary", unary_rig)
    figures = []
    for clients in bench.scale.clients:
        runs = []
        # Only the largest count has a target; the others are context and get one pair each.
        for _ in range(bench.scale.repeats if clients == bench.scale.max_clients else 1):
            ours = closed_loop(rig.runtime.target, rig.sessions, clients, bench.scale.measure_s)
            theirs = closed_loop(rig.baseline.target, rig.sessions, clients, bench.scale.measure_s)
            bench.log(f"  {clients} clients: runtime {ours.rate:,.0f}/s, no-op baseline {theirs.rate:,.0f}/s")
            runs.append((ours, theirs))
        rate, baseline_rate, spread = median_pair([(ours.rate, theirs.rate) for ours, theirs in runs])
        if clients == bench.scale.max_clients:
            bench.cache["max_rate"] = rate
        figures.append(
            compared(
                "throughput",
                f"durable Send/s, {counted(clients, 'client')}",
                rate,
                "env/s",
                baseline_rate,
                at_least=0.5 if clients == bench.scale.max_clients else None,
                note=joined(spread, errors_note(*(stats for run in runs for stats in run))),
            )
        )
    return figures


# -- 2 ------------------------------------------------------------------------------------------


def fsync_contention(bench: Bench) -> list[Figure]:
    rig = bench.shared("unary", unary_rig)
    sessions = rig.sessions[:CONTENDED_SENDS]
    count = bench.scale.rounds
    fsync = bench.fsync_s
    before = rig.runtime.metric(STORAGE_COMMITS)
    ours = rounds(rig.runtime.target, sessions, count)
    after = rig.runtime.metric(STORAGE_COMMITS)
    theirs = rounds(rig.baseline.target, sessions, count)
    round_s = statistics.median(ours.samples_s)
    noop_s = statistics.median(theirs.samples_s)
    bench.log(f"  round of 8: runtime {round_s * 1000:.2f} ms, no-op {noop_s * 1000:.2f} ms")
    commits = None if before is None or after is None else (after - before) / (count + 1)  # +1: warm-up
    return [
        Figure("fsync", "one fsync (write 4 KiB + fsync), median", fsync * 1000, "ms"),
        compared(
            "fsync",
            "8 concurrent durable sends, median round (baseline: one fsync)",
            round_s * 1000,
            "ms",
            fsync * 1000,
            at_most=FSYNC_TARGET,
            note=errors_note(ours),
        ),
        Figure(
            "fsync",
            "storage commits (fsyncs) per round of 8",
            commits,
            "commits",
            target=f"≤ {FSYNC_TARGET:g}",
            met=None if commits is None else commits <= FSYNC_TARGET,
            note="" if commits is not None else f"n/a: the runtime does not expose {STORAGE_COMMITS}",
        ),
        compared(
            "fsync",
            "8 concurrent sends, median round against the no-op server",
            round_s * 1000,
            "ms",
            noop_s * 1000,
            note=f"the runtime's excess over the no-op round is {(round_s - noop_s) / fsync:.1f} fsyncs",
        ),
    ]


# -- 3 ------------------------------------------------------------------------------------------


def latency(bench: Bench) -> list[Figure]:
    rig = bench.shared("unary", unary_rig)
    rate = 0.5 * max_rate(bench, rig)
    runs = []
    waits: list[tuple[float | None, float | None]] = []
    for _ in range(bench.scale.repeats):
        ours, our_wait = _paced_waiting(rig.runtime, rig.sessions, rate, bench.scale.measure_s)
        theirs, their_wait = _paced_waiting(rig.baseline, rig.sessions, rate, bench.scale.measure_s)
        p50, p99 = (percentile(ours.samples_s, q) * 1000 for q in (50, 99))
        b50, b99 = (percentile(theirs.samples_s, q) * 1000 for q in (50, 99))
        bench.log(
            f"  at {rate:,.0f}/s: runtime p50 {p50:.2f} / p99 {p99:.2f} ms, no-op {b50:.2f} / {b99:.2f} ms"
            f"; event loop waiting for a CPU {_share(our_wait)} / {_share(their_wait)} of the time"
        )
        runs.append((ours, theirs, (p50, b50), (p99, b99)))
        waits.append((our_wait, their_wait))
    p50, b50, spread50 = median_pair([run[2] for run in runs])
    p99, b99, spread99 = median_pair([run[3] for run in runs])
    fsync_ms = bench.fsync_s * 1000
    allowed = 2 * b99 + fsync_ms
    load = f"offered load {rate:,.0f} env/s"
    errors = errors_note(*(stats for run in runs for stats in run[:2]))
    return [
        compared(
            "latency",
            "ack latency p50 at half of max throughput",
            p50,
            "ms",
            b50,
            note=joined(load, spread50, errors),
        ),
        Figure(
            "latency",
            "ack latency p99 at half of max throughput",
            p99,
            "ms",
            b99,
            p99 / b99 if b99 else None,
            target=f"≤ 2×baseline + 1 fsync = {allowed:.2f} ms",
            met=p99 <= allowed,
            note=spread99,
        ),
        _wait_figure(waits),
    ]


def _paced_waiting(
    server: ServerProcess, sessions: tuple[str, ...], rate: float, duration_s: float
) -> tuple[CallStats, float | None]:
    """A paced run, and the share of its measured time the server's event loop spent ready to
    run but without a CPU (None where the kernel does not count it). The wait is read around
    the whole run, client start-up included, when the server is idle and hardly waits."""
    before = cpu_wait_seconds(server.pid)
    stats = paced(server.target, sessions, rate, duration_s)
    waited = _growth(before, cpu_wait_seconds(server.pid))
    return stats, None if waited is None or stats.elapsed_s <= 0 else waited / stats.elapsed_s


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _wait_figure(waits: list[tuple[float | None, float | None]]) -> Figure:
    """How long each server's event loop was ready to run but without a CPU, on a machine
    whose cores the load generator shares: context for the latencies, no target."""
    figure = "event loop waiting for a CPU, share of the time (baseline: no-op server)"
    ours = [wait for wait, _ in waits if wait is not None]
    theirs = [wait for _, wait in waits if wait is not None]
    if len(ours) < len(waits) or len(theirs) < len(waits):
        return Figure("latency", figure, None, "%", note="n/a: this kernel does not count run-queue waits")
    runs = ", ".join(f"{_share(our)} / {_share(their)}" for our, their in zip(ours, theirs, strict=True))
    note = f"per run, runtime / no-op: {runs}"
    if len(waits) > 1:
        note = f"median of {len(waits)} runs; {note}"
    return compared(
        "latency", figure, statistics.median(ours) * 100, "%", statistics.median(theirs) * 100, note=note
    )


# -- 8 ------------------------------------------------------------------------------------------


def durability(bench: Bench) -> list[Figure]:
    clients = bench.scale.max_clients
    with (
        RuntimeProcess(bench.directory("durable"), bench.work_dir) as durable,
        RuntimeProcess(bench.directory("memory"), bench.work_dir, memory_only=True) as memory,
    ):
        durable.start()
        memory.start()
        sessions = prepared_sessions(bench, (durable.target, memory.target), bench.scale.sessions)
        runs = []
        costs: list[tuple[Cost, Cost]] = []
        for _ in range(bench.scale.repeats):
            ours, our_cost = _costed(durable, sessions, clients, bench.scale.measure_s)
            theirs, their_cost = _costed(memory, sessions, clients, bench.scale.measure_s)
            bench.log(f"  {clients} clients: SQLite {ours.rate:,.0f}/s, memory only {theirs.rate:,.0f}/s")
            runs.append((ours, theirs))
            costs.append((our_cost, their_cost))
    rate, memory_rate, spread = median_pair([(ours.rate, theirs.rate) for ours, theirs in runs])
    return [
        compared(
            "durability",
            f"Send/s at {clients} clients, SQLite (baseline: MACP_MEMORY_ONLY=1)",
            rate,
            "env/s",
            memory_rate,
            at_least=0.8,
            note=joined(spread, errors_note(*(stats for run in runs for stats in run))),
        ),
        _cpu_figure(costs),
    ]


@dataclass(frozen=True, slots=True)
class Cost:
    """What a server process spent on one closed-loop run."""

    calls: int
    cpu_s: float | None  # CPU time of all its threads; None if /proc is not readable
    commits: float | None  # storage commits; None for a store that does not count them

    @property
    def cpu_per_call_us(self) -> float | None:
        return None if self.cpu_s is None or not self.calls else self.cpu_s / self.calls * 1e6


def _costed(
    server: RuntimeProcess, sessions: tuple[str, ...], clients: int, duration_s: float
) -> tuple[CallStats, Cost]:
    cpu, commits = process_cpu_seconds(server.pid), server.metric(STORAGE_COMMITS)
    stats = closed_loop(server.target, sessions, clients, duration_s)
    spent = _growth(cpu, process_cpu_seconds(server.pid))
    committed = _growth(commits, server.metric(STORAGE_COMMITS))
    # every worker's warm-up call is sent before the measured window but within the CPU one
    return stats, Cost(stats.calls + stats.errors + clients, spent, committed)


def _growth(before: float | None, after: float | None) -> float | None:
    """How much a counter grew between two readings; None if either could not be read."""
    return None if before is None or after is None else after - before


def _cpu_figure(costs: list[tuple[Cost, Cost]]) -> Figure:
    """The servers' CPU per Send over every run: where the durable runtime's extra time goes."""
    figure = "server CPU per Send, all threads, SQLite (baseline: memory only)"
    durable = [ours.cpu_per_call_us for ours, _ in costs]
    memory = [theirs.cpu_per_call_us for _, theirs in costs]
    if any(value is None for value in durable + memory):
        return Figure("durability", figure, None, "µs", note="n/a: process CPU time is not readable here")
    value = statistics.median(v for v in durable if v is not None)
    baseline = statistics.median(v for v in memory if v is not None)
    commits = sum(ours.commits or 0 for ours, _ in costs)
    calls = sum(ours.calls for ours, _ in costs)
    note = "" if len(costs) == 1 else f"median of {len(costs)} runs"
    if commits:
        note = joined(note, f"SQLite: {calls / commits:.1f} envelopes per commit")
    return compared("durability", figure, value, "µs", baseline, note=note)


# -- estimates (seconds on a 2-core machine) ----------------------------------------------------

SPAWN_S = 1.5  # starting a round of client processes


def _setup_s(scale: Scale) -> float:
    return 2.0 + scale.sessions * 0.007


SCENARIOS = [
    Scenario(
        1,
        "throughput",
        "durable Send throughput at 1/8/64 clients vs a no-op gRPC server",
        throughput,
        lambda s: _setup_s(s) + (s.repeats + len(s.clients) - 1) * 2 * (s.measure_s + SPAWN_S),
    ),
    Scenario(
        2,
        "fsync",
        "8 concurrent durable sends to 8 sessions, in fsync units",
        fsync_contention,
        lambda s: 2 * (SPAWN_S + s.rounds * 0.01),
    ),
    Scenario(
        3,
        "latency",
        "ack latency p50/p99 at half the maximum throughput",
        latency,
        lambda s: s.repeats * 2 * (s.measure_s + SPAWN_S) + 1,
    ),
    Scenario(
        8,
        "durability",
        "durable throughput vs MACP_MEMORY_ONLY=1",
        durability,
        lambda s: 2 * _setup_s(s) + s.repeats * 2 * (s.measure_s + SPAWN_S),
    ),
]
