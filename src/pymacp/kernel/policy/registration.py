"""Policy registry semantics (RFC-MACP-0012 §7): what may be registered and unregistered.

The registry itself is a plain mapping owned by the caller; these functions decide and
return the new mapping or a Rejection (INVALID_POLICY_DEFINITION unless noted).

Descriptors arrive in two shapes, and each has a strict parser that ends in
:func:`validate_descriptor`, so whatever they return is admissible as is:

- :func:`descriptor_from_proto` — the wire ``macp.v1.PolicyDescriptor`` (RegisterPolicy,
  WhatIfReplay candidates), whose ``rules`` is JSON text;
- :func:`descriptor_from_json` — a descriptor document with ``rules`` as an object (a
  policy file, ``macp-policy-descriptor.schema.json``).

``schema_version`` must be 1, 2 or 3 to be registered. Runtime 0.9.0 refuses only 0 at
registration and denies other versions at commitment time; this runtime follows the spec's
descriptor schema (``enum [1, 2, 3]``, pinned by the conformance document
``schema-version-out-of-range.json``) and refuses them up front, because a policy that can
never authorize a Commitment is an authoring error better reported to its author. The
evaluator still denies any other version it meets in stored data (``unsupported_schema_version``).

``rules`` text is parsed strictly: it must be a JSON object; ``NaN``/``Infinity``, numbers
that overflow to infinity, and duplicate keys in one object (whose meaning would depend on
the parser) are refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from macp.v1 import policy_pb2

from ..errors import ErrorCode, Rejection
from .descriptor import (
    DEFAULT_POLICY_ID,
    SUPPORTED_SCHEMA_VERSIONS,
    PolicyDescriptor,
    is_reserved_policy_id,
)
from .validate import validate_rules

REQUIRED_DOCUMENT_KEYS = ("policy_id", "mode", "description", "rules", "schema_version")


def _refuse(message: str) -> Rejection:
    return Rejection(ErrorCode.INVALID_POLICY_DEFINITION, message)


def validate_descriptor(descriptor: PolicyDescriptor) -> Rejection | None:
    """Admission checks for a descriptor (also applied to WhatIfReplay candidates)."""
    if not descriptor.policy_id.strip():
        return _refuse("policy_id must not be blank; use an id of the form policy.<namespace>.<name>")
    if not descriptor.mode.strip():
        return _refuse("mode must be a mode id (such as macp.mode.decision.v1) or '*' for every mode")
    if descriptor.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        return _refuse(f"schema_version must be 1, 2 or 3, got {descriptor.schema_version}")
    return validate_rules(descriptor.mode, descriptor.rules)


# -- parsing ------------------------------------------------------------------------------------


class _BadJson(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _BadJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"the number {text} is too large for a 64-bit float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _BadJson(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def parse_rules(text: str) -> dict[str, Any] | Rejection:
    """Parse ``PolicyDescriptor.rules`` text into a JSON object."""
    try:
        value = json.loads(
            text, parse_constant=_no_constants, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except _BadJson as exc:
        return _refuse(f"rules is not acceptable JSON: {exc}")
    except json.JSONDecodeError as exc:
        hint = " (send {} for no rules)" if not text.strip() else ""
        return _refuse(f"rules is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}")
    except ValueError as exc:  # e.g. an integer literal beyond the interpreter's digit limit
        return _refuse(f"rules is not acceptable JSON: {exc}")
    except RecursionError:
        return _refuse("rules is nested too deeply")
    if not isinstance(value, dict):
        return _refuse(f"rules must be a JSON object, got a JSON {type(value).__name__}")
    return value


def descriptor_from_proto(msg: policy_pb2.PolicyDescriptor) -> PolicyDescriptor | Rejection:
    """A validated descriptor from its wire form; ``registered_at_unix_ms`` is carried as given."""
    rules = parse_rules(msg.rules)
    if isinstance(rules, Rejection):
        return rules
    descriptor = PolicyDescriptor(
        policy_id=msg.policy_id,
        mode=msg.mode,
        description=msg.description,
        rules=rules,
        schema_version=msg.schema_version,
        registered_at_unix_ms=msg.registered_at_unix_ms,
    )
    problem = validate_descriptor(descriptor)
    return descriptor if problem is None else problem


def descriptor_from_json(document: Any) -> PolicyDescriptor | Rejection:
    """A validated descriptor from its JSON document form (``rules`` an object, not text)."""
    if not isinstance(document, Mapping):
        return _refuse("a policy descriptor must be a JSON object")
    missing = [key for key in REQUIRED_DOCUMENT_KEYS if key not in document]
    if missing:
        return _refuse(f"policy descriptor is missing required keys: {', '.join(missing)}")
    for key in ("policy_id", "mode", "description"):
        if not isinstance(document[key], str):
            return _refuse(f"policy descriptor {key} must be a string")
    version = document["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        return _refuse(f"schema_version must be the integer 1, 2 or 3, got {version!r}")
    registered_at = document.get("registered_at_unix_ms", 0)
    if isinstance(registered_at, bool) or not isinstance(registered_at, int) or registered_at < 0:
        return _refuse("registered_at_unix_ms must be a non-negative integer when present")
    rules = document["rules"]
    if not isinstance(rules, Mapping):
        return _refuse("rules must be a JSON object")
    descriptor = PolicyDescriptor(
        policy_id=document["policy_id"],
        mode=document["mode"],
        description=document["description"],
        rules=dict(rules),
        schema_version=version,
        registered_at_unix_ms=registered_at,
    )
    problem = validate_descriptor(descriptor)
    return descriptor if problem is None else problem


# -- registry operations ------------------------------------------------------------------------


def register(
    registry: Mapping[str, PolicyDescriptor], descriptor: PolicyDescriptor, now_ms: int
) -> dict[str, PolicyDescriptor] | Rejection:
    """Add ``descriptor``, stamped with ``now_ms``; reserved and existing ids are refused."""
    if is_reserved_policy_id(descriptor.policy_id):
        return _refuse(
            f"policy id {descriptor.policy_id!r} is reserved ('{DEFAULT_POLICY_ID}' and 'policy.std.*' "
            "belong to the runtime); choose another id"
        )
    if descriptor.policy_id in registry:
        return _refuse(
            f"policy {descriptor.policy_id!r} is already registered; policy ids are immutable, "
            "so register changed rules under a new id"
        )
    problem = validate_descriptor(descriptor)
    if problem is not None:
        return problem
    updated = dict(registry)
    updated[descriptor.policy_id] = replace(descriptor, registered_at_unix_ms=now_ms)
    return updated


def unregister(
    registry: Mapping[str, PolicyDescriptor], policy_id: str
) -> dict[str, PolicyDescriptor] | Rejection:
    """Remove ``policy_id``; sessions that bound it keep their own copy.

    Reserved ids (``policy.default``, ``policy.std.*``) are refused with
    INVALID_POLICY_DEFINITION; an id that is not registered gets UNKNOWN_POLICY_VERSION.
    """
    if is_reserved_policy_id(policy_id):
        return _refuse(f"policy {policy_id!r} is reserved and cannot be unregistered")
    if policy_id not in registry:
        return Rejection(ErrorCode.UNKNOWN_POLICY_VERSION, f"policy {policy_id!r} is not registered")
    updated = dict(registry)
    del updated[policy_id]
    return updated
