"""API keys, the SSE ticket cookie, and rate limiting, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from web_fake import FakeCore
from web_support import API_KEY, OTHER_KEY

from pymacp.console.auth import TICKET_COOKIE, ApiKeys
from pymacp.console.ratelimit import RateLimiter
from pymacp.console.server import ConsoleServer
from pymacp.console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(bind_port=0, api_keys=(API_KEY, OTHER_KEY), rate_limit_per_minute=0)


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


async def serve(core: FakeCore, settings: ConsoleSettings) -> AsyncIterator[httpx.AsyncClient]:
    server = ConsoleServer(settings, core=core)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        await server.stop()


@pytest.fixture
async def http(core: FakeCore) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(core, SETTINGS):
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_without_a_key_are_401_with_a_challenge(http: httpx.AsyncClient) -> None:
    response = await http.get("/runs")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="pymacp-console"'
    assert response.json()["errorCode"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {API_KEY}x", f"Bearer {API_KEY[:-1]}", "Bearer", API_KEY, f"Basic {API_KEY}", "Bearer a b"],
)
async def test_wrong_keys_are_401(http: httpx.AsyncClient, authorization: str) -> None:
    response = await http.get("/runs", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert API_KEY not in response.text
    assert response.json()["errorCode"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("key", [API_KEY, OTHER_KEY])
async def test_every_configured_key_is_accepted(http: httpx.AsyncClient, key: str) -> None:
    assert (await http.get("/runs", headers=bearer(key))).status_code == 200
    assert (await http.get("/runs", headers={"Authorization": f"bearer   {key}"})).status_code == 200


async def test_probes_metrics_ui_and_the_api_description_need_no_key(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/", "/ui/app.js", "/openapi.json"):
        assert (await http.get(path)).status_code == 200, path


async def test_every_write_needs_a_key(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    for path in ("/runs", f"/runs/{run.run_id}/cancel", "/auth/sse-ticket"):
        assert (await http.post(path, json={})).status_code == 401, path
    assert core.runs[run.run_id].status == "running"


async def test_the_sse_ticket_opens_streams_and_nothing_else(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run(status="completed")
    issued = await http.post("/auth/sse-ticket", headers=bearer(API_KEY))
    assert issued.status_code == 204
    set_cookie = issued.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/runs", "max-age=300"):
        assert attribute in set_cookie
    ticket = issued.cookies[TICKET_COOKIE]
    assert API_KEY not in ticket

    http.cookies.set(TICKET_COOKIE, ticket)
    assert (await http.get(f"/runs/{run.run_id}/stream")).status_code == 200
    async with http.stream("GET", "/runs/stream") as live_list:
        assert live_list.status_code == 200
    assert (await http.get("/runs")).status_code == 401
    assert (await http.get(f"/runs/{run.run_id}")).status_code == 401
    assert (await http.post(f"/runs/{run.run_id}/cancel")).status_code == 401


async def test_forged_or_expired_tickets_are_refused(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run(status="completed")
    keys = ApiKeys([API_KEY, OTHER_KEY])
    stranger = ApiKeys(["some-other-console-key-123"])
    for ticket in (
        keys.issue_ticket("key:abc", now=0),  # expired long ago
        stranger.issue_ticket("key:abc", now=2**40),  # signed by someone else
        "9999999999.key:abc.forged",
        "garbage",
    ):
        http.cookies.set(TICKET_COOKIE, ticket)
        response = await http.get(f"/runs/{run.run_id}/stream")
        assert response.status_code == 401, ticket


def test_a_ticket_with_non_ascii_text_is_refused_not_an_error() -> None:
    keys = ApiKeys([API_KEY])
    body = keys.issue_ticket("key:abc", now=1000).rpartition(".")[0]

    assert keys.verify_ticket(f"{body}.sïgnature", now=1001) is None


def test_a_ticket_survives_a_restart_with_the_same_keys() -> None:
    ticket = ApiKeys([API_KEY, OTHER_KEY]).issue_ticket("key:abc", now=1000)

    assert ApiKeys([OTHER_KEY, API_KEY]).verify_ticket(ticket, now=1001) == "key:abc"
    assert ApiKeys([API_KEY]).verify_ticket(ticket, now=1001) is None


async def test_without_keys_everything_is_open(core: FakeCore) -> None:
    async for client in serve(core, ConsoleSettings(bind_port=0, no_auth=True, rate_limit_per_minute=0)):
        assert (await client.get("/runs")).status_code == 200
        assert (await client.post("/auth/sse-ticket")).status_code == 204


async def test_rate_limit_answers_429_with_retry_after(core: FakeCore) -> None:
    # One request a minute after the burst: nothing refills while the test runs, however slow.
    settings = ConsoleSettings(bind_port=0, api_keys=(API_KEY,), rate_limit_per_minute=1, rate_limit_burst=3)
    async for client in serve(core, settings):
        statuses = [(await client.get("/runs", headers=bearer(API_KEY))).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/runs", headers=bearer(API_KEY))
        assert limited.status_code == 429
        assert limited.json()["errorCode"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        # Probes are never throttled, however busy the client is.
        assert [(await client.get("/healthz")).status_code for _ in range(10)] == [200] * 10
        assert (await client.get("/readyz")).status_code == 200


async def test_key_guessing_is_throttled_per_address(core: FakeCore) -> None:
    settings = ConsoleSettings(bind_port=0, api_keys=(API_KEY,), rate_limit_per_minute=1, rate_limit_burst=2)
    async for client in serve(core, settings):
        guesses = [
            (await client.get("/runs", headers=bearer(f"guess-{n:020d}"))).status_code for n in range(3)
        ]
        assert guesses == [401, 401, 429]
        # The real key has a bucket of its own.
        assert (await client.get("/runs", headers=bearer(API_KEY))).status_code == 200


def test_the_bucket_refills_at_the_configured_rate() -> None:
    limiter = RateLimiter(per_minute=60, burst=2)

    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limiter.take("b", now=0.0) == 0.0
    assert limiter.take("a", now=1.0) == 0.0
    assert limiter.take("a", now=1.0) == pytest.approx(1.0)
    assert limiter.take("a", now=100.0) == 0.0  # never more than the burst
    assert limiter.take("a", now=100.0) == 0.0
    assert limiter.take("a", now=100.0) > 0


def test_the_bucket_table_is_bounded() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, max_clients=3)
    for client in "abcd":
        limiter.take(client, now=0.0)

    assert limiter.take("a", now=0.0) == 0.0  # forgotten, so a fresh bucket
    assert limiter.take("d", now=0.0) > 0
