"""Crash safety: ``kill -9`` a loaded ``pymacp serve`` on SQLite, restart it, audit every session.

Several client threads each drive decision sessions one after another (SessionStart, a
run of Proposals, then a Commitment), one envelope at a time, recording every envelope
they send and how many were acknowledged. The runtime is killed with SIGKILL while they
are sending and restarted on the same data directory. The promise under test is "an ack
means durable": every acknowledged envelope must be back, in order, and nothing may be
there that the client did not send. At most the one envelope in flight at the kill may
or may not have been stored; re-sending it must then be idempotent.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from macp.v1 import core_pb2, envelope_pb2

import wire_support as wire
from runtime_process import RuntimeProcess
from wire_support import DECISION, Stub, bearer

WORKERS = 6
LOAD_SECONDS = 2.5
MAX_PROPOSALS = 12
CHECK_EVERY_ORDINAL = 8  # of these many sessions, every after_sequence is checked


@dataclass
class Driven:
    """One session as a client thread drove it: what it sent, and how much of it was acked."""

    session_id: str
    sender: str
    planned: int
    sent: list[envelope_pb2.Envelope] = field(default_factory=list)
    acked: int = 0

    @property
    def in_flight(self) -> envelope_pb2.Envelope | None:
        """The envelope whose Send the kill interrupted (sent, never acked), if any."""
        return self.sent[self.acked] if len(self.sent) > self.acked else None


@dataclass
class Load:
    sessions: list[Driven] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def session_script(session_id: str, sender: str, proposals: int) -> list[envelope_pb2.Envelope]:
    return [
        wire.session_start(DECISION, session_id, sender, [sender]),
        *(wire.proposal(session_id, sender, f"p{i}", option=f"option {i}") for i in range(proposals)),
        wire.commitment(DECISION, session_id, sender),
    ]


def drive(target: str, worker: int, load: Load) -> None:
    """Run sessions until the runtime stops answering."""
    sender = f"agent://load-{worker}"
    rng = random.Random(worker)
    with grpc.insecure_channel(target) as channel:
        stub = wire.stub_for(channel)
        while True:
            session_id = wire.new_id()
            script = session_script(session_id, sender, rng.randint(1, MAX_PROPOSALS))
            driven = Driven(session_id, sender, len(script))
            with load.lock:
                load.sessions.append(driven)
            for env in script:
                driven.sent.append(env)
                try:
                    response = stub.Send(
                        core_pb2.SendRequest(envelope=env), metadata=bearer(sender), timeout=10
                    )
                except grpc.RpcError:
                    return  # the runtime is gone
                if not response.ack.ok:
                    load.problems.append(f"{env.message_type} refused before the kill: {response.ack.error}")
                    return
                driven.acked += 1


def history_ids(stub: Stub, driven: Driven, after: int = 0) -> list[str]:
    history = wire.read_history(stub, driven.session_id, bearer(driven.sender), after_sequence=after)
    assert history.errors == [], history.errors
    return history.message_ids


def audit(stub: Stub, driven: Driven, check_every_ordinal: bool) -> None:
    where = f"session {driven.session_id} ({driven.acked} acked of {len(driven.sent)} sent)"
    try:
        metadata = wire.get_session(stub, driven.session_id, bearer(driven.sender))
    except grpc.RpcError as err:
        # Only a session whose SessionStart was never acknowledged may be missing.
        assert driven.acked == 0, f"{where}: GetSession failed: {err}"
        assert wire.status_of(err) == grpc.StatusCode.NOT_FOUND, f"{where}: {err}"
        return

    history = wire.read_history(stub, driven.session_id, bearer(driven.sender))
    assert history.errors == [], f"{where}: {history.errors}"
    replayed = history.envelopes
    n = len(replayed)
    assert driven.acked <= n <= len(driven.sent), f"{where}: replay holds {n} envelopes"
    expected = driven.sent[:n]
    assert [e.message_id for e in replayed] == [e.message_id for e in expected], f"{where}: order or content"
    assert [e.payload for e in replayed] == [e.payload for e in expected], f"{where}: payloads differ"
    assert {e.sender for e in replayed} == {driven.sender}

    resolved = any(e.message_type == "Commitment" for e in replayed)
    wanted_state = envelope_pb2.SESSION_STATE_RESOLVED if resolved else envelope_pb2.SESSION_STATE_OPEN
    assert metadata.state == wanted_state, f"{where}: state {metadata.state}"

    # Ordinals are contiguous: subscribing after k replays exactly the envelopes after the k-th.
    assert history_ids(stub, driven, after=n) == []
    checked = range(n) if check_every_ordinal else {0, n // 2, n - 1}
    ids = [e.message_id for e in replayed]
    for k in sorted(checked):
        assert history_ids(stub, driven, after=k) == ids[k:], f"{where}: after_sequence={k}"


def test_acknowledged_envelopes_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runtime = RuntimeProcess(data_dir, wire.NO_RATE_LIMITS)
    runtime.start()
    load = Load()
    workers = [
        threading.Thread(target=drive, args=(runtime.target, w, load), daemon=True) for w in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    time.sleep(LOAD_SECONDS)
    runtime.kill()
    for worker in workers:
        worker.join(15)
    assert not any(w.is_alive() for w in workers), "client threads did not notice the kill"
    assert runtime.proc is not None
    assert runtime.proc.returncode == -9
    assert load.problems == []

    acked = sum(d.acked for d in load.sessions)
    assert acked >= 200, f"only {acked} envelopes were acknowledged; the load did not run"
    assert sum(d.acked < d.planned for d in load.sessions) >= 1, (
        "the kill must land in the middle of sessions"
    )

    restarted = RuntimeProcess(data_dir, wire.NO_RATE_LIMITS)
    restarted.start()
    try:
        recovered = re.search(r"recovered (\d+) sessions \((\d+) skipped\)", restarted.log())
        assert recovered is not None, restarted.log()
        assert recovered.group(2) == "0", "no session may fail to replay"
        assert int(recovered.group(1)) >= sum(1 for d in load.sessions if d.acked > 0)

        with grpc.insecure_channel(restarted.target) as channel:
            stub = wire.stub_for(channel)
            for number, driven in enumerate(load.sessions):
                audit(stub, driven, check_every_ordinal=number < CHECK_EVERY_ORDINAL)
            retry_interrupted_sends(stub, load)
    finally:
        restarted.stop()


def retry_interrupted_sends(stub: Stub, load: Load) -> None:
    """A client retrying the envelope the crash interrupted gets it stored exactly once."""
    for driven in load.sessions:
        env = driven.in_flight
        if env is None:
            continue
        outcome = wire.send(stub, env, bearer(driven.sender))
        assert outcome.ok, (
            f"retrying {env.message_type} of {driven.session_id}: {outcome.code} {outcome.message}"
        )
        ids = history_ids(stub, driven)
        assert ids == [e.message_id for e in driven.sent], f"session {driven.session_id} after the retry"


def test_recovered_sessions_keep_deduplicating_and_accepting(tmp_path: Path) -> None:
    """After an unclean stop, a recovered open session knows its message ids and takes new envelopes."""
    data_dir = tmp_path / "data"
    runtime = RuntimeProcess(data_dir, wire.NO_RATE_LIMITS)
    runtime.start()
    sender = "agent://survivor"
    session_id = wire.new_id()
    script = session_script(session_id, sender, 3)[:-1]  # left open: no Commitment
    with grpc.insecure_channel(runtime.target) as channel:
        stub = wire.stub_for(channel)
        for env in script:
            assert wire.send(stub, env, bearer(sender)).ok
    runtime.kill()

    restarted = RuntimeProcess(data_dir, wire.NO_RATE_LIMITS)
    restarted.start()
    try:
        with grpc.insecure_channel(restarted.target) as channel:
            stub = wire.stub_for(channel)
            again = wire.send(stub, script[-1], bearer(sender))
            assert again.ok and again.ack is not None and again.ack.duplicate
            clash = wire.send(stub, wire.proposal(session_id, sender, "p0"), bearer(sender))
            assert (clash.ok, clash.code) == (False, "INVALID_ENVELOPE")  # p0 is already on record
            fresh = wire.proposal(session_id, sender, "p-after-restart")
            assert wire.send(stub, fresh, bearer(sender)).ok
            commit = wire.commitment(DECISION, session_id, sender)
            outcome = wire.send(stub, commit, bearer(sender))
            assert outcome.ok and outcome.ack is not None
            assert outcome.ack.session_state == envelope_pb2.SESSION_STATE_RESOLVED
            ids = wire.read_history(stub, session_id, bearer(sender)).message_ids
            assert ids == [e.message_id for e in [*script, fresh, commit]]
    finally:
        restarted.stop()
