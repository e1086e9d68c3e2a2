"""Run creation, idempotency, the status a run takes from its session, and cancellation,
against a real runtime with SDK agents."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from core_support import (
    all_events,
    auth,
    core_config,
    descriptor,
    iter_statuses,
    run_in,
    sdk_client,
)
from macp_sdk import CommitmentRules, DecisionSession, build_decision_policy, new_session_id

from pymacp.console.descriptor import parse_descriptor
from pymacp.console.service import CancelRefused, ConsoleCore, RunConflict
from runtime_process import RuntimeProcess

DELEGATING_POLICY = "policy.console-tests.delegated-cancel"


def start_decision(
    target: str, session_id: str, *, policy: str = "policy.default", ttl_ms: int = 60_000
) -> None:
    with sdk_client(target) as client:
        session = DecisionSession(client, session_id=session_id, policy_version=policy, auth=auth("lead"))
        session.start(intent="cancel me", participants=["lead", "alice"], ttl_ms=ttl_ms)


def lead_session(target: str, session_id: str, action: Callable[[DecisionSession], Any]) -> None:
    with sdk_client(target) as client:
        action(DecisionSession(client, session_id=session_id, auth=auth("lead")))


class CallbackServer:
    """The initiator's cancel endpoint: records each call, answers ``status``, then runs ``on_call``."""

    def __init__(self, status: int = 200, on_call: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.calls: list[tuple[str | None, dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.calls.append((self.headers.get("Authorization"), body))
                if on_call is not None and status < 300:
                    on_call(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/cancel"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def callbacks() -> Iterator[list[CallbackServer]]:
    servers: list[CallbackServer] = []
    yield servers
    for server in servers:
        server.close()


async def test_an_idempotency_key_returns_the_stored_run_and_starts_one_observer(
    console_core: ConsoleCore,
) -> None:
    document = descriptor(execution={"idempotencyKey": f"key-{new_session_id()}", "tags": ["nightly"]})
    results = await asyncio.gather(*(console_core.submit(parse_descriptor(document)) for _ in range(5)))

    runs = {run.run_id for run, _ in results}
    assert len(runs) == 1, "concurrent submissions with one key made several runs"
    assert [created for _, created in results].count(True) == 1
    (run_id,) = runs
    # Without a sessionId in the body, every answer still names the one stored session.
    assert len({run.session_id for run, _ in results}) == 1
    page = await console_core.list_runs(session_id=results[0][0].session_id)
    assert [run.run_id for run in page.runs] == [run_id]
    events = await all_events(console_core, run_id)
    assert [e.type for e in events].count("run.created") == 1
    assert (await console_core.get_run(run_id)).tags == ("nightly",)


async def test_a_second_api_run_for_an_observed_session_is_a_conflict(console_core: ConsoleCore) -> None:
    session_id = new_session_id()
    first, _ = await console_core.submit(parse_descriptor(descriptor(session_id)))
    with pytest.raises(RunConflict) as refused:
        await console_core.submit(parse_descriptor(descriptor(session_id)))
    assert refused.value.run.run_id == first.run_id and refused.value.http_status == 409
    assert str(refused.value).startswith(f"session {session_id} is already observed by run {first.run_id}")


async def test_a_session_that_never_starts_fails_the_run_with_a_clear_error(
    macp_runtime: RuntimeProcess, tmp_path: Path
) -> None:
    core = ConsoleCore(core_config(tmp_path / "c.db", macp_runtime.target, poll_timeout_ms=300))
    await core.start()
    try:
        run, _ = await core.submit(parse_descriptor(descriptor()))
        failed = await run_in(core, run.run_id, "failed")
    finally:
        await core.aclose()
    assert failed.error is not None and "not found within 0.3 s" in failed.error
    assert run.session_id in failed.error


async def test_status_follows_suspend_resume_and_expiry(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    run, _ = await console_core.submit(parse_descriptor(descriptor()))
    await asyncio.to_thread(start_decision, macp_runtime.target, run.session_id, ttl_ms=1500)
    await run_in(console_core, run.run_id, "running")

    await asyncio.to_thread(
        lead_session, macp_runtime.target, run.session_id, lambda s: s.suspend(reason="lunch")
    )
    suspended = await run_in(console_core, run.run_id, "suspended")
    assert suspended.session_state == "SESSION_STATE_SUSPENDED"
    await asyncio.to_thread(lead_session, macp_runtime.target, run.session_id, lambda s: s.resume())
    await run_in(console_core, run.run_id, "running")

    expired = await run_in(console_core, run.run_id, "failed", "completed", "cancelled")
    assert expired.status == "failed" and expired.error == "session expired before it resolved"
    events = await all_events(console_core, run.run_id)
    assert list(iter_statuses(events)) == ["starting", "running", "suspended", "running", "failed"]


async def test_cancel_without_delegation_is_refused(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    run, _ = await console_core.submit(parse_descriptor(descriptor()))
    await asyncio.to_thread(start_decision, macp_runtime.target, run.session_id)
    with pytest.raises(CancelRefused) as refused:
        await console_core.cancel(run.run_id, "stop")
    assert (refused.value.http_status, refused.value.code) == (400, "CANCEL_NOT_DELEGATED")
    with pytest.raises(CancelRefused) as missing:
        await console_core.cancel("no-such-run", None)
    assert missing.value.http_status == 404


async def test_cancel_option_a_calls_the_initiator_who_cancels(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess, callbacks: list[CallbackServer]
) -> None:
    session_id = new_session_id()

    def initiator_cancels(body: dict[str, Any]) -> None:
        lead_session(macp_runtime.target, session_id, lambda s: s.cancel(reason=str(body["reason"])))

    server = CallbackServer(on_call=initiator_cancels)
    callbacks.append(server)
    metadata = {"cancelCallback": {"url": server.url, "bearer": "initiator-secret"}}
    run, _ = await console_core.submit(parse_descriptor(descriptor(session_id, metadata=metadata)))
    assert run.descriptor is not None
    assert run.descriptor["session"]["metadata"]["cancelCallback"]["bearer"] == "***"
    await asyncio.to_thread(start_decision, macp_runtime.target, session_id)
    await run_in(console_core, run.run_id, "running")

    await console_core.cancel(run.run_id, "operator says stop")

    assert server.calls == [
        ("Bearer initiator-secret", {"runId": run.run_id, "reason": "operator says stop"})
    ]
    cancelled = await run_in(console_core, run.run_id, "cancelled")
    assert cancelled.session_state == "SESSION_STATE_CANCELLED"
    requested = [e.data for e in await all_events(console_core, run.run_id) if e.type == "cancel.requested"]
    assert [(r["via"], r["outcome"]) for r in requested] == [("callback", "accepted")]
    with pytest.raises(CancelRefused) as again:
        await console_core.cancel(run.run_id, None)
    assert again.value.http_status == 409


async def test_cancel_option_a_reports_a_failing_callback(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess, callbacks: list[CallbackServer]
) -> None:
    server = CallbackServer(status=503)
    callbacks.append(server)
    run, _ = await console_core.submit(
        parse_descriptor(descriptor(metadata={"cancelCallback": {"url": server.url}}))
    )
    await asyncio.to_thread(start_decision, macp_runtime.target, run.session_id)
    with pytest.raises(CancelRefused) as refused:
        await console_core.cancel(run.run_id, None)
    assert (refused.value.http_status, refused.value.code) == (502, "CANCEL_CALLBACK_FAILED")
    assert "503" in str(refused.value)
    assert server.calls == [(None, {"runId": run.run_id, "reason": None})]
    assert (await console_core.get_run(run.run_id)).status in ("starting", "running")


async def test_cancel_option_b_uses_the_consoles_delegated_authority(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    policy = build_decision_policy(
        DELEGATING_POLICY,
        "the console may cancel",
        commitment=CommitmentRules(authority="designated_role", designated_roles=["lead", "console"]),
    )
    with sdk_client(macp_runtime.target) as client:
        registered = client.register_policy(policy, auth=auth("admin"))
        assert registered.ok or "exists" in registered.error.lower()
    run, _ = await console_core.submit(parse_descriptor(descriptor(metadata={"cancellationDelegated": True})))
    await asyncio.to_thread(start_decision, macp_runtime.target, run.session_id, policy=DELEGATING_POLICY)
    await run_in(console_core, run.run_id, "running")

    cancelled = await console_core.cancel(run.run_id, "delegated stop")

    assert cancelled.status == "cancelled"
    events = await all_events(console_core, run.run_id)
    assert events[-1].type == "run.status.changed" and events[-1].data["to"] == "cancelled"


async def test_cancel_option_b_reports_a_runtime_refusal(
    console_core: ConsoleCore, macp_runtime: RuntimeProcess
) -> None:
    run, _ = await console_core.submit(parse_descriptor(descriptor(metadata={"cancellationDelegated": True})))
    await asyncio.to_thread(start_decision, macp_runtime.target, run.session_id)  # default policy
    await run_in(console_core, run.run_id, "running")

    with pytest.raises(CancelRefused) as refused:
        await console_core.cancel(run.run_id, None)

    assert (refused.value.http_status, refused.value.code) == (502, "RUNTIME_REFUSED")
    assert "FORBIDDEN" in str(refused.value)
    assert (await console_core.get_run(run.run_id)).status == "running"
    requested = [e.data for e in await all_events(console_core, run.run_id) if e.type == "cancel.requested"]
    assert [(r["via"], r["outcome"]) for r in requested] == [("runtime", "refused")]


async def test_without_an_observer_identity_the_run_fails_and_says_how_to_fix_it(
    macp_runtime: RuntimeProcess, tmp_path: Path
) -> None:
    # carol is a valid identity but neither an observer nor in the session.
    config = core_config(tmp_path / "c.db", macp_runtime.target, runtime_token="tok-carol", discovery=False)
    core = ConsoleCore(config)
    await core.start()
    try:
        run, _ = await core.submit(parse_descriptor(descriptor()))
        await asyncio.to_thread(start_decision, macp_runtime.target, run.session_id)
        failed = await run_in(core, run.run_id, "failed")
    finally:
        await core.aclose()
    assert failed.error is not None and "is_observer" in failed.error
