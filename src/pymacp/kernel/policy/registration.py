"""Policy registry semantics (RFC-MACP-0012 §7): what may be registered and unregistered.

The registry itself is a plain mapping owned by the caller; these functions decide and
return the new mapping or a Rejection (INVALID_POLICY_DEFINITION).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..errors import ErrorCode, Rejection
from .descriptor import BUILTIN_POLICY_IDS, DEFAULT_POLICY_ID, PolicyDescriptor, is_reserved_policy_id


def _refuse(message: str) -> Rejection:
    return Rejection(ErrorCode.INVALID_POLICY_DEFINITION, message)


def validate_descriptor(descriptor: PolicyDescriptor) -> Rejection | None:
    """Admission checks for a descriptor (also applied to WhatIfReplay candidates)."""
    if not descriptor.policy_id.strip():
        return _refuse("policy_id must not be blank")
    if not descriptor.mode.strip():
        return _refuse("mode must be a mode id or '*'")
    if descriptor.schema_version == 0:
        return _refuse("schema_version must be set (1, 2 or 3)")
    return None


def register(
    registry: Mapping[str, PolicyDescriptor], descriptor: PolicyDescriptor, now_ms: int
) -> dict[str, PolicyDescriptor] | Rejection:
    if is_reserved_policy_id(descriptor.policy_id):
        return _refuse(f"policy id {descriptor.policy_id!r} is reserved")
    if descriptor.policy_id in registry:
        return _refuse(f"policy {descriptor.policy_id!r} is already registered; policy ids are immutable")
    problem = validate_descriptor(descriptor)
    if problem is not None:
        return problem
    updated = dict(registry)
    updated[descriptor.policy_id] = replace(descriptor, registered_at_unix_ms=now_ms)
    return updated


def unregister(registry: Mapping[str, PolicyDescriptor], policy_id: str) -> dict[str, PolicyDescriptor] | Rejection:
    if policy_id == DEFAULT_POLICY_ID or policy_id in BUILTIN_POLICY_IDS:
        return _refuse(f"built-in policy {policy_id!r} cannot be unregistered")
    if policy_id not in registry:
        return Rejection(ErrorCode.UNKNOWN_POLICY_VERSION, f"policy {policy_id!r} is not registered")
    updated = dict(registry)
    del updated[policy_id]
    return updated
