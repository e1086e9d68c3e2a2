"""Helpers for the bus tests: an executable that runs ``pymacp bus``, configs, process checks."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ECHO_ARGS = ["-m", "pymacp.bus.examples.echo_worker"]


def bus_binary(directory: Path, *extra: str) -> str:
    """An executable ``stdio_bus`` that runs ``pymacp bus`` (the SDK wants one path, no arguments)."""
    path = directory / "stdio_bus"
    tail = "".join(f" {arg}" for arg in extra)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pymacp.bus "$@"{tail}\n')
    path.chmod(0o755)
    return str(path)


def echo_pool(pool_id: str = "echo", instances: int = 1) -> dict[str, Any]:
    return {"id": pool_id, "command": sys.executable, "args": ECHO_ARGS, "instances": instances}


def write_config(directory: Path, *pools: dict[str, Any], **limits: Any) -> Path:
    path = directory / "bus.json"
    document: dict[str, Any] = {"pools": list(pools) or [echo_pool()]}
    if limits:
        document["limits"] = limits
    path.write_text(json.dumps(document))
    return path


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def eventually(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """:func:`wait_until` for async tests: the event loop keeps running while it polls."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


class RawBus:
    """``pymacp bus`` driven over raw pipes: write lines, read lines, no SDK in between."""

    def __init__(self, config: Path, *extra: str) -> None:
        # a file, not a pipe: a pipe nobody reads could fill up and block the bus
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by raw_bus()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pymacp", "bus", "--config", str(config), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin = self.process.stdin
        self.stdout = self.process.stdout

    def send(self, line: bytes | str | dict[str, Any]) -> None:
        if isinstance(line, dict):
            line = json.dumps(line)
        data = line.encode() if isinstance(line, str) else line
        self.stdin.write(data + b"\n")
        self.stdin.flush()

    def receive(self) -> dict[str, Any]:
        line = self.stdout.readline()
        assert line, f"the bus closed stdout; stderr: {self.stderr_text()}"
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.receive()

    def close_stdin(self) -> None:
        self.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        return self.process.wait(timeout)

    def stderr_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@contextmanager
def raw_bus(config: Path, *extra: str) -> Iterator[RawBus]:
    bus = RawBus(config, *extra)
    try:
        yield bus
    finally:
        bus.kill()
        for stream in (bus.process.stdin, bus.process.stdout, bus.log):
            if stream is not None:
                stream.close()


def pid_of(reply: dict[str, Any]) -> int:
    pid = reply["result"]["pid"]
    assert isinstance(pid, int)
    return pid
