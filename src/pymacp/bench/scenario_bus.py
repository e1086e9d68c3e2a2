"""Scenario 9: round trips per second through ``pymacp bus`` vs a direct pipe to the same worker.

The worker is the example echo worker (``python -m pymacp.bus.examples.echo_worker``), one
instance. The bus runs as its own process (``python -m pymacp.bus --config ... --stdio``),
exactly as the stdiobus SDK starts it; the baseline is the same echo worker started directly,
its stdin/stdout being the client's pipes. One client, in this process, drives both with the
same code: ``in_flight`` lanes each send a small JSON-RPC request (a ``sessionId`` of their
own) and send the next as soon as its reply arrives. The ratio is what the bus's extra hop
(parse the routing fields, look up the session and the pending id, forward the line, twice)
costs a JSON-RPC client. The issue names no target for it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from .processes import BenchError
from .report import Figure, compared
from .runner import Bench, Scale, Scenario

ECHO_WORKER = ("-m", "pymacp.bus.examples.echo_worker")
IN_FLIGHT = (1, 16)
WARM_UP = 50
EXIT_WAIT_S = 10.0


def _measure_s(scale: Scale) -> float:
    return scale.measure_s / 2


async def _round_trips(name: str, argv: list[str], in_flight: int, duration: float, log_path: Path) -> float:
    """Round trips per second over ``duration`` seconds with ``in_flight`` requests outstanding."""
    with open(log_path, "ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[None]] = {}
    ids = itertools.count()

    async def read_replies() -> None:
        failure = BenchError(f"{name} closed its stdout (log: {log_path})")
        try:
            while line := await stdout.readline():
                reply = json.loads(line)
                future = waiting.pop(str(reply.get("id")), None)
                if future is not None and "error" in reply:
                    future.set_exception(BenchError(f"{name} answered with an error: {reply['error']}"))
                elif future is not None:
                    future.set_result(None)
        except (ValueError, OSError) as exc:
            failure = BenchError(f"{name}: {exc}")
        for future in waiting.values():
            future.set_exception(failure)

    async def call(lane: int) -> None:
        request_id = str(next(ids))
        future = loop.create_future()
        waiting[request_id] = future
        message = {"jsonrpc": "2.0", "id": request_id, "method": "bench/echo", "sessionId": f"lane-{lane}"}
        stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await future

    async def lane(number: int, until: float) -> int:
        count = 0
        while time.monotonic() < until:
            await call(number)
            count += 1
        return count

    reader = asyncio.create_task(read_replies())
    try:
        for _ in range(WARM_UP):
            await asyncio.wait_for(call(0), EXIT_WAIT_S)
        began = time.monotonic()
        counts = await asyncio.wait_for(
            asyncio.gather(*(lane(n, began + duration) for n in range(in_flight))), duration + EXIT_WAIT_S
        )
        elapsed = time.monotonic() - began
    finally:
        stdin.close()
        try:
            await asyncio.wait_for(process.wait(), EXIT_WAIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
        reader.cancel()
    return sum(counts) / elapsed


def bus_round_trips(bench: Bench) -> list[Figure]:
    directory = bench.directory("bus")
    config = directory / "bus.json"
    pool = {"id": "echo", "command": sys.executable, "args": list(ECHO_WORKER), "instances": 1}
    config.write_text(json.dumps({"pools": [pool]}))
    through_bus = [
        sys.executable,
        "-m",
        "pymacp.bus",
        "--config",
        str(config),
        "--stdio",
        "--log-level",
        "WARNING",
    ]
    direct = [sys.executable, *ECHO_WORKER]
    duration = _measure_s(bench.scale)
    figures = []
    for in_flight in IN_FLIGHT:
        ours = asyncio.run(
            _round_trips("pymacp bus", through_bus, in_flight, duration, directory / "bus.log")
        )
        theirs = asyncio.run(
            _round_trips("echo worker", direct, in_flight, duration, directory / "direct.log")
        )
        bench.log(f"  {in_flight} in flight: through the bus {ours:,.0f}/s, direct pipe {theirs:,.0f}/s")
        figures.append(
            compared(
                "bus",
                f"JSON-RPC round trips/s through pymacp bus to an echo worker, {in_flight} in flight",
                ours,
                "rt/s",
                theirs,
                note="baseline: the same echo worker on a direct pipe" if in_flight == 1 else "",
            )
        )
    return figures


SCENARIOS = [
    Scenario(
        9,
        "bus",
        "round trips through pymacp bus vs a direct pipe to the same echo worker",
        bus_round_trips,
        lambda s: len(IN_FLIGHT) * 2 * (_measure_s(s) + 0.5),
    ),
]
