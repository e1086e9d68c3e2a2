"""The reusable API: :class:`Pool` and :class:`Worker` driven from an asyncio program."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from bus_support import ECHO_ARGS, eventually, is_running

from pymacp.bus import Limits, Pool, PoolConfig, Worker, WorkerEvent

ECHO = PoolConfig("echo", sys.executable, tuple(ECHO_ARGS), 2)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[Worker, dict[str, Any]]] = []
        self.events: list[WorkerEvent] = []

    def line(self, worker: Worker, line: bytes) -> None:
        self.lines.append((worker, json.loads(line)))

    def replies(self, request_id: str) -> list[tuple[Worker, dict[str, Any]]]:
        return [(w, m) for w, m in self.lines if m.get("id") == request_id]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def request(request_id: str, method: str = "m", session: str | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if session is not None:
        message["sessionId"] = session
    return json.dumps(message).encode()


async def test_send_by_affinity_and_receive_each_workers_lines() -> None:
    seen = Recorder()
    pool = Pool(ECHO, on_line=seen.line, on_event=seen.events.append)
    await pool.start()
    try:
        assert seen.kinds() == ["started", "started"] and len(pool.workers) == 2
        first = pool.send(request("a", session="s1"), session_id="s1")
        second = pool.send(request("b", session="s1"), session_id="s1")
        other = pool.send(request("c", session="s2"), session_id="s2")
        assert first is second and other is not first
        await eventually(lambda: len(seen.lines) == 3, what="three replies")
        for request_id, worker in (("a", first), ("b", first), ("c", other)):
            [(sender, reply)] = seen.replies(request_id)
            assert sender is worker and reply["result"]["pid"] == worker.pid
    finally:
        await pool.stop(5)
    assert pool.workers == ()


async def test_a_crash_is_reported_after_the_replacement_runs() -> None:
    seen = Recorder()
    pool = Pool(ECHO, on_line=seen.line, on_event=seen.events.append)
    await pool.start()
    try:
        crashed = pool.send(request("x", "echo/crash", "s1"), session_id="s1")
        assert crashed is not None
        await eventually(lambda: "exited" in seen.kinds(), what="the exit event")
        exited = next(e for e in seen.events if e.kind == "exited")
        assert (exited.worker, exited.returncode, exited.sessions, exited.restart_in) == (
            crashed,
            3,
            ("s1",),
            0.0,
        )
        assert seen.kinds() == ["started", "started", "started", "exited"]  # replacement first
        replacement = pool.pick("s1")
        assert replacement is not None and replacement is not crashed and replacement.alive
        assert len(pool.workers) == 2
    finally:
        await pool.stop(5)
    assert [e.restart_in for e in seen.events[-2:]] == [None, None]
    await eventually(
        lambda: not any(is_running(e.worker.pid) for e in seen.events if e.worker and e.worker.pid)
    )


async def test_a_command_that_cannot_run_fails_its_slot() -> None:
    seen = Recorder()
    config = PoolConfig("ghost", "/nonexistent/worker", (), 1)
    pool = Pool(config, Limits(max_restarts=1), on_line=seen.line, on_event=seen.events.append)
    await pool.start()
    await eventually(lambda: pool.failed, what="the slot to give up")
    assert seen.kinds() == ["exited", "exited", "failed"]
    assert pool.pick() is None and pool.send(b"{}") is None
    await pool.stop(1)
    with pytest.raises(OSError):
        await Worker.spawn("ghost", 0, "/nonexistent/worker", on_line=seen.line)


async def test_a_worker_writing_an_oversize_line_is_killed() -> None:
    exits: asyncio.Queue[int] = asyncio.Queue()
    script = "import sys; sys.stdout.write('x' * 5000 + '\\n'); sys.stdout.flush(); sys.stdin.read()"
    worker = await Worker.spawn(
        "big",
        0,
        sys.executable,
        ("-c", script),
        max_line=1024,
        on_line=lambda worker, line: None,
        on_exit=lambda w, code: exits.put_nowait(code),
    )
    assert await asyncio.wait_for(exits.get(), 10) == -9
    assert await worker.wait() == -9 and not worker.alive
