"""The console when the runtime goes away mid-run and comes back on the same address, or when
another runtime, without the session's data, takes that address over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core_support import (
    RUNTIME_ENV,
    all_events,
    assert_exactly_once_in_order,
    auth,
    core_config,
    descriptor,
    eventually,
    run_in,
    runtime_history,
    sdk_client,
)
from macp_sdk import DecisionSession

from pymacp.console.descriptor import parse_descriptor
from pymacp.console.service import ConsoleCore
from runtime_process import RuntimeProcess


def same_address(previous: RuntimeProcess, data_dir: Path | None = None) -> RuntimeProcess:
    """A new runtime process on the previous one's port, and its data directory unless one is given."""
    process = RuntimeProcess(data_dir or previous.data_dir, RUNTIME_ENV)
    process.port, process.target = previous.port, previous.target
    process.env["MACP_BIND_ADDR"] = previous.target
    return process


async def start_with_a_proposal(target: str, session_id: str, intent: str) -> None:
    """Start a decision session as its initiator and put one proposal to it."""
    with sdk_client(target) as client:
        session = DecisionSession(client, session_id=session_id, auth=auth("lead"))
        await asyncio.to_thread(
            session.start, intent=intent, participants=["lead", "alice", "bob"], ttl_ms=60_000
        )
        await asyncio.to_thread(session.propose, "p1", "option one")


async def test_runtime_outage_makes_the_console_not_ready_and_the_run_recovers(tmp_path: Path) -> None:
    runtime = RuntimeProcess(tmp_path / "data", RUNTIME_ENV)
    runtime.start()
    core = ConsoleCore(core_config(tmp_path / "console.db", runtime.target))
    await core.start()
    restarted: RuntimeProcess | None = None
    try:

        async def ready() -> bool:
            return core.runtime_ready

        await eventually(ready, "the console to connect")
        run, _ = await core.submit(parse_descriptor(descriptor()))
        await start_with_a_proposal(runtime.target, run.session_id, intent="outage")
        await run_in(core, run.run_id, "running")

        await asyncio.to_thread(runtime.stop)

        async def not_ready() -> bool:
            return not core.runtime_ready

        await eventually(not_ready, "runtime_ready to turn False")
        assert (await core.get_run(run.run_id)).status == "running"  # an outage is not a failure

        restarted = same_address(runtime)
        await asyncio.to_thread(restarted.start)
        await eventually(ready, "runtime_ready to turn True again")
        with sdk_client(restarted.target) as client:
            session = DecisionSession(client, session_id=run.session_id, auth=auth("lead"))
            await asyncio.to_thread(session.vote, "p1", "approve", auth=auth("alice"))
            await asyncio.to_thread(
                session.commit, action="decision.selected", authority_scope="x", reason="r"
            )
        done = await run_in(core, run.run_id, "completed")
        history = await asyncio.to_thread(runtime_history, restarted.target, run.session_id)
        assert len(history) == 4
        assert_exactly_once_in_order(await all_events(core, run.run_id), history)
        assert done.error is None
    finally:
        await core.aclose()
        runtime.stop()
        if restarted is not None:
            restarted.stop()


async def test_a_session_the_runtime_stops_knowing_fails_its_run_as_lost(tmp_path: Path) -> None:
    runtime = RuntimeProcess(tmp_path / "data", RUNTIME_ENV)
    runtime.start()
    core = ConsoleCore(core_config(tmp_path / "console.db", runtime.target, poll_timeout_ms=4000))
    await core.start()
    other: RuntimeProcess | None = None
    try:
        run, _ = await core.submit(parse_descriptor(descriptor()))
        await start_with_a_proposal(runtime.target, run.session_id, intent="lost")
        history = await asyncio.to_thread(runtime_history, runtime.target, run.session_id)
        await run_in(core, run.run_id, "running")

        # Another runtime, with none of the first one's data, takes over the address.
        await asyncio.to_thread(runtime.stop)
        other = same_address(runtime, tmp_path / "other-data")
        await asyncio.to_thread(other.start)

        lost = await run_in(core, run.run_id, "failed", "completed", "cancelled")
        assert lost.status == "failed"
        assert lost.error is not None and f"no longer knows session {run.session_id}" in lost.error
        events = await all_events(core, run.run_id)
        assert_exactly_once_in_order(events, history)  # what was received is kept
        final = [e for e in events if e.type == "run.status.changed"][-1]
        assert final.data["to"] == "failed" and final.data["reason"] == "session lost"
    finally:
        await core.aclose()
        runtime.stop()
        if other is not None:
            other.stop()
