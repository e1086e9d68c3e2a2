"""Handoff mode rules and the implicit accept, driven through the public kernel API."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from macp.modes.handoff.v1 import handoff_pb2
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Decision,
    EntryKind,
    Envelope,
    ErrorCode,
    HistoryEntry,
    Identity,
    Kernel,
    PolicyDescriptor,
    Registry,
    Rejected,
    Rejection,
    Session,
    SessionState,
    catalog,
)
from pymacp.kernel.policy.registration import register
from pymacp.kernel.replay import replay

MODE = "macp.mode.handoff.v1"
SID = "7b2e4c6a-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
T0 = 1_780_000_000_000
KERNEL = Kernel()
OWNER = "agent://owner"
TARGET = "agent://target"
OTHER = "agent://other"
OUTSIDER = "agent://mallory"


class Run:
    """One handoff session: send messages, let time pass, keep the accepted history."""

    def __init__(self, participants: list[str] | None = None, *, rules: dict[str, Any] | None = None) -> None:
        policies: dict[str, PolicyDescriptor] = {}
        policy_version = ""
        if rules is not None:
            result = register(policies, PolicyDescriptor("test.handoff", MODE, "test", rules, 3), T0)
            assert isinstance(result, dict)
            policies, policy_version = result, "test.handoff"
        self.registry = Registry(policies=policies)
        self.now = T0
        self.count = 0
        start = core_pb2.SessionStartPayload(
            participants=participants or [OWNER, TARGET, OTHER],
            mode_version="1.0.0",
            configuration_version="cfg-1",
            policy_version=policy_version,
            ttl_ms=60_000,
        )
        env = Envelope("1.0", MODE, "SessionStart", "m0", SID, OWNER, T0, start.SerializeToString())
        decision = KERNEL.decide(None, Identity(OWNER), env, T0, self.registry)
        assert isinstance(decision, Accepted), decision
        self.session: Session = decision.session
        self.history: list[HistoryEntry] = list(decision.entries)

    def adopt(self, decision: Decision) -> None:
        assert isinstance(decision, Accepted), decision
        self.session = decision.session
        self.history.extend(decision.entries)

    def send(
        self, sender: str, message_type: str, payload: Message | bytes, *, at: int | None = None
    ) -> Decision:
        self.now = at if at is not None else self.now + 1
        self.count += 1
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        env = Envelope("1.0", MODE, message_type, f"m{self.count}", SID, sender, self.now, data)
        decision = KERNEL.decide(self.session, Identity(sender), env, self.now, self.registry)
        if isinstance(decision, Accepted):
            self.adopt(decision)
        return decision

    def ok(self, sender: str, message_type: str, payload: Message | bytes, *, at: int | None = None) -> None:
        decision = self.send(sender, message_type, payload, at=at)
        assert isinstance(decision, Accepted), decision

    def refused(self, sender: str, message_type: str, payload: Message | bytes, code: ErrorCode) -> Rejection:
        before = self.session
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Rejected), decision
        assert decision.rejection.code == code, decision.rejection
        assert self.session is before
        return decision.rejection

    @property
    def offers(self) -> dict[str, Any]:
        offers: dict[str, Any] = self.projection["offers"]
        return offers

    @property
    def projection(self) -> dict[str, Any]:
        return catalog.spec_for(self.session.mode_descriptor).project(self.session.mode_state)


def offer(handoff_id: str = "h1", target: str = TARGET) -> handoff_pb2.HandoffOfferPayload:
    return handoff_pb2.HandoffOfferPayload(
        handoff_id=handoff_id, target_participant=target, scope="s", reason="r"
    )


def context(handoff_id: str = "h1", text: bytes = b"notes") -> handoff_pb2.HandoffContextPayload:
    return handoff_pb2.HandoffContextPayload(handoff_id=handoff_id, content_type="text/plain", context=text)


def accept(handoff_id: str = "h1", by: str = "", implicit: bool = False) -> handoff_pb2.HandoffAcceptPayload:
    return handoff_pb2.HandoffAcceptPayload(
        handoff_id=handoff_id, accepted_by=by, reason="ok", implicit=implicit
    )


def decline(handoff_id: str = "h1", by: str = "") -> handoff_pb2.HandoffDeclinePayload:
    return handoff_pb2.HandoffDeclinePayload(handoff_id=handoff_id, declined_by=by, reason="no")


def commitment(positive: bool = True, **fields: Any) -> core_pb2.CommitmentPayload:
    values: dict[str, Any] = {
        "commitment_id": "c1",
        "action": "handoff.accepted" if positive else "handoff.declined",
        "authority_scope": "test",
        "reason": "done",
        "mode_version": "1.0.0",
        "configuration_version": "cfg-1",
        "outcome_positive": positive,
    }
    values.update(fields)
    return core_pb2.CommitmentPayload(**values)


# ---------------------------------------------------------------- start
def _start(participants: list[str]) -> Decision:
    start = core_pb2.SessionStartPayload(
        participants=participants, mode_version="1.0.0", configuration_version="cfg-1", ttl_ms=1000
    )
    env = Envelope("1.0", MODE, "SessionStart", "m0", SID, OWNER, T0, start.SerializeToString())
    return KERNEL.decide(None, Identity(OWNER), env, T0)


def test_start_needs_two_participants_including_the_owner() -> None:
    for participants in ([OWNER], [TARGET, OTHER]):
        decision = _start(participants)
        assert isinstance(decision, Rejected)
        assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE
    assert isinstance(_start([OWNER, TARGET]), Accepted)


# ---------------------------------------------------------------- happy path
def test_offer_context_accept_commit() -> None:
    run = Run()
    assert run.projection == {"offers": {}, "contexts": {}}
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(OWNER, "HandoffContext", context())
    run.ok(TARGET, "HandoffAccept", accept(by=TARGET))
    run.ok(OWNER, "HandoffContext", context(text=b"late"))  # late context is allowed
    run.ok(OWNER, "Commitment", commitment())
    assert run.session.state is SessionState.RESOLVED
    assert run.offers == {
        "h1": {
            "handoff_id": "h1",
            "target_participant": TARGET,
            "scope": "s",
            "reason": "r",
            "offered_by": OWNER,
            "disposition": "Accepted",
            "accepted_by": TARGET,
            "declined_by": None,
            "outcome_reason": "ok",
            "offered_at_ms": T0 + 1,
            "implicit": False,
        }
    }
    assert run.projection["contexts"] == {
        "h1": [
            {"content_type": "text/plain", "context": list(b"notes"), "sender": OWNER},
            {"content_type": "text/plain", "context": list(b"late"), "sender": OWNER},
        ]
    }
    assert replay(run.history) == run.session


# ---------------------------------------------------------------- HandoffOffer
def test_offer_rules() -> None:
    run = Run()
    run.refused(TARGET, "HandoffOffer", offer(), ErrorCode.FORBIDDEN)
    run.refused(OWNER, "HandoffOffer", offer(handoff_id=" "), ErrorCode.INVALID_ENVELOPE)
    run.refused(OWNER, "HandoffOffer", offer(target=OUTSIDER), ErrorCode.INVALID_ENVELOPE)
    run.refused(OWNER, "HandoffOffer", offer(target=OWNER), ErrorCode.INVALID_ENVELOPE)
    run.ok(OWNER, "HandoffOffer", offer())
    rejection = run.refused(OWNER, "HandoffOffer", offer("h2", OTHER), ErrorCode.INVALID_ENVELOPE)
    assert "outstanding" in rejection.message


def test_after_a_decline_a_new_offer_goes_to_a_new_target() -> None:
    run = Run()
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(TARGET, "HandoffDecline", decline(by=TARGET))
    run.refused(OWNER, "HandoffOffer", offer("h1", OTHER), ErrorCode.INVALID_ENVELOPE)  # id reused
    rejection = run.refused(OWNER, "HandoffOffer", offer("h2", TARGET), ErrorCode.INVALID_ENVELOPE)
    assert "declined" in rejection.message
    run.ok(OWNER, "HandoffOffer", offer("h2", OTHER))
    run.ok(OTHER, "HandoffAccept", accept("h2"))
    run.refused(OWNER, "HandoffOffer", offer("h3", OTHER), ErrorCode.INVALID_ENVELOPE)  # after an accept
    assert {k: v["disposition"] for k, v in run.offers.items()} == {"h1": "Declined", "h2": "Accepted"}
    assert run.offers["h1"]["declined_by"] == TARGET


# ---------------------------------------------------------------- HandoffContext
def test_context_rules() -> None:
    run = Run()
    run.refused(OWNER, "HandoffContext", context(), ErrorCode.INVALID_ENVELOPE)  # unknown offer
    run.ok(OWNER, "HandoffOffer", offer())
    run.refused(TARGET, "HandoffContext", context(), ErrorCode.FORBIDDEN)
    run.refused(OUTSIDER, "HandoffContext", context(), ErrorCode.FORBIDDEN)
    run.ok(OWNER, "HandoffContext", context())


# ---------------------------------------------------------------- answers
def test_accept_and_decline_rules() -> None:
    run = Run()
    run.refused(TARGET, "HandoffAccept", accept(), ErrorCode.INVALID_ENVELOPE)  # unknown offer
    run.refused(TARGET, "HandoffDecline", decline(), ErrorCode.INVALID_ENVELOPE)
    run.ok(OWNER, "HandoffOffer", offer())
    run.refused(OTHER, "HandoffAccept", accept(), ErrorCode.FORBIDDEN)
    run.refused(OTHER, "HandoffDecline", decline(), ErrorCode.FORBIDDEN)
    run.refused(OUTSIDER, "HandoffAccept", accept(), ErrorCode.FORBIDDEN)
    run.refused(TARGET, "HandoffAccept", accept(by=OTHER), ErrorCode.INVALID_ENVELOPE)
    run.refused(TARGET, "HandoffDecline", decline(by=OTHER), ErrorCode.INVALID_ENVELOPE)
    rejection = run.refused(TARGET, "HandoffAccept", accept(implicit=True), ErrorCode.INVALID_ENVELOPE)
    assert "implicit" in rejection.message
    run.ok(TARGET, "HandoffAccept", accept())
    run.refused(TARGET, "HandoffAccept", accept(), ErrorCode.INVALID_ENVELOPE)  # already answered
    run.refused(TARGET, "HandoffDecline", decline(), ErrorCode.INVALID_ENVELOPE)


def test_client_may_not_use_the_implicit_accept_message_id() -> None:
    run = Run()
    run.ok(OWNER, "HandoffOffer", offer())
    env = Envelope(
        "1.0", MODE, "HandoffAccept", "implicit-accept:h1", SID, TARGET, T0 + 5, accept().SerializeToString()
    )
    decision = KERNEL.decide(run.session, Identity(TARGET), env, T0 + 5)
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


# ---------------------------------------------------------------- Commitment
def test_commitment_needs_an_answered_offer() -> None:
    run = Run()
    run.refused(OWNER, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    run.ok(OWNER, "HandoffOffer", offer())
    run.refused(OWNER, "Commitment", commitment(positive=False), ErrorCode.INVALID_ENVELOPE)
    run.refused(TARGET, "Commitment", commitment(positive=False), ErrorCode.FORBIDDEN)
    run.ok(TARGET, "HandoffDecline", decline())
    run.refused(
        OWNER, "Commitment", commitment(positive=False, configuration_version="x"), ErrorCode.INVALID_ENVELOPE
    )
    run.ok(OWNER, "Commitment", commitment(positive=False))
    assert run.session.state is SessionState.RESOLVED


def test_policy_may_delegate_the_commitment() -> None:
    run = Run(rules={"commitment": {"authority": "any_participant"}})
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(TARGET, "HandoffAccept", accept())
    run.ok(TARGET, "Commitment", commitment())


# ---------------------------------------------------------------- implicit accept
TIMEOUT = 1000
IMPLICIT_RULES = {"acceptance": {"implicit_accept_timeout_ms": TIMEOUT}}


def test_no_implicit_accept_without_the_policy() -> None:
    run = Run()
    run.ok(OWNER, "HandoffOffer", offer())
    assert KERNEL.advance(run.session, T0 + 50_000) is None
    assert KERNEL.next_deadline(run.session) == run.session.deadline_ms + 1


def test_implicit_accept_fires_after_the_timeout() -> None:
    run = Run(rules=IMPLICIT_RULES)
    assert KERNEL.advance(run.session, T0 + 5 * TIMEOUT) is None  # no offer outstanding
    offered_at = T0 + 100
    run.ok(OWNER, "HandoffOffer", offer(), at=offered_at)
    assert KERNEL.next_deadline(run.session) == offered_at + TIMEOUT
    assert KERNEL.advance(run.session, offered_at + TIMEOUT - 1) is None

    due = KERNEL.advance(run.session, offered_at + TIMEOUT + 7)
    assert due is not None
    (entry,) = due.entries
    assert entry.kind is EntryKind.RUNTIME
    assert entry.ordinal == 3  # SessionStart 1, HandoffOffer 2
    assert entry.envelope.message_id == "implicit-accept:h1"
    assert entry.envelope.sender == TARGET
    assert entry.envelope.timestamp_unix_ms == offered_at + TIMEOUT + 7
    payload = handoff_pb2.HandoffAcceptPayload.FromString(entry.envelope.payload)
    assert (payload.handoff_id, payload.accepted_by, payload.implicit) == ("h1", TARGET, True)
    assert payload.reason == "implicit accept (timeout)"
    run.adopt(due)
    assert run.offers["h1"]["disposition"] == "Accepted"
    assert run.offers["h1"]["implicit"] is True
    assert KERNEL.advance(run.session, offered_at + 10 * TIMEOUT) is None  # fires once

    run.ok(OWNER, "Commitment", commitment(), at=offered_at + TIMEOUT + 8)
    assert run.session.state is SessionState.RESOLVED
    assert replay(run.history) == run.session


def test_an_answer_in_time_cancels_the_implicit_accept() -> None:
    run = Run(rules=IMPLICIT_RULES)
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(TARGET, "HandoffDecline", decline())
    assert KERNEL.advance(run.session, T0 + 10 * TIMEOUT) is None
    assert run.offers["h1"]["disposition"] == "Declined"


def test_suspended_time_does_not_count_toward_the_timeout() -> None:
    run = Run(rules=IMPLICIT_RULES)
    owner = Identity(OWNER)
    offered_at = T0 + 100
    run.ok(OWNER, "HandoffOffer", offer(), at=offered_at)
    run.adopt(KERNEL.suspend(run.session, owner, "pause", offered_at + 200))
    assert KERNEL.advance(run.session, offered_at + TIMEOUT + 100) is None  # suspended: nothing fires
    run.adopt(KERNEL.resume(run.session, owner, "go on", offered_at + 700))  # 500 ms paused
    assert KERNEL.next_deadline(run.session) == offered_at + TIMEOUT + 500
    assert KERNEL.advance(run.session, offered_at + TIMEOUT + 499) is None
    due = KERNEL.advance(run.session, offered_at + TIMEOUT + 500)
    assert due is not None
    assert [e.kind for e in due.entries] == [EntryKind.RUNTIME]
    run.adopt(due)
    assert run.offers["h1"]["disposition"] == "Accepted"
    run.ok(OWNER, "Commitment", commitment(), at=offered_at + TIMEOUT + 501)
    assert replay(run.history) == run.session


def test_a_suspension_before_the_offer_does_not_delay_it() -> None:
    run = Run(rules=IMPLICIT_RULES)
    owner = Identity(OWNER)
    run.adopt(KERNEL.suspend(run.session, owner, "pause", T0 + 10))
    run.adopt(KERNEL.resume(run.session, owner, "go on", T0 + 310))
    run.ok(OWNER, "HandoffOffer", offer(), at=T0 + 400)
    assert KERNEL.next_deadline(run.session) == T0 + 400 + TIMEOUT
