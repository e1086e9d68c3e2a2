"""``pymacp bus`` driven by the official, unchanged ``stdiobus`` SDK (2.2.1), subprocess backend.

Each test starts the bus the way the SDK does (``--config-fd N --stdio``, or ``--config``)
through ``SubprocessOptions(binary_path=...)``, with the example echo worker as the pool.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bus_support import ECHO_ARGS, bus_binary, eventually, is_running, write_config
from stdiobus import (
    AsyncStdioBus,
    BusConfig,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    PolicyDeniedError,
    PoolConfig,
    RequestOptions,
    SubprocessOptions,
    TransportError,
)
from stdiobus import TimeoutError as BusTimeout
from stdiobus.types import AuditEvent, Identity

TIMEOUT_MS = 15_000


def echo(pool_id: str = "echo", instances: int = 1) -> PoolConfig:
    return PoolConfig(id=pool_id, command=sys.executable, args=list(ECHO_ARGS), instances=instances)


def make_bus(tmp_path: Path, *pools: PoolConfig, strict: bool = False) -> AsyncStdioBus:
    binary = bus_binary(tmp_path, *(["--strict-parity"] if strict else []))
    config = BusConfig(pools=list(pools) or [echo()])
    return AsyncStdioBus(
        config, backend="subprocess", timeout_ms=TIMEOUT_MS, subprocess=SubprocessOptions(binary_path=binary)
    )


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[AsyncStdioBus]:
    client = make_bus(tmp_path)
    await client.start()
    try:
        yield client
    finally:
        await client.stop(5)
        client.destroy()


async def test_echo_round_trip_carries_the_client_session_and_extensions(bus: AsyncStdioBus) -> None:
    options = RequestOptions(
        agent_id="agent-7",
        identity=Identity(subject_id="alice", role="admin"),
        audit=AuditEvent(event_id="ev-1", action="read"),
    )
    result = await bus.request("hello/world", {"n": 1}, options=options)
    message = result["message"]
    assert message["method"] == "hello/world"
    assert message["params"] == {"n": 1}
    assert message["sessionId"] == bus.client_session_id
    assert message["agentId"] == "agent-7"
    assert message["_ext"]["identity"]["subjectId"] == "alice"
    assert message["_ext"]["audit"]["eventId"] == "ev-1"


async def test_worker_errors_map_to_typed_sdk_errors(bus: AsyncStdioBus) -> None:
    with pytest.raises(PolicyDeniedError, match="no"):
        await bus.request("echo/fail", {"code": 7, "message": "no"})
    with pytest.raises(InternalError, match="missing"):
        await bus.request("echo/fail", {"code": -32601, "message": "missing"})


async def test_hello_is_forwarded_to_the_worker(bus: AsyncStdioBus) -> None:
    hello = await bus.hello()
    assert hello.negotiated_protocol_version == "0.1.0"
    assert bus.agent_session_id is not None and bus.agent_session_id.startswith("echo-")


async def test_session_affinity_across_two_instances(tmp_path: Path) -> None:
    client = make_bus(tmp_path, echo(instances=2))
    await client.start()
    try:
        pids: dict[str, set[int]] = {}
        for round_ in range(3):
            for session in ("s-a", "s-b", "s-c", "s-d"):
                result = await client.request("who", {"round": round_}, session_id=session)
                pids.setdefault(session, set()).add(result["pid"])
        assert all(len(seen) == 1 for seen in pids.values()), pids  # each session stays on its worker
        assert len(set().union(*pids.values())) == 2  # new sessions were spread over both instances
    finally:
        await client.stop(5)
        client.destroy()


async def test_notifications_are_routed_back_by_session(bus: AsyncStdioBus) -> None:
    subscription = bus.subscribe_notifications()
    await bus.notify("status/ping", {"seq": 1})
    notification = await asyncio.wait_for(anext(subscription), 10)
    assert notification["method"] == "echo/notified"
    assert notification["params"] == {"method": "status/ping", "params": {"seq": 1}}
    assert notification["sessionId"] == bus.client_session_id


async def test_stream_request_yields_chunks_then_the_aggregated_result(bus: AsyncStdioBus) -> None:
    chunks = ["Hel", "lo, ", "bus", "!"]
    events = [event async for event in bus.stream_request("echo/stream", {"chunks": chunks})]
    assert [e.text for e in events if e.type == "chunk"] == chunks
    assert events[-1].type == "result"
    assert events[-1].result == {"chunks": 4, "text": "Hello, bus!"}


async def test_twenty_concurrent_requests_all_resolve(tmp_path: Path) -> None:
    client = make_bus(tmp_path, echo(instances=2))
    await client.start()
    try:
        results = await asyncio.gather(
            *(client.request("n", {"i": i}, session_id=f"s{i}") for i in range(20))
        )
        assert [r["message"]["params"]["i"] for r in results] == list(range(20))
        assert len({r["pid"] for r in results}) == 2
    finally:
        await client.stop(5)
        client.destroy()


async def test_a_one_mebibyte_request_arrives_intact(bus: AsyncStdioBus) -> None:
    blob = "".join(chr(0x41 + (i * 7) % 26) for i in range(2**20))
    result = await bus.request("echo/raw", {"blob": blob, "tail": "é✓"})
    raw = result["raw"]
    assert json.loads(raw)["params"] == {"blob": blob, "tail": "é✓"}
    # and the bus still serves small requests afterwards
    assert (await bus.request("after"))["message"]["method"] == "after"


async def test_a_worker_crash_fails_its_request_then_the_pool_recovers(bus: AsyncStdioBus) -> None:
    before = (await bus.request("who"))["pid"]
    began = time.monotonic()
    with pytest.raises(TransportError, match="exited"):
        await bus.request("echo/crash", {"code": 3})
    assert time.monotonic() - began < TIMEOUT_MS / 1000  # an error reply, not the SDK's timeout
    after = (await bus.request("who"))["pid"]
    assert after != before


async def test_strict_parity_keeps_the_kernels_silence_on_a_crash(tmp_path: Path) -> None:
    client = make_bus(tmp_path, strict=True)
    await client.start()
    try:
        with pytest.raises(BusTimeout):
            await client.request("echo/crash", timeout_ms=1500)
        await client.request("who")  # the restarted worker answers
    finally:
        await client.stop(5)
        client.destroy()


async def test_two_pools_need_a_pool_field(tmp_path: Path) -> None:
    client = make_bus(tmp_path, echo("alpha"), echo("beta"))
    answers: list[dict[str, Any]] = []
    client.on_message(lambda raw: answers.append(json.loads(raw)))
    await client.start()
    try:
        with pytest.raises(InvalidArgumentError, match="several pools"):
            await client.request("no-pool")
        for pool in ("alpha", "beta"):
            message = {"jsonrpc": "2.0", "id": f"raw-{pool}", "method": "who", "pool": pool}
            assert client.send(json.dumps(message))
        await eventually(lambda: len(answers) >= 3, what="answers from both pools")
        routed = {a["id"]: a["result"]["message"]["pool"] for a in answers if "result" in a}
        assert routed == {"raw-alpha": "alpha", "raw-beta": "beta"}
    finally:
        await client.stop(5)
        client.destroy()


async def test_stop_takes_under_a_second_and_leaves_no_worker(tmp_path: Path) -> None:
    client = make_bus(tmp_path, echo(instances=2))
    await client.start()
    pids = {(await client.request("who", session_id=f"s{i}"))["pid"] for i in range(2)}
    began = time.monotonic()
    await client.stop(10)
    elapsed = time.monotonic() - began
    client.destroy()
    assert elapsed < 1.0, f"stop() took {elapsed:.2f}s"
    assert len(pids) == 2
    await eventually(lambda: not any(is_running(pid) for pid in pids), what="workers to exit")


async def test_destroy_kills_the_bus_and_no_worker_survives_it(tmp_path: Path) -> None:
    client = make_bus(tmp_path, echo(instances=2))
    await client.start()
    pids = {(await client.request("who", session_id=f"s{i}"))["pid"] for i in range(2)}
    assert all(is_running(pid) for pid in pids)
    client.destroy()  # SIGKILL: the bus gets no chance to clean up
    await eventually(lambda: not any(is_running(pid) for pid in pids), what="orphaned workers to die")


async def test_the_config_path_variant_works(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"id": "echo", "command": sys.executable, "args": ECHO_ARGS, "instances": 1}
    )
    client = AsyncStdioBus(
        config_path=str(config),
        backend="subprocess",
        timeout_ms=TIMEOUT_MS,
        subprocess=SubprocessOptions(binary_path=bus_binary(tmp_path)),
    )
    await client.start()
    try:
        assert (await client.request("via-file"))["message"]["method"] == "via-file"
    finally:
        await client.stop(5)
        client.destroy()


async def test_a_config_error_ends_the_bus_before_any_request(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"id": "zero", "command": "true", "instances": 0})
    client = AsyncStdioBus(
        config_path=str(config),
        backend="subprocess",
        subprocess=SubprocessOptions(binary_path=bus_binary(tmp_path)),
    )
    try:
        # The SDK's start check reads Popen.returncode without polling, so it may miss the
        # exit; either way the bus must be gone (tests/bus/test_bus_cli.py checks the message).
        await client.start()
    except TransportError as exc:
        assert "at least 1 instance" in str(exc)
    await eventually(lambda: not client.is_running(), what="the SDK to see the bus exit")
    with pytest.raises(InvalidStateError):
        await client.request("never")
    client.destroy()


async def test_a_worker_request_is_answered_through_its_session(bus: AsyncStdioBus) -> None:
    asks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    bus.on_message(lambda raw: asks.put_nowait(json.loads(raw)) if '"client/confirm"' in raw else None)
    answer = asyncio.ensure_future(bus.request("echo/ask", {"q": "proceed?"}))
    ask = await asyncio.wait_for(asks.get(), 10)
    assert ask["sessionId"] == bus.client_session_id and ask["params"] == {"q": "proceed?"}
    reply = {"jsonrpc": "2.0", "id": ask["id"], "result": {"ok": True}, "sessionId": bus.client_session_id}
    assert bus.send(json.dumps(reply))
    assert (await asyncio.wait_for(answer, 10))["answer"] == {"ok": True}
