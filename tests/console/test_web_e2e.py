"""End to end: a real ``pymacp serve`` with static tokens, a real ``pymacp console`` process
observing it with an observer identity, agents driven by the official macp-sdk-python, and
the console read over real HTTP and SSE.

The central claim: every envelope the runtime accepted shows up in the runs API and on the
SSE stream exactly once, in the order it was accepted, with seq 1..N and no gap, also when
the console restarts mid-run or the runtime goes away and comes back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_e2e_support import (
    AUTH_HEADERS,
    OBSERVER_TOKEN,
    Api,
    Decision,
    console_env,
    descriptor,
    envelope_ids,
    started_console,
    started_runtime,
)
from web_support import API_KEY, ConsoleProcess, Frame, SseStream, wait_until

from pymacp.console.server import ConsoleServer
from pymacp.console.settings import ConsoleSettings
from runtime_process import RuntimeProcess

STREAM_QUERY = "heartbeatMs=1000"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with started_runtime(tmp_path_factory.mktemp("web-e2e") / "runtime") as process:
        yield process


@pytest.fixture(scope="module")
def console(runtime: RuntimeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    with started_console(tmp_path_factory.mktemp("web-e2e-console"), runtime) as process:
        yield process


@pytest.fixture
def api(console: ConsoleProcess) -> Iterator[Api]:
    client = Api(console.url)
    try:
        yield client
    finally:
        client.close()


def stream(base_url: str, run_id: str, last_event_id: int | None = None) -> SseStream:
    headers = dict(AUTH_HEADERS)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    sse = SseStream(f"{base_url}/runs/{run_id}/stream?{STREAM_QUERY}", headers)
    assert sse.status == 200
    return sse


def event_frames(frames: list[Frame]) -> list[Frame]:
    return [frame for frame in frames if frame.event == "event"]


def assert_gapless(events: list[dict[str, Any]]) -> None:
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))


# --- the runs API against a live session -------------------------------------------------------------


def test_a_submitted_run_shows_every_envelope_once_in_order(
    api: Api, runtime: RuntimeProcess, console: ConsoleProcess
) -> None:
    session_id = str(uuid.uuid4())
    accepted = api.submit(session_id, ("lead", "alice", "bob"))
    assert accepted["sessionId"] == session_id
    run_id = accepted["runId"]
    sse = stream(console.url, run_id)
    decision = Decision(runtime, session_id)
    try:
        snapshot = sse.next()
        assert snapshot.event == "snapshot"
        assert snapshot.data["run"]["runId"] == run_id
        decision.start()
        decision.propose()
        decision.evaluate("alice")
        decision.vote("alice")
        decision.vote("bob")
        decision.commit()
        frames = sse.until(lambda frame: frame.event == "end", timeout=20)
    finally:
        sse.close()
        decision.close()

    streamed = [frame.data for frame in event_frames(frames)]
    stored = api.events(run_id)
    assert_gapless(stored)
    assert streamed == stored  # one JSON shape, the same events, the same order
    assert [frame.id for frame in event_frames(frames)] == [event["seq"] for event in stored]
    assert envelope_ids(stored) == decision.accepted
    ordinals = [event["ordinal"] for event in stored if event["ordinal"] is not None]
    assert ordinals == list(range(1, len(decision.accepted) + 1))
    assert frames[-1].data["run"]["status"] == "completed"
    run = api.run(run_id)
    assert (run["status"], run["sessionState"], run["lastSeq"]) == (
        "completed",
        "SESSION_STATE_RESOLVED",
        len(stored),
    )
    assert run["source"] == "api"


def test_a_session_started_elsewhere_is_discovered(api: Api, runtime: RuntimeProcess) -> None:
    decision = Decision(runtime)
    try:
        decision.start()
        decision.propose()
        decision.commit()
    finally:
        decision.close()

    run = wait_until(lambda: api.run_for_session(decision.session_id), what="discovery")
    run = api.wait_status(run["runId"], "completed")
    assert run["source"] == "discovered"
    assert envelope_ids(api.events(run["runId"])) == decision.accepted


def test_a_finished_run_replays_from_last_event_id_then_ends(
    api: Api, runtime: RuntimeProcess, console: ConsoleProcess
) -> None:
    decision = Decision(runtime)
    try:
        decision.start()
        decision.propose()
        decision.vote("alice")
        decision.commit()
    finally:
        decision.close()
    run = wait_until(lambda: api.run_for_session(decision.session_id), what="discovery")
    stored = api.events(api.wait_status(run["runId"], "completed")["runId"])

    sse = stream(console.url, run["runId"], last_event_id=2)
    try:
        frames = sse.until(lambda frame: frame.event == "end")
        assert sse.ended()
    finally:
        sse.close()

    assert [frame.data for frame in event_frames(frames)] == stored[2:]


def test_events_page_by_after_seq(api: Api, runtime: RuntimeProcess) -> None:
    decision = Decision(runtime)
    try:
        decision.start()
        for proposal in ("p1", "p2", "p3"):
            decision.propose(proposal)
        decision.commit()
    finally:
        decision.close()
    run = wait_until(lambda: api.run_for_session(decision.session_id), what="discovery")
    api.wait_status(run["runId"], "completed")

    everything = api.client.get(f"/runs/{run['runId']}/events", params={"limit": 1000}).json()["data"]
    tail = api.client.get(f"/runs/{run['runId']}/events", params={"afterSeq": 3, "limit": 2}).json()

    assert api.events(run["runId"], page=2) == everything
    assert tail["data"] == everything[3:5]
    assert tail["hasMore"] is (len(everything) > 5)


def test_idempotency_validation_pagination_and_removed_paths(api: Api) -> None:
    key = f"order-{uuid.uuid4()}"
    document = descriptor(str(uuid.uuid4()), ("lead",), idempotencyKey=key)
    first = api.client.post("/runs", json=document)
    again = api.client.post("/runs", json={**document, "session": {**document["session"]}})
    assert (first.status_code, again.status_code) == (202, 200)
    assert {k: again.json()[k] for k in ("runId", "sessionId")} == {
        k: first.json()[k] for k in ("runId", "sessionId")
    }
    # Without a session id the console allocates one, and a retry still gets the stored one back.
    fresh = descriptor("x", ("lead",), idempotencyKey=f"order-{uuid.uuid4()}")
    del fresh["session"]["sessionId"]
    one, two = api.client.post("/runs", json=fresh).json(), api.client.post("/runs", json=fresh).json()
    assert one["sessionId"] == two["sessionId"]

    unknown = api.client.post("/runs", json={**document, "kickoff": []})
    assert unknown.status_code == 400
    assert unknown.json()["details"][0]["path"] == "kickoff"

    seen: list[str] = []
    cursor = None
    while True:
        page = api.client.get("/runs", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [run["runId"] for run in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert {first.json()["runId"], one["runId"]} <= set(seen)

    gone = api.client.post(f"/runs/{first.json()['runId']}/signal", json={})
    assert (gone.status_code, gone.json()["errorCode"]) == (410, "ENDPOINT_REMOVED")


def test_concurrent_retries_with_one_idempotency_key_get_one_run(api: Api) -> None:
    document = descriptor(str(uuid.uuid4()), ("lead",), idempotencyKey=f"order-{uuid.uuid4()}")

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(api.client.base_url), headers=AUTH_HEADERS, timeout=10) as client:
            return client.post("/runs", json=document)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(post, range(8)))

    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json()["runId"] for r in responses}) == 1


def test_cancel_goes_through_the_callback_and_its_secret_never_comes_back(
    api: Api, runtime: RuntimeProcess, console: ConsoleProcess
) -> None:
    secret = f"callback-secret-{uuid.uuid4()}"
    calls: list[tuple[str | None, dict[str, Any]]] = []
    decision = Decision(runtime)

    class Initiator(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.headers.get("Authorization"), body))
            decision.session.cancel(reason=body.get("reason") or "")  # the initiator's own identity
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Initiator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        document = descriptor(decision.session_id, ("lead", "alice"))
        document["session"]["metadata"] = {
            "cancelCallback": {"url": f"http://127.0.0.1:{server.server_port}/cancel", "bearer": secret}
        }
        response = api.client.post("/runs", json=document)
        assert response.status_code == 202, response.text
        run_id = response.json()["runId"]
        decision.start()
        decision.propose()
        api.wait_status(run_id, "running")

        cancelled = api.client.post(f"/runs/{run_id}/cancel", json={"reason": "operator request"})
        assert cancelled.status_code == 200, cancelled.text
        run = api.wait_status(run_id, "cancelled")
    finally:
        server.shutdown()
        server.server_close()
        decision.close()

    assert calls == [(f"Bearer {secret}", {"runId": run_id, "reason": "operator request"})]
    assert run["descriptor"]["session"]["metadata"]["cancelCallback"]["bearer"] == "***"
    reads = [
        api.client.get(f"/runs/{run_id}").text,
        api.client.get("/runs").text,
        api.client.get(f"/runs/{run_id}/events").text,
        api.client.get(f"/runs/{run_id}/view").text,
    ]
    assert all(secret not in text for text in reads)
    not_delegated = api.submit(str(uuid.uuid4()), ("lead",))
    refused = api.client.post(f"/runs/{not_delegated['runId']}/cancel")
    assert (refused.status_code, refused.json()["errorCode"]) == (400, "CANCEL_NOT_DELEGATED")


def test_keys_are_required(console: ConsoleProcess) -> None:
    missing = httpx.get(f"{console.url}/runs")
    wrong = httpx.get(f"{console.url}/runs", headers={"Authorization": "Bearer not-the-key-at-all"})

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{console.url}/healthz").status_code == 200


def test_without_keys_the_console_refuses_to_start(runtime: RuntimeProcess, tmp_path: Path) -> None:
    env = console_env(runtime)
    del env["PYMACP_CONSOLE_API_KEYS"]

    refused = ConsoleProcess(tmp_path / "refused", env=env).run_to_exit()

    assert refused.returncode != 0
    assert "PYMACP_CONSOLE_API_KEYS" in refused.stderr
    assert "--no-auth" in refused.stderr
    opened = ConsoleProcess(tmp_path / "open", env=env, args=("--no-auth",)).start()
    try:
        assert httpx.get(f"{opened.url}/runs").status_code == 200
    finally:
        opened.stop()


def test_rate_limit_applies_per_key(runtime: RuntimeProcess, tmp_path: Path) -> None:
    limited = ConsoleProcess(
        tmp_path, env=console_env(runtime), args=("--rate-limit", "1", "--rate-burst", "3")
    ).start()
    try:
        with httpx.Client(base_url=limited.url, headers=AUTH_HEADERS) as client:
            statuses = [client.get("/runs").status_code for _ in range(4)]
            refused = client.get("/runs")
            probes = [client.get("/readyz").status_code for _ in range(5)]
    finally:
        limited.stop()

    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert probes == [200] * 5


# --- failures: the console restarts, the runtime goes away ------------------------------------------


def test_console_restart_mid_run_loses_and_repeats_nothing(runtime: RuntimeProcess, tmp_path: Path) -> None:
    workdir = tmp_path / "console"
    first = ConsoleProcess(workdir, env=console_env(runtime)).start()
    port = first.url.rsplit(":", 1)[1]
    decision = Decision(runtime)
    received: list[Frame] = []
    try:
        decision.start()
        decision.propose()
        api = Api(first.url)
        run = wait_until(lambda: api.run_for_session(decision.session_id), what="discovery")
        api.close()
        sse = stream(first.url, run["runId"])
        received += sse.until(lambda f: f.event == "event" and f.data["messageId"] == decision.accepted[-1])
        sse.close()
        first.stop()

        # While the console is down the session goes on.
        decision.vote("alice")
        decision.vote("bob")

        # Same database, same address: what a browser would reconnect to.
        second = ConsoleProcess(
            workdir, env={**console_env(runtime), "PYMACP_CONSOLE_BIND": f"127.0.0.1:{port}"}
        )
        second.start()
        try:
            last_id = event_frames(received)[-1].id
            sse = stream(second.url, run["runId"], last_event_id=last_id)
            decision.commit()
            received += sse.until(lambda f: f.event == "end", timeout=20)
            sse.close()
            stored = Api(second.url).events(run["runId"])
        finally:
            second.stop()
    finally:
        decision.close()

    streamed = [frame.data for frame in event_frames(received)]
    assert_gapless(streamed)
    assert streamed == stored
    assert envelope_ids(streamed) == decision.accepted


def test_runtime_outage_makes_readyz_503_and_the_run_recovers(tmp_path: Path) -> None:
    with (
        started_runtime(tmp_path / "runtime") as runtime,
        started_console(tmp_path / "console", runtime) as console,
    ):
        probe = httpx.Client(base_url=console.url, timeout=5)
        api = Api(console.url)
        decision = Decision(runtime)
        try:
            wait_until(lambda: probe.get("/readyz").status_code == 200, what="readiness")
            decision.start()
            decision.propose()
            run = wait_until(lambda: api.run_for_session(decision.session_id), what="discovery")
            sse = stream(console.url, run["runId"])
            received = sse.until(
                lambda f: f.event == "event" and f.data["messageId"] == decision.accepted[-1]
            )

            runtime.stop()
            outage = wait_until(lambda: (r := probe.get("/readyz")).status_code == 503 and r, what="503")
            assert outage.json()["runtime"] == "unreachable"
            assert probe.get("/healthz").status_code == 200
            assert api.run(run["runId"])["status"] == "running"  # a quiet or lost stream never fails a run

            runtime.start()
            wait_until(lambda: probe.get("/readyz").status_code == 200, timeout=30, what="recovery")
            decision.vote("alice")  # the agent's channel reconnects by itself
            decision.commit()
            received += sse.until(lambda f: f.event == "end", timeout=30)
            sse.close()
            stored = api.events(run["runId"])
        finally:
            decision.close()
            api.close()
            probe.close()

    streamed = [frame.data for frame in event_frames(received)]
    assert streamed == stored
    assert_gapless(stored)
    assert envelope_ids(stored) == decision.accepted
    assert received[-1].data["run"]["status"] == "completed"


async def test_the_server_embeds_in_a_running_loop(runtime: RuntimeProcess, tmp_path: Path) -> None:
    settings = ConsoleSettings(
        runtime=runtime.target,
        runtime_token=OBSERVER_TOKEN,
        bind_port=0,
        no_auth=True,
        database=f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
    )
    server = ConsoleServer(settings)
    await server.start()
    try:
        host, port = server.bound_address
        assert (host, port > 0) == ("127.0.0.1", True)
        taken = ConsoleServer(replace(settings, bind_port=port))
        with pytest.raises(OSError):
            await taken.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            for _ in range(200):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/runs")).status_code == 200
        url = server.url
    finally:
        await server.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_the_cli_documents_every_flag_and_variable() -> None:
    from click.testing import CliRunner

    from pymacp.cli import main
    from pymacp.console.settings import OPTIONS

    result = CliRunner().invoke(main, ["console", "--help"], terminal_width=200)

    assert result.exit_code == 0
    for option in OPTIONS:
        assert option.env in result.output
        if option.flag:
            assert option.flag in result.output
    assert API_KEY not in result.output
