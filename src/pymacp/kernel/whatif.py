"""What-if replay: re-run a session's accepted history under a candidate policy.

Advisory and read-only. The history is decided twice from scratch, once under the policy
the session recorded at SessionStart and once with that binding swapped for the
candidate; nothing is registered or stored. Each entry gets an outcome per run:

    APPLIED     the entry would be accepted
    REFUSED     it would be rejected (error code and details given)
    NOT_OPEN    the session had already ended earlier in that run
    NO_SESSION  the SessionStart itself did not take, so there is no session

``history_index`` is 0-based and 0 is the SessionStart. ``first_divergence`` is the first
index whose outcome differs between the runs, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

from .decisions import Accepted, Rejected
from .engine import Kernel
from .errors import ErrorCode, Rejection
from .policy.descriptor import PolicyDescriptor
from .policy.registration import validate_descriptor
from .session import HistoryEntry, Session, SessionState


class OutcomeKind(IntEnum):
    """Mirrors ``macp.v1.WhatIfEntryOutcome.Kind``."""

    APPLIED = 1
    NOT_OPEN = 2
    REFUSED = 3
    NO_SESSION = 4


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    kind: OutcomeKind
    state: SessionState
    error_code: str = ""
    details: bytes = b""


@dataclass(frozen=True, slots=True)
class EntryComparison:
    history_index: int
    message_id: str
    message_type: str
    recorded: EntryOutcome
    candidate: EntryOutcome


@dataclass(frozen=True, slots=True)
class RunOutcome:
    state: SessionState
    resolution: bytes = b""
    resolved_by_history_index: int = 0
    resolved_by_message_id: str = ""
    resolved_by_message_type: str = ""


@dataclass(frozen=True, slots=True)
class WhatIfResult:
    recorded_policy_id: str
    candidate_policy_id: str
    recorded: RunOutcome
    candidate: RunOutcome
    first_divergence: int | None
    entries: tuple[EntryComparison, ...]

    @property
    def denials(self) -> tuple[EntryComparison, ...]:
        """Entries the candidate refused with POLICY_DENIED."""
        return tuple(e for e in self.entries if e.candidate.error_code == ErrorCode.POLICY_DENIED)


def what_if(
    history: Sequence[HistoryEntry], candidate: PolicyDescriptor, kernel: Kernel | None = None
) -> WhatIfResult | Rejection:
    """Compare ``history`` under its recorded policy and under ``candidate``."""
    kernel = kernel or Kernel()
    if not history or history[0].binding is None:
        return Rejection(
            ErrorCode.HISTORY_UNAVAILABLE, "the session's history does not start with its SessionStart"
        )
    problem = validate_descriptor(candidate)
    if problem is not None:
        return problem
    binding = history[0].binding
    mode = history[0].envelope.mode
    if not candidate.applies_to(mode):
        return Rejection(
            ErrorCode.INVALID_POLICY_DEFINITION,
            f"candidate policy {candidate.policy_id!r} governs mode {candidate.mode!r}, not {mode!r}",
        )
    # The recorded Commitments name the recorded policy id; the candidate's rules are judged
    # under that id, so a Commitment is not refused merely for naming the policy it was sent under.
    stand_in = replace(candidate, policy_id=binding.policy.policy_id)
    swapped = [replace(history[0], binding=replace(binding, policy=stand_in)), *history[1:]]
    recorded_outcomes, recorded_run = _run(kernel, history)
    candidate_outcomes, candidate_run = _run(kernel, swapped)
    entries = tuple(
        EntryComparison(e.index, e.envelope.message_id, e.envelope.message_type, r, c)
        for e, r, c in zip(history, recorded_outcomes, candidate_outcomes, strict=True)
    )
    divergence = next(
        (
            e.history_index
            for e in entries
            if (e.recorded.kind, e.recorded.state, e.recorded.error_code)
            != (e.candidate.kind, e.candidate.state, e.candidate.error_code)
        ),
        None,
    )
    return WhatIfResult(
        binding.policy.policy_id, candidate.policy_id, recorded_run, candidate_run, divergence, entries
    )


def _run(kernel: Kernel, history: Sequence[HistoryEntry]) -> tuple[list[EntryOutcome], RunOutcome]:
    session: Session | None = None
    outcomes: list[EntryOutcome] = []
    started = False
    for entry in history:
        if entry.index > 0 and session is None:
            outcomes.append(EntryOutcome(OutcomeKind.NO_SESSION, SessionState.UNSPECIFIED))
            continue
        if session is not None and session.state.is_terminal:
            outcomes.append(EntryOutcome(OutcomeKind.NOT_OPEN, session.state))
            continue
        decision = kernel.apply_entry(session, entry)
        if isinstance(decision, Accepted):
            session = decision.session
            started = True
            outcomes.append(EntryOutcome(OutcomeKind.APPLIED, session.state))
        elif isinstance(decision, Rejected):
            state = session.state if session else SessionState.UNSPECIFIED
            kind = OutcomeKind.REFUSED if started or entry.index > 0 else OutcomeKind.NO_SESSION
            r = decision.rejection
            outcomes.append(EntryOutcome(kind, state, r.code.value, r.details_bytes()))
        else:  # a duplicate cannot occur in a well-formed history; report it as refused
            state = session.state if session else SessionState.UNSPECIFIED
            outcomes.append(EntryOutcome(OutcomeKind.REFUSED, state, ErrorCode.DUPLICATE_MESSAGE.value))
    return outcomes, _summary(session, history)


def _summary(session: Session | None, history: Sequence[HistoryEntry]) -> RunOutcome:
    if session is None:
        return RunOutcome(SessionState.UNSPECIFIED)
    if session.resolution is None or session.resolved_by_index is None:
        return RunOutcome(session.state)
    by = history[session.resolved_by_index]
    return RunOutcome(
        session.state, session.resolution, by.index, by.envelope.message_id, by.envelope.message_type
    )
