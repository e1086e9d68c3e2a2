"""The per-run view: the state the projection's reducers build, and its JSON form.

Lists that grow with traffic are capped (most recent kept); the JSON form is a deep copy,
so nothing a caller does to it can reach a cached view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SIGNALS = 200
MAX_PROGRESS = 100
MAX_CONTRIBUTIONS = 200
MAX_TASK_UPDATES = 20
MAX_MESSAGES = 200


@dataclass
class View:
    last_seq: int = 0
    session: dict[str, Any] = field(default_factory=dict)
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    handoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    contributions: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    policy_denials: list[dict[str, Any]] = field(default_factory=list)
    commitment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    status_history: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    last_event_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = _copy(
            {
                "lastSeq": self.last_seq,
                "session": self.session,
                "status": self.status,
                "statusHistory": self.status_history,
                "participants": sorted(self.participants.values(), key=lambda p: p["id"]),
                "proposals": [_with_tally(p) for p in self.proposals.values()],
                "approvalRequests": [_with_ballot_tally(r) for r in self.approvals.values()],
                "tasks": list(self.tasks.values()),
                "handoffs": list(self.handoffs.values()),
                "contributions": self.contributions,
                "signals": self.signals,
                "progress": self.progress,
                "messages": self.messages,
                "policyDenials": self.policy_denials,
                "commitment": self.commitment,
                "receipt": self.receipt,
                "cancellations": self.cancellations,
                "gaps": self.gaps,
                "timeline": {
                    "events": sum(self.counts.values()),
                    "lastSeq": self.last_seq,
                    "lastEventAtMs": self.last_event_ms,
                    "byType": dict(sorted(self.counts.items())),
                },
            }
        )
        return document


def _with_tally(proposal: Mapping[str, Any]) -> dict[str, Any]:
    votes = list(proposal["votes"].values())
    tally = {"approve": 0, "reject": 0, "abstain": 0}
    for vote in votes:
        key = str(vote["vote"]).lower()
        if key in tally:
            tally[key] += 1
    return {**proposal, "votes": votes, "tally": tally}


def _with_ballot_tally(request: Mapping[str, Any]) -> dict[str, Any]:
    ballots = list(request["ballots"].values())
    tally = {"approve": 0, "reject": 0, "abstain": 0}
    for ballot in ballots:
        tally[ballot["ballot"]] += 1
    required = request.get("requiredApprovals") or 0
    return {
        **request,
        "ballots": ballots,
        "tally": tally,
        "reached": bool(required) and tally["approve"] >= required,
    }


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value
