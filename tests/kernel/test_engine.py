"""The session engine's own rules: envelope shape, SessionStart, dedup, lifecycle, time.

These run on a dynamically registered extension mode (the passthrough), so they exercise
only what every mode shares.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Broadcast,
    Duplicate,
    EntryKind,
    Envelope,
    ErrorCode,
    EventType,
    Identity,
    Kernel,
    Limits,
    ModeDescriptor,
    PolicyDescriptor,
    Registry,
    Rejected,
    Session,
    SessionState,
    is_valid_session_id,
)
from pymacp.kernel.replay import ReplayError, replay

T0 = 1_780_000_000_000
SID = "5f0c2a4e-8b1d-4c3e-9f2a-1b2c3d4e5f60"
DEMO = ModeDescriptor(
    mode="ext.demo.v1",
    mode_version="0.1.0",
    title="Demo",
    description="test extension",
    determinism_class="structural-only",
    participant_model="peer",
    message_types=("SessionStart", "Note", "Commitment"),
)
REGISTRY = Registry(extension_modes={DEMO.mode: DEMO})
ALICE = Identity("agent://alice")
BOB = Identity("agent://bob")
OUTSIDER = Identity("agent://mallory")


def start_payload(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "intent": "test",
        "participants": ["agent://alice", "agent://bob"],
        "mode_version": "0.1.0",
        "configuration_version": "cfg-1",
        "ttl_ms": 60_000,
    }
    fields.update(overrides)
    return core_pb2.SessionStartPayload(**fields).SerializeToString()  # type: ignore[arg-type]


def env(kind: str, msg_id: str, payload: bytes = b"", **overrides: object) -> Envelope:
    base = Envelope("1.0", DEMO.mode, kind, msg_id, SID, "", T0, payload)
    return replace(base, **overrides)  # type: ignore[arg-type]


def commitment(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "commitment_id": "c1",
        "action": "demo.accepted",
        "authority_scope": "test",
        "reason": "done",
        "mode_version": "0.1.0",
        "configuration_version": "cfg-1",
        "outcome_positive": True,
    }
    fields.update(overrides)
    return core_pb2.CommitmentPayload(**fields).SerializeToString()  # type: ignore[arg-type]


def accepted(decision: object) -> Accepted:
    assert isinstance(decision, Accepted), decision
    return decision


def rejected(decision: object, code: ErrorCode) -> Rejected:
    assert isinstance(decision, Rejected), decision
    assert decision.rejection.code == code, decision.rejection
    return decision


@pytest.fixture
def kernel() -> Kernel:
    return Kernel()


@pytest.fixture
def started(kernel: Kernel) -> tuple[Session, list[object]]:
    d = accepted(kernel.decide(None, ALICE, env("SessionStart", "m0", start_payload()), T0, REGISTRY))
    return d.session, list(d.entries)


# ---------------------------------------------------------------- envelope shape


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"macp_version": "2.0"}, ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ({"message_type": ""}, ErrorCode.INVALID_ENVELOPE),
        ({"message_id": ""}, ErrorCode.INVALID_ENVELOPE),
        ({"session_id": ""}, ErrorCode.INVALID_ENVELOPE),
        ({"mode": ""}, ErrorCode.INVALID_ENVELOPE),
        ({"payload": b"x" * 1025}, ErrorCode.PAYLOAD_TOO_LARGE),
    ],
)
def test_shape_checks(overrides: dict[str, object], code: ErrorCode) -> None:
    kernel = Kernel(Limits(max_payload_bytes=1024))
    rejected(kernel.decide(None, ALICE, env("Note", "m1", **overrides), T0, REGISTRY), code)


def test_version_is_checked_before_everything_else() -> None:
    bad = env("", "", macp_version="0.9", session_id="", mode="")
    rejected(Kernel().decide(None, ALICE, bad, T0), ErrorCode.UNSUPPORTED_PROTOCOL_VERSION)


def test_sender_mismatch_is_unauthenticated(kernel: Kernel) -> None:
    spoofed = env("SessionStart", "m0", start_payload(), sender="agent://bob")
    d = rejected(kernel.decide(None, ALICE, spoofed, T0, REGISTRY), ErrorCode.UNAUTHENTICATED)
    assert "agent://bob" in d.rejection.message


def test_empty_sender_is_filled_from_identity(kernel: Kernel) -> None:
    d = accepted(kernel.decide(None, ALICE, env("SessionStart", "m0", start_payload()), T0, REGISTRY))
    assert d.entries[0].envelope.sender == "agent://alice"
    assert d.session.initiator == "agent://alice"


def test_identity_without_sender_is_unauthenticated(kernel: Kernel) -> None:
    rejected(kernel.decide(None, Identity(""), env("SessionStart", "m0"), T0), ErrorCode.UNAUTHENTICATED)


@pytest.mark.parametrize(
    "message_type", ["SessionCancel", "SessionSuspend", "SessionResume", "SessionExpire"]
)
def test_runtime_only_types_are_forbidden(
    kernel: Kernel, started: tuple[Session, list[object]], message_type: str
) -> None:
    session, _ = started
    rejected(kernel.decide(session, ALICE, env(message_type, "x"), T0, REGISTRY), ErrorCode.FORBIDDEN)


def test_implicit_accept_prefix_is_reserved(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    d = kernel.decide(session, ALICE, env("Note", "implicit-accept:h1"), T0, REGISTRY)
    rejected(d, ErrorCode.INVALID_ENVELOPE)


def test_mode_allow_list(kernel: Kernel) -> None:
    limited = Identity("agent://alice", allowed_modes=frozenset({"macp.mode.decision.v1"}))
    rejected(
        kernel.decide(None, limited, env("SessionStart", "m0", start_payload()), T0, REGISTRY),
        ErrorCode.FORBIDDEN,
    )
    signal = Envelope(
        "1.0", "", "Signal", "s1", "", "", T0, core_pb2.SignalPayload(signal_type="x").SerializeToString()
    )
    rejected(kernel.decide(None, limited, signal, T0), ErrorCode.FORBIDDEN)
    ambient_ok = Identity("agent://alice", allowed_modes=frozenset({""}))
    assert isinstance(kernel.decide(None, ambient_ok, signal, T0), Broadcast)


# ---------------------------------------------------------------- session ids


@pytest.mark.parametrize(
    ("session_id", "valid"),
    [
        ("5f0c2a4e-8b1d-4c3e-9f2a-1b2c3d4e5f60", True),  # v4
        ("01890a5d-ac96-774b-bcce-b302099a8057", True),  # v7
        ("5F0C2A4E-8B1D-4C3E-9F2A-1B2C3D4E5F60", False),  # uppercase
        ("5f0c2a4e-8b1d-1c3e-9f2a-1b2c3d4e5f60", False),  # v1
        ("5f0c2a4e-8b1d-4c3e-7f2a-1b2c3d4e5f60", False),  # wrong variant
        ("01ARZ3NDEKTSV4RRFFQ69G5FAV", True),  # ULID passes base64url
        ("abcdefghijklmnopqrstu", False),  # 21 chars
        ("abcdefghijklmnopqrstuv", True),  # 22 chars
        ("a" * 128, True),
        ("a" * 129, False),
        ("abc-def_ghi-jkl_mno-pqr-stu-vwx-yz12", True),  # 36 chars with '-', not UUID-shaped
        ("sess-1", False),
        ("", False),
        ("abcdefghijklmnopqrstuv\n", False),
        ("abcdefghijklmnop/rstuv+", False),
    ],
)
def test_session_id_rules(session_id: str, valid: bool) -> None:
    assert is_valid_session_id(session_id) is valid


def test_bad_session_id_is_rejected_on_start(kernel: Kernel) -> None:
    d = kernel.decide(
        None, ALICE, env("SessionStart", "m0", start_payload(), session_id="sess-1"), T0, REGISTRY
    )
    rejected(d, ErrorCode.INVALID_SESSION_ID)


# ---------------------------------------------------------------- SessionStart


def test_start_records_binding_and_emits_created(kernel: Kernel) -> None:
    d = accepted(
        kernel.decide(None, ALICE, env("SessionStart", "m0", start_payload(context_id="ctx")), T0, REGISTRY)
    )
    (entry,) = d.entries
    assert (entry.index, entry.ordinal, entry.kind) == (0, 1, EntryKind.CLIENT)
    assert entry.binding is not None
    assert entry.binding.policy.policy_id == "policy.default"
    assert entry.binding.mode_descriptor == DEMO
    assert d.events[0].type is EventType.CREATED
    assert d.session.state is SessionState.OPEN
    assert d.session.deadline_ms == T0 + 60_000
    assert d.session.context_id == "ctx"
    assert d.session.max_suspend_ms == Limits().default_max_suspend_ms


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"ttl_ms": 0}, "ttl_ms"),
        ({"ttl_ms": 86_400_001}, "ttl_ms"),
        ({"participants": ["agent://a", "agent://a"]}, "repeat"),
        ({"participants": ["agent://a", "  "]}, "blank"),
        ({"max_suspend_ms": -1}, "max_suspend_ms"),
        ({"mode_version": "9.9.9"}, "mode_version"),
    ],
)
def test_start_payload_checks(kernel: Kernel, overrides: dict[str, object], fragment: str) -> None:
    d = kernel.decide(None, ALICE, env("SessionStart", "m0", start_payload(**overrides)), T0, REGISTRY)
    assert fragment in rejected(d, ErrorCode.INVALID_ENVELOPE).rejection.message


def test_too_many_participants(kernel: Kernel) -> None:
    small = Kernel(Limits(max_participants=2))
    payload = start_payload(participants=["agent://a", "agent://b", "agent://c"])
    rejected(
        small.decide(None, ALICE, env("SessionStart", "m0", payload), T0, REGISTRY),
        ErrorCode.INVALID_ENVELOPE,
    )


def test_extension_start_binds_descriptor_version_when_omitted(kernel: Kernel) -> None:
    d = accepted(
        kernel.decide(None, ALICE, env("SessionStart", "m0", start_payload(mode_version="")), T0, REGISTRY)
    )
    assert d.session.mode_version == "0.1.0"


def test_undecodable_start_payload(kernel: Kernel) -> None:
    rejected(
        kernel.decide(None, ALICE, env("SessionStart", "m0", b"\xff\xff"), T0, REGISTRY),
        ErrorCode.INVALID_ENVELOPE,
    )


def test_unknown_mode(kernel: Kernel) -> None:
    d = kernel.decide(
        None, ALICE, env("SessionStart", "m0", start_payload(), mode="ext.nope.v1"), T0, REGISTRY
    )
    rejected(d, ErrorCode.MODE_NOT_SUPPORTED)


def test_identity_that_may_not_start(kernel: Kernel) -> None:
    viewer = Identity("agent://alice", can_start_sessions=False)
    rejected(
        kernel.decide(None, viewer, env("SessionStart", "m0", start_payload()), T0, REGISTRY),
        ErrorCode.FORBIDDEN,
    )


def test_policy_resolution(kernel: Kernel) -> None:
    other_mode = PolicyDescriptor("policy.test.other", "macp.mode.task.v1", "", {}, 1)
    registry = replace(REGISTRY, policies={other_mode.policy_id: other_mode})
    unknown = env("SessionStart", "m0", start_payload(policy_version="policy.test.missing"))
    rejected(kernel.decide(None, ALICE, unknown, T0, registry), ErrorCode.UNKNOWN_POLICY_VERSION)
    mismatch = env("SessionStart", "m0", start_payload(policy_version="policy.test.other"))
    rejected(kernel.decide(None, ALICE, mismatch, T0, registry), ErrorCode.INVALID_POLICY_DEFINITION)


def test_future_start_timestamp_cannot_stretch_the_ttl(kernel: Kernel) -> None:
    future = env("SessionStart", "m0", start_payload(), timestamp_unix_ms=T0 + 10 * 86_400_000)
    assert accepted(kernel.decide(None, ALICE, future, T0, REGISTRY)).session.deadline_ms == T0 + 60_000
    past = env("SessionStart", "m0", start_payload(), timestamp_unix_ms=T0 - 1000)
    assert accepted(kernel.decide(None, ALICE, past, T0, REGISTRY)).session.deadline_ms == T0 + 59_000
    unset = env("SessionStart", "m0", start_payload(), timestamp_unix_ms=0)
    assert accepted(kernel.decide(None, ALICE, unset, T0 + 5, REGISTRY)).session.deadline_ms == T0 + 60_005


def test_second_start(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    again = kernel.decide(session, ALICE, env("SessionStart", "m0", start_payload()), T0, REGISTRY)
    assert isinstance(again, Duplicate)
    other = kernel.decide(session, ALICE, env("SessionStart", "m9", start_payload()), T0, REGISTRY)
    rejected(other, ErrorCode.SESSION_ALREADY_EXISTS)


# ---------------------------------------------------------------- messages, dedup


def test_message_flow_dedup_and_resolution(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    d = accepted(kernel.decide(session, BOB, env("Note", "n1", b"hello"), T0 + 1, REGISTRY))
    assert d.entries[0].ordinal == 2 and d.entries[0].index == 1
    assert d.session.activity["agent://bob"].message_count == 1
    session = d.session
    assert isinstance(kernel.decide(session, BOB, env("Note", "n1", b"again"), T0 + 2, REGISTRY), Duplicate)
    rejected(
        kernel.decide(session, BOB, env("Commitment", "c1", commitment()), T0 + 2, REGISTRY),
        ErrorCode.FORBIDDEN,
    )
    d = accepted(kernel.decide(session, ALICE, env("Commitment", "c1", commitment()), T0 + 3, REGISTRY))
    assert d.session.state is SessionState.RESOLVED
    assert d.session.resolution == commitment()
    assert d.events[0].type is EventType.RESOLVED
    resolved = d.session
    # duplicates still acknowledge after the end; anything new is refused
    assert isinstance(kernel.decide(resolved, BOB, env("Note", "n1", b""), T0 + 4, REGISTRY), Duplicate)
    rejected(
        kernel.decide(resolved, BOB, env("Note", "n2", b""), T0 + 4, REGISTRY), ErrorCode.SESSION_NOT_OPEN
    )


def test_rejected_message_id_can_be_reused(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    rejected(kernel.decide(session, OUTSIDER, env("Note", "n1"), T0 + 1, REGISTRY), ErrorCode.FORBIDDEN)
    accepted(kernel.decide(session, BOB, env("Note", "n1"), T0 + 2, REGISTRY))


def test_unknown_session_and_cross_mode(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    rejected(kernel.decide(None, BOB, env("Note", "n1"), T0, REGISTRY), ErrorCode.SESSION_NOT_FOUND)
    rejected(
        kernel.decide(session, BOB, env("Note", "n1", mode="ext.other.v1"), T0, REGISTRY),
        ErrorCode.INVALID_ENVELOPE,
    )
    rejected(kernel.decide(session, BOB, env("Unlisted", "n1"), T0, REGISTRY), ErrorCode.INVALID_ENVELOPE)


def test_commitment_common_checks(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    bad = [
        commitment(commitment_id=" "),
        commitment(mode_version="0.2.0"),
        commitment(configuration_version="cfg-2"),
        commitment(policy_version="policy.other"),
        commitment(action="demo.rejected", outcome_positive=True),
        commitment(action="demo.accepted", outcome_positive=False),
        commitment(supersedes=core_pb2.CommitmentRef(session_id="", commitment_hash="sha256:" + "0" * 64)),
        commitment(supersedes=core_pb2.CommitmentRef(session_id="s", commitment_hash="sha256:" + "A" * 64)),
        commitment(
            supersedes=core_pb2.CommitmentRef(session_id="s", commitment_hash="sha256:" + "0" * 64 + "\n")
        ),
    ]
    for i, payload in enumerate(bad):
        rejected(
            kernel.decide(session, ALICE, env("Commitment", f"c{i}", payload), T0 + 1, REGISTRY),
            ErrorCode.INVALID_ENVELOPE,
        )
    good = commitment(
        policy_version="policy.default",
        supersedes=core_pb2.CommitmentRef(session_id="s", commitment_hash="sha256:" + "ab" * 32),
    )
    accepted(kernel.decide(session, ALICE, env("Commitment", "ok", good), T0 + 1, REGISTRY))


# ---------------------------------------------------------------- signals and progress


def test_signals(kernel: Kernel) -> None:
    good = Envelope(
        "1.0",
        "",
        "Signal",
        "s1",
        "",
        "",
        T0,
        core_pb2.SignalPayload(signal_type="status").SerializeToString(),
    )
    d = kernel.decide(None, ALICE, good, T0)
    assert isinstance(d, Broadcast) and d.envelope.sender == "agent://alice"
    blank = replace(good, payload=core_pb2.SignalPayload(signal_type=" ").SerializeToString())
    rejected(kernel.decide(None, ALICE, blank, T0), ErrorCode.INVALID_ENVELOPE)
    scoped = replace(good, session_id=SID)
    rejected(kernel.decide(None, ALICE, scoped, T0), ErrorCode.INVALID_ENVELOPE)
    rejected(kernel.decide(None, ALICE, replace(good, payload=b"\x0a\xff"), T0), ErrorCode.INVALID_ENVELOPE)


def test_progress(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    payload = core_pb2.ProgressPayload(progress_token="t", progress=0.5, total=1.0).SerializeToString()
    ambient = Envelope("1.0", "", "Progress", "p1", "", "", T0, payload)
    assert isinstance(kernel.decide(None, ALICE, ambient, T0), Broadcast)
    rejected(kernel.decide(None, ALICE, replace(ambient, session_id=SID), T0), ErrorCode.INVALID_ENVELOPE)
    scoped = replace(ambient, session_id=SID, mode=DEMO.mode)
    d = kernel.decide(session, BOB, scoped, T0)
    assert isinstance(d, Broadcast) and d.session is session
    rejected(kernel.decide(None, BOB, scoped, T0), ErrorCode.SESSION_NOT_FOUND)
    rejected(kernel.decide(session, OUTSIDER, scoped, T0), ErrorCode.FORBIDDEN)
    rejected(
        kernel.decide(session, BOB, replace(scoped, mode="ext.other.v1"), T0), ErrorCode.INVALID_ENVELOPE
    )
    cancelled = accepted(kernel.cancel(session, ALICE, "stop", T0)).session
    rejected(kernel.decide(cancelled, BOB, scoped, T0), ErrorCode.SESSION_NOT_OPEN)


# ---------------------------------------------------------------- time, suspend, resume, cancel


def test_ttl_expiry_is_recorded(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    assert kernel.advance(session, T0 + 60_000) is None  # strictly after the deadline
    assert kernel.next_deadline(session) == T0 + 60_001
    rejected(
        kernel.decide(session, BOB, env("Note", "n1"), T0 + 60_001, REGISTRY), ErrorCode.SESSION_NOT_OPEN
    )
    d = kernel.advance(session, T0 + 60_001)
    assert d is not None
    assert d.session.state is SessionState.EXPIRED
    (entry,) = d.entries
    assert (entry.kind, entry.ordinal, entry.envelope.message_type) == (
        EntryKind.INTERNAL,
        0,
        "SessionExpire",
    )
    assert d.events[0].type is EventType.EXPIRED
    assert kernel.next_deadline(d.session) is None
    assert kernel.advance(d.session, T0 + 99_999) is None


def test_suspend_banks_ttl_and_resume_restores_it(
    kernel: Kernel, started: tuple[Session, list[object]]
) -> None:
    session, history = started
    rejected(kernel.suspend(session, BOB, "no", T0 + 1), ErrorCode.FORBIDDEN)
    rejected(kernel.resume(session, ALICE, "not suspended", T0 + 1), ErrorCode.SESSION_NOT_OPEN)
    s = accepted(kernel.suspend(session, ALICE, "pause", T0 + 10_000))
    assert s.session.state is SessionState.SUSPENDED and s.events[0].type is EventType.SUSPENDED
    rejected(
        kernel.decide(s.session, BOB, env("Note", "n1"), T0 + 20_000, REGISTRY), ErrorCode.SESSION_NOT_OPEN
    )
    rejected(kernel.suspend(s.session, ALICE, "again", T0 + 20_000), ErrorCode.SESSION_NOT_OPEN)
    # the old deadline passes while suspended: nothing expires
    assert kernel.advance(s.session, T0 + 100_000) is None
    r = accepted(kernel.resume(s.session, ALICE, "go", T0 + 100_000))
    resume_payload = core_pb2.SessionResumePayload.FromString(r.entries[0].envelope.payload)
    assert resume_payload.banked_ms == 50_000  # the remaining TTL at suspend time
    assert resume_payload.resumed_by == "agent://alice"
    assert r.session.deadline_ms == T0 + 150_000
    assert r.session.suspended_total_ms == 90_000
    assert r.events[0].type is EventType.RESUMED
    history += list(s.entries) + list(r.entries)
    assert replay(history) == r.session  # type: ignore[arg-type]


def test_suspension_cap_expires(kernel: Kernel) -> None:
    capped = accepted(
        kernel.decide(
            None, ALICE, env("SessionStart", "m0", start_payload(max_suspend_ms=1000)), T0, REGISTRY
        )
    )
    assert capped.session.max_suspend_ms == 1000
    s = accepted(kernel.suspend(capped.session, ALICE, "pause", T0 + 1)).session
    assert kernel.next_deadline(s) == T0 + 1002
    assert kernel.advance(s, T0 + 1001) is None
    d = kernel.advance(s, T0 + 1002)
    assert d is not None and d.session.state is SessionState.EXPIRED


def test_suspension_cycle_cap() -> None:
    kernel = Kernel(Limits(max_suspension_cycles=2))
    d = accepted(kernel.decide(None, ALICE, env("SessionStart", "m0", start_payload()), T0, REGISTRY))
    session, history = d.session, list(d.entries)
    for cycle in range(2):
        s = accepted(kernel.suspend(session, ALICE, "p", T0 + 10 * cycle + 1))
        r = accepted(kernel.resume(s.session, ALICE, "r", T0 + 10 * cycle + 2))
        session, history = r.session, history + list(s.entries) + list(r.entries)
    assert session.state is SessionState.EXPIRED
    assert [e.envelope.message_type for e in history[-2:]] == ["SessionResume", "SessionExpire"]
    assert replay(history, kernel) == session


def test_cancel(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, history = started
    rejected(kernel.cancel(None, ALICE, "x", T0), ErrorCode.SESSION_NOT_FOUND)
    rejected(kernel.cancel(session, BOB, "x", T0), ErrorCode.FORBIDDEN)
    d = accepted(kernel.cancel(session, ALICE, "done", T0 + 5))
    assert d.session.state is SessionState.CANCELLED and d.events[0].type is EventType.CANCELLED
    payload = core_pb2.SessionCancelPayload.FromString(d.entries[0].envelope.payload)
    assert (payload.reason, payload.cancelled_by) == ("done", "agent://alice")
    again = kernel.cancel(d.session, ALICE, "again", T0 + 6)
    assert isinstance(again, Duplicate) and again.session.state is SessionState.CANCELLED
    assert replay(history + list(d.entries)) == d.session  # type: ignore[operator]


def test_cancel_suspended_session(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, _ = started
    s = accepted(kernel.suspend(session, ALICE, "p", T0 + 1)).session
    assert accepted(kernel.cancel(s, ALICE, "stop", T0 + 2)).session.state is SessionState.CANCELLED


def test_delegated_authority_may_control() -> None:
    policy = PolicyDescriptor("policy.test.any", "*", "", {"commitment": {"authority": "any_participant"}}, 1)
    registry = replace(REGISTRY, policies={policy.policy_id: policy})
    kernel = Kernel()
    start = env("SessionStart", "m0", start_payload(policy_version=policy.policy_id))
    session = accepted(kernel.decide(None, ALICE, start, T0, registry)).session
    accepted(kernel.suspend(session, BOB, "bob may", T0 + 1))
    rejected(kernel.suspend(session, OUTSIDER, "no", T0 + 1), ErrorCode.FORBIDDEN)


# ---------------------------------------------------------------- replay


def test_replay_rejects_tampered_history(kernel: Kernel, started: tuple[Session, list[object]]) -> None:
    session, history = started
    d = accepted(kernel.decide(session, BOB, env("Note", "n1", b"x"), T0 + 1, REGISTRY))
    entries = history + list(d.entries)
    assert replay(entries) == d.session  # type: ignore[arg-type]
    forged = replace(d.entries[0], envelope=replace(d.entries[0].envelope, sender="agent://mallory"))
    with pytest.raises(ReplayError, match="FORBIDDEN"):
        replay([*history, forged])  # type: ignore[list-item]
    renumbered = replace(d.entries[0], ordinal=7)
    with pytest.raises(ReplayError, match="differs"):
        replay([*history, renumbered])  # type: ignore[list-item]
    assert replay([]) is None


def test_replay_of_orphan_lifecycle_record_fails(
    kernel: Kernel, started: tuple[Session, list[object]]
) -> None:
    session, _ = started
    d = accepted(kernel.cancel(session, ALICE, "x", T0 + 1))
    with pytest.raises(ReplayError):
        replay(list(d.entries))
