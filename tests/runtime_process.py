"""Start ``pymacp serve`` as a real process on a loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
from macp.v1 import core_pb2, core_pb2_grpc


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal ``proc`` (unless it already exited), wait, and SIGKILL it if it outstays ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RuntimeProcess:
    """A ``pymacp serve`` child process. ``target`` is its ``host:port``."""

    def __init__(
        self, data_dir: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"runtime-{self.port}.log"
        self.env = {
            **os.environ,
            "MACP_BIND_ADDR": self.target,
            "MACP_DATA_DIR": str(data_dir),
            "MACP_ALLOW_INSECURE": "1",
            "MACP_CLEANUP_INTERVAL_SECS": "1",
            **(env or {}),
        }
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymacp", "serve", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pymacp serve exited with {self.proc.returncode}:\n{self.log()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"pymacp serve did not answer within {timeout}s:\n{self.log()}")

    def ready(self) -> bool:
        try:
            with grpc.insecure_channel(self.target) as channel:
                stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
                stub.Initialize(core_pb2.InitializeRequest(supported_protocol_versions=["1.0"]), timeout=0.5)
            return True
        except grpc.RpcError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def running_runtime(data_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(data_dir, env)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()
