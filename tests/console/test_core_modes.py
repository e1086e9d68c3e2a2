"""The projection of every standard mode, from sessions the SDK drives (discovered runs), and
correlated Signals from WatchSignals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from core_support import all_events, auth, eventually, run_in, runtime_history, sdk_client
from macp_sdk import HandoffSession, MacpClient, ProposalSession, QuorumSession, TaskSession, new_session_id

from pymacp.console.models import Run
from pymacp.console.service import ConsoleCore
from runtime_process import RuntimeProcess


async def observe(
    core: ConsoleCore, target: str, drive: Callable[[MacpClient, str], None]
) -> tuple[Run, Mapping[str, Any]]:
    session_id = new_session_id()

    def run_agents() -> None:
        with sdk_client(target) as client:
            drive(client, session_id)

    await asyncio.to_thread(run_agents)

    async def found() -> Run | None:
        page = await core.list_runs(session_id=session_id)
        return page.runs[0] if page.runs else None

    run = await run_in(core, (await eventually(found, f"a run for {session_id}")).run_id, "completed")
    history = await asyncio.to_thread(runtime_history, target, session_id)
    events = await all_events(core, run.run_id)
    assert [e.message_id for e in events if e.ordinal is not None] == [h.message_id for h in history]
    view = await core.view(run.run_id)
    assert view is not None
    return run, view


async def test_proposal_mode(console_core: ConsoleCore, macp_runtime: RuntimeProcess) -> None:
    def drive(client: MacpClient, session_id: str) -> None:
        s = ProposalSession(client, session_id=session_id, auth=auth("lead"))
        s.start(intent="terms", participants=["alice", "bob"], ttl_ms=60_000)
        s.propose("p1", "100 at $10", auth=auth("alice"))
        s.counter_propose("p2", "p1", "100 at $9", auth=auth("bob"))
        s.reject("p1", terminal=False, reason="too dear", auth=auth("bob"))
        s.accept("p2", auth=auth("alice"))
        s.accept("p2", auth=auth("bob"))
        s.commit(action="proposal.accepted", authority_scope="purchase", reason="both accepted p2")

    _, view = await observe(console_core, macp_runtime.target, drive)
    proposals = {p["proposalId"]: p for p in view["proposals"]}
    assert proposals["p1"]["title"] == "100 at $10" and proposals["p1"]["status"] == "superseded"
    assert proposals["p2"]["supersedes"] == "p1"
    assert [a["sender"] for a in proposals["p2"]["accepts"]] == ["alice", "bob"]
    assert [(r["sender"], r["terminal"]) for r in proposals["p1"]["rejects"]] == [("bob", False)]
    assert view["commitment"]["action"] == "proposal.accepted"
    assert view["session"]["initiator"] == "lead"
    assert {p["id"]: p["messages"] for p in view["participants"]} == {"lead": 2, "alice": 2, "bob": 3}


async def test_task_mode(console_core: ConsoleCore, macp_runtime: RuntimeProcess) -> None:
    def drive(client: MacpClient, session_id: str) -> None:
        s = TaskSession(client, session_id=session_id, auth=auth("lead"))
        s.start(intent="docs", participants=["carol"], ttl_ms=60_000)
        s.request_task("t1", "Build docs", instructions="make html", requested_assignee="carol")
        s.accept_task("t1", assignee="carol", auth=auth("carol"))
        s.update_task("t1", status="in_progress", progress=0.5, message="halfway", auth=auth("carol"))
        s.complete_task("t1", assignee="carol", output=b"site.zip", summary="done", auth=auth("carol"))
        s.commit(action="task.completed", authority_scope="docs", reason="delivered")

    _, view = await observe(console_core, macp_runtime.target, drive)
    (task,) = view["tasks"]
    assert (task["taskId"], task["title"], task["assignee"], task["status"]) == (
        "t1",
        "Build docs",
        "carol",
        "completed",
    )
    assert task["progress"] == 1.0 and task["summary"] == "done"
    assert [(u["progress"], u["message"]) for u in task["updates"]] == [(0.5, "halfway")]


async def test_handoff_mode(console_core: ConsoleCore, macp_runtime: RuntimeProcess) -> None:
    def drive(client: MacpClient, session_id: str) -> None:
        s = HandoffSession(client, session_id=session_id, auth=auth("lead"))
        s.start(intent="hand over", participants=["lead", "bob"], ttl_ms=60_000)
        s.offer("h1", "bob", scope="support", reason="shift change")
        s.add_context("h1", content_type="text/plain", context=b"customer is on plan B")
        s.decline("h1", declined_by="bob", reason="on leave", auth=auth("bob"))
        s.commit(action="handoff.declined", authority_scope="support", reason="bob declined")

    run, view = await observe(console_core, macp_runtime.target, drive)
    (handoff,) = view["handoffs"]
    assert (handoff["from"], handoff["target"], handoff["status"], handoff["contexts"]) == (
        "lead",
        "bob",
        "declined",
        1,
    )
    assert handoff["answeredBy"] == "bob" and handoff["answerReason"] == "on leave"
    assert view["commitment"]["outcomePositive"] is False
    assert run.status == "completed"  # the session resolved; the outcome is in the commitment


async def test_quorum_mode(console_core: ConsoleCore, macp_runtime: RuntimeProcess) -> None:
    def drive(client: MacpClient, session_id: str) -> None:
        s = QuorumSession(client, session_id=session_id, auth=auth("lead"))
        s.start(intent="deploy", participants=["alice", "bob", "carol"], ttl_ms=60_000)
        s.request_approval("r1", "deploy v2", summary="Deploy v2", required_approvals=2)
        s.approve("r1", auth=auth("alice"))
        s.abstain("r1", auth=auth("carol"))
        s.approve("r1", auth=auth("bob"))
        s.commit(action="quorum.approved", authority_scope="deploy", reason="2 of 3")

    _, view = await observe(console_core, macp_runtime.target, drive)
    (request,) = view["approvalRequests"]
    assert request["requiredApprovals"] == 2 and request["reached"] is True
    assert request["tally"] == {"approve": 2, "reject": 0, "abstain": 1}


async def test_correlated_signals_and_reported_policy_denials(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    session_id = new_session_id()
    with sdk_client(macp_runtime.target) as client:
        s = QuorumSession(client, session_id=session_id, auth=auth("lead"))
        await asyncio.to_thread(s.start, intent="signals", participants=["alice"], ttl_ms=60_000)

        async def found() -> Run | None:
            runs = (await console_core.list_runs(session_id=session_id)).runs
            return runs[0] if runs else None

        run = await eventually(found, "the discovered run")

        # Signals are never replayed: send until the console's live watch has one of each.
        async def seen(kind: str, signal_type: str) -> bool:
            await asyncio.to_thread(
                client.send_signal,
                signal_type=signal_type,
                data=json.dumps({"reasons": ["quorum not reached"]}).encode(),
                confidence=0.5,
                correlation_session_id=session_id,
                auth=auth("alice"),
            )
            events = await all_events(console_core, run.run_id)
            return any(e.type == kind for e in events)

        await eventually(lambda: seen("signal.emitted", "heartbeat"), "a correlated signal")
        await eventually(lambda: seen("policy.denied", "policy.denied"), "a reported denial")

    view = await console_core.view(run.run_id)
    assert view is not None
    assert {s["signalType"] for s in view["signals"]} == {"heartbeat"}
    assert [s["data"] for s in view["signals"]] == [{"reasons": ["quorum not reached"]}] * len(
        view["signals"]
    )
    assert view["policyDenials"][0]["reportedBy"] == "alice"
    assert view["policyDenials"][0]["details"] == {"reasons": ["quorum not reached"]}
    events = await all_events(console_core, run.run_id)
    assert all(e.ordinal is None for e in events if e.type in ("signal.emitted", "policy.denied"))
    assert len({e.message_id for e in events if e.message_id}) == len([e for e in events if e.message_id])
