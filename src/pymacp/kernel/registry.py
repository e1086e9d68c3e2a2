"""The registries a SessionStart resolves against, as a read-only value.

The runtime owns the live policy and extension-mode registries (and persists them); it
hands the kernel this snapshot. Built-in modes and the standard policies are always here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import catalog
from .modes.descriptor import ModeDescriptor
from .policy.descriptor import STANDARD_POLICIES, PolicyDescriptor

_STANDARD = {p.policy_id: p for p in STANDARD_POLICIES}


@dataclass(frozen=True, slots=True)
class Registry:
    policies: Mapping[str, PolicyDescriptor] = field(default_factory=dict)
    extension_modes: Mapping[str, ModeDescriptor] = field(default_factory=dict)

    def policy(self, policy_id: str) -> PolicyDescriptor | None:
        return _STANDARD.get(policy_id) or self.policies.get(policy_id)

    def mode_descriptor(self, mode: str) -> ModeDescriptor | None:
        builtin = catalog.BUILTIN_DESCRIPTORS.get(mode)
        return builtin or self.extension_modes.get(mode)
