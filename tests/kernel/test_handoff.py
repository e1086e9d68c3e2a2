"""Handoff mode rules and the implicit accept, driven through the public kernel API."""

from __future__ import annotations

from typing import Any

from macp.modes.handoff.v1 import handoff_pb2

from kernel_driver import T0, SessionDriver, start_session
from pymacp.kernel import Accepted, EntryKind, ErrorCode, Identity, Rejected, SessionState

MODE = "macp.mode.handoff.v1"
OWNER = "agent://owner"
TARGET = "agent://target"
OTHER = "agent://other"
OUTSIDER = "agent://mallory"


def start(participants: list[str] | None = None, *, rules: dict[str, Any] | None = None) -> SessionDriver:
    """A handoff session the owner starts."""
    return SessionDriver.start(MODE, OWNER, participants or [OWNER, TARGET, OTHER], rules=rules)


def offers(run: SessionDriver) -> dict[str, Any]:
    offers: dict[str, Any] = run.state["offers"]
    return offers


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


# ---------------------------------------------------------------- start
def test_start_needs_two_participants_including_the_owner() -> None:
    for participants in ([OWNER], [TARGET, OTHER]):
        decision = start_session(MODE, OWNER, participants)
        assert isinstance(decision, Rejected)
        assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE
    assert isinstance(start_session(MODE, OWNER, [OWNER, TARGET]), Accepted)


# ---------------------------------------------------------------- happy path
def test_offer_context_accept_commit() -> None:
    run = start()
    assert run.state == {"offers": {}, "contexts": {}}
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(OWNER, "HandoffContext", context())
    run.ok(TARGET, "HandoffAccept", accept(by=TARGET))
    run.ok(OWNER, "HandoffContext", context(text=b"late"))  # late context is allowed
    run.ok(OWNER, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED
    assert offers(run) == {
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
    assert run.state["contexts"] == {
        "h1": [
            {"content_type": "text/plain", "context": list(b"notes"), "sender": OWNER},
            {"content_type": "text/plain", "context": list(b"late"), "sender": OWNER},
        ]
    }
    assert run.replay() == run.session


# ---------------------------------------------------------------- HandoffOffer
def test_offer_rules() -> None:
    run = start()
    run.refused(TARGET, "HandoffOffer", offer(), ErrorCode.FORBIDDEN)
    run.refused(OWNER, "HandoffOffer", offer(handoff_id=" "), ErrorCode.INVALID_ENVELOPE)
    run.refused(OWNER, "HandoffOffer", offer(target=OUTSIDER), ErrorCode.INVALID_ENVELOPE)
    run.refused(OWNER, "HandoffOffer", offer(target=OWNER), ErrorCode.INVALID_ENVELOPE)
    run.ok(OWNER, "HandoffOffer", offer())
    rejection = run.refused(OWNER, "HandoffOffer", offer("h2", OTHER), ErrorCode.INVALID_ENVELOPE)
    assert "outstanding" in rejection.message


def test_after_a_decline_a_new_offer_goes_to_a_new_target() -> None:
    run = start()
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(TARGET, "HandoffDecline", decline(by=TARGET))
    run.refused(OWNER, "HandoffOffer", offer("h1", OTHER), ErrorCode.INVALID_ENVELOPE)  # id reused
    rejection = run.refused(OWNER, "HandoffOffer", offer("h2", TARGET), ErrorCode.INVALID_ENVELOPE)
    assert "declined" in rejection.message
    run.ok(OWNER, "HandoffOffer", offer("h2", OTHER))
    run.ok(OTHER, "HandoffAccept", accept("h2"))
    run.refused(OWNER, "HandoffOffer", offer("h3", OTHER), ErrorCode.INVALID_ENVELOPE)  # after an accept
    assert {k: v["disposition"] for k, v in offers(run).items()} == {
        "h1": "Declined",
        "h2": "Accepted",
    }
    assert offers(run)["h1"]["declined_by"] == TARGET


# ---------------------------------------------------------------- HandoffContext
def test_context_rules() -> None:
    run = start()
    run.refused(OWNER, "HandoffContext", context(), ErrorCode.INVALID_ENVELOPE)  # unknown offer
    run.ok(OWNER, "HandoffOffer", offer())
    run.refused(TARGET, "HandoffContext", context(), ErrorCode.FORBIDDEN)
    run.refused(OUTSIDER, "HandoffContext", context(), ErrorCode.FORBIDDEN)
    run.ok(OWNER, "HandoffContext", context())


# ---------------------------------------------------------------- answers
def test_accept_and_decline_rules() -> None:
    run = start()
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
    run = start()
    run.ok(OWNER, "HandoffOffer", offer())
    run.refused(
        TARGET, "HandoffAccept", accept(), ErrorCode.INVALID_ENVELOPE, message_id="implicit-accept:h1"
    )


# ---------------------------------------------------------------- Commitment
def test_commitment_needs_an_answered_offer() -> None:
    run = start()
    run.refused(OWNER, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    run.ok(OWNER, "HandoffOffer", offer())
    run.refused(OWNER, "Commitment", run.commitment(positive=False), ErrorCode.INVALID_ENVELOPE)
    run.refused(TARGET, "Commitment", run.commitment(positive=False), ErrorCode.FORBIDDEN)
    run.ok(TARGET, "HandoffDecline", decline())
    run.refused(
        OWNER,
        "Commitment",
        run.commitment(positive=False, configuration_version="x"),
        ErrorCode.INVALID_ENVELOPE,
    )
    run.ok(OWNER, "Commitment", run.commitment(positive=False))
    assert run.session.state is SessionState.RESOLVED


def test_policy_may_delegate_the_commitment() -> None:
    run = start(rules={"commitment": {"authority": "any_participant"}})
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(TARGET, "HandoffAccept", accept())
    run.ok(TARGET, "Commitment", run.commitment())


# ---------------------------------------------------------------- implicit accept
TIMEOUT = 1000
IMPLICIT_RULES = {"acceptance": {"implicit_accept_timeout_ms": TIMEOUT}}


def test_no_implicit_accept_without_the_policy() -> None:
    run = start()
    run.ok(OWNER, "HandoffOffer", offer())
    assert run.advance(T0 + 50_000) is None
    assert run.next_deadline() == run.session.deadline_ms + 1


def test_implicit_accept_fires_after_the_timeout() -> None:
    run = start(rules=IMPLICIT_RULES)
    assert run.advance(T0 + 5 * TIMEOUT) is None  # no offer outstanding
    offered_at = T0 + 100
    run.ok(OWNER, "HandoffOffer", offer(), at=offered_at)
    assert run.next_deadline() == offered_at + TIMEOUT
    assert run.advance(offered_at + TIMEOUT - 1) is None

    due = run.advance(offered_at + TIMEOUT + 7)
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
    assert offers(run)["h1"]["disposition"] == "Accepted"
    assert offers(run)["h1"]["implicit"] is True
    assert run.advance(offered_at + 10 * TIMEOUT) is None  # fires once

    run.ok(OWNER, "Commitment", run.commitment(), at=offered_at + TIMEOUT + 8)
    assert run.session.state is SessionState.RESOLVED
    assert run.replay() == run.session


def test_an_answer_in_time_cancels_the_implicit_accept() -> None:
    run = start(rules=IMPLICIT_RULES)
    run.ok(OWNER, "HandoffOffer", offer())
    run.ok(TARGET, "HandoffDecline", decline())
    assert run.advance(T0 + 10 * TIMEOUT) is None
    assert offers(run)["h1"]["disposition"] == "Declined"


def test_suspended_time_does_not_count_toward_the_timeout() -> None:
    run = start(rules=IMPLICIT_RULES)
    owner = Identity(OWNER)
    offered_at = T0 + 100
    run.ok(OWNER, "HandoffOffer", offer(), at=offered_at)
    run.adopt(run.kernel.suspend(run.session, owner, "pause", offered_at + 200))
    assert run.advance(offered_at + TIMEOUT + 100) is None  # suspended: nothing fires
    run.adopt(run.kernel.resume(run.session, owner, "go on", offered_at + 700))  # 500 ms paused
    assert run.next_deadline() == offered_at + TIMEOUT + 500
    assert run.advance(offered_at + TIMEOUT + 499) is None
    due = run.advance(offered_at + TIMEOUT + 500)
    assert due is not None
    assert [e.kind for e in due.entries] == [EntryKind.RUNTIME]
    assert offers(run)["h1"]["disposition"] == "Accepted"
    run.ok(OWNER, "Commitment", run.commitment(), at=offered_at + TIMEOUT + 501)
    assert run.replay() == run.session


def test_a_suspension_before_the_offer_does_not_delay_it() -> None:
    run = start(rules=IMPLICIT_RULES)
    owner = Identity(OWNER)
    run.adopt(run.kernel.suspend(run.session, owner, "pause", T0 + 10))
    run.adopt(run.kernel.resume(run.session, owner, "go on", T0 + 310))
    run.ok(OWNER, "HandoffOffer", offer(), at=T0 + 400)
    assert run.next_deadline() == T0 + 400 + TIMEOUT
