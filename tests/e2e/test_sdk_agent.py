"""The SDK's agent framework (``macp_sdk.agent.Participant``) running a Decision session.

Each participant runs ``Participant.run()`` on its own thread and channel, as separate
agent processes would: the initiator starts the session and tables a kickoff proposal,
the voters vote when the proposal reaches them over their subscription, and the
initiator commits once a majority approves. Everyone must reach ``on_terminal``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from macp_sdk import MODE_DECISION, DecisionSession, MacpClient, new_session_id
from macp_sdk.agent import (
    HandlerContext,
    IncomingMessage,
    InitiatorConfig,
    Participant,
    TerminalResult,
    commitment_handler,
    majority_committer,
)

from e2e_support import RESOLVED, Connections, dev, wait_for

JOIN_TIMEOUT = 15.0


class Agent:
    """A participant running on its own thread, recording what it saw."""

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.terminal: list[TerminalResult] = []
        self.seen: list[str] = []
        self.failure: BaseException | None = None
        participant.on("*", self._record)
        participant.on_terminal(self.terminal.append)
        self.thread = threading.Thread(target=self._run, name=participant.participant_id, daemon=True)

    def _record(self, message: IncomingMessage, ctx: HandlerContext) -> None:
        self.seen.append(message.message_type)

    def _run(self) -> None:
        try:
            self.participant.run()
        except BaseException as exc:  # reported by finish()
            self.failure = exc

    def start(self) -> Agent:
        self.thread.start()
        return self

    def finish(self) -> TerminalResult:
        self.thread.join(JOIN_TIMEOUT)
        assert not self.thread.is_alive(), f"{self.participant.participant_id} never reached a terminal state"
        assert self.failure is None, f"{self.participant.participant_id} failed: {self.failure!r}"
        assert len(self.terminal) == 1
        return self.terminal[0]


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    running: list[Agent] = []
    yield running
    for agent in running:
        agent.participant.stop()
        agent.thread.join(JOIN_TIMEOUT)


def listener(connect: Connections, agents: list[Agent], name: str, sid: str) -> Agent:
    participant = Participant(
        participant_id=name, session_id=sid, mode=MODE_DECISION, client=connect.client(name), auth=dev(name)
    )
    agent = Agent(participant)
    agents.append(agent)
    return agent


def voter(connect: Connections, agents: list[Agent], name: str, sid: str, vote: str) -> Agent:
    agent = listener(connect, agents, name, sid)

    def on_proposal(message: IncomingMessage, ctx: HandlerContext) -> None:
        assert message.proposal_id is not None
        ctx.actions.vote(message.proposal_id, vote, reason=f"{name} says {vote}")

    agent.participant.on("Proposal", on_proposal)
    return agent


def initiator(connect: Connections, agents: list[Agent], sid: str, voters: list[str]) -> Agent:
    participant = Participant(
        participant_id="lead",
        session_id=sid,
        mode=MODE_DECISION,
        client=connect.client("lead"),
        auth=dev("lead"),
        initiator_config=InitiatorConfig(
            intent="choose the rollout",
            participants=["lead", *voters],
            ttl_ms=60_000,
            kickoff_message_type="Proposal",
            kickoff_payload={"proposal_id": "p1", "option": "canary first", "rationale": "lower risk"},
        ),
    )
    committer = majority_committer(quorum_size=2, action="decision.selected", authority_scope="rollout")
    participant.on("Vote", commitment_handler(committer))
    agent = Agent(participant)
    agents.append(agent)
    return agent


def test_participants_decide_and_all_reach_on_terminal(connect: Connections, agents: list[Agent]) -> None:
    sid = new_session_id()
    lead = initiator(connect, agents, sid, ["alice", "bob"]).start()
    wait_for(lambda: "Proposal" in lead.seen, what="the initiator to see its own kickoff proposal")
    alice = voter(connect, agents, "alice", sid, "APPROVE").start()
    bob = voter(connect, agents, "bob", sid, "APPROVE").start()

    results = {agent.participant.participant_id: agent.finish() for agent in (lead, alice, bob)}

    for name, result in results.items():
        assert result.state == "Committed", name
    commitment = results["alice"].commitment
    assert commitment is not None
    assert (commitment.action, commitment.outcome_positive) == ("decision.selected", True)
    for agent in (lead, alice, bob):
        assert agent.seen[:2] == ["SessionStart", "Proposal"]
        assert agent.seen[-1] == "Commitment"
        assert agent.seen.count("Vote") == 2
    meta = connect.client("lead").get_session(sid, auth=dev("lead")).metadata
    assert (meta.state, meta.initiator) == (RESOLVED, "lead")


def test_a_participant_subscribing_before_the_session_exists_recovers(
    connect: Connections, agents: list[Agent], caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_session_id()
    caplog.set_level(logging.DEBUG, logger="macp_sdk")
    early = voter(connect, agents, "alice", sid, "APPROVE").start()
    # Wait until alice's first subscription was refused with NOT_FOUND and she is retrying.
    wait_for(
        lambda: any("not found yet" in r.getMessage() and sid in r.getMessage() for r in caplog.records),
        timeout=2.0,
        what="the early subscriber's NOT_FOUND retry",
    )
    lead = initiator(connect, agents, sid, ["alice", "bob"]).start()
    bob = voter(connect, agents, "bob", sid, "APPROVE").start()

    assert early.finish().state == "Committed"
    assert lead.finish().state == "Committed"
    assert bob.finish().state == "Committed"
    assert early.seen[0] == "SessionStart"
    assert early.seen[-1] == "Commitment"


def test_a_participant_joining_a_finished_session_replays_to_the_terminal_state(
    client: MacpClient, connect: Connections, agents: list[Agent]
) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="done already", participants=["lead", "carol"], ttl_ms=60_000)
    s.propose("p1", "option")
    s.vote("p1", "reject", auth=dev("carol"))
    s.commit(action="decision.rejected", authority_scope="x", reason="carol rejected")

    late = listener(connect, agents, "carol", s.session_id).start()
    result = late.finish()

    assert result.state == "Committed"
    assert late.seen == ["SessionStart", "Proposal", "Vote", "Commitment"]
    assert result.commitment is not None
    assert (result.commitment.action, result.commitment.outcome_positive) == ("decision.rejected", False)
