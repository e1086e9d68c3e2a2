"""Property-based tests of the kernel's contract.

- Any sequence of envelopes, lifecycle calls and clock jumps, in any mode, yields a
  history that replays into exactly the same session.
- A rejected envelope leaves no trace: running the same sequence with every rejected
  envelope removed gives the same decisions and the same final session.
- Arbitrary bytes in any envelope field never raise: the answer is a decision, and a
  refusal carries a registry code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Broadcast,
    Decision,
    Duplicate,
    Envelope,
    ErrorCode,
    HistoryEntry,
    Identity,
    Kernel,
    PolicyDescriptor,
    Registry,
    Rejected,
    Session,
    catalog,
)
from pymacp.kernel.replay import replay

T0 = 1_780_000_000_000
SID = "0b8f7a3c-2d4e-4f6a-8b9c-0d1e2f3a4b5c"
INITIATOR = "agent://coordinator"
PARTICIPANTS = ("agent://a", "agent://b", "agent://c")
SENDERS = (INITIATOR, *PARTICIPANTS, "agent://outsider")

POLICIES = {
    p.policy_id: p
    for p in (
        PolicyDescriptor(
            "policy.prop.v3major", "macp.mode.decision.v1", "", {"voting": {"algorithm": "majority"}}, 3
        ),
        PolicyDescriptor(
            "policy.prop.v2veto",
            "macp.mode.decision.v1",
            "",
            {
                "voting": {"algorithm": "plurality"},
                "objection_handling": {
                    "critical_severity_vetoes": True,
                    "critical_objection_action": "finalize_decline",
                },
                "commitment": {"authority": "any_participant", "require_vote_quorum": True},
            },
            2,
        ),
        PolicyDescriptor(
            "policy.prop.quorum", "macp.mode.quorum.v1", "", {"threshold": {"type": "n_of_m", "value": 2}}, 1
        ),
        PolicyDescriptor(
            "policy.prop.handoff",
            "macp.mode.handoff.v1",
            "",
            {"acceptance": {"implicit_accept_timeout_ms": 50}},
            1,
        ),
        PolicyDescriptor(
            "policy.prop.task",
            "macp.mode.task.v1",
            "",
            {"assignment": {"allow_reassignment_on_reject": True}, "completion": {"require_output": True}},
            1,
        ),
        PolicyDescriptor(
            "policy.prop.proposal", "macp.mode.proposal.v1", "", {"counter_proposal": {"max_rounds": 1}}, 1
        ),
    )
}
REGISTRY = Registry(policies=POLICIES)
MODES = sorted(catalog.BUILTIN_SPECS)

VOCABULARY: dict[str, list[Any]] = {
    "vote": ["APPROVE", "REJECT", "ABSTAIN", "approve", "MAYBE"],
    "recommendation": ["APPROVE", "REVIEW", "BLOCK", "REJECT", "meh"],
    "severity": ["low", "medium", "high", "critical", "", "weird"],
    "action": [
        "decision.selected",
        "decision.rejected",
        "proposal.accepted",
        "proposal.rejected",
        "task.completed",
        "task.failed",
        "handoff.accepted",
        "handoff.declined",
        "quorum.approved",
        "quorum.rejected",
        "multi_round.converged",
        "custom.thing",
    ],
    "mode_version": ["1.0.0", "1.0.0", "2.0.0"],
    "configuration_version": ["cfg-1", "cfg-1", "cfg-2"],
    "policy_version": ["", "policy.default"],
    "value": ["x", "y", ""],
}
ID_FIELDS = {"proposal_id", "supersedes_proposal_id", "task_id", "handoff_id", "request_id"}
PARTY_FIELDS = {"requested_assignee", "assignee", "target_participant", "accepted_by", "declined_by"}


def _field(field: Any) -> st.SearchStrategy[Any]:
    name = field.name
    if field.type == FieldDescriptor.TYPE_STRING:
        if name in VOCABULARY:
            choices = VOCABULARY[name]
        elif name in ID_FIELDS:
            choices = ["p1", "p2", "", "h1", "t1", "r1"]
        elif name in PARTY_FIELDS:
            choices = ["", *SENDERS]
        else:
            choices = ["x", " ", "reason"]
        base: st.SearchStrategy[Any] = st.sampled_from(choices)
    elif field.type == FieldDescriptor.TYPE_BOOL:
        base = st.booleans()
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        base = st.sampled_from([0.0, 0.5, 0.9, 1.0, 1.5, -0.1])
    elif field.type == FieldDescriptor.TYPE_BYTES:
        base = st.sampled_from([b"", b"out"])
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        return st.none()
    else:
        base = st.sampled_from([0, 1, 2, 3, 5])
    if field.is_repeated:
        return st.lists(base, max_size=2)
    return base


@st.composite
def payload_for(draw: st.DrawFn, cls: Any) -> bytes:
    if not hasattr(cls, "DESCRIPTOR"):
        return draw(st.sampled_from([b"", b'{"value": "x"}', b"\n\x01x", b"raw"]))
    msg = cls()
    for field in cls.DESCRIPTOR.fields:
        value = draw(_field(field))
        if value is None:
            continue
        if field.is_repeated:
            getattr(msg, field.name).extend(value)
        else:
            setattr(msg, field.name, value)
    if cls is core_pb2.CommitmentPayload and draw(st.booleans()):
        msg.action = draw(st.sampled_from(VOCABULARY["action"]))
        msg.outcome_positive = not msg.action.endswith(("rejected", "failed", "declined"))
        msg.commitment_id, msg.authority_scope, msg.reason = "c", "scope", "because"
        msg.mode_version, msg.configuration_version = "1.0.0", "cfg-1"
    data: bytes = msg.SerializeToString()
    return data


@dataclass(frozen=True)
class Op:
    kind: str  # send | suspend | resume | cancel | tick
    sender: str = ""
    message_type: str = ""
    message_id: str = ""
    payload: bytes = b""
    dt: int = 1


@st.composite
def scenario(draw: st.DrawFn) -> tuple[str, str, list[Op]]:
    mode = draw(st.sampled_from(MODES))
    spec = catalog.BUILTIN_SPECS[mode]
    fitting = [pid for pid, p in POLICIES.items() if p.mode == mode]
    policy = draw(st.sampled_from(["", *fitting]))
    message_types = [t for t in spec.descriptor.message_types if t != "SessionStart"]
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["send"] * 8 + ["suspend", "resume", "cancel", "tick"]))
        if kind == "send":
            message_type = draw(st.sampled_from(message_types))
            rule = spec.rules.get(message_type)
            payload = draw(payload_for(rule.payload if rule else bytes))
            ops.append(
                Op(
                    "send",
                    draw(st.sampled_from(SENDERS)),
                    message_type,
                    f"m{draw(st.integers(0, 30))}",
                    payload,
                    draw(st.sampled_from([1, 1, 10, 40, 70_000])),
                )
            )
        else:
            ops.append(
                Op(
                    kind,
                    draw(st.sampled_from([INITIATOR, "agent://a"])),
                    dt=draw(st.sampled_from([1, 30, 100])),
                )
            )
    return mode, policy, ops


def start(kernel: Kernel, mode: str, policy: str) -> Accepted:
    participants = (INITIATOR, *PARTICIPANTS) if mode == "macp.mode.handoff.v1" else PARTICIPANTS
    payload = core_pb2.SessionStartPayload(
        participants=participants,
        mode_version="1.0.0",
        configuration_version="cfg-1",
        policy_version=policy,
        ttl_ms=60_000,
    ).SerializeToString()
    decision = kernel.decide(
        None,
        Identity(INITIATOR),
        Envelope("1.0", mode, "SessionStart", "m-start", SID, "", T0, payload),
        T0,
        REGISTRY,
    )
    assert isinstance(decision, Accepted), decision
    return decision


def run(
    kernel: Kernel, mode: str, policy: str, ops: list[Op]
) -> tuple[Session, list[HistoryEntry], list[tuple[int, Decision]]]:
    first = start(kernel, mode, policy)
    session, history = first.session, list(first.entries)
    now = T0
    decisions: list[tuple[int, Decision]] = []
    for i, op in enumerate(ops):
        now += op.dt
        due = kernel.advance(session, now)
        if due is not None:
            session, history = due.session, history + list(due.entries)
        caller = Identity(op.sender)
        if op.kind == "send":
            env = Envelope("1.0", mode, op.message_type, op.message_id, SID, "", now, op.payload)
            decision: Decision = kernel.decide(session, caller, env, now, REGISTRY)
        elif op.kind == "suspend":
            decision = kernel.suspend(session, caller, "pause", now)
        elif op.kind == "resume":
            decision = kernel.resume(session, caller, "go", now)
        elif op.kind == "cancel":
            decision = kernel.cancel(session, caller, "stop", now)
        else:
            continue
        decisions.append((i, decision))
        if isinstance(decision, Accepted):
            session, history = decision.session, history + list(decision.entries)
    return session, history, decisions


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_history_replays_to_the_same_session(case: tuple[str, str, list[Op]]) -> None:
    kernel = Kernel()
    session, history, _ = run(kernel, *case)
    assert [e.index for e in history] == list(range(len(history)))
    ordinals = [e.ordinal for e in history if e.streamable]
    assert ordinals == list(range(1, len(ordinals) + 1))
    assert replay(history, kernel) == session


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_rejected_messages_leave_no_trace(case: tuple[str, str, list[Op]]) -> None:
    mode, policy, ops = case
    kernel = Kernel()
    session, history, decisions = run(kernel, mode, policy, ops)
    refused = {i for i, d in decisions if isinstance(d, Rejected)}
    kept = [op if i not in refused else Op("tick", dt=op.dt) for i, op in enumerate(ops)]
    session2, history2, decisions2 = run(kernel, mode, policy, kept)
    assert session2 == session
    assert history2 == history
    survivors = [(i, type(d)) for i, d in decisions if i not in refused]
    assert survivors == [(i, type(d)) for i, d in decisions2]


REGISTRY_CODES = {code.value for code in ErrorCode}
text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "1.0", SID, "Signal", "Progress", "SessionStart", "Commitment"]),
)


@st.composite
def arbitrary_envelope(draw: st.DrawFn) -> Envelope:
    mode = draw(st.one_of(st.sampled_from(["", *MODES]), st.text(max_size=20)))
    spec = catalog.BUILTIN_SPECS.get(mode)
    message_types = list(spec.descriptor.message_types) if spec else []
    return Envelope(
        macp_version=draw(st.sampled_from(["1.0", "1.0", "1.0", ""]) | st.text(max_size=5)),
        mode=mode,
        message_type=draw(
            st.sampled_from(["SessionStart", "Signal", "Progress", "Commitment", *message_types]) | text
        ),
        message_id=draw(text),
        session_id=draw(st.sampled_from([SID, "", SID.upper()]) | st.text(max_size=40)),
        sender=draw(st.sampled_from(["", INITIATOR, "agent://a"]) | st.text(max_size=10)),
        timestamp_unix_ms=draw(st.integers(-(2**63), 2**63 - 1)),
        payload=draw(st.binary(max_size=200)),
    )


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_envelope(), st.sampled_from(MODES), st.booleans(), st.integers(-(2**62), 2**62))
def test_arbitrary_envelopes_never_raise(env: Envelope, mode: str, with_session: bool, now: int) -> None:
    kernel = Kernel()
    session = start(kernel, mode, "").session if with_session else None
    decision = kernel.decide(session, Identity(env.sender or "agent://a"), env, now, REGISTRY)
    assert isinstance(decision, Accepted | Duplicate | Broadcast | Rejected)
    if isinstance(decision, Rejected):
        assert decision.rejection.code in REGISTRY_CODES
        assert decision.rejection.message
