"""Handoff mode — placeholder: the rules are not implemented yet."""

from __future__ import annotations

from typing import Any

from ..policy.rules import GenericRules
from .base import ModeSpec, StartContext
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.handoff.v1",
    mode_version="1.0.0",
    title="Handoff",
    description="Transfer ownership of work to another participant.",
    determinism_class="context-frozen",
    participant_model="delegated",
    message_types=('SessionStart', 'HandoffOffer', 'HandoffContext', 'HandoffAccept', 'HandoffDecline', 'Commitment'),
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
