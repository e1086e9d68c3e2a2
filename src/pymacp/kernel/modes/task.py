"""Task mode — placeholder: the rules are not implemented yet."""

from __future__ import annotations

from typing import Any

from ..policy.rules import GenericRules
from .base import ModeSpec, StartContext
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.task.v1",
    mode_version="1.0.0",
    title="Task",
    description="Delegate one task to an assignee and record its outcome.",
    determinism_class="structural-only",
    participant_model="orchestrated",
    message_types=('SessionStart', 'TaskRequest', 'TaskAccept', 'TaskReject', 'TaskUpdate', 'TaskComplete', 'TaskFail', 'Commitment'),
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
