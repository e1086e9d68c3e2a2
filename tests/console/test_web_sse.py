"""The SSE streams over real HTTP against an in-memory core: order of frames, resume points,
heartbeats, the end of a run, and the live run list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from web_fake import FakeCore
from web_support import Frame, aframes

from pymacp.console.server import ConsoleServer
from pymacp.console.settings import ConsoleSettings

TIMEOUT = 10.0
SETTINGS = ConsoleSettings(bind_port=0, no_auth=True, rate_limit_per_minute=0)


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def http(core: FakeCore) -> AsyncIterator[httpx.AsyncClient]:
    server = ConsoleServer(SETTINGS, core=core)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
            yield client
    finally:
        await server.stop()


class Reader:
    def __init__(self, frames: AsyncIterator[Frame]) -> None:
        self._frames = frames

    async def next(self) -> Frame:
        return await asyncio.wait_for(anext(self._frames), TIMEOUT)

    async def take(self, count: int) -> list[Frame]:
        return [await self.next() for _ in range(count)]

    async def rest(self) -> list[Frame]:
        """Every frame until the server closes the stream."""
        return [frame async for frame in _bounded(self._frames)]


async def _bounded(frames: AsyncIterator[Frame]) -> AsyncIterator[Frame]:
    while True:
        try:
            yield await asyncio.wait_for(anext(frames), TIMEOUT)
        except StopAsyncIteration:
            return


@asynccontextmanager
async def stream(
    http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Reader]:
    async with http.stream("GET", path, params=params, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Reader(aframes(response))


def seqs(frames: list[Frame]) -> list[int | None]:
    return [frame.id for frame in frames if frame.event == "event"]


async def test_snapshot_then_stored_then_live_events_then_end(
    http: httpx.AsyncClient, core: FakeCore
) -> None:
    run = core.add_run()
    core.views[run.run_id] = {"participants": [{"id": "lead"}]}
    stored = [core.append(run.run_id, n=n) for n in range(3)]

    async with stream(http, f"/runs/{run.run_id}/stream") as reader:
        snapshot = await reader.next()
        assert snapshot.event == "snapshot"
        assert snapshot.id is None
        assert snapshot.data["run"]["runId"] == run.run_id
        assert snapshot.data["view"] == {"participants": [{"id": "lead"}]}
        first = await reader.take(3)
        assert [(f.event, f.id) for f in first] == [("event", 1), ("event", 2), ("event", 3)]
        assert [f.data for f in first] == [e.to_json() for e in stored]

        live = core.append(run.run_id, n=3)
        frame = await reader.next()
        assert (frame.event, frame.id, frame.data) == ("event", 4, live.to_json())

        core.append(run.run_id, n=4)
        core.set_status(run.run_id, "completed")
        rest = await reader.rest()

    # No "run" frame for event 4: only a status change is announced that way.
    assert [(f.event, f.id) for f in rest] == [("event", 5), ("run", None), ("end", None)]
    assert rest[-1].data["run"]["status"] == "completed"
    assert core.feeds == set()


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_sends_only_what_follows(http: httpx.AsyncClient, core: FakeCore, how: str) -> None:
    run = core.add_run()
    for n in range(6):
        core.append(run.run_id, n=n)
    headers = {"Last-Event-ID": "4"} if how == "header" else None
    params = {"afterSeq": 4} if how == "query" else {}

    async with stream(
        http, f"/runs/{run.run_id}/stream", headers, includeSnapshot="false", **params
    ) as reader:
        frames = await reader.take(2)
        core.append(run.run_id, n=6)
        frames.append(await reader.next())

    assert [(f.event, f.id) for f in frames] == [("event", 5), ("event", 6), ("event", 7)]


async def test_last_event_id_beats_a_stale_after_seq(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run(status="completed")
    for n in range(4):
        core.append(run.run_id, n=n)

    async with stream(
        http, f"/runs/{run.run_id}/stream", {"Last-Event-ID": "3"}, afterSeq=1, includeSnapshot="false"
    ) as reader:
        frames = await reader.rest()

    assert seqs(frames) == [4]
    assert frames[-1].event == "end"


async def test_a_finished_run_sends_its_events_then_end(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    for n in range(1200):  # more than one page of stored events
        core.append(run.run_id, n=n)
    core.set_status(run.run_id, "failed")

    async with stream(http, f"/runs/{run.run_id}/stream") as reader:
        frames = await reader.rest()

    assert frames[0].event == "snapshot"
    assert seqs(frames) == list(range(1, 1201))
    assert frames[-1].event == "end"
    assert frames[-1].data["run"]["status"] == "failed"


async def test_an_idle_stream_sends_heartbeats(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()

    async with stream(
        http, f"/runs/{run.run_id}/stream", heartbeatMs=1000, includeSnapshot="false"
    ) as reader:
        beats = await reader.take(2)

    assert [f.event for f in beats] == ["heartbeat", "heartbeat"]
    assert beats[0].data["ts"] <= beats[1].data["ts"]


@pytest.mark.parametrize(
    ("headers", "params", "path"),
    [
        ({"Last-Event-ID": "abc"}, {}, "Last-Event-ID"),
        ({}, {"afterSeq": "-1"}, "afterSeq"),
        ({}, {"heartbeatMs": "10"}, "heartbeatMs"),
        ({}, {"includeSnapshot": "maybe"}, "includeSnapshot"),
        ({}, {"from": "1"}, "from"),
    ],
)
async def test_bad_stream_parameters_are_400(
    http: httpx.AsyncClient, core: FakeCore, headers: dict[str, str], params: dict[str, str], path: str
) -> None:
    run = core.add_run()
    response = await http.get(f"/runs/{run.run_id}/stream", headers=headers, params=params)
    assert response.status_code == 400
    assert response.json()["details"][0]["path"] == path
    assert core.opened_feeds == 0


async def test_the_stream_of_an_unknown_run_is_404(http: httpx.AsyncClient, core: FakeCore) -> None:
    response = await http.get("/runs/00000000-0000-4000-8000-000000000000/stream")
    assert response.status_code == 404
    assert response.json()["errorCode"] == "RUN_NOT_FOUND"


async def test_the_run_list_stream_follows_new_runs_and_status(
    http: httpx.AsyncClient, core: FakeCore
) -> None:
    first = core.add_run()

    async with stream(http, "/runs/stream") as reader:
        initial = await reader.next()
        assert initial.event == "runs"
        assert [r["runId"] for r in initial.data["data"]] == [first.run_id]

        second = core.add_run()
        frame = await reader.next()
        assert [r["runId"] for r in frame.data["data"]] == [second.run_id, first.run_id]

        core.set_status(first.run_id, "completed")
        frame = await reader.next()
        assert frame.data["data"][1]["status"] == "completed"


async def test_the_run_list_stream_applies_filters(http: httpx.AsyncClient, core: FakeCore) -> None:
    core.add_run(status="running")

    async with stream(http, "/runs/stream", status="completed") as reader:
        assert (await reader.next()).data["data"] == []
        done = core.add_run(status="completed")
        frame = await reader.next()
        assert [r["runId"] for r in frame.data["data"]] == [done.run_id]


async def test_streams_end_when_the_core_closes_its_feeds(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()

    async with stream(http, f"/runs/{run.run_id}/stream", heartbeatMs=60000) as reader:
        assert (await reader.next()).event == "snapshot"
        async with stream(http, "/runs/stream", heartbeatMs=60000) as listing:
            assert (await listing.next()).event == "runs"
            core.close_feeds()
            assert await listing.rest() == []
        assert await reader.rest() == []


async def test_head_on_a_stream_answers_at_once(http: httpx.AsyncClient, core: FakeCore) -> None:
    run = core.add_run()
    for path in (f"/runs/{run.run_id}/stream", "/runs/stream"):
        response = await http.head(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
    assert core.opened_feeds == 0
