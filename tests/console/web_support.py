"""Helpers for the console's HTTP tests: SSE parsing, and a real ``pymacp console`` process.

SSE is read the way a browser reads it (``event:``/``id:``/``data:`` lines, a blank line
ends a frame). Every read has a deadline, so a stream that stalls fails the test instead of
hanging it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runtime_process import stop_process

READ_TIMEOUT = 10.0
API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"


@dataclass(frozen=True)
class Frame:
    event: str
    id: int | None
    data: Any


def parse_frame(lines: list[str]) -> Frame | None:
    """One frame from its lines; None for frames without data (comments, ``retry:``)."""
    event, event_id, data = "message", None, []
    for line in lines:
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "id":
            event_id = int(value)
        elif field == "data":
            data.append(value)
    if not data:
        return None
    return Frame(event, event_id, json.loads("\n".join(data)))


async def aframes(response: httpx.Response) -> AsyncIterator[Frame]:
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
            continue
        frame = parse_frame(lines)
        lines = []
        if frame is not None:
            yield frame


def frames(response: httpx.Response) -> Iterator[Frame]:
    lines: list[str] = []
    for line in response.iter_lines():
        if line:
            lines.append(line)
            continue
        frame = parse_frame(lines)
        lines = []
        if frame is not None:
            yield frame


class SseStream:
    """A blocking SSE reader on its own thread, read through a queue with deadlines.

    Open it with a short ``heartbeatMs`` so the reader thread notices :meth:`close` soon.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None) -> None:
        self._items: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self.status: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, dict(headers or {})), daemon=True)
        self._thread.start()
        if not self._ready.wait(READ_TIMEOUT):
            raise AssertionError(f"no response from {url} within {READ_TIMEOUT}s")

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT)) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                self.status = response.status_code
                self._ready.set()
                if response.status_code != 200:
                    response.read()
                    self._items.put(response.json())
                    return
                for frame in frames(response):
                    self._items.put(frame)
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # handed to the reading test
            self._items.put(exc)
        finally:
            self._ready.set()
            self._items.put(None)

    def next(self, timeout: float = READ_TIMEOUT) -> Frame:
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE frame within {timeout}s") from None
        if item is None:
            self._items.put(None)
            raise AssertionError("the SSE stream ended")
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Frame), item
        return item

    def until(self, predicate: Callable[[Frame], bool], timeout: float = READ_TIMEOUT) -> list[Frame]:
        """Frames up to and including the first that matches."""
        seen: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(deadline - time.monotonic(), 0.01))
            seen.append(frame)
            if predicate(frame):
                return seen

    def ended(self, timeout: float = READ_TIMEOUT) -> bool:
        """True once the server closed the stream (after any frames still queued)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self._items.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return False
            if item is None:
                self._items.put(None)
                return True
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(READ_TIMEOUT)


def wait_until(condition: Callable[[], Any], timeout: float = READ_TIMEOUT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


_LISTENING = re.compile(r"pymacp console listening on (http://\S+)")


class ConsoleProcess:
    """``pymacp console`` as a child process on a free loopback port (it binds port 0 and
    prints the real one)."""

    def __init__(
        self, workdir: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "console.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYMACP_CONSOLE_")},
            "PYMACP_CONSOLE_BIND": "127.0.0.1:0",
            "PYMACP_CONSOLE_DATABASE": f"sqlite:///{workdir / 'console.sqlite3'}",
            **(env or {}),
        }
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> ConsoleProcess:
        log = self.log_path.open("ab")
        offset = log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymacp", "console", *self.args],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log()[offset:])
            if found:
                self.url = found.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"pymacp console exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"pymacp console did not start within {timeout}s:\n{self.log()}")

    def run_to_exit(self, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run the command expecting it to exit by itself (a refusal to start)."""
        return subprocess.run(
            [sys.executable, "-m", "pymacp", "console", *self.args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return stop_process(self.proc, sig, timeout)
