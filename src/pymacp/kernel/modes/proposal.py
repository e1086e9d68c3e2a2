"""Proposal mode — placeholder: the rules are not implemented yet."""

from __future__ import annotations

from typing import Any

from ..policy.rules import GenericRules
from .base import ModeSpec, StartContext
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.proposal.v1",
    mode_version="1.0.0",
    title="Proposal",
    description="Negotiate proposals and counter-proposals to mutual acceptance.",
    determinism_class="semantic-deterministic",
    participant_model="peer",
    message_types=('SessionStart', 'Proposal', 'CounterProposal', 'Accept', 'Reject', 'Withdraw', 'Commitment'),
)


def _start(ctx: StartContext) -> dict[str, Any]:
    return {}


SPEC: ModeSpec[dict[str, Any]] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules={},
    start=_start,
    phase=lambda s: "Open",
    project=lambda s: {},
    parse_rules=GenericRules.parse,
)
