"""The console when the runtime goes away mid-run and comes back on the same address."""

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


def same_address(previous: RuntimeProcess) -> RuntimeProcess:
    """A new runtime process on the previous one's data directory and port."""
    process = RuntimeProcess(previous.data_dir, RUNTIME_ENV)
    process.port, process.target = previous.port, previous.target
    process.env["MACP_BIND_ADDR"] = previous.target
    return process


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
        with sdk_client(runtime.target) as client:
            session = DecisionSession(client, session_id=run.session_id, auth=auth("lead"))
            await asyncio.to_thread(
                session.start, intent="outage", participants=["lead", "alice", "bob"], ttl_ms=60_000
            )
            await asyncio.to_thread(session.propose, "p1", "option one")
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
