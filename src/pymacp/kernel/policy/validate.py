"""Strict validation of a policy's ``rules`` object, per mode (RFC-MACP-0012 §4, runtime 0.9.0).

Theory of operation. A descriptor is validated once, when it is registered (or offered as
a WhatIfReplay candidate); afterwards its rules are trusted and read through the lenient
typed views of :mod:`.rules`. Validation therefore has to be strict enough that every
stored policy means exactly what its author wrote:

- every rule object is *closed*: a key the schema does not declare is refused, so a typo
  such as ``veto_threshhold`` cannot silently fall back to a default;
- keys starting with ``_`` or ``$`` are annotations and allowed on every rule object;
- ``x-<reverse.dns>`` keys are rule extensions; an embedder would have to register them,
  and this runtime registers none, so they are refused with a message saying so;
- every value is type- and range-checked, every string option is a closed enum, and the
  cross-field rules hold (``supermajority`` needs a threshold above 0.5, ``weighted`` needs
  weights, ``designated_role`` needs at least one role, a percentage is at most 100);
- a ``*`` policy applies to every mode, so it must satisfy every standard mode's schema
  (in practice only ``commitment.authority`` and ``commitment.designated_roles``);
- a mode without a rule schema (an extension, or a mode this runtime does not know)
  accepts any JSON object.

The schemas are data: each mode's schema is a tree of small check functions built with
``_object``, ``_enum``, ``_integer`` … below, mirroring ``schemas/json/policy/*.json``.

    mode                    top-level keys (each a closed object)
    macp.mode.decision.v1   voting{algorithm, threshold, quorum{type, value}, weights},
                            objection_handling{critical_severity_vetoes, veto_threshold,
                            critical_objection_action}, evaluation{minimum_confidence,
                            required_before_voting}, commitment{authority, designated_roles,
                            require_vote_quorum, allow_decline_over_approval}
    macp.mode.proposal.v1   acceptance{criterion}, counter_proposal{max_rounds},
                            rejection{terminal_on_any_reject}, commitment{authority, designated_roles}
    macp.mode.task.v1       assignment{allow_reassignment_on_reject}, completion{require_output},
                            commitment{authority, designated_roles}
    macp.mode.handoff.v1    acceptance{implicit_accept_timeout_ms}, commitment{authority, designated_roles}
    macp.mode.quorum.v1     threshold{type, value}, abstention{counts_toward_quorum, interpretation},
                            commitment{authority, designated_roles}

Known, deliberate differences from the spec JSON schemas (Draft 2020-12):

- stricter: an integer field refuses a float even when it is integral (``3.0``), as a
  strictly typed JSON reader does; JSON Schema's ``integer`` accepts it;
- stricter: integers outside the signed 64-bit range and non-finite numbers (``Infinity``,
  ``NaN``) are refused anywhere in the rules, annotations and extension-mode rules
  included, so that a stored policy always serialises back to portable JSON;
- same verdict, own message: ``x-…`` keys (the schemas refuse them as unknown keys);
- looser: Quorum ``threshold.type`` also accepts ``count``, the runtime's alias of
  ``n_of_m`` (see :data:`QUORUM_THRESHOLD_TYPES`); the spec schema's enum does not.

Not checked, on purpose: which ``schema_version`` introduced a field. ``critical_objection_action``
and ``allow_decline_over_approval`` are accepted at version 1 too: neither the schemas nor the
0.9 registration checks (macp-protocol.md §6.2) gate fields by version.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ErrorCode, Rejection
from .descriptor import WILDCARD_MODE

DECISION_MODE = "macp.mode.decision.v1"
PROPOSAL_MODE = "macp.mode.proposal.v1"
TASK_MODE = "macp.mode.task.v1"
HANDOFF_MODE = "macp.mode.handoff.v1"
QUORUM_MODE = "macp.mode.quorum.v1"

ANNOTATION_PREFIXES = ("_", "$")
EXTENSION_PREFIX = "x-"
MAX_INTEGER = 2**63 - 1

VOTING_ALGORITHMS = ("none", "majority", "supermajority", "unanimous", "weighted", "plurality")
DECISION_QUORUM_TYPES = ("count", "percentage")
CRITICAL_OBJECTION_ACTIONS = ("deny", "finalize_decline", "hold")
COMMITMENT_AUTHORITIES = ("initiator_only", "any_participant", "designated_role")
ACCEPTANCE_CRITERIA = ("all_parties", "counterparty", "initiator")
# ``count`` is the runtime's alias of ``n_of_m``; ``weighted`` is reserved (RFC-MACP-0012 1.2.0-draft).
QUORUM_THRESHOLD_TYPES = ("n_of_m", "count", "percentage")
ABSTENTION_INTERPRETATIONS = ("neutral", "implicit_reject", "ignored")

Check = Callable[[Any, str], None]
CrossCheck = Callable[[Mapping[str, Any], str], None]


class _Invalid(Exception):
    """Raised by a check to stop at the first problem; turned into a Rejection below."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.text = f"{path} {problem}"


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if _PLAIN_KEY.match(key) else f"{path}[{json.dumps(key)}]"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _quoted(options: tuple[str, ...]) -> str:
    return ", ".join(repr(o) for o in options)


# -- check builders ---------------------------------------------------------------------------


def _boolean(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise _Invalid(path, f"must be true or false, got {_show(value)}")


def _enum(*allowed: str, reserved: Mapping[str, str] | None = None) -> Check:
    def check(value: Any, path: str) -> None:
        if reserved and isinstance(value, str) and value in reserved:
            why = reserved[value]
            raise _Invalid(path, f"value {value!r} is reserved ({why}); use one of {_quoted(allowed)}")
        if not isinstance(value, str) or value not in allowed:
            raise _Invalid(path, f"must be one of {_quoted(allowed)}, got {_show(value)}")

    return check


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _integer(minimum: int) -> Check:
    def check(value: Any, path: str) -> None:
        # The upper bound (MAX_INTEGER) is checked for every number by _json_problem.
        if not _is_integer(value) or value < minimum:
            raise _Invalid(path, f"must be an integer of at least {minimum}, got {_show(value)}")

    return check


def _number(low: float, high: float | None, *, low_exclusive: bool) -> Check:
    low_text = f"greater than {low:g}" if low_exclusive else f"at least {low:g}"
    wanted = f"a number {low_text}" + ("" if high is None else f" and at most {high:g}")

    def check(value: Any, path: str) -> None:
        if not _is_number(value):
            raise _Invalid(path, f"must be {wanted}, got {_show(value)}")
        too_low = value <= low if low_exclusive else value < low
        if too_low or (high is not None and value > high):
            raise _Invalid(path, f"must be {wanted}, got {_show(value)}")

    return check


def _string_list(value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise _Invalid(path, f"must be an array of strings, got {_show(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(f"{path}[{i}]", f"must be a string, got {_show(item)}")


def _object(fields: Mapping[str, Check], *cross: CrossCheck) -> Check:
    """A closed JSON object: declared ``fields``, annotations, then the cross-field rules."""
    allowed = ", ".join(sorted(fields))

    def check(value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise _Invalid(path, f"must be a JSON object, got {_show(value)}")
        for key in sorted(value):
            if key.startswith(ANNOTATION_PREFIXES):
                continue
            where = _join(path, key)
            if key.startswith(EXTENSION_PREFIX):
                raise _Invalid(
                    where,
                    "is a rule-extension key; this runtime registers no rule extensions, so x-… keys "
                    "are refused (use a key starting with '_' or '$' for an annotation)",
                )
            if key not in fields:
                raise _Invalid(
                    where,
                    f"is not a recognised key; {path} allows {allowed} "
                    "(plus annotation keys starting with '_' or '$')",
                )
            fields[key](value[key], where)
        for rule in cross:
            rule(value, path)

    return check


# -- cross-field rules --------------------------------------------------------------------------


def _weights(value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise _Invalid(path, f"must be a JSON object mapping participant ids to weights, got {_show(value)}")
    if not value:
        raise _Invalid(path, "must name at least one participant: an empty map makes every vote non-decisive")
    for participant in sorted(value):
        weight = value[participant]
        if not _is_number(weight) or weight <= 0:
            raise _Invalid(
                _join(path, participant),
                f"must be a number greater than 0, got {_show(weight)} "
                "(leave a participant out of the map to give it no weight)",
            )


def _voting_rules(voting: Mapping[str, Any], path: str) -> None:
    algorithm = voting.get("algorithm")
    threshold = voting.get("threshold")
    where = _join(path, "threshold")
    if algorithm == "supermajority":
        if threshold is None:
            raise _Invalid(
                where, "is required when algorithm is 'supermajority' (a number above 0.5, up to 1)"
            )
        if threshold <= 0.5:
            raise _Invalid(where, f"must be greater than 0.5 for a 'supermajority', got {_show(threshold)}")
    if algorithm == "majority" and threshold is not None and threshold < 0.5:
        raise _Invalid(where, f"must be at least 0.5 when algorithm is 'majority', got {_show(threshold)}")
    if algorithm == "weighted" and "weights" not in voting:
        raise _Invalid(
            _join(path, "weights"),
            "is required when algorithm is 'weighted' (a map of participant id to a weight greater than 0)",
        )


def _commitment_rules(commitment: Mapping[str, Any], path: str) -> None:
    if commitment.get("authority") == "designated_role" and not commitment.get("designated_roles"):
        raise _Invalid(
            _join(path, "designated_roles"),
            "must list at least one participant id or role when authority is 'designated_role'",
        )


def _quorum_threshold_rules(threshold: Mapping[str, Any], path: str) -> None:
    value = threshold.get("value")
    if threshold.get("type") == "percentage" and value is not None and value > 100:
        raise _Invalid(_join(path, "value"), f"must be at most 100 for a 'percentage', got {_show(value)}")


# -- the schemas --------------------------------------------------------------------------------

_AUTHORITY = _enum(*COMMITMENT_AUTHORITIES)
_COMMON_COMMITMENT = _object({"authority": _AUTHORITY, "designated_roles": _string_list}, _commitment_rules)

_DECISION = _object(
    {
        "voting": _object(
            {
                "algorithm": _enum(*VOTING_ALGORITHMS),
                "threshold": _number(0, 1, low_exclusive=True),
                "quorum": _object(
                    {"type": _enum(*DECISION_QUORUM_TYPES), "value": _number(0, None, low_exclusive=False)}
                ),
                "weights": _weights,
            },
            _voting_rules,
        ),
        "objection_handling": _object(
            {
                "critical_severity_vetoes": _boolean,
                "veto_threshold": _integer(1),
                "critical_objection_action": _enum(*CRITICAL_OBJECTION_ACTIONS),
            }
        ),
        "evaluation": _object(
            {"minimum_confidence": _number(0, 1, low_exclusive=False), "required_before_voting": _boolean}
        ),
        "commitment": _object(
            {
                "authority": _AUTHORITY,
                "designated_roles": _string_list,
                "require_vote_quorum": _boolean,
                "allow_decline_over_approval": _boolean,
            },
            _commitment_rules,
        ),
    }
)

_PROPOSAL = _object(
    {
        "acceptance": _object({"criterion": _enum(*ACCEPTANCE_CRITERIA)}),
        "counter_proposal": _object({"max_rounds": _integer(0)}),
        "rejection": _object({"terminal_on_any_reject": _boolean}),
        "commitment": _COMMON_COMMITMENT,
    }
)

_TASK = _object(
    {
        "assignment": _object({"allow_reassignment_on_reject": _boolean}),
        "completion": _object({"require_output": _boolean}),
        "commitment": _COMMON_COMMITMENT,
    }
)

_HANDOFF = _object(
    {
        "acceptance": _object({"implicit_accept_timeout_ms": _integer(0)}),
        "commitment": _COMMON_COMMITMENT,
    }
)

_QUORUM = _object(
    {
        "threshold": _object(
            {
                "type": _enum(
                    *QUORUM_THRESHOLD_TYPES,
                    reserved={"weighted": "removed from RFC-MACP-0012 without ever having defined semantics"},
                ),
                "value": _integer(1),
            },
            _quorum_threshold_rules,
        ),
        "abstention": _object(
            {"counts_toward_quorum": _boolean, "interpretation": _enum(*ABSTENTION_INTERPRETATIONS)}
        ),
        "commitment": _COMMON_COMMITMENT,
    }
)

# Wildcard policies are checked against these in this order; the first failure is reported.
RULE_SCHEMAS: Mapping[str, Check] = {
    DECISION_MODE: _DECISION,
    PROPOSAL_MODE: _PROPOSAL,
    TASK_MODE: _TASK,
    HANDOFF_MODE: _HANDOFF,
    QUORUM_MODE: _QUORUM,
}


# -- entry point --------------------------------------------------------------------------------


def _json_problem(rules: Any) -> str | None:
    """Why ``rules`` is not plain, finite JSON data (walked without recursion), or None."""
    stack: list[tuple[Any, str]] = [(rules, "rules")]
    while stack:
        value, path = stack.pop()
        if value is None or isinstance(value, bool | str):
            continue
        if isinstance(value, int):
            if not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
                return f"{path} is an integer outside the signed 64-bit range"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{path} is not a finite number (NaN and Infinity are not JSON)"
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{path} has a non-string key {key!r}"
                stack.append((item, _join(path, key)))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
        else:
            return f"{path} holds a {type(value).__name__}, which is not a JSON value"
    return None


def _refuse(message: str) -> Rejection:
    return Rejection(ErrorCode.INVALID_POLICY_DEFINITION, message)


def validate_rules(mode: str, rules: Any) -> Rejection | None:
    """Check ``rules`` for a policy bound to ``mode``; None when valid, else INVALID_POLICY_DEFINITION."""
    if not isinstance(rules, Mapping):
        return _refuse(f"rules must be a JSON object, got {_show(rules)}")
    problem = _json_problem(rules)
    if problem is not None:
        return _refuse(f"invalid policy rules: {problem}")
    if mode == WILDCARD_MODE:
        for schema_mode, schema in RULE_SCHEMAS.items():
            try:
                schema(rules, "rules")
            except _Invalid as exc:
                return _refuse(
                    "invalid policy rules: a '*' policy must satisfy every standard mode's rules schema; "
                    f"for {schema_mode}: {exc.text}"
                )
        return None
    mode_schema = RULE_SCHEMAS.get(mode)
    if mode_schema is None:
        return None  # extension or unknown mode: any JSON object
    try:
        mode_schema(rules, "rules")
    except _Invalid as exc:
        return _refuse(f"invalid policy rules for {mode}: {exc.text}")
    return None
