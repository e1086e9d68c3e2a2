"""``pymacp bench``: run the benchmark suite and print (and optionally save) its results."""

from __future__ import annotations

import datetime
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import click

from .. import __version__
from .machine import machine_info
from .report import figure_json, table, write_json
from .runner import FULL, QUICK, Bench, Outcome, Scale, run, scenarios, select

HELP = """Benchmark the runtime; every figure is a ratio against a baseline measured in the same run.

\b
Each scenario starts `pymacp serve` as a real process on a loopback port and drives it
from separate client processes over gRPC, next to a baseline that does the same with
(almost) no work:
  1. throughput  durable Send/s at 1, 8, 64 clients    vs a no-op gRPC server
  2. fsync       8 concurrent sends to 8 sessions      vs one fsync on the same disk
  3. latency     ack p50/p99 at half the max rate      vs the no-op server at that rate
  4. fanout      1 writer to 1/10/100 subscribers      vs a raw streaming server
  5. replay      subscribe from 0 to a long session    vs a stream of ready-made frames
  6. recovery    restart on 1M stored envelopes        vs reading the rows with sqlite3
  7. memory      RSS per idle open session             (absolute target: 4 KiB)
  8. durability  SQLite throughput                     vs MACP_MEMORY_ONLY=1
  9. bus         JSON-RPC round trips via pymacp bus   vs a direct pipe to the worker

\b
The table goes to stdout, progress to stderr; --json writes every figure with the
machine it was measured on, and the share of CPU time the hypervisor stole during each
scenario. The full run takes 6-12 minutes on 2 cores, under 15 on a busy shared
host; --quick shrinks every size (about 1-2 minutes) and is meant as a smoke test, not
for numbers. Judged throughput, latency, fan-out and durability figures are the median of
3 paired runs (runtime, then baseline); see bench/README.md for how to read the results.
"""


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.command("bench", help=HELP)
@click.option("--quick", is_flag=True, help="Small sizes and 2-second measurements (CI smoke test).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results as JSON here.",
)
@click.option(
    "--only", metavar="SCENARIO[,...]", help="Run only these scenarios, by name or number (e.g. 1,fanout)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work directory for data directories and server logs (kept afterwards). "
    "Default: a temporary directory, removed at the end. Put it on the disk you want to measure.",
)
def bench(quick: bool, json_path: Path | None, only: str | None, data_dir: Path | None) -> None:
    try:
        chosen = select(only)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--only") from None
    scale = QUICK if quick else FULL
    work_dir = data_dir or Path(tempfile.mkdtemp(prefix="pymacp-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    _log(f"pymacp bench{' --quick' if quick else ''}: work directory {work_dir}")
    started_at = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    context = Bench(scale, work_dir, _log)
    try:
        outcomes = run(context, chosen)
        machine = machine_info(work_dir)
    finally:
        if data_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    duration = time.monotonic() - began
    numbers = {s.name: s.number for s in scenarios()}
    figures = [f for o in outcomes for f in o.figures]
    click.echo(table(figures, numbers))
    click.echo(
        f"\ntotal {duration:.0f}s ({duration / 60:.1f} min); fsync unit {context.fsync_s * 1000:.3f} ms"
    )
    steal = [f"{o.scenario.name} {o.cpu_steal:.0%}" for o in outcomes if o.cpu_steal is not None]
    if steal:
        click.echo("CPU time stolen by the hypervisor: " + ", ".join(steal))
    missed = [f"{f.scenario}: {f.figure}" for f in figures if f.met is False]
    if missed:
        click.echo("targets missed:\n" + "\n".join(f"  {m}" for m in missed))
    failed = [o for o in outcomes if o.error]
    for outcome in failed:
        click.echo(f"scenario {outcome.scenario.name} FAILED: {outcome.error}", err=True)
    if json_path is not None:
        write_json(json_path, _document(outcomes, scale, started_at, duration, context.fsync_s, machine))
        _log(f"results written to {json_path}")
    if failed:
        sys.exit(1)


def _document(
    outcomes: list[Outcome],
    scale: Scale,
    started_at: datetime.datetime,
    duration: float,
    fsync_s: float,
    machine: dict[str, object],
) -> dict[str, object]:
    return {
        "pymacp_version": __version__,
        "quick": scale.quick,
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration, 1),
        "fsync_ms": fsync_s * 1000,
        "scale": asdict(scale),
        "machine": machine,
        "scenarios": [
            {
                "number": o.scenario.number,
                "name": o.scenario.name,
                "title": o.scenario.title,
                "duration_s": round(o.duration_s, 1),
                "cpu_steal": None if o.cpu_steal is None else round(o.cpu_steal, 4),
                "error": o.error or None,
                "figures": [figure_json(f, o.scenario.number) for f in o.figures],
            }
            for o in outcomes
        ],
        "figures": [figure_json(f, o.scenario.number) for o in outcomes for f in o.figures],
        "targets_missed": [
            f"{f.scenario}: {f.figure}" for o in outcomes for f in o.figures if f.met is False
        ],
    }
