"""Helpers for the ``pymacp agents`` tests: tokens, a config, the service process, a callback receiver.

Everything is real: ``pymacp serve`` with static tokens, ``pymacp agents`` as a child
process whose workers are the example task worker, and an HTTP server in this process that
receives callbacks and checks their signatures itself (with :mod:`hmac`, following the
documented recipe, not with the service's own code).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2

WORKER = [sys.executable, "-m", "pymacp.bus.agents.examples.task_worker"]
API_KEY = "agents-test-api-key-0123456789"
SECRET = "agents-test-callback-secret-0123456789"
TOKENS = {
    "dispatcher": ("tok-dispatcher-000000000000", "agent://dispatcher", True),
    "tasks": ("tok-tasks-00000000000000000", "agent://tasks", False),
    "load": ("tok-load-000000000000000000", "agent://load", False),
    "crashy": ("tok-crashy-0000000000000000", "agent://crashy", False),
    "listener": ("tok-listener-00000000000000", "agent://listener", False),
    "dead": ("tok-dead-000000000000000000", "agent://dead", False),
    "coordinator": ("tok-coordinator-00000000000", "agent://coordinator", True),
    "outsider": ("tok-outsider-00000000000000", "agent://outsider", True),
}
RUNTIME_ENV = {
    "MACP_AUTH_TOKENS_JSON": json.dumps(
        [{"token": t, "sender": s, "can_start_sessions": start} for t, s, start in TOKENS.values()]
    ),
    "MACP_SESSION_START_LIMIT_PER_MINUTE": "100000",
    "MACP_MESSAGE_LIMIT_PER_MINUTE": "100000",
}
TOKEN_ENV = {f"AGENTS_TEST_{name.upper()}_TOKEN": token for name, (token, _, _) in TOKENS.items()}


def pool(
    name: str, instances: int, cap: int, queue_limit: int = 10, command: list[str] | None = None
) -> dict[str, Any]:
    argv = command or WORKER
    return {
        "id": name,
        "command": argv[0],
        "args": argv[1:],
        "instances": instances,
        "participant": TOKENS[name][1],
        "tokenEnv": f"AGENTS_TEST_{name.upper()}_TOKEN",
        "cap": cap,
        "queueLimit": queue_limit,
    }


def service_config() -> dict[str, Any]:
    return {
        "dispatcher": {"tokenEnv": "AGENTS_TEST_DISPATCHER_TOKEN"},
        "callbacks": {
            "secretEnv": "AGENTS_TEST_SECRET",
            "maxAttempts": 4,
            "backoffMs": 50,
            "allowedHosts": ["127.0.0.1"],  # the receiver's
        },
        "pools": [
            pool("tasks", instances=2, cap=4),
            pool("load", instances=3, cap=2, queue_limit=4),
            pool("crashy", instances=1, cap=1),
            pool("listener", instances=1, cap=0),
            pool("dead", instances=1, cap=1, command=["/nonexistent/pymacp-test-worker"]),
        ],
    }


class AgentsProcess:
    """``pymacp agents`` as a child process; ``url`` is its HTTP address."""

    def __init__(
        self, directory: Path, config: dict[str, Any], runtime: str, env: dict[str, str] | None = None
    ):
        self.directory = directory
        self.config_path = directory / "agents.json"
        self.config_path.write_text(json.dumps(config))
        self.journal = directory / "journal.jsonl"
        self.log_path = directory / "agents.log"
        self.env = {
            **os.environ,
            **TOKEN_ENV,
            "AGENTS_TEST_SECRET": SECRET,
            "PYMACP_AGENTS_API_KEYS": API_KEY,
            "PYMACP_TASK_WORKER_JOURNAL": str(self.journal),
            **(env or {}),
        }
        self.runtime = runtime
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "-m", "pymacp", "agents", "--config", str(self.config_path)]
        command += ["--runtime", self.runtime, "--bind", "127.0.0.1:0"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+)", self.log())
            if found:
                self.url = found.group(1)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"pymacp agents exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"pymacp agents did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20)

    def journal_lines(self) -> list[dict[str, Any]]:
        """Every complete line of the workers' journal (a line still being written is left out)."""
        if not self.journal.exists():
            return []
        *complete, _partial = self.journal.read_text().split("\n")
        return [json.loads(line) for line in complete if line.strip()]

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def dispatch(client: httpx.Client, pool_id: str, task_input: Any = None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"title": f"test task for {pool_id}", "instructions": "do it"}
    if task_input is not None:
        task["input"] = task_input
    response = client.post("/dispatch", json={"pool": pool_id, "task": task, **extra})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_status(
    client: httpx.Client, task_id: str, *statuses: str, timeout: float = 20.0
) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        task: dict[str, Any] = client.get(f"/dispatch/{task_id}").json()
        return task if task["status"] in statuses else None

    result: dict[str, Any] = wait_until(current, timeout, f"task {task_id} to reach {statuses}")
    return result


def read_events(client: httpx.Client, task_id: str, last_event_id: int | None = None) -> list[dict[str, Any]]:
    """The task's SSE stream, read until the service ends it (after the terminal event)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    with client.stream("GET", f"/dispatch/{task_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
    return events


# ---------------------------------------------------------------------- callbacks
@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


def signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The documented recipe: HMAC-SHA256 over "<timestamp>." + body, compared in constant time."""
    timestamp = headers.get("x-pymacp-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False
    expected = (
        "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, headers.get("x-pymacp-signature", ""))


class CallbackReceiver:
    """A real HTTP server. ``/ok`` answers 200; ``/flaky`` answers 500 to each delivery's first attempt."""

    def __init__(self, verifier: Callable[[dict[str, str], bytes], bool] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.verifier = verifier or (lambda headers, body: signature_ok(SECRET, headers, body))
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(self.path, headers)
                with receiver._lock:
                    ok = receiver.verifier(headers, body)
                    receiver.deliveries.append(Delivery(self.path, headers, body, ok, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, path: str, headers: dict[str, str]) -> int:
        if path.startswith("/flaky") and headers.get("x-pymacp-attempt") == "1":
            return 500
        return 200

    def for_task(self, task_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.headers.get("x-pymacp-delivery") == task_id]

    def __enter__(self) -> CallbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stack:
    runtime: str
    agents: AgentsProcess
    receiver: CallbackReceiver


def iter_journal(agents: AgentsProcess, **match: Any) -> Iterator[dict[str, Any]]:
    for entry in agents.journal_lines():
        if all(entry.get(key) == value for key, value in match.items()):
            yield entry


def _stub_call(stack: Stack, name: str = "dispatcher") -> tuple[grpc.Channel, Any, list[tuple[str, str]]]:
    channel = grpc.insecure_channel(stack.runtime)
    return (
        channel,
        core_pb2_grpc.MACPRuntimeServiceStub(channel),
        [("authorization", f"Bearer {TOKENS[name][0]}")],
    )


def session_history(stack: Stack, session_id: str, name: str = "dispatcher") -> list[envelope_pb2.Envelope]:
    """A session's accepted envelopes as the runtime stores them: subscribe, then half-close,
    so the runtime replays its history and ends the call."""
    channel, stub, metadata = _stub_call(stack, name)
    with channel:
        frames = iter([core_pb2.StreamSessionRequest(subscribe_session_id=session_id, after_sequence=0)])
        responses = stub.StreamSession(frames, metadata=metadata, timeout=10)
        return [response.envelope for response in responses if response.HasField("envelope")]


def runtime_session(stack: Stack, session_id: str, name: str = "dispatcher") -> core_pb2.SessionMetadata:
    channel, stub, metadata = _stub_call(stack, name)
    with channel:
        response = stub.GetSession(
            core_pb2.GetSessionRequest(session_id=session_id), metadata=metadata, timeout=10
        )
        return response.metadata
