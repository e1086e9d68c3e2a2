"""Scenarios about held state: recovery time (6) and memory per idle session (7).

Recovery: ``Scale.recovery_envelopes`` accepted envelopes in ``Scale.recovery_sessions``
Task sessions are written straight into a store (:mod:`.fixtures`). The runtime is then
started on it and timed from the spawn of ``pymacp serve`` until it *answers*, defined as
all three of: ``Initialize`` succeeds, ``ListSessions`` returns a non-empty page, and
``GetSession`` finds a stored session (the last one written). It is measured twice: as
configured by default, and with ``MACP_STRICT_RECOVERY=1`` (every session replayed from
its log before the port opens; context, no target). The baseline is a separate
process (:mod:`.readrows`) that opens the same file read-only and reads every row of
``entries``, timed from spawn to exit.

Memory: a fresh SQLite runtime; after a warm-up of a few sessions its RSS is read, then
idle sessions are started (SessionStart only, 24-hour TTL) up to the first and then the
second count of ``Scale.memory_sessions``, reading RSS at each; bytes per session is the
growth since the first reading divided by the sessions started since then. Starting the
sessions gets ``Scale.memory_budget_s`` in all: a runtime whose SessionStart slows down
as sessions accumulate is measured at the count it reached, and the note says so.
"""

from __future__ import annotations

import subprocess
import sys
import time

from .fixtures import build_history
from .load import setup_sessions
from .processes import BenchError, RuntimeProcess, serves_session
from .report import Figure, compared
from .runner import Bench, Scale, Scenario
from .scenario_unary import checked
from .workload import new_session_id

RECOVERY_TARGET = 2.0
MEMORY_TARGET_BYTES = 4096
WARM_UP_SESSIONS = 200
SETTLE_S = 1.0


def _read_rows_s(database: str) -> float:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pymacp.bench.readrows", database], capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - began
    if result.returncode != 0:
        raise BenchError(f"the row reader failed: {result.stderr.strip()}")
    return elapsed


def recovery(bench: Bench) -> list[Figure]:
    scale = bench.scale
    per_session = scale.recovery_envelopes // scale.recovery_sessions
    total = per_session * scale.recovery_sessions
    bench.log(f"  writing {total:,} accepted envelopes in {scale.recovery_sessions:,} sessions")
    fixture = build_history(bench.directory("recovery"), scale.recovery_sessions, per_session, bench.log)
    bench.log(f"  fixture written in {fixture.build_s:.1f}s; reading it back as the baseline")
    read_s = _read_rows_s(str(fixture.database))
    bench.log(f"  every row read in {read_s:.2f}s; restarting the runtime on it")
    with RuntimeProcess(fixture.data_dir, bench.work_dir) as runtime:
        recover_s = runtime.start(timeout=3600, ready=serves_session(fixture.session_ids[-1]))
        rss = runtime.rss()
    bench.log(f"  the runtime answered after {recover_s:.2f}s; again with MACP_STRICT_RECOVERY=1")
    strict_env = {"MACP_STRICT_RECOVERY": "1"}
    with RuntimeProcess(fixture.data_dir, bench.work_dir, env=strict_env) as runtime:
        strict_s = runtime.start(timeout=3600, ready=serves_session(fixture.session_ids[-1]))
    bench.log(f"  the strict runtime answered after {strict_s:.2f}s")
    with RuntimeProcess(bench.directory("empty"), bench.work_dir) as empty:
        empty_s = empty.start()
    return [
        compared(
            "recovery",
            f"restart with {total:,} envelopes in {scale.recovery_sessions:,} sessions until it answers",
            recover_s,
            "s",
            read_s,
            at_most=RECOVERY_TARGET,
            note=f"baseline: rows read by sqlite3 in another process; fixture took {fixture.build_s:.0f}s",
        ),
        compared(
            "recovery",
            "the same restart with MACP_STRICT_RECOVERY=1 (every session replayed first)",
            strict_s,
            "s",
            read_s,
        ),
        Figure("recovery", "start-up of an empty runtime until it answers", empty_s, "s"),
        Figure("recovery", "runtime RSS when it first answers after the restart", rss / 2**20, "MiB"),
    ]


def memory(bench: Bench) -> list[Figure]:
    figures = []
    with RuntimeProcess(bench.directory("memory-rss"), bench.work_dir) as runtime:
        runtime.start()
        checked(setup_sessions(runtime.target, _ids(WARM_UP_SESSIONS), start_only=True), "warming up")
        time.sleep(SETTLE_S)
        before = runtime.rss()
        deadline = time.monotonic() + bench.scale.memory_budget_s
        started = 0
        for goal in bench.scale.memory_sessions:
            remaining = deadline - time.monotonic()
            rate = 0.0
            if remaining > 0 and started < goal:
                fill = setup_sessions(
                    runtime.target, _ids(goal - started), start_only=True, budget_s=remaining
                )
                checked(fill, "starting idle sessions")
                started += fill.calls
                rate = fill.rate
            if started == 0:
                raise BenchError("no idle session could be started within the time budget")
            time.sleep(SETTLE_S)
            after = runtime.rss()
            per_session = (after - before) / started
            bench.log(f"  {started:,} idle sessions: {per_session:,.0f} bytes each (started {rate:,.0f}/s)")
            note = f"RSS {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after"
            reached = started >= goal
            if not reached:
                note += (
                    f"; not judged: measured at {started:,} sessions, all that were started within the "
                    f"{bench.scale.memory_budget_s:.0f}s budget (SessionStart at {rate:,.0f}/s at the end)"
                )
            figures.append(
                Figure(
                    "memory",
                    f"RSS per idle open session at {goal:,} sessions",
                    per_session,
                    "bytes",
                    target=f"≤ {MEMORY_TARGET_BYTES:,} bytes",
                    met=per_session <= MEMORY_TARGET_BYTES if reached else None,
                    note=note,
                )
            )
    return figures


def _ids(count: int) -> tuple[str, ...]:
    return tuple(new_session_id() for _ in range(count))


def _recovery_estimate(scale: Scale) -> float:
    # per envelope: fixture ~60 µs, strict recovery ~45 µs; lazy recovery and reading back are quick
    return 10.0 + scale.recovery_envelopes * 110e-6


def _memory_estimate(scale: Scale) -> float:
    return 5.0 + min(scale.memory_budget_s, scale.memory_sessions[1] / 1_200)


SCENARIOS = [
    Scenario(
        6, "recovery", "restart on a large stored history vs reading its rows", recovery, _recovery_estimate
    ),
    Scenario(7, "memory", "RSS per idle open session", memory, _memory_estimate),
]
