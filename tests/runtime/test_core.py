"""The asyncio runtime core, in process, on the memory store with a controllable clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from macp.modes.decision.v1 import decision_pb2
from macp.modes.task.v1 import task_pb2
from macp.v1 import core_pb2, policy_pb2

from pymacp.kernel import Envelope, ErrorCode, EventType, Identity, SessionState
from pymacp.runtime.config import Settings
from pymacp.runtime.core import Refused, Runtime
from pymacp.runtime.topic import Lagged
from pymacp.storage.memory import MemoryStore
from pymacp.storage.sqlite import SqliteStore

T0 = 1_780_000_000_000
SID = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
LEAD, ALICE, BOB = Identity("agent://lead"), Identity("agent://alice"), Identity("agent://bob")
MODE = "macp.mode.decision.v1"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(clock: FakeClock) -> AsyncIterator[Runtime]:
    settings = Settings(
        memory_only=True, allow_insecure=True, stream_queue_capacity=8, session_retention_secs=10
    )
    rt = Runtime(settings, MemoryStore(), clock=clock)
    await rt.start()
    yield rt
    await rt.stop()


def env(kind: str, mid: str, payload: bytes, *, session_id: str = SID, mode: str = MODE) -> Envelope:
    return Envelope("1.0", mode, kind, mid, session_id, "", T0, payload)


def start(
    session_id: str = SID,
    ttl_ms: int = 60_000,
    participants: tuple[str, ...] = ("agent://lead", "agent://alice", "agent://bob"),
) -> Envelope:
    payload = core_pb2.SessionStartPayload(
        participants=participants, mode_version="1.0.0", configuration_version="cfg", ttl_ms=ttl_ms
    ).SerializeToString()
    return env("SessionStart", f"start-{session_id}", payload, session_id=session_id)


def proposal(mid: str, pid: str = "p1") -> Envelope:
    return env("Proposal", mid, decision_pb2.ProposalPayload(proposal_id=pid, option="o").SerializeToString())


async def test_send_acknowledges_after_the_store_has_it(runtime: Runtime) -> None:
    ack = await runtime.send(LEAD, start())
    assert ack.ok and ack.state is SessionState.OPEN and not ack.duplicate
    assert [e.envelope.message_type for e in await runtime.store.read(SID)] == ["SessionStart"]
    again = await runtime.send(LEAD, start())
    assert again.ok and again.duplicate


async def test_rejections_come_back_in_the_ack(runtime: Runtime) -> None:
    missing = await runtime.send(ALICE, proposal("m1"))
    assert not missing.ok and missing.rejection is not None
    assert missing.rejection.code is ErrorCode.SESSION_NOT_FOUND
    await runtime.send(LEAD, start())
    outsider = await runtime.send(Identity("agent://mallory"), proposal("m1"))
    assert outsider.rejection is not None and outsider.rejection.code is ErrorCode.FORBIDDEN
    assert len(await runtime.store.read(SID)) == 1


async def test_rejected_start_leaves_no_slot(runtime: Runtime) -> None:
    bad = replace(start(), payload=b"\xff")
    ack = await runtime.send(LEAD, bad)
    assert not ack.ok
    assert runtime.sessions.loaded(SID) is None
    with pytest.raises(Refused) as err:
        await runtime.get_session(LEAD, SID)
    assert err.value.rejection.code is ErrorCode.SESSION_NOT_FOUND


async def test_concurrent_duplicates_accept_exactly_once(runtime: Runtime) -> None:
    await runtime.send(LEAD, start())
    acks = await asyncio.gather(*(runtime.send(ALICE, proposal("same")) for _ in range(5)))
    assert sorted(a.duplicate for a in acks) == [False, True, True, True, True]
    assert all(a.ok for a in acks)
    assert len(await runtime.store.read(SID)) == 2


async def test_subscription_replays_then_follows_live_without_gap_or_duplicate(runtime: Runtime) -> None:
    await runtime.send(LEAD, start())
    await runtime.send(ALICE, proposal("m1"))
    feed = await runtime.subscribe(LEAD, SID, 0)
    entries = aiter(feed)
    await runtime.send(ALICE, proposal("m2", "p2"))
    seen = await anext(entries)  # the replay: what existed at subscribe time, in one batch
    assert [ordinal for ordinal, _ in seen] == [1, 2]
    seen += await anext(entries)  # then live, with no gap and no duplicate
    assert [ordinal for ordinal, _ in seen] == [1, 2, 3]
    assert [Envelope.from_bytes(raw).message_id for _, raw in seen] == ["start-" + SID, "m1", "m2"]
    await runtime.send(BOB, proposal("m3", "p3"))
    ((ordinal, raw),) = await anext(entries)
    assert (ordinal, Envelope.from_bytes(raw).message_id) == (4, "m3")
    feed.close()

    resumed = await runtime.subscribe(LEAD, SID, 2)
    assert [ordinal for ordinal, _ in await anext(aiter(resumed))] == [3, 4]
    resumed.close()


async def test_subscription_refusals(runtime: Runtime) -> None:
    with pytest.raises(Refused) as missing:
        await runtime.subscribe(LEAD, SID, 0)
    assert missing.value.rejection.code is ErrorCode.SESSION_NOT_FOUND
    await runtime.send(LEAD, start())
    with pytest.raises(Refused) as outsider:
        await runtime.subscribe(Identity("agent://mallory"), SID, 0)
    assert outsider.value.rejection.code is ErrorCode.FORBIDDEN
    observer = Identity("agent://audit", is_observer=True)
    (await runtime.subscribe(observer, SID, 0)).close()


async def test_a_lagging_subscriber_is_cut_off_without_slowing_the_session(runtime: Runtime) -> None:
    await runtime.send(LEAD, start())
    slow = runtime.live(SID)
    fast = runtime.live(SID)
    for i in range(12):  # capacity is 8
        ack = await runtime.send(ALICE, proposal(f"m{i}", f"p{i}"))
        assert ack.ok
        if not fast.closed:
            await fast.get()
    with pytest.raises(Lagged):
        await slow.get()
    assert not fast.lagged


async def test_lifecycle_events_and_watch_snapshot(runtime: Runtime, clock: FakeClock) -> None:
    await runtime.send(LEAD, start())
    snapshot, sub = runtime.watch_sessions()
    assert [s.session_id for s in snapshot] == [SID]
    clock.now += 5
    assert (await runtime.suspend(LEAD, SID, "pause")).state is SessionState.SUSPENDED
    assert (await runtime.resume(LEAD, SID, "")).state is SessionState.OPEN
    cancelled = await runtime.cancel(LEAD, SID, "stop")
    assert cancelled.ok and cancelled.state is SessionState.CANCELLED
    assert (await runtime.cancel(LEAD, SID, "again")).state is SessionState.CANCELLED
    events = [await sub.get() for _ in range(3)]
    assert [e.type for e in events if e is not None] == [
        EventType.SUSPENDED,
        EventType.RESUMED,
        EventType.CANCELLED,
    ]
    not_mine = await runtime.suspend(ALICE, SID, "not mine")
    assert not_mine.rejection is not None and not_mine.rejection.code is ErrorCode.FORBIDDEN
    ended = await runtime.suspend(LEAD, SID, "too late")
    assert ended.rejection is not None and ended.rejection.code is ErrorCode.SESSION_NOT_OPEN
    unknown = await runtime.cancel(LEAD, "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "x")
    assert unknown.rejection is not None and unknown.rejection.code is ErrorCode.SESSION_NOT_FOUND


async def test_sweeper_expires_sessions_and_emits_expired(runtime: Runtime, clock: FakeClock) -> None:
    await runtime.send(LEAD, start(ttl_ms=50))
    _, sub = runtime.watch_sessions()
    clock.now += 51
    event = await asyncio.wait_for(sub.get(), timeout=5)
    assert event is not None and event.type is EventType.EXPIRED
    session = await runtime.get_session(LEAD, SID)
    assert session.state is SessionState.EXPIRED
    assert (await runtime.store.read(SID))[-1].envelope.message_type == "SessionExpire"


async def test_retention_evicts_from_memory_but_the_log_keeps_the_session(
    runtime: Runtime, clock: FakeClock
) -> None:
    await runtime.send(LEAD, start())
    await runtime.cancel(LEAD, SID, "done")
    clock.now += 11_000
    await runtime._maintenance()
    slot = runtime.sessions.loaded(SID)
    assert slot is not None and slot.session is None  # cold: only the summary stays in memory
    assert runtime.sessions.hot() == 0
    page, _ = runtime.list_sessions(10, "")
    assert [s.session_id for s in page] == [SID]
    summary = await runtime.get_session(LEAD, SID)
    assert summary.state is SessionState.CANCELLED
    assert slot.session is None  # an ended session is read from its summary, not replayed
    feed = await runtime.subscribe(LEAD, SID, 0)  # and streamed from the log as stored
    assert [ordinal for ordinal, _ in await anext(aiter(feed))] == [1]
    feed.close()
    with pytest.raises(Refused) as outsider:
        await runtime.get_session(Identity("agent://mallory"), SID)
    assert outsider.value.rejection.code is ErrorCode.FORBIDDEN
    await runtime.what_if(
        LEAD,
        SID,
        policy_pb2.PolicyDescriptor(
            policy_id="policy.test.w", mode="*", description="", rules="{}", schema_version=1
        ),
    )
    assert slot.session is not None  # what-if needs the session itself: replayed from the log
    assert runtime.sessions.hot() == 1


async def test_max_open_sessions(runtime: Runtime) -> None:
    capped = Identity("agent://lead", max_open_sessions=1)
    assert (await runtime.send(capped, start())).ok
    second = await runtime.send(capped, start("8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"))
    assert second.rejection is not None and second.rejection.code is ErrorCode.RATE_LIMITED
    await runtime.cancel(capped, SID, "make room")
    assert (await runtime.send(capped, start("8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"))).ok


async def test_rate_limit(clock: FakeClock) -> None:
    settings = Settings(memory_only=True, allow_insecure=True, message_limit_per_minute=2)
    rt = Runtime(settings, MemoryStore(), clock=clock)
    await rt.start()
    try:
        await rt.send(LEAD, start(ttl_ms=3_600_000))
        codes = [(await rt.send(ALICE, proposal(f"m{i}", f"p{i}"))).rejection for i in range(3)]
        assert codes[0] is None and codes[1] is None
        assert codes[2] is not None and codes[2].code is ErrorCode.RATE_LIMITED
        clock.now += 60_001
        assert (await rt.send(ALICE, proposal("m9", "p9"))).ok
    finally:
        await rt.stop()


async def test_list_sessions_pages_terminate(runtime: Runtime) -> None:
    ids = [f"{i:08x}-4e5f-4a6b-8c7d-9e0f1a2b3c4d" for i in range(5)]
    for sid in ids:
        assert (await runtime.send(LEAD, start(sid))).ok
    seen: list[str] = []
    token = ""
    while True:
        page, token = runtime.list_sessions(2, token)
        seen += [s.session_id for s in page]
        if not token:
            break
    assert seen == sorted(ids)
    for bad in ("!!", "djE6", "a" * 2000, "eDp4"):
        with pytest.raises(Refused) as err:
            runtime.list_sessions(2, bad)
        assert err.value.rejection.code is ErrorCode.INVALID_REQUEST


async def test_restart_recovers_sessions_and_registries(clock: FakeClock, tmp_path: Path) -> None:
    settings = Settings(allow_insecure=True, data_dir=tmp_path)
    first = Runtime(settings, SqliteStore(tmp_path / "macp.sqlite3"), clock=clock)
    await first.start()
    admin = Identity("agent://lead", can_manage_mode_registry=True)
    problem = await first.register_policy(
        admin,
        policy_pb2.PolicyDescriptor(
            policy_id="policy.test.t", mode="*", description="d", rules="{}", schema_version=1
        ),
    )
    assert problem is None
    await first.send(LEAD, start())
    await first.send(ALICE, proposal("m1"))
    before = await first.get_session(LEAD, SID)
    await first.stop()
    second = Runtime(settings, SqliteStore(tmp_path / "macp.sqlite3"), clock=clock)
    await second.start()
    try:
        slot = second.sessions.loaded(SID)
        assert slot is not None and slot.session is None  # start-up read the summary, replayed nothing
        assert (await second.send(LEAD, start())).duplicate  # a retried start of a cold session
        again = await second.send(LEAD, replace(start(), message_id="another-start"))
        assert again.rejection is not None and again.rejection.code is ErrorCode.SESSION_ALREADY_EXISTS
        assert await second.get_session(LEAD, SID) == before
        assert slot.session is not None
        assert second.policy("policy.test.t").policy_id == "policy.test.t"
        ack = await second.send(BOB, proposal("m2", "p2"))
        assert ack.ok and ack.state is SessionState.OPEN
    finally:
        await second.stop()


async def test_strict_recovery_replays_everything_at_start(clock: FakeClock, tmp_path: Path) -> None:
    settings = Settings(allow_insecure=True, data_dir=tmp_path)
    first = Runtime(settings, SqliteStore(tmp_path / "macp.sqlite3"), clock=clock)
    await first.start()
    await first.send(LEAD, start())
    await first.stop()
    strict = Runtime(
        replace(settings, strict_recovery=True), SqliteStore(tmp_path / "macp.sqlite3"), clock=clock
    )
    await strict.start()
    try:
        slot = strict.sessions.loaded(SID)
        assert slot is not None and slot.session is not None
    finally:
        await strict.stop()


async def test_task_session_streams_and_receipts(runtime: Runtime) -> None:
    sid = "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    task_mode = "macp.mode.task.v1"
    payload = core_pb2.SessionStartPayload(
        participants=["agent://worker"], mode_version="1.0.0", configuration_version="c", ttl_ms=60_000
    ).SerializeToString()
    assert (await runtime.send(LEAD, env("SessionStart", "s", payload, session_id=sid, mode=task_mode))).ok
    worker = Identity("agent://worker")
    steps = [
        (
            LEAD,
            "TaskRequest",
            task_pb2.TaskRequestPayload(task_id="t", title="x", requested_assignee="agent://worker"),
        ),
        (worker, "TaskAccept", task_pb2.TaskAcceptPayload(task_id="t", assignee="agent://worker")),
        (
            worker,
            "TaskComplete",
            task_pb2.TaskCompletePayload(task_id="t", assignee="agent://worker", output=b"ok"),
        ),
    ]
    for i, (who, kind, body) in enumerate(steps):
        ack = await runtime.send(
            who, env(kind, f"m{i}", body.SerializeToString(), session_id=sid, mode=task_mode)
        )
        assert ack.ok, ack
    with pytest.raises(Refused) as early:
        await runtime.receipt(LEAD, sid)
    assert early.value.rejection.code is ErrorCode.RECEIPT_UNAVAILABLE
    commit = core_pb2.CommitmentPayload(
        commitment_id="c",
        action="task.completed",
        authority_scope="s",
        reason="r",
        mode_version="1.0.0",
        configuration_version="c",
        outcome_positive=True,
    ).SerializeToString()
    assert (await runtime.send(LEAD, env("Commitment", "m9", commit, session_id=sid, mode=task_mode))).ok
    first = await runtime.receipt(LEAD, sid)
    assert first == await runtime.receipt(LEAD, sid)
    assert '"macp-receipt/1"' in first
