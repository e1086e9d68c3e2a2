"""The runs API over real HTTP (uvicorn on loopback) against an in-memory core.

These pin the HTTP contract itself: status codes, the one error shape, strict validation,
idempotency as the API reports it, pagination, and the removed write paths. The same
behaviour against a real runtime is covered by test_web_e2e.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_fake import FakeCore
from web_support import API_KEY

from pymacp.console.server import ConsoleServer
from pymacp.console.service import CancelRefused
from pymacp.console.settings import ConsoleSettings

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SETTINGS = ConsoleSettings(bind_port=0, api_keys=(API_KEY,), rate_limit_per_minute=0)


def descriptor(**session: Any) -> dict[str, Any]:
    return {
        "mode": "live",
        "runtime": {"kind": "pymacp"},
        "session": {
            "modeName": "macp.mode.decision.v1",
            "modeVersion": "1.0.0",
            "configurationVersion": "config.default",
            "ttlMs": 60000,
            "participants": [{"id": "lead"}, {"id": "alice"}],
            **session,
        },
    }


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def http(core: FakeCore) -> AsyncIterator[httpx.AsyncClient]:
    server = ConsoleServer(SETTINGS, core=core)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as client:
            yield client
    finally:
        await server.stop()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["statusCode"] == status
    assert body["errorCode"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- POST /runs --------------------------------------------------------------------------------------


async def test_submit_returns_202_with_the_run_and_session(http: httpx.AsyncClient, core: FakeCore) -> None:
    session_id = str(uuid.uuid4())
    response = await http.post("/runs", json=descriptor(sessionId=session_id))

    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {"runId": body["runId"], "sessionId": session_id, "status": "queued", "created": True}
    assert response.headers["location"] == f"/runs/{body['runId']}"
    assert core.runs[body["runId"]].session_id == session_id


async def test_an_unknown_field_is_refused_and_named(http: httpx.AsyncClient, core: FakeCore) -> None:
    document = descriptor(kickoff=[{"messageType": "Proposal"}])

    body = assert_error(await http.post("/runs", json=document), 400, "VALIDATION_ERROR")

    assert {"path": "session.kickoff", "message": body["details"][0]["message"]} in body["details"]
    assert "session.kickoff" in body["message"]
    assert core.runs == {}


async def test_every_problem_is_reported_at_once(http: httpx.AsyncClient) -> None:
    document = descriptor(ttlMs=-5, participants=[{"id": "a", "role": "x"}])
    document["mode"] = "turbo"

    body = assert_error(await http.post("/runs", json=document), 400, "VALIDATION_ERROR")

    paths = {detail["path"] for detail in body["details"]}
    assert {"mode", "session.ttlMs", "session.participants[0].role"} <= paths


async def test_a_repeated_idempotency_key_returns_the_stored_run(
    http: httpx.AsyncClient, core: FakeCore
) -> None:
    document = {**descriptor(), "execution": {"idempotencyKey": "order-42"}}

    first = await http.post("/runs", json=document)
    second = await http.post("/runs", json=document)

    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {**first.json(), "created": False}
    assert len(core.runs) == 1


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
        (b"", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
        (b"[1, NaN]", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
        (b"[" * 100_000, {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
        (b'{"mode": "live"}', {"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b" " * (1 << 20) + b"{}", {"Content-Type": "application/json"}, 413, "PAYLOAD_TOO_LARGE"),
        (b'["a list"]', {"Content-Type": "application/json"}, 400, "VALIDATION_ERROR"),
    ],
)
async def test_bad_bodies_get_clear_errors(
    http: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    assert_error(await http.post("/runs", content=content, headers=headers), status, code)


# --- reading runs ------------------------------------------------------------------------------------


async def test_runs_are_listed_newest_first_across_cursor_pages(
    http: httpx.AsyncClient, core: FakeCore
) -> None:
    created = [core.add_run().run_id for _ in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await http.get("/runs", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= 2
        seen += [run["runId"] for run in body["data"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break

    assert seen == list(reversed(created))
    assert pages == 3


async def test_list_filters_are_checked(http: httpx.AsyncClient, core: FakeCore) -> None:
    done = core.add_run(status="completed")
    core.add_run(status="running")

    only_done = (await http.get("/runs", params={"status": "completed"})).json()["data"]
    assert [run["runId"] for run in only_done] == [done.run_id]
    for params, path in [
        ({"status": "finished"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"stauts": "completed"}, "stauts"),
        ({"cursor": "!!!"}, "cursor"),
    ]:
        body = assert_error(await http.get("/runs", params=params), 400, "VALIDATION_ERROR")
        assert body["details"][0]["path"] == path


async def test_a_run_and_its_events_page_by_after_seq(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    for index in range(5):
        core.append(run.run_id, index=index)

    assert (await http.get(f"/runs/{run.run_id}")).json()["lastSeq"] == 5
    first = (await http.get(f"/runs/{run.run_id}/events", params={"limit": 3})).json()
    rest = (await http.get(f"/runs/{run.run_id}/events", params={"afterSeq": first["nextAfterSeq"]})).json()

    assert [e["seq"] for e in first["data"]] == [1, 2, 3]
    assert (first["nextAfterSeq"], first["hasMore"]) == (3, True)
    assert [e["seq"] for e in rest["data"]] == [4, 5]
    assert [e["data"]["index"] for e in first["data"] + rest["data"]] == [0, 1, 2, 3, 4]
    assert (rest["nextAfterSeq"], rest["hasMore"]) == (5, False)
    assert first["data"][0] == core.log[run.run_id][0].to_json()


async def test_unknown_runs_and_paths_use_the_error_shape(http: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())
    for path in (
        f"/runs/{missing}",
        f"/runs/{missing}/events",
        f"/runs/{missing}/view",
        f"/runs/{'x' * 500}",
    ):
        assert_error(await http.get(path), 404, "RUN_NOT_FOUND")
    assert_error(await http.get("/nowhere"), 404, "NOT_FOUND")
    body = assert_error(await http.delete("/runs"), 405, "METHOD_NOT_ALLOWED")
    assert "GET" in body["message"]


async def test_the_view_is_the_core_projection(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    core.views[run.run_id] = {"participants": [{"id": "lead"}], "decision": {"votes": {"approve": 2}}}

    body = (await http.get(f"/runs/{run.run_id}/view")).json()

    assert body == {"runId": run.run_id, "view": core.views[run.run_id]}


@pytest.mark.parametrize("action", ["messages", "signal", "context"])
async def test_removed_write_paths_are_gone(http: httpx.AsyncClient, core: FakeCore, action: str) -> None:
    run = core.add_run()
    body = assert_error(await http.post(f"/runs/{run.run_id}/{action}", json={}), 410, "ENDPOINT_REMOVED")
    assert "observes" in body["message"]


# --- cancel ------------------------------------------------------------------------------------------


async def test_cancel_passes_the_reason_and_returns_the_run(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()

    response = await http.post(f"/runs/{run.run_id}/cancel", json={"reason": "operator"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert core.cancelled == [(run.run_id, "operator")]
    no_body = await http.post(f"/runs/{core.add_run().run_id}/cancel")
    assert no_body.status_code == 200
    assert core.cancelled[-1][1] is None


async def test_cancel_refusals_keep_their_status_and_code(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    core.cancel_refusal = CancelRefused(409, "RUN_TERMINAL", "the run already completed")

    body = assert_error(await http.post(f"/runs/{run.run_id}/cancel"), 409, "RUN_TERMINAL")
    assert body["message"] == "the run already completed"
    bad = assert_error(
        await http.post(f"/runs/{run.run_id}/cancel", json={"reason": "x", "force": True}),
        400,
        "VALIDATION_ERROR",
    )
    assert bad["details"][0]["path"] == "force"
    assert core.cancelled == []


# --- probes, metrics, the API description ------------------------------------------------------------


async def test_readyz_is_503_until_runtime_and_store_are_ready(
    http: httpx.AsyncClient, core: FakeCore
) -> None:
    assert (await http.get("/readyz")).status_code == 200
    core.runtime_ready = False
    response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "runtime": "unreachable", "store": "ok"}
    assert (await http.get("/healthz")).status_code == 200
    core.runtime_ready = True
    core.store_ready = False
    assert (await http.get("/readyz")).json()["store"] == "unavailable"


async def test_metrics_count_requests_by_route_template(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    await http.get(f"/runs/{run.run_id}")

    text = (await http.get("/metrics")).text

    assert 'pymacp_console_http_requests_total{method="GET",route="/runs/{run_id}",status="200"} 1.0' in text
    assert run.run_id not in text


async def test_security_headers_are_on_every_response(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/runs", "/nowhere", "/"):
        response = await http.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
    ui = await http.get("/")
    assert "script-src 'self'" in ui.headers["content-security-policy"]
    assert "unsafe-inline" not in ui.headers["content-security-policy"]


async def test_openapi_documents_exactly_the_routes_that_exist(http: httpx.AsyncClient) -> None:
    from starlette.routing import Route

    from pymacp.console.app import routes

    document = (await http.get("/openapi.json", headers={})).json()
    assert document["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {
        (route.path, method)
        for route in routes()
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    assert documented == served


async def test_stopping_ends_open_streams(core: FakeCore) -> None:
    run = core.add_run()
    server = ConsoleServer(replace(SETTINGS), core=core)
    await server.start()
    async with (
        httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as client,
        client.stream("GET", f"/runs/{run.run_id}/stream") as response,
    ):
        assert response.status_code == 200
        await server.stop()
        body = await response.aread()
    assert b"event: snapshot" in body
    assert core.feeds == set()


async def test_every_ui_file_is_served_with_its_type_and_the_csp(http: httpx.AsyncClient) -> None:
    from pymacp.console.routes_ui import UI_DIR

    types = {".js": "javascript", ".css": "text/css", ".html": "text/html"}
    files = sorted(path.name for path in UI_DIR.iterdir() if path.suffix in types)
    assert {"index.html", "app.js", "style.css"} <= set(files)
    for name in files:
        response = await http.get(f"/ui/{name}", headers={})
        assert response.status_code == 200, name
        assert types[Path(name).suffix] in response.headers["content-type"], name
        assert "default-src 'none'" in response.headers["content-security-policy"]
    index = await http.get("/", headers={})
    # Modules only, from this origin: nothing inline, nothing from a CDN.
    assert '<script type="module" src="/ui/app.js">' in index.text
    assert "http" not in index.text.replace("http-equiv", "")
