"""Typed, defaulted views of a policy's ``rules`` object, one per standard mode.

Modes and evaluators read these, never the raw JSON. Parsing here is lenient (missing or
mistyped keys fall back to the RFC-MACP-0012 defaults) because descriptors are validated
strictly once, at registration (:mod:`.validate`); a stored descriptor is trusted as is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _bool(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key)
    return value if isinstance(value, bool) else default


def _num(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) if math.isfinite(value) else default


def _str(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) and value else default


@dataclass(frozen=True, slots=True)
class CommitmentRules:
    authority: str = "initiator_only"  # initiator_only | any_participant | designated_role
    designated_roles: tuple[str, ...] = ()
    require_vote_quorum: bool = False
    allow_decline_over_approval: bool = False

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> CommitmentRules:
        c = _obj(rules, "commitment")
        roles = c.get("designated_roles")
        return cls(
            authority=_str(c, "authority", "initiator_only"),
            designated_roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
            require_vote_quorum=_bool(c, "require_vote_quorum"),
            allow_decline_over_approval=_bool(c, "allow_decline_over_approval"),
        )

    def may_commit(self, sender: str, initiator: str, participants: tuple[str, ...]) -> bool:
        if self.authority == "any_participant":
            return sender == initiator or sender in participants
        if self.authority == "designated_role":
            return sender in self.designated_roles
        return sender == initiator


@dataclass(frozen=True, slots=True)
class DecisionRules:
    algorithm: str = "none"  # none | majority | supermajority | unanimous | weighted | plurality
    threshold: float | None = None  # None: the algorithm's default
    quorum_type: str = "count"  # count | percentage (0-100)
    quorum_value: float = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)
    critical_severity_vetoes: bool = False
    veto_threshold: int = 1
    critical_objection_action: str = "deny"  # deny | finalize_decline | hold
    minimum_confidence: float = 0.0
    required_before_voting: bool = False
    commitment: CommitmentRules = field(default_factory=CommitmentRules)

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> DecisionRules:
        voting = _obj(rules, "voting")
        quorum = _obj(voting, "quorum")
        objections = _obj(rules, "objection_handling")
        evaluation = _obj(rules, "evaluation")
        raw_weights = _obj(voting, "weights")
        weights = {
            k: float(v)
            for k, v in raw_weights.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        threshold = voting.get("threshold")
        return cls(
            algorithm=_str(voting, "algorithm", "none"),
            threshold=float(threshold)
            if isinstance(threshold, int | float) and not isinstance(threshold, bool)
            else None,
            quorum_type=_str(quorum, "type", "count"),
            quorum_value=_num(quorum, "value", 0.0),
            weights=weights,
            critical_severity_vetoes=_bool(objections, "critical_severity_vetoes"),
            veto_threshold=max(1, int(_num(objections, "veto_threshold", 1))),
            critical_objection_action=_str(objections, "critical_objection_action", "deny"),
            minimum_confidence=_num(evaluation, "minimum_confidence", 0.0),
            required_before_voting=_bool(evaluation, "required_before_voting"),
            commitment=CommitmentRules.parse(rules),
        )


@dataclass(frozen=True, slots=True)
class ProposalRules:
    acceptance_criterion: str = "all_parties"  # all_parties | counterparty | initiator
    max_rounds: int = 0  # 0 = unlimited counter-proposals
    terminal_on_any_reject: bool = False
    commitment: CommitmentRules = field(default_factory=CommitmentRules)

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> ProposalRules:
        return cls(
            acceptance_criterion=_str(_obj(rules, "acceptance"), "criterion", "all_parties"),
            max_rounds=max(0, int(_num(_obj(rules, "counter_proposal"), "max_rounds", 0))),
            terminal_on_any_reject=_bool(_obj(rules, "rejection"), "terminal_on_any_reject"),
            commitment=CommitmentRules.parse(rules),
        )


@dataclass(frozen=True, slots=True)
class TaskRules:
    allow_reassignment_on_reject: bool = False
    require_output: bool = False
    commitment: CommitmentRules = field(default_factory=CommitmentRules)

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> TaskRules:
        return cls(
            allow_reassignment_on_reject=_bool(_obj(rules, "assignment"), "allow_reassignment_on_reject"),
            require_output=_bool(_obj(rules, "completion"), "require_output"),
            commitment=CommitmentRules.parse(rules),
        )


@dataclass(frozen=True, slots=True)
class HandoffRules:
    implicit_accept_timeout_ms: int = 0  # 0 = never
    commitment: CommitmentRules = field(default_factory=CommitmentRules)

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> HandoffRules:
        timeout = _num(_obj(rules, "acceptance"), "implicit_accept_timeout_ms", 0)
        return cls(implicit_accept_timeout_ms=max(0, int(timeout)), commitment=CommitmentRules.parse(rules))


@dataclass(frozen=True, slots=True)
class QuorumRules:
    threshold_type: str = "n_of_m"  # n_of_m (alias count) | percentage
    threshold_value: float = 0.0  # 0 = use ApprovalRequest.required_approvals
    abstention_counts_toward_quorum: bool = False
    abstention_interpretation: str = "neutral"  # neutral | implicit_reject | ignored
    commitment: CommitmentRules = field(default_factory=CommitmentRules)

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> QuorumRules:
        threshold = _obj(rules, "threshold")
        abstention = _obj(rules, "abstention")
        return cls(
            threshold_type=_str(threshold, "type", "n_of_m"),
            threshold_value=_num(threshold, "value", 0.0),
            abstention_counts_toward_quorum=_bool(abstention, "counts_toward_quorum"),
            abstention_interpretation=_str(abstention, "interpretation", "neutral"),
            commitment=CommitmentRules.parse(rules),
        )


@dataclass(frozen=True, slots=True)
class GenericRules:
    """Rules of a mode without a rule schema of its own: only ``commitment`` is read."""

    commitment: CommitmentRules = field(default_factory=CommitmentRules)

    @classmethod
    def parse(cls, rules: Mapping[str, Any]) -> GenericRules:
        return cls(commitment=CommitmentRules.parse(rules))
