"""The console core against a real ``pymacp serve``, with agents driven by the official SDK.

Every accepted envelope must appear in the run exactly once, in the runtime's order, with
its ordinal; the run's status must follow the session's state, and nothing else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from core_support import (
    all_events,
    assert_exactly_once_in_order,
    auth,
    core_config,
    descriptor,
    eventually,
    iter_statuses,
    run_decision,
    run_in,
    runtime_history,
    sdk_client,
)
from macp_sdk import DecisionSession, new_session_id
from store_backends import postgres_schema

from pymacp.console.descriptor import parse_descriptor
from pymacp.console.models import Run
from pymacp.console.service import ConsoleCore
from runtime_process import RuntimeProcess


async def test_decision_run_records_every_envelope_once_in_order(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    run, created = await console_core.submit(parse_descriptor(descriptor()))
    assert created and run.status == "queued" and run.source == "api"

    sent = await asyncio.to_thread(run_decision, macp_runtime.target, run.session_id)

    done = await run_in(console_core, run.run_id, "completed")
    events = await all_events(console_core, run.run_id)
    history = await asyncio.to_thread(runtime_history, macp_runtime.target, run.session_id)
    assert [h.message_id for h in history] == sent
    assert_exactly_once_in_order(events, history)
    assert done.last_ordinal == len(history) and done.last_seq == len(events)
    assert done.session_state == "SESSION_STATE_RESOLVED" and done.ended_at_ms is not None
    # The terminal status is the run's last event, after every envelope.
    assert events[-1].type == "run.status.changed" and events[-1].data["to"] == "completed"
    assert list(iter_statuses(events)) == ["starting", "running", "completed"]
    assert [e.type for e in events if e.message_id] == [
        "session.started",
        "proposal.submitted",
        "evaluation.submitted",
        "objection.raised",
        "vote.cast",
        "vote.cast",
        "commitment.made",
    ]

    view = await console_core.view(run.run_id)
    assert view is not None
    (proposal,) = view["proposals"]
    assert proposal["tally"] == {"approve": 1, "reject": 1, "abstain": 0}
    assert [o["severity"] for o in proposal["objections"]] == ["low"]
    assert view["commitment"]["action"] == "decision.selected"
    assert view["receipt"]["verdict"] == "attested"
    assert view["receipt"]["matchesObserved"] is True

    registry = console_core.metrics_registry()
    assert registry is not None
    # At least: discovery may be recording other sessions of this module's runtime too.
    assert (registry.get_sample_value("pymacp_console_events_stored_total", {"type": "vote.cast"}) or 0) >= 2
    completed = registry.get_sample_value("pymacp_console_run_status_changes_total", {"status": "completed"})
    assert (completed or 0) >= 1
    assert registry.get_sample_value("pymacp_console_runtime_ready") == 1


async def test_a_session_started_elsewhere_is_discovered(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    session_id = new_session_id()
    await asyncio.to_thread(run_decision, macp_runtime.target, session_id)

    run = await run_in(console_core, (await _eventually_run(console_core, session_id)).run_id, "completed")
    assert run.source == "discovered" and run.descriptor is None and run.idempotency_key is None
    assert run.mode_name == "macp.mode.decision.v1"
    assert run.participants == ("lead", "alice", "bob")
    history = await asyncio.to_thread(runtime_history, macp_runtime.target, session_id)
    assert_exactly_once_in_order(await all_events(console_core, run.run_id), history)


async def _eventually_run(core: ConsoleCore, session_id: str) -> Run:
    async def probe() -> Run | None:
        page = await core.list_runs(session_id=session_id)
        return page.runs[0] if page.runs else None

    return await eventually(probe, f"a run for session {session_id}")


async def test_a_console_restart_mid_run_leaves_no_gap_and_no_duplicate(
    macp_runtime: RuntimeProcess, tmp_path: Path
) -> None:
    database = tmp_path / "console.db"
    first = ConsoleCore(core_config(database, macp_runtime.target))
    await first.start()
    client = sdk_client(macp_runtime.target)
    try:
        run, _ = await first.submit(parse_descriptor(descriptor()))
        session = DecisionSession(client, session_id=run.session_id, auth=auth("lead"))
        await asyncio.to_thread(
            session.start, intent="restart me", participants=["lead", "alice", "bob"], ttl_ms=60_000
        )
        await asyncio.to_thread(session.propose, "p1", "option one")
        await _until_ordinal(first, run.run_id, 2)
        await first.aclose()

        # While the console is away the session goes on.
        await asyncio.to_thread(session.vote, "p1", "approve", auth=auth("alice"))
        await asyncio.to_thread(session.vote, "p1", "approve", auth=auth("bob"))

        second = ConsoleCore(core_config(database, macp_runtime.target))
        await second.start()
        try:
            await _until_ordinal(second, run.run_id, 4)
            await asyncio.to_thread(
                session.commit, action="decision.selected", authority_scope="x", reason="r"
            )
            await run_in(second, run.run_id, "completed")
            events = await all_events(second, run.run_id)
        finally:
            await second.aclose()
    finally:
        client.close()
        await first.aclose()
    history = await asyncio.to_thread(runtime_history, macp_runtime.target, run.session_id)
    assert len(history) == 5
    assert_exactly_once_in_order(events, history)


async def _until_ordinal(core: ConsoleCore, run_id: str, ordinal: int) -> Run:
    async def probe() -> Run | None:
        run = await core.get_run(run_id)
        return run if run is not None and run.last_ordinal >= ordinal else None

    return await eventually(probe, f"run {run_id} to reach ordinal {ordinal}")


async def test_the_postgresql_backend_observes_a_run_and_survives_a_restart(
    macp_runtime: RuntimeProcess,
) -> None:
    with postgres_schema() as url:
        first = ConsoleCore(core_config(url, macp_runtime.target))
        await first.start()
        try:
            run, _ = await first.submit(parse_descriptor(descriptor()))
            with sdk_client(macp_runtime.target) as client:
                session = DecisionSession(client, session_id=run.session_id, auth=auth("lead"))
                await asyncio.to_thread(
                    session.start, intent="pg", participants=["lead", "alice", "bob"], ttl_ms=60_000
                )
                await _until_ordinal(first, run.run_id, 1)
                await first.aclose()
                await asyncio.to_thread(session.propose, "p1", "option")
                await asyncio.to_thread(
                    session.commit, action="decision.selected", authority_scope="x", reason="r"
                )
        finally:
            await first.aclose()
        second = ConsoleCore(core_config(url, macp_runtime.target))
        await second.start()
        try:
            await run_in(second, run.run_id, "completed")
            events = await all_events(second, run.run_id)
        finally:
            await second.aclose()
    history = await asyncio.to_thread(runtime_history, macp_runtime.target, run.session_id)
    assert len(history) == 3
    assert_exactly_once_in_order(events, history)
