"""Drive one kernel session through the public API, for the mode tests.

:meth:`SessionDriver.start` opens a session of a given mode with ``Kernel.decide``, under
the default policy or under test rules: registered the way a client registers a policy, or
(``stored=True``, for rules registration refuses today) bound as a descriptor already in
the store. Each :meth:`~SessionDriver.send` is then one client envelope with a fresh
message id and a clock one millisecond later, unless the test names the time. Accepted
decisions are adopted and their history entries kept, so a test can check that the history
replays to the live session. :meth:`~SessionDriver.ok` and :meth:`~SessionDriver.refused`
assert the outcome; ``refused`` also asserts that the session object is unchanged, because
a rejected message must leave no trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from google.protobuf.message import Message
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Decision,
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
    catalog,
)
from pymacp.kernel.policy.registration import register
from pymacp.kernel.replay import replay

T0 = 1_780_000_000_000
SESSION_ID = "3f1b6f3e-1d2c-4b5a-9c8d-7e6f5a4b3c2d"
POLICY_ID = "policy.test.driver"
MODE_VERSION = "1.0.0"
CONFIGURATION_VERSION = "cfg-1"
TTL_MS = 60_000

# The Commitment action of a positive and of a negative outcome, per mode.
COMMITMENT_ACTIONS: Mapping[str, tuple[str, str]] = {
    "macp.mode.decision.v1": ("decision.selected", "decision.rejected"),
    "macp.mode.proposal.v1": ("proposal.accepted", "proposal.rejected"),
    "macp.mode.task.v1": ("task.completed", "task.failed"),
    "macp.mode.handoff.v1": ("handoff.accepted", "handoff.declined"),
    "macp.mode.quorum.v1": ("quorum.approved", "quorum.rejected"),
    "ext.multi_round.v1": ("multi_round.converged", "multi_round.rejected"),
}

Payload: TypeAlias = Message | bytes  # a protobuf message, or raw bytes for malformed input


def _bytes(payload: Payload) -> bytes:
    return payload if isinstance(payload, bytes) else payload.SerializeToString()


def start_session(
    mode: str,
    initiator: str,
    participants: Sequence[str],
    *,
    policy_version: str = "",
    registry: Registry | None = None,
    kernel: Kernel | None = None,
) -> Decision:
    """The kernel's answer to one SessionStart, sent at ``T0`` as message ``m0``."""
    start = core_pb2.SessionStartPayload(
        intent="test",
        participants=list(participants),
        mode_version=MODE_VERSION,
        configuration_version=CONFIGURATION_VERSION,
        policy_version=policy_version,
        ttl_ms=TTL_MS,
    )
    env = Envelope("1.0", mode, "SessionStart", "m0", SESSION_ID, initiator, T0, _bytes(start))
    return (kernel or Kernel()).decide(None, Identity(initiator), env, T0, registry)


def policy_registry(
    mode: str, rules: dict[str, Any] | None, *, schema_version: int = 3, stored: bool = False
) -> Registry:
    """A registry holding the test policy ``POLICY_ID`` for ``rules`` (empty for None).

    ``stored`` binds the descriptor as it is, skipping the registration checks, for rules
    that registration refuses but that a store written earlier may still hold.
    """
    if rules is None:
        return Registry()
    descriptor = PolicyDescriptor(POLICY_ID, mode, "test", rules, schema_version)
    policies = {POLICY_ID: descriptor} if stored else register({}, descriptor, T0)
    assert isinstance(policies, dict), policies
    return Registry(policies=policies)


class SessionDriver:
    """One session of one mode: send envelopes, adopt what is accepted, keep the history."""

    def __init__(self, kernel: Kernel, registry: Registry, started: Accepted) -> None:
        self.kernel = kernel
        self.registry = registry
        self.session: Session = started.session
        self.history: list[HistoryEntry] = list(started.entries)
        self.now = T0
        self.count = 0

    @classmethod
    def start(
        cls,
        mode: str,
        initiator: str,
        participants: Sequence[str],
        *,
        rules: dict[str, Any] | None = None,
        schema_version: int = 3,
        stored: bool = False,
    ) -> SessionDriver:
        """Open a session; with ``rules`` it binds the test policy ``POLICY_ID``."""
        kernel = Kernel()
        registry = policy_registry(mode, rules, schema_version=schema_version, stored=stored)
        policy_version = "" if rules is None else POLICY_ID
        decision = start_session(
            mode, initiator, participants, policy_version=policy_version, registry=registry, kernel=kernel
        )
        assert isinstance(decision, Accepted), decision
        return cls(kernel, registry, decision)

    # -- messages ---------------------------------------------------------------------------

    def send(
        self,
        sender: str,
        message_type: str,
        payload: Payload,
        *,
        at: int | None = None,
        message_id: str | None = None,
    ) -> Decision:
        """Decide one envelope from ``sender`` at ``at`` (default: 1 ms after the last one)."""
        self.now = self.now + 1 if at is None else at
        self.count += 1
        env = Envelope(
            "1.0",
            self.session.mode,
            message_type,
            f"m{self.count}" if message_id is None else message_id,
            self.session.session_id,
            sender,
            self.now,
            _bytes(payload),
        )
        decision = self.kernel.decide(self.session, Identity(sender), env, self.now, self.registry)
        if isinstance(decision, Accepted):
            self.adopt(decision)
        return decision

    def ok(self, sender: str, message_type: str, payload: Payload, *, at: int | None = None) -> Accepted:
        decision = self.send(sender, message_type, payload, at=at)
        assert isinstance(decision, Accepted), decision
        return decision

    def refused(
        self,
        sender: str,
        message_type: str,
        payload: Payload,
        code: ErrorCode,
        *,
        message_id: str | None = None,
    ) -> Rejection:
        """Assert the envelope is rejected with ``code`` and leaves the session as it was."""
        before = self.session
        decision = self.send(sender, message_type, payload, message_id=message_id)
        assert isinstance(decision, Rejected), f"expected {code}, got {decision}"
        assert decision.rejection.code == code, decision.rejection
        assert self.session is before
        return decision.rejection

    def commitment(self, positive: bool = True, **fields: Any) -> core_pb2.CommitmentPayload:
        """A well-formed Commitment for this session; ``fields`` override any field."""
        positive_action, negative_action = COMMITMENT_ACTIONS.get(
            self.session.mode, ("test.accepted", "test.rejected")
        )
        values: dict[str, Any] = {
            "commitment_id": "c1",
            "action": positive_action if positive else negative_action,
            "authority_scope": "test",
            "reason": "done",
            "mode_version": MODE_VERSION,
            "configuration_version": CONFIGURATION_VERSION,
            "policy_version": self.policy_version,
            "outcome_positive": positive,
        }
        values.update(fields)
        return core_pb2.CommitmentPayload(**values)

    # -- time -------------------------------------------------------------------------------

    def adopt(self, decision: Decision | None) -> None:
        """Take an accepted decision (a kernel call's answer) as the new session."""
        assert isinstance(decision, Accepted), decision
        self.session = decision.session
        self.history.extend(decision.entries)

    def advance(self, now: int) -> Accepted | None:
        """What falls due by ``now``, adopted (the clock moves to ``now``); None when nothing does.

        When nothing is due the clock stays put, so a test may probe a later time and then
        send at an earlier one.
        """
        due = self.kernel.advance(self.session, now)
        if due is not None:
            self.adopt(due)
            self.now = now
        return due

    def next_deadline(self) -> int | None:
        return self.kernel.next_deadline(self.session)

    # -- reading ----------------------------------------------------------------------------

    @property
    def policy_version(self) -> str:
        """The test policy's id when the session binds one, else "" (the default policy)."""
        return POLICY_ID if self.session.policy.policy_id == POLICY_ID else ""

    @property
    def state(self) -> dict[str, Any]:
        """The mode-state projection (macp-protocol.md §5)."""
        return catalog.spec_for(self.session.mode_descriptor).project(self.session.mode_state)

    @property
    def phase(self) -> str:
        phase: str = self.state["phase"]
        return phase

    def replay(self) -> Session | None:
        """The session the kept history rebuilds to (compare with ``session``)."""
        return replay(self.history, self.kernel)
