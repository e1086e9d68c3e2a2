"""Running a benchmark: sizes, the shared run context, and the list of scenarios.

:class:`Scale` holds every size and duration; ``FULL`` is the real run (under 15 minutes on
a 2-core machine), ``QUICK`` the CI smoke run that must still produce every figure.
:class:`Bench` is what a scenario gets: the scale, a work directory, the fsync unit
measured once at the start of the run, progress logging, and servers shared between
scenarios (started on first use, stopped when the run ends). :func:`run` runs the chosen
scenarios in order and collects their figures, with the share of CPU time the hypervisor
stole while each ran; a scenario that fails is recorded with its error and the others
still run.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .machine import STEAL_WARNING, CpuClock, fsync_seconds
from .report import Figure

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Scale:
    quick: bool
    measure_s: float  # each throughput or latency measurement
    sessions: int  # sessions the unary load is spread over
    clients: tuple[int, ...]  # concurrent calls in flight for scenario 1
    rounds: int  # rounds of 8 concurrent sends for scenario 2
    fsync_samples: int
    fanout: tuple[tuple[int, int], ...]  # (subscribers, envelopes written)
    replay_envelopes: int
    recovery_sessions: int
    recovery_envelopes: int
    memory_sessions: tuple[int, int]
    memory_budget_s: float  # time allowed for starting the idle sessions of scenario 7
    # Paired runs (runtime, then baseline, back to back) of each judged throughput, latency,
    # fan-out and durability figure; the pair with the median ratio is reported, so one
    # disturbed run on a shared machine neither makes nor breaks a figure. The note lists
    # every run's ratio.
    repeats: int

    @property
    def max_clients(self) -> int:
        return self.clients[-1]


FULL = Scale(
    quick=False,
    measure_s=8.0,  # ≥ 4,000 calls per measurement on 2 vCPUs: 40 beyond the p99
    sessions=1000,
    clients=(1, 8, 64),
    rounds=400,
    fsync_samples=500,
    fanout=((1, 3000), (10, 1500), (100, 400)),
    replay_envelopes=100_000,
    recovery_sessions=10_000,
    recovery_envelopes=1_000_000,
    memory_sessions=(10_000, 100_000),
    memory_budget_s=300.0,
    repeats=3,
)
QUICK = Scale(
    quick=True,
    measure_s=2.0,
    sessions=128,
    clients=(1, 8, 64),
    rounds=50,
    fsync_samples=100,
    fanout=((1, 200), (10, 100), (100, 20)),
    replay_envelopes=2_000,
    recovery_sessions=200,
    recovery_envelopes=20_000,
    memory_sessions=(1_000, 2_000),
    memory_budget_s=60.0,
    repeats=1,
)


class Bench:
    """The context every scenario runs in."""

    def __init__(self, scale: Scale, work_dir: Path, log: Callable[[str], None]) -> None:
        self.scale = scale
        self.work_dir = work_dir
        self.log = log
        self.stack = contextlib.ExitStack()
        self.cache: dict[str, float] = {}
        self._shared: dict[str, Any] = {}
        self._fsync_s: float | None = None

    @property
    def fsync_s(self) -> float:
        """One fsync on the runtime's disk (median of write 4 KiB + fsync), measured once per run."""
        if self._fsync_s is None:
            self._fsync_s = fsync_seconds(self.directory("sqlite"), self.scale.fsync_samples)
            self.log(f"  fsync unit: {self._fsync_s * 1000:.3f} ms (median of {self.scale.fsync_samples})")
        return self._fsync_s

    def directory(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def shared(self, key: str, factory: Callable[[Bench], T]) -> T:
        """The value ``factory`` made for ``key`` earlier in this run, or a new one."""
        if key not in self._shared:
            self._shared[key] = factory(self)
        value: T = self._shared[key]
        return value

    def close(self) -> None:
        self.stack.close()


@dataclass(frozen=True, slots=True)
class Scenario:
    number: int
    name: str
    title: str
    run: Callable[[Bench], list[Figure]]
    estimate_s: Callable[[Scale], float]


@dataclass(slots=True)
class Outcome:
    scenario: Scenario
    figures: list[Figure] = field(default_factory=list)
    duration_s: float = 0.0
    error: str = ""
    cpu_steal: float | None = None  # share of CPU time stolen by the hypervisor while it ran


def scenarios() -> list[Scenario]:
    from . import scenario_bus, scenario_state, scenario_streams, scenario_unary

    return [
        *scenario_unary.SCENARIOS[:3],
        *scenario_streams.SCENARIOS,
        *scenario_state.SCENARIOS,
        scenario_unary.SCENARIOS[3],
        *scenario_bus.SCENARIOS,
    ]


def select(names: str | None) -> list[Scenario]:
    """Scenarios named (or numbered) in a comma-separated list; every scenario for None."""
    every = scenarios()
    if not names:
        return every
    by_key = {s.name: s for s in every} | {str(s.number): s for s in every}
    chosen: list[Scenario] = []
    for raw in names.split(","):
        key = raw.strip().lower()
        if key not in by_key:
            known = ", ".join(f"{s.number}={s.name}" for s in every)
            raise ValueError(f"unknown scenario {raw.strip()!r}; choose from {known}")
        if by_key[key] not in chosen:
            chosen.append(by_key[key])
    return sorted(chosen, key=lambda s: s.number)


def run(bench: Bench, chosen: Sequence[Scenario]) -> list[Outcome]:
    total = sum(s.estimate_s(bench.scale) for s in chosen)
    bench.log(f"running {len(chosen)} scenario(s), estimated {total / 60:.1f} min in all")
    outcomes = []
    try:
        bench.fsync_s  # noqa: B018 - measure the unit before any load runs
        for scenario in chosen:
            estimate = scenario.estimate_s(bench.scale)
            bench.log(f"[{scenario.number}/{len(scenarios())}] {scenario.title} (estimate ~{estimate:.0f}s)")
            outcome = Outcome(scenario)
            began = time.monotonic()
            clock = CpuClock.read()
            try:
                outcome.figures = scenario.run(bench)
            except Exception as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
                bench.log(f"  FAILED: {outcome.error}\n{traceback.format_exc()}")
            outcome.duration_s = time.monotonic() - began
            outcome.cpu_steal = None if clock is None else clock.steal_share(CpuClock.read())
            bench.log(f"  done in {outcome.duration_s:.1f}s{_steal_remark(outcome.cpu_steal)}")
            outcomes.append(outcome)
    finally:
        bench.close()
    return outcomes


def _steal_remark(share: float | None) -> str:
    if share is None:
        return ""
    remark = f"; {share:.0%} of CPU time stolen by the hypervisor"
    if share > STEAL_WARNING:
        remark += " (other guests shared these cores: treat this scenario's figures with care)"
    return remark
