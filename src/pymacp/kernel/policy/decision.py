"""The RFC-MACP-0012 governance evaluator for Decision-mode Commitments.

Theory of operation. :func:`evaluate_decision` is a pure function of the bound rules, the
policy's ``schema_version``, the declared participants, what the session recorded
(ballots, evaluations, objections) and the requested outcome. It returns every reason to
refuse, as :class:`~pymacp.kernel.errors.Denial` values with stable codes; an empty
tuple allows the Commitment. It knows nothing of the mode's state class: the mode hands
it plain values.

The steps, in order (reasons accumulate, so a doubly-bad Commitment reports both):

0. ``schema_version`` outside {1, 2, 3}: refuse at once (``unsupported_schema_version``).
1. Critical objections. With ``critical_severity_vetoes`` and at least ``veto_threshold``
   critical objections on record, a veto stands. Its action decides what it does:
   ``deny`` refuses both outcomes (``veto``), ``hold`` likewise (``veto_hold``), and
   ``finalize_decline`` refuses a positive Commitment but authorizes a negative one
   *outright*: an objection-authorized decline skips every later step (evaluations,
   participation floor, tally and decline guard).
2. Evaluations, when ``required_before_voting``: at least one non-REVIEW evaluation
   (``evaluation_required``), with confidence >= ``minimum_confidence`` when that is set
   (``confidence_below_minimum``).
3. Participation floor, when ``require_vote_quorum``: unique voters (abstainers and
   weight-0 voters included) against ``voting.quorum`` — a count, or a percentage 0-100
   of the declared participants (``quorum_not_met``).
4. The tally (skipped for algorithm ``none``, which takes the outcome at face value).
   Votes from every proposal count; ABSTAIN is never decisive, and under ``weighted`` the
   ``weights`` map is the electorate, so a voter missing from it weighs 0 and is not
   decisive either. The result is NO_VOTES (nothing decisive, or a zero decisive total),
   PASSED or FAILED, and maps onto the requested outcome:

   ========  =====================================  ========================================
   result    positive Commitment                     negative Commitment
   ========  =====================================  ========================================
   PASSED    allow                                  deny (``decline_over_approval``) unless
                                                    ``allow_decline_over_approval``; and deny
                                                    (``decline_not_backed``) without a
                                                    decisive REJECT, waiver or not
   FAILED    deny (``threshold_not_met``)           allow iff a decisive REJECT exists
                                                    (the decline guard; else
                                                    ``decline_not_backed``)
   NO_VOTES  v3: deny (``no_votes``); v1/v2: deny   deny (``no_votes``)
             only if ``require_vote_quorum``
   ========  =====================================  ========================================

``allow_decline_over_approval`` and ``critical_objection_action`` are schema_version 2
additions: under version 1 they read as their defaults (false, ``deny``), which can only
refuse more, never less. An unknown algorithm reads as FAILED and is reported as
``invalid_rules``, as is an unknown quorum type (which never meets the floor); an unknown
objection action acts as ``deny``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from ..errors import Denial
from .rules import DecisionRules

SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)

APPROVE = "APPROVE"
REJECT = "REJECT"
ABSTAIN = "ABSTAIN"
REVIEW = "REVIEW"
CRITICAL = "critical"

DEFAULT_THRESHOLD = 0.5
SUPERMAJORITY_FALLBACK = 2 / 3


class Ballot(NamedTuple):
    """One recorded vote: who cast it and APPROVE, REJECT or ABSTAIN."""

    sender: str
    vote: str


class Assessment(NamedTuple):
    """One recorded evaluation: APPROVE, REVIEW, BLOCK or REJECT, with a confidence in [0, 1]."""

    recommendation: str
    confidence: float


class Objection(NamedTuple):
    """One recorded objection: who raised it and its severity (low, medium, high, critical)."""

    sender: str
    severity: str


class Result(Enum):
    PASSED = "Passed"
    FAILED = "Failed"
    NO_VOTES = "NoVotes"


@dataclass(frozen=True, slots=True)
class Tally:
    """The outcome of counting the ballots under one voting algorithm."""

    result: Result
    approve: float  # decisive approval, in votes or in weight
    reject: float
    decisive_reject: bool  # at least one REJECT that counted (the decline guard)
    known_algorithm: bool = True


def evaluate_decision(
    rules: DecisionRules,
    schema_version: int,
    participants: Sequence[str],
    *,
    ballots: Iterable[Ballot],
    evaluations: Iterable[Assessment],
    objections: Iterable[Objection],
    outcome_positive: bool,
) -> tuple[Denial, ...]:
    """Every reason the policy refuses this Commitment; empty when it is allowed."""
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        return (
            Denial(
                "unsupported_schema_version",
                f"policy schema_version {schema_version} is not supported; this runtime evaluates "
                "versions 1, 2 and 3, so bind a policy registered under one of them",
            ),
        )
    ballots = tuple(ballots)
    denials: list[Denial] = []

    objectors = _standing_veto(rules, objections)
    if objectors is not None:
        action = rules.critical_objection_action if schema_version >= 2 else "deny"
        if action == "finalize_decline" and not outcome_positive:
            return ()  # an objection-authorized decline: nothing below applies to it
        denials.append(_veto_denial(rules, action, objectors))

    denials.extend(_evaluation_denials(rules, evaluations))

    if rules.commitment.require_vote_quorum:
        denials.extend(_quorum_denials(rules, participants, ballots))

    if rules.algorithm == "none":
        return tuple(denials)
    denials.extend(
        _outcome_denials(rules, schema_version, tally(rules, participants, ballots), outcome_positive)
    )
    return tuple(denials)


def _standing_veto(rules: DecisionRules, objections: Iterable[Objection]) -> list[str] | None:
    """The senders of the critical objections when they amount to a veto, else None."""
    if not rules.critical_severity_vetoes:
        return None
    objectors = [o.sender for o in objections if o.severity == CRITICAL]
    return objectors if len(objectors) >= rules.veto_threshold else None


def _veto_denial(rules: DecisionRules, action: str, objectors: list[str]) -> Denial:
    who = tuple(sorted(set(objectors)))
    standing = f"{len(objectors)} critical objection(s) meet the veto threshold of {rules.veto_threshold}"
    if action == "hold":
        return Denial(
            "veto_hold",
            f"{standing}; the policy holds the session open until the objections are resolved",
            who,
        )
    if action == "finalize_decline":
        return Denial(
            "veto", f"{standing}; only a negative Commitment (a decline) may resolve the session", who
        )
    return Denial("veto", f"{standing}; the policy refuses any Commitment while they stand", who)


def _evaluation_denials(rules: DecisionRules, evaluations: Iterable[Assessment]) -> list[Denial]:
    if not rules.required_before_voting:
        return []
    counted = [e for e in evaluations if e.recommendation != REVIEW]
    if not counted:
        return [
            Denial(
                "evaluation_required",
                "the policy requires at least one evaluation (APPROVE, BLOCK or REJECT; REVIEW does not "
                "count) before the decision is committed",
            )
        ]
    if rules.minimum_confidence > 0 and not any(e.confidence >= rules.minimum_confidence for e in counted):
        best = max(e.confidence for e in counted)
        return [
            Denial(
                "confidence_below_minimum",
                f"no evaluation reaches the policy's minimum confidence of {rules.minimum_confidence:g} "
                f"(the highest is {best:g})",
            )
        ]
    return []


def _quorum_denials(
    rules: DecisionRules, participants: Sequence[str], ballots: Sequence[Ballot]
) -> list[Denial]:
    voters = len({b.sender for b in ballots})
    value = rules.quorum_value
    if rules.quorum_type == "count":
        if voters >= value:
            return []
        return [
            Denial("quorum_not_met", f"{voters} participant(s) voted; the policy requires at least {value:g}")
        ]
    if rules.quorum_type == "percentage":
        n = len(participants)
        share = voters / n * 100 if n else 0.0
        if share >= value:
            return []
        return [
            Denial(
                "quorum_not_met",
                f"{voters} of {n} declared participant(s) voted ({share:g}%); "
                f"the policy requires at least {value:g}%",
            )
        ]
    return [
        Denial(
            "invalid_rules",
            f"voting.quorum.type {rules.quorum_type!r} is not 'count' or 'percentage', so the required "
            "participation can never be met",
        )
    ]


def tally(rules: DecisionRules, participants: Sequence[str], ballots: Iterable[Ballot]) -> Tally:
    """Count the ballots under ``rules.algorithm`` (not meaningful for ``none``)."""
    weighted = rules.algorithm == "weighted"
    approve = reject = 0.0
    decisive = decisive_reject = False
    approvers: set[str] = set()
    for ballot in ballots:
        weight = rules.weights.get(ballot.sender, 0.0) if weighted else 1.0
        if weight == 0 or ballot.vote not in (APPROVE, REJECT):
            continue
        decisive = True
        if ballot.vote == APPROVE:
            approve += weight
            approvers.add(ballot.sender)
        else:
            reject += weight
            decisive_reject = True
    total = approve + reject
    if not decisive or total == 0:
        return Tally(Result.NO_VOTES, approve, reject, decisive_reject)
    passed = _passes(rules, participants, approve, reject, approvers)
    if passed is None:
        return Tally(Result.FAILED, approve, reject, decisive_reject, known_algorithm=False)
    return Tally(Result.PASSED if passed else Result.FAILED, approve, reject, decisive_reject)


def _passes(
    rules: DecisionRules, participants: Sequence[str], approve: float, reject: float, approvers: set[str]
) -> bool | None:
    """Whether a non-empty decisive tally passes; None for an unknown algorithm."""
    total = approve + reject
    algorithm = rules.algorithm
    if algorithm in ("majority", "weighted"):
        threshold = DEFAULT_THRESHOLD if rules.threshold is None else rules.threshold
        return total > 0 and approve / total >= threshold
    if algorithm == "supermajority":
        threshold = (
            rules.threshold
            if rules.threshold is not None and rules.threshold > 0.5
            else SUPERMAJORITY_FALLBACK
        )
        return approve / total >= threshold
    if algorithm == "plurality":
        return approve > reject
    if algorithm == "unanimous":
        # An empty roster never passes: the vacuous "everyone approved" is not an approval.
        return bool(participants) and reject == 0 and all(p in approvers for p in participants)
    return None


def _outcome_denials(
    rules: DecisionRules, schema_version: int, t: Tally, outcome_positive: bool
) -> list[Denial]:
    counts = f"{t.approve:g} approve against {t.reject:g} reject"
    if outcome_positive:
        if t.result is Result.PASSED:
            return []
        if t.result is Result.FAILED:
            if not t.known_algorithm:
                return [
                    Denial(
                        "invalid_rules",
                        f"voting.algorithm {rules.algorithm!r} is not one this runtime knows, so no vote "
                        "can pass; bind a policy with none, majority, supermajority, unanimous, weighted "
                        "or plurality",
                    )
                ]
            return [Denial("threshold_not_met", f"the {rules.algorithm} vote did not pass ({counts})")]
        if schema_version >= 3 or rules.commitment.require_vote_quorum:
            return [
                Denial(
                    "no_votes",
                    f"no decisive APPROVE or REJECT vote has been cast, and the {rules.algorithm} policy "
                    "needs one before a positive Commitment",
                )
            ]
        return []

    if t.result is Result.NO_VOTES:
        return [
            Denial(
                "no_votes",
                "no decisive APPROVE or REJECT vote has been cast, so a decline is not backed by the vote",
            )
        ]
    denials: list[Denial] = []
    waived = schema_version >= 2 and rules.commitment.allow_decline_over_approval
    if t.result is Result.PASSED and not waived:
        denials.append(
            Denial(
                "decline_over_approval",
                f"the {rules.algorithm} vote passed ({counts}); the policy does not allow declining "
                "an approved decision",
            )
        )
    if not t.decisive_reject:
        denials.append(
            Denial(
                "decline_not_backed",
                "a negative Commitment needs at least one decisive REJECT vote on record",
            )
        )
    return denials
