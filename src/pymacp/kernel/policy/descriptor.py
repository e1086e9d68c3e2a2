"""Governance policy descriptors (RFC-MACP-0012) and the built-in ones.

A descriptor is bound to a session at SessionStart and frozen there: the session keeps
its own copy, so unregistering or (in a later runtime) changing the registry never
changes how a running or replayed session is governed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from macp.v1 import policy_pb2

DEFAULT_POLICY_ID = "policy.default"
RESERVED_PREFIX = "policy.std."
WILDCARD_MODE = "*"
SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)


@dataclass(frozen=True, slots=True, eq=False)
class PolicyDescriptor:
    """A governance policy. ``rules`` is the parsed JSON object (treat it as read-only)."""

    policy_id: str
    mode: str
    description: str
    rules: Mapping[str, Any]
    schema_version: int
    registered_at_unix_ms: int = 0

    def rules_json(self) -> str:
        return json.dumps(self.rules, sort_keys=True, separators=(",", ":"))

    def identity(self) -> tuple[str, str, int, str]:
        """Policy identity is id + mode + schema version + rules; registration time is excluded."""
        return (self.policy_id, self.mode, self.schema_version, self.rules_json())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyDescriptor) and self.identity() == other.identity()

    def __hash__(self) -> int:
        return hash(self.identity())

    def applies_to(self, mode: str) -> bool:
        return self.mode in (WILDCARD_MODE, mode)

    def to_proto(self) -> policy_pb2.PolicyDescriptor:
        return policy_pb2.PolicyDescriptor(
            policy_id=self.policy_id,
            mode=self.mode,
            description=self.description,
            rules=self.rules_json(),
            schema_version=self.schema_version,
            registered_at_unix_ms=self.registered_at_unix_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "mode": self.mode,
            "description": self.description,
            "rules": dict(self.rules),
            "schema_version": self.schema_version,
            "registered_at_unix_ms": self.registered_at_unix_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyDescriptor:
        return cls(
            policy_id=str(data["policy_id"]),
            mode=str(data["mode"]),
            description=str(data.get("description", "")),
            rules=dict(data.get("rules") or {}),
            schema_version=int(data["schema_version"]),
            registered_at_unix_ms=int(data.get("registered_at_unix_ms", 0)),
        )


DEFAULT_POLICY = PolicyDescriptor(
    policy_id=DEFAULT_POLICY_ID,
    mode=WILDCARD_MODE,
    description="Built-in default: no constraints beyond mode validation; initiator-only commitment.",
    rules={},
    schema_version=1,
)


def _std_decision(policy_id: str, description: str, voting: dict[str, Any]) -> PolicyDescriptor:
    return PolicyDescriptor(
        policy_id=policy_id,
        mode="macp.mode.decision.v1",
        description=description,
        rules={"voting": voting, "commitment": {"authority": "initiator_only", "require_vote_quorum": True}},
        schema_version=1,
    )


STANDARD_POLICIES: tuple[PolicyDescriptor, ...] = (
    DEFAULT_POLICY,
    _std_decision(
        "policy.std.majority",
        "Standard profile: simple majority of decisive votes.",
        {"algorithm": "majority", "threshold": 0.5},
    ),
    _std_decision(
        "policy.std.supermajority",
        "Standard profile: two-thirds supermajority with at least two voters.",
        {
            "algorithm": "supermajority",
            "threshold": 0.6666666666666666,
            "quorum": {"type": "count", "value": 2},
        },
    ),
    _std_decision(
        "policy.std.unanimous",
        "Standard profile: every declared participant approves.",
        {"algorithm": "unanimous"},
    ),
)


def is_reserved_policy_id(policy_id: str) -> bool:
    return policy_id == DEFAULT_POLICY_ID or policy_id.startswith(RESERVED_PREFIX)
