"""Server processes under test: the runtime (``pymacp serve``) and the baseline servers.

Every server runs as its own child process on a free loopback port, logging to a file in
the benchmark's work directory. :meth:`ServerProcess.start` returns once the server
answers (an ``Initialize`` call by default, or any readiness check the caller passes) and
reports how long that took from the spawn, which is what the recovery scenario measures.
:func:`rss_bytes` reads a process's resident set from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from macp.v1 import core_pb2, core_pb2_grpc

from .workload import INITIATOR, bearer

PROBE_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 2.0
HUGE_LIMIT = "1000000000"  # per-minute rate limits no benchmark can reach


class BenchError(Exception):
    """A benchmark could not be run (a server did not start, a client process failed)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"/proc/{pid}/status has no VmRSS line")


def initialize_answers(channel: grpc.Channel) -> None:
    stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
    stub.Initialize(core_pb2.InitializeRequest(supported_protocol_versions=["1.0"]), timeout=PROBE_TIMEOUT_S)


def serves_session(session_id: str) -> Callable[[grpc.Channel], None]:
    """Recovery readiness: Initialize, a non-empty ListSessions page, and GetSession of ``session_id``."""

    def check(channel: grpc.Channel) -> None:
        initialize_answers(channel)
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        metadata = bearer(INITIATOR)
        page = stub.ListSessions(
            core_pb2.ListSessionsRequest(page_size=10), metadata=metadata, timeout=PROBE_TIMEOUT_S
        )
        if not page.sessions:
            raise BenchError("ListSessions returned an empty page")
        stub.GetSession(
            core_pb2.GetSessionRequest(session_id=session_id), metadata=metadata, timeout=PROBE_TIMEOUT_S
        )

    return check


class ServerProcess:
    """One server child process; a context manager that stops it on exit."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, port: int
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.port = port
        self.target = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def start(
        self, timeout: float = 600.0, ready: Callable[[grpc.Channel], None] = initialize_answers
    ) -> float:
        """Spawn the server; return the seconds from spawn until ``ready`` passes."""
        with self.log_path.open("ab") as log:
            began = time.monotonic()
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                # A fresh channel per probe: a reused one would back off between reconnects.
                with grpc.insecure_channel(self.target) as channel:
                    ready(channel)
                return time.monotonic() - began
            except (grpc.RpcError, BenchError):
                time.sleep(PROBE_INTERVAL_S)
        self.stop()
        raise BenchError(f"{self.name} did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _clean_environment() -> dict[str, str]:
    """The parent's environment without MACP_* variables, so the user's settings do not leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MACP_")}


class RuntimeProcess(ServerProcess):
    """``pymacp serve`` on plaintext loopback with dev auth, no rate limits and a metrics endpoint."""

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        *,
        memory_only: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.metrics_port = free_port()
        port = free_port()
        settings = {
            "MACP_BIND_ADDR": f"127.0.0.1:{port}",
            "MACP_DATA_DIR": str(data_dir),
            "MACP_ALLOW_INSECURE": "1",
            "MACP_MESSAGE_LIMIT_PER_MINUTE": HUGE_LIMIT,
            "MACP_SESSION_START_LIMIT_PER_MINUTE": HUGE_LIMIT,
            "MACP_LOG_LEVEL": "WARNING",
            "MACP_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
            "MACP_MEMORY_ONLY": "1" if memory_only else "0",
            **(env or {}),
        }
        name = "runtime (memory only)" if memory_only else "runtime (SQLite)"
        super().__init__(
            name,
            [sys.executable, "-m", "pymacp", "serve"],
            {**_clean_environment(), **settings},
            log_dir / f"runtime-{port}.log",
            port,
        )

    def metric(self, name: str) -> float | None:
        """The sum of every sample of series ``name`` on /metrics; None if the runtime has no such series."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = False
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                found = True
                total += float(line.rsplit(" ", 1)[1])
        return total if found else None


class BaselineProcess(ServerProcess):
    """A baseline server (:mod:`pymacp.bench.baseline`): ``mode`` is unary, fanout or replay."""

    def __init__(self, mode: str, log_dir: Path, *extra: str) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "pymacp.bench.baseline", "serve", mode, "--port", str(port), *extra]
        super().__init__(
            f"baseline ({mode})",
            argv,
            _clean_environment(),
            log_dir / f"baseline-{mode}-{port}.log",
            port,
        )
