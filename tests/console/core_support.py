"""Helpers for the console core's tests: a real runtime with static tokens, SDK agents, a
ConsoleCore on a temporary database, and an independent reader of a session's history.

The SDK is synchronous, so agents run in worker threads (``asyncio.to_thread``) while the
console runs on the test's event loop. Waits poll the store with a deadline; nothing sleeps
for a fixed time to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2
from macp_sdk import AuthConfig, DecisionSession, MacpClient

from pymacp.console.models import Run, RunEvent
from pymacp.console.service import ConsoleCore, CoreConfig

T = TypeVar("T")

AGENTS = ("lead", "alice", "bob", "carol")
OBSERVER_TOKEN = "tok-console-observer"
OBSERVER = "console"
TOKENS: list[dict[str, Any]] = [
    *({"token": f"tok-{agent}", "sender": agent} for agent in AGENTS),
    {"token": "tok-admin", "sender": "admin", "can_manage_mode_registry": True},
    {"token": OBSERVER_TOKEN, "sender": OBSERVER, "is_observer": True},
    # A reader used by the tests themselves, independent of the console.
    {"token": "tok-auditor", "sender": "auditor", "is_observer": True},
]
RUNTIME_ENV = {
    "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS),
    "MACP_SESSION_START_LIMIT_PER_MINUTE": "100000",
    "MACP_MESSAGE_LIMIT_PER_MINUTE": "100000",
    # The console holds session streams open; a graceful stop need not wait long for them.
    "MACP_SHUTDOWN_DRAIN_SECS": "1",
}
WAIT = 20.0
DECISION = "macp.mode.decision.v1"


def auth(agent: str) -> AuthConfig:
    return AuthConfig.for_bearer(f"tok-{agent}", sender_hint=agent)


def sdk_client(target: str, agent: str = "lead") -> MacpClient:
    return MacpClient(target=target, allow_insecure=True, auth=auth(agent))


def core_config(database: Path | str, target: str, **overrides: Any) -> CoreConfig:
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    settings: dict[str, Any] = {
        "runtime_target": target,
        "runtime_token": OBSERVER_TOKEN,
        "database_url": url,
        "poll_base_ms": 20,
        "poll_max_ms": 200,
        "reconcile_ms": 500,
        **overrides,
    }
    return CoreConfig(**settings)


def descriptor(session_id: str | None = None, **extra: Any) -> dict[str, Any]:
    metadata = extra.pop("metadata", None)
    session: dict[str, Any] = {
        "modeName": DECISION,
        "modeVersion": "1.0.0",
        "configurationVersion": "config.default",
        "ttlMs": 60_000,
        "participants": [{"id": agent} for agent in ("lead", "alice", "bob")],
    }
    if session_id is not None:
        session["sessionId"] = session_id
    if metadata is not None:
        session["metadata"] = metadata
    return {"mode": "live", "runtime": {"kind": "pymacp"}, "session": session, **extra}


def run_decision(target: str, session_id: str, *, commit: bool = True) -> list[str]:
    """A decision session driven by three SDK agents; returns the message ids in send order."""
    with sdk_client(target) as client:
        s = DecisionSession(client, session_id=session_id, auth=auth("lead"))
        acks = [s.start(intent="pick a release", participants=["lead", "alice", "bob"], ttl_ms=60_000)]
        acks.append(s.propose("p1", "ship 2.0", rationale="tests are green"))
        acks.append(s.evaluate("p1", "approve", confidence=0.9, reason="fine", auth=auth("alice")))
        acks.append(s.raise_objection("p1", reason="docs lag", severity="low", auth=auth("bob")))
        acks.append(s.vote("p1", "approve", auth=auth("alice")))
        acks.append(s.vote("p1", "reject", auth=auth("bob")))
        if commit:
            acks.append(s.commit(action="decision.selected", authority_scope="release", reason="majority"))
    return [ack.message_id for ack in acks]


def runtime_history(target: str, session_id: str) -> list[envelope_pb2.Envelope]:
    """Every accepted envelope of the session, read by a passive subscriber of our own that
    half-closes at once: the runtime replays what it stored and ends the call."""
    with grpc.insecure_channel(target) as channel:
        stub = core_pb2_grpc.MACPRuntimeServiceStub(channel)
        request = core_pb2.StreamSessionRequest(subscribe_session_id=session_id, after_sequence=0)
        responses = stub.StreamSession(
            iter([request]), metadata=(("authorization", "Bearer tok-auditor"),), timeout=WAIT
        )
        return [r.envelope for r in responses if r.HasField("envelope")]


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def run_in(core: ConsoleCore, run_id: str, *statuses: str) -> Run:
    async def probe() -> Run | None:
        run = await core.get_run(run_id)
        return run if run is not None and run.status in statuses else None

    return await eventually(probe, f"run {run_id} to be {' or '.join(statuses)}")


async def all_events(core: ConsoleCore, run_id: str) -> list[RunEvent]:
    events: list[RunEvent] = []
    while True:
        page = await core.events(run_id, after_seq=events[-1].seq if events else 0, limit=100)
        if not page:
            return events
        events.extend(page)


def envelope_events(events: list[RunEvent]) -> list[RunEvent]:
    return [event for event in events if event.message_id is not None and event.ordinal is not None]


def assert_exactly_once_in_order(events: list[RunEvent], history: list[envelope_pb2.Envelope]) -> None:
    """The run's events are gapless, and its envelope events are the runtime's history."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seq numbers have a gap"
    observed = envelope_events(events)
    assert [e.message_id for e in observed] == [h.message_id for h in history]
    assert [e.ordinal for e in observed] == list(range(1, len(history) + 1))
    assert len({e.message_id for e in observed}) == len(observed)


def iter_statuses(events: list[RunEvent]) -> Iterator[str]:
    for event in events:
        if event.type == "run.status.changed":
            yield str(event.data["to"])
