"""Commitment payload checks shared by every mode (RFC-MACP-0001 §7.3, RFC-MACP-0013 §9).

A mode's Commitment handler calls :func:`check_common` after the authority check (the
rule table's job) and before its own readiness and policy checks.
"""

from __future__ import annotations

import re
from typing import Any

from macp.v1 import core_pb2

from .errors import invalid
from .modes.base import Context
from .policy.descriptor import DEFAULT_POLICY_ID

CommitmentPayload = core_pb2.CommitmentPayload

POSITIVE_SUFFIXES = ("selected", "accepted", "completed", "approved", "converged")
NEGATIVE_SUFFIXES = ("rejected", "failed", "declined")
COMMITMENT_HASH_RE = re.compile(r"sha256:[0-9a-f]{64}")


def _norm_policy(version: str) -> str:
    return version or DEFAULT_POLICY_ID


def check_common(ctx: Context, payload: Any) -> None:
    """Field checks every Commitment must pass; raises INVALID_ENVELOPE."""
    for name in ("commitment_id", "action", "authority_scope", "reason"):
        if not getattr(payload, name).strip():
            raise invalid(f"Commitment {name} must not be blank")
    if payload.mode_version != ctx.mode_version:
        raise invalid(
            f"Commitment mode_version {payload.mode_version!r} does not match "
            f"the session's {ctx.mode_version!r}"
        )
    if payload.configuration_version != ctx.configuration_version:
        raise invalid(
            f"Commitment configuration_version {payload.configuration_version!r} does not match "
            f"the session's {ctx.configuration_version!r}"
        )
    # "" and "policy.default" name the same policy; an empty value matches whatever is bound.
    if payload.policy_version and _norm_policy(payload.policy_version) != _norm_policy(ctx.policy.policy_id):
        raise invalid(
            f"Commitment policy_version {payload.policy_version!r} does not match the session's "
            f"bound policy {ctx.policy.policy_id!r}"
        )
    if payload.HasField("supersedes"):
        ref = payload.supersedes
        if not ref.session_id:
            raise invalid("Commitment supersedes.session_id must not be empty")
        if not COMMITMENT_HASH_RE.fullmatch(ref.commitment_hash):
            raise invalid(
                "Commitment supersedes.commitment_hash must be 'sha256:' followed by 64 lowercase hex digits"
            )
    action: str = payload.action
    if action.endswith(NEGATIVE_SUFFIXES) and payload.outcome_positive:
        raise invalid(f"action {action!r} names a negative outcome but outcome_positive is true")
    if action.endswith(POSITIVE_SUFFIXES) and not payload.outcome_positive:
        raise invalid(f"action {action!r} names a positive outcome but outcome_positive is false")
