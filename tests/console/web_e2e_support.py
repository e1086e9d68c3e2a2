"""A real runtime with static tokens, a real console observing it, and agents driven by the
official SDK, for the console's end-to-end and browser tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from macp_sdk import AuthConfig, DecisionSession, MacpClient, TaskSession
from web_support import API_KEY, ConsoleProcess, wait_until

from runtime_process import RuntimeProcess

OBSERVER_TOKEN = "tok-console-observer-0123456789"
AGENTS = ("lead", "alice", "bob", "planner", "worker")
TOKENS: list[dict[str, Any]] = [
    *({"token": f"tok-{name}-0123456789", "sender": name} for name in AGENTS),
    {"token": OBSERVER_TOKEN, "sender": "console", "is_observer": True, "can_start_sessions": False},
]
RUNTIME_ENV = {
    "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS),
    "MACP_SESSION_START_LIMIT_PER_MINUTE": "100000",
    "MACP_MESSAGE_LIMIT_PER_MINUTE": "100000",
    # The console's observer streams stay open; a stop should not wait the default 10 s for them.
    "MACP_SHUTDOWN_DRAIN_SECS": "1",
}
AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
DECISION = "macp.mode.decision.v1"
TTL_MS = 120_000


def agent(name: str) -> AuthConfig:
    return AuthConfig.for_bearer(f"tok-{name}-0123456789", sender_hint=name)


def console_env(runtime: RuntimeProcess, **extra: str) -> dict[str, str]:
    return {
        "PYMACP_CONSOLE_RUNTIME": runtime.target,
        "PYMACP_CONSOLE_RUNTIME_TOKEN": OBSERVER_TOKEN,
        "PYMACP_CONSOLE_API_KEYS": API_KEY,
        "PYMACP_CONSOLE_RATE_LIMIT": "0",
        "PYMACP_CONSOLE_POLL_MAX_MS": "200",
        **extra,
    }


@contextmanager
def started_runtime(data_dir: Path) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(data_dir, env=RUNTIME_ENV)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@contextmanager
def started_console(workdir: Path, runtime: RuntimeProcess, **extra: str) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(workdir, env=console_env(runtime, **extra)).start()
    try:
        yield console
    finally:
        console.stop()


def descriptor(
    session_id: str, participants: tuple[str, ...], mode: str = DECISION, **execution: Any
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "mode": "live",
        "runtime": {"kind": "pymacp"},
        "session": {
            "sessionId": session_id,
            "modeName": mode,
            "modeVersion": "1.0.0",
            "configurationVersion": "config.default",
            "ttlMs": TTL_MS,
            "participants": [{"id": name} for name in participants],
        },
    }
    if execution:
        document["execution"] = execution
    return document


class Api:
    """The console's HTTP API with the test key."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=10)

    def close(self) -> None:
        self.client.close()

    def submit(self, session_id: str, participants: tuple[str, ...], mode: str = DECISION) -> dict[str, Any]:
        response = self.client.post("/runs", json=descriptor(session_id, participants, mode))
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.client.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def run_for_session(self, session_id: str) -> dict[str, Any] | None:
        data = self.client.get("/runs", params={"sessionId": session_id}).json()["data"]
        return data[0] if data else None

    def events(self, run_id: str, page: int = 3) -> list[dict[str, Any]]:
        """Every stored event, read in small pages by afterSeq."""
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            body = self.client.get(f"/runs/{run_id}/events", params={"afterSeq": after, "limit": page}).json()
            events += body["data"]
            after = body["nextAfterSeq"]
            if not body["hasMore"]:
                return events

    def wait_status(self, run_id: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
        result: dict[str, Any] = wait_until(
            lambda: (run := self.run(run_id))["status"] == status and run,
            timeout,
            f"run {run_id} to be {status}",
        )
        return result


class Decision:
    """lead proposes, alice and bob vote, lead commits; every accepted message id is kept in order."""

    def __init__(self, runtime: RuntimeProcess, session_id: str | None = None) -> None:
        self.client = MacpClient(target=runtime.target, allow_insecure=True, auth=agent("lead"))
        self.session = DecisionSession(
            self.client, session_id=session_id or str(uuid.uuid4()), auth=agent("lead")
        )
        self.accepted: list[str] = []

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def _keep(self, ack: Any) -> None:
        assert ack.ok, ack
        self.accepted.append(ack.message_id)

    def start(self) -> None:
        self._keep(
            self.session.start(intent="pick a release", participants=["lead", "alice", "bob"], ttl_ms=TTL_MS)
        )

    def propose(self, proposal_id: str = "p1", option: str | None = None) -> None:
        option = option or f"option {proposal_id}"
        self._keep(self.session.propose(proposal_id, option, rationale="tests are green"))

    def evaluate(self, voter: str, proposal_id: str = "p1") -> None:
        self._keep(self.session.evaluate(proposal_id, "approve", confidence=0.9, auth=agent(voter)))

    def vote(self, voter: str, proposal_id: str = "p1") -> None:
        self._keep(self.session.vote(proposal_id, "approve", auth=agent(voter)))

    def commit(self) -> None:
        self._keep(
            self.session.commit(action="decision.selected", authority_scope="release", reason="approved")
        )

    def close(self) -> None:
        self.client.close()


class Task:
    """planner asks worker for a task; worker accepts, reports progress, completes; planner commits."""

    def __init__(self, runtime: RuntimeProcess, session_id: str | None = None) -> None:
        self.client = MacpClient(target=runtime.target, allow_insecure=True, auth=agent("planner"))
        self.session = TaskSession(
            self.client, session_id=session_id or str(uuid.uuid4()), auth=agent("planner")
        )
        worker = agent("worker")
        s = self.session
        self.steps: list[Callable[[], Any]] = [
            lambda: s.start(intent="build the docs", participants=["worker"], ttl_ms=TTL_MS),
            lambda: s.request_task("t1", "Build docs", instructions="make html", requested_assignee="worker"),
            lambda: s.accept_task("t1", assignee="worker", auth=worker),
            lambda: s.update_task("t1", status="in_progress", progress=0.5, message="halfway", auth=worker),
            lambda: s.complete_task("t1", assignee="worker", output=b"site.zip", summary="done", auth=worker),
            lambda: s.commit(action="task.completed", authority_scope="docs", reason="delivered"),
        ]

    def close(self) -> None:
        self.client.close()


def envelope_ids(events: list[dict[str, Any]]) -> list[str]:
    """Message ids of the envelope-derived events (console events carry no ordinal)."""
    return [event["messageId"] for event in events if event["ordinal"] is not None]
