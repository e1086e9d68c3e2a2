"""Small pieces of the core in isolation: change feeds, discovery's reconciliation, and the
projection's incremental fold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from macp.v1 import core_pb2

from pymacp.console.discovery import Discovery
from pymacp.console.feed import FeedHub
from pymacp.console.models import RunEvent
from pymacp.console.projection import View, fold
from pymacp.console.runtime_client import CallError


async def test_a_change_between_waits_is_never_lost_and_many_changes_wake_once() -> None:
    hub = FeedHub()
    run_feed, all_feed, other = hub.open("r1"), hub.open(None), hub.open("r2")
    hub.publish("r1")
    hub.publish("r1")
    assert await run_feed.wait(5) is True  # the change came before the wait
    assert await all_feed.wait(5) is True
    assert await run_feed.wait(0) is False  # both publishes were one wake-up
    assert await other.wait(0) is False  # another run's feed is not woken

    waiter = asyncio.create_task(run_feed.wait(30))
    await asyncio.sleep(0)
    hub.publish("r1")
    assert await waiter is True

    closing = asyncio.create_task(other.wait(30))
    await asyncio.sleep(0)
    other.close()
    assert await closing is False  # closing releases a waiter
    run_feed.close()
    all_feed.close()
    assert len(hub) == 0


class FakeRuntime:
    """A runtime whose WatchSessions sends nothing and then fails, twice; ListSessions lists two."""

    def __init__(self) -> None:
        self.watches = 0
        self.sessions = [core_pb2.SessionMetadata(session_id=f"s{i}", state=1) for i in (1, 2)]

    async def watch_sessions(self) -> AsyncIterator[core_pb2.SessionLifecycleEvent]:
        self.watches += 1
        if self.watches <= 2:
            raise CallError("RESOURCE_EXHAUSTED", "STREAM_LAGGED", "fell behind", transient=True)
        await asyncio.Event().wait()
        yield core_pb2.SessionLifecycleEvent()  # pragma: no cover - never reached

    async def list_sessions(self) -> list[core_pb2.SessionMetadata]:
        return self.sessions


async def test_discovery_reconciles_with_list_sessions_after_every_reconnect() -> None:
    runtime = FakeRuntime()
    seen: list[str] = []

    async def handle(metadata: core_pb2.SessionMetadata) -> None:
        seen.append(metadata.session_id)

    discovery = Discovery(runtime, handle)  # type: ignore[arg-type]
    task = asyncio.create_task(discovery.run())
    deadline = asyncio.get_running_loop().time() + 10
    while discovery.reconciliations < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert discovery.reconciliations == 3 and runtime.watches == 3
    assert seen == ["s1", "s2"] * 3


def event(
    seq: int, kind: str, data: dict[str, Any], sender: str | None = "alice", mid: str | None = None
) -> RunEvent:
    return RunEvent(
        "r1", seq, kind, seq if mid else None, mid, "Vote" if mid else None, sender, 1000 + seq, data
    )


EVENTS = [
    event(1, "run.created", {"status": "queued", "source": "api", "participants": ["alice", "bob"]}, None),
    event(2, "session.started", {"mode": "m", "payload": {"participants": ["alice", "bob"]}}, "alice", "m1"),
    event(3, "proposal.submitted", {"payload": {"proposal_id": "p1", "option": "x"}}, "alice", "m2"),
    event(4, "vote.cast", {"payload": {"proposal_id": "p1", "vote": "approve"}}, "alice", "m3"),
    event(5, "vote.cast", {"payload": {"proposal_id": "p1", "vote": "reject"}}, "bob", "m4"),
    event(6, "vote.cast", {"payload": {"proposal_id": "p1", "vote": "APPROVE"}}, "bob", "m5"),
    event(7, "message.received", {"payload_b64": "AAE="}, "carol", "m6"),
    event(
        8, "run.status.changed", {"from": "running", "to": "completed", "reason": "session resolved"}, None
    ),
    event(9, "some.future.type", {}, None),
]


def test_folding_in_pieces_gives_the_same_view_as_folding_at_once() -> None:
    whole = fold(EVENTS).to_json()
    for cut in range(len(EVENTS) + 1):
        view = fold(EVENTS[:cut])
        fold(EVENTS, view)  # events already applied are skipped
        assert view.to_json() == whole
    (proposal,) = whole["proposals"]
    # bob's later vote replaced his earlier one: one vote per voter.
    assert proposal["tally"] == {"approve": 2, "reject": 0, "abstain": 0}
    assert whole["status"]["status"] == "completed" and whole["timeline"]["events"] == 9
    assert {p["id"]: p["declared"] for p in whole["participants"]} == {
        "alice": True,
        "bob": True,
        "carol": False,
    }


def test_the_view_json_is_a_copy() -> None:
    view: View = fold(EVENTS)
    document = view.to_json()
    document["proposals"][0]["votes"].clear()
    assert view.to_json()["proposals"][0]["votes"]
