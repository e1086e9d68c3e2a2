"""Strict policy-rules validation: the spec's schema tests, a differential test against the
spec JSON schemas, and one test per rule and message."""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import macp_fixtures as fx
from pymacp.kernel.errors import ErrorCode
from pymacp.kernel.policy.validate import (
    DECISION_MODE,
    HANDOFF_MODE,
    MAX_INTEGER,
    PROPOSAL_MODE,
    QUORUM_MODE,
    RULE_SCHEMAS,
    TASK_MODE,
    validate_rules,
)

MODES = {
    "decision": DECISION_MODE,
    "proposal": PROPOSAL_MODE,
    "task": TASK_MODE,
    "handoff": HANDOFF_MODE,
    "quorum": QUORUM_MODE,
}
TESTS_DIR = fx.CONFORMANCE_DIR / "json-schema-tests"
SCHEMA_DIR = fx.CONFORMANCE_DIR / "json-schemas" / "policy"
needs_conformance = pytest.mark.skipif(not fx.available(), reason=fx.MISSING)


def _docs(directory: str) -> list[Path]:
    path = TESTS_DIR / directory
    return sorted(path.glob("*.json")) if path.is_dir() else []


def _ok(mode: str, rules: Any) -> bool:
    return validate_rules(mode, rules) is None


def _message(mode: str, rules: Any) -> str:
    rejection = validate_rules(mode, rules)
    assert rejection is not None, f"{rules!r} was accepted for {mode}"
    assert rejection.code is ErrorCode.INVALID_POLICY_DEFINITION
    return rejection.message


# -- the spec's schema tests --------------------------------------------------------------------

INVALID_RULE_DIRS = {
    "invalid-policy-rules": DECISION_MODE,
    "invalid-proposal-rules": PROPOSAL_MODE,
    "invalid-quorum-rules": QUORUM_MODE,
    "invalid-task-rules": TASK_MODE,
    "invalid-handoff-rules": HANDOFF_MODE,
}
INVALID_RULE_CASES = [
    pytest.param(mode, path, id=f"{directory}/{path.stem}")
    for directory, mode in INVALID_RULE_DIRS.items()
    for path in _docs(directory)
]


@needs_conformance
def test_every_invalid_rules_directory_is_present() -> None:
    counts = {directory: len(_docs(directory)) for directory in INVALID_RULE_DIRS}
    assert counts == {
        "invalid-policy-rules": 8,
        "invalid-proposal-rules": 5,
        "invalid-quorum-rules": 6,
        "invalid-task-rules": 5,
        "invalid-handoff-rules": 5,
    }
    assert len(_docs("valid-policy-rules")) == 5


@needs_conformance
@pytest.mark.parametrize(("mode", "path"), INVALID_RULE_CASES)
def test_spec_invalid_rules_are_refused(mode: str, path: Path) -> None:
    document = json.loads(path.read_text())  # annotations kept: they must not be the cause
    _message(mode, document)


@needs_conformance
@pytest.mark.parametrize("path", _docs("valid-policy-rules"), ids=lambda p: p.stem)
def test_spec_valid_rules_are_accepted(path: Path) -> None:
    rejection = validate_rules(MODES[path.stem], json.loads(path.read_text()))
    assert rejection is None, rejection


@needs_conformance
@pytest.mark.parametrize("path", _docs("valid-policy-rules"), ids=lambda p: p.stem)
def test_spec_valid_rules_of_another_mode_are_refused(path: Path) -> None:
    # Each maximal document uses keys only its own mode declares.
    rules = json.loads(path.read_text())
    for mode in MODES.values():
        if mode != MODES[path.stem]:
            assert not _ok(mode, rules)
    assert not _ok("*", rules)


# -- differential test against the spec JSON schemas ---------------------------------------------

WORDS = ["none", "majority", "weighted", "count", "n_of_m", "percentage", "deny", "designated_role", "", "x"]
NUMBERS = [
    0,
    0.0,
    0.4,
    0.5,
    0.51,
    0.67,
    1,
    1.0,
    1.5,
    -1,
    -0.5,
    2,
    3,
    3.0,
    100,
    101,
    2**63,
    math.inf,
    math.nan,
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(-3, 150),
    st.floats(-2, 2),
    st.sampled_from(WORDS),
    st.text(max_size=3),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(WORDS), inner, max_size=3),
    max_leaves=6,
)
EXTRA_KEYS = {"_note": JUNK, "$comment": JUNK, "x-com.example.rule": JUNK, "unknown": JUNK, "thresold": JUNK}
PARTICIPANTS = st.sampled_from(["agent://a", "agent://b", "_a", "$b", "x-c"])


def _value_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        good: st.SearchStrategy[Any] = st.sampled_from([*schema["enum"], "weighted", "count", "bogus", ""])
    elif schema.get("type") == "boolean":
        good = st.booleans() | st.sampled_from(["true", 0, 1])
    elif schema.get("type") in ("integer", "number"):
        good = st.sampled_from(NUMBERS) | st.integers(-2, 120) | st.floats(-1, 2)
    elif schema.get("type") == "array":
        good = st.lists(st.sampled_from(["agent://a", "ops", ""]) | SCALARS, max_size=3)
    else:
        good = _object_for(schema)
    return st.one_of(good, good, good, JUNK)


def _object_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    if not properties:  # the weights map
        return st.dictionaries(PARTICIPANTS, _value_for(schema["additionalProperties"]), max_size=3)
    declared = st.fixed_dictionaries({}, optional={k: _value_for(v) for k, v in properties.items()})
    extra = st.one_of(st.just({}), st.just({}), st.just({}), st.fixed_dictionaries({}, optional=EXTRA_KEYS))
    return st.builds(lambda a, b: {**a, **b}, declared, extra)


def _schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}-rules.schema.json").read_text())
    return data


def _merged_schema() -> dict[str, Any]:
    """Every property of every mode (for generating wildcard policies)."""
    properties: dict[str, Any] = {}
    for name in MODES:
        for key, sub in _schema(name)["properties"].items():
            merged = properties.setdefault(key, {"type": "object", "properties": {}})
            merged["properties"].update(sub.get("properties", {}))
    return {"type": "object", "properties": properties}


@functools.cache
def rules_documents(name: str) -> st.SearchStrategy[Any]:
    """Rules objects for ``name`` (a mode or "*"), mostly shaped like the real thing."""
    schema = _merged_schema() if name == "*" else _schema(name)
    shaped = _object_for(schema)
    return st.one_of(shaped, shaped, shaped, JUNK)


_validators: dict[str, Draft202012Validator] = {}


def _spec_accepts(name: str, document: Any) -> bool:
    """The spec schemas' verdict, with the runtime's ``count`` alias read as ``n_of_m``."""
    names = list(MODES) if name == "*" else [name]
    for each in names:
        validator = _validators.get(each)
        if validator is None:
            validator = _validators[each] = Draft202012Validator(_schema(each))
        doc = document
        threshold = doc.get("threshold") if isinstance(doc, dict) else None
        if each == "quorum" and isinstance(threshold, dict) and threshold.get("type") == "count":
            doc = copy.deepcopy(doc)
            doc["threshold"]["type"] = "n_of_m"
        if not validator.is_valid(doc):
            return False
    return True


def _has_known_difference(value: Any) -> bool:
    """True when ``value`` holds something this validator refuses on purpose and the schemas do not."""
    if isinstance(value, float):
        return not math.isfinite(value) or value.is_integer()
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value <= MAX_INTEGER
    if isinstance(value, dict):
        return any(_has_known_difference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_known_difference(v) for v in value)
    return False


def _mode(name: str) -> str:
    return "*" if name == "*" else MODES[name]


DIFFERENTIAL = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_conformance
@pytest.mark.parametrize("name", [*MODES, "*"])
@DIFFERENTIAL
@given(data=st.data())
def test_whatever_the_spec_schema_refuses_is_refused(name: str, data: st.DataObject) -> None:
    document = data.draw(rules_documents(name))
    if not _spec_accepts(name, document):
        assert not _ok(_mode(name), document), document


@needs_conformance
@pytest.mark.parametrize("name", [*MODES, "*"])
@DIFFERENTIAL
@given(data=st.data())
def test_verdicts_agree_outside_the_documented_differences(name: str, data: st.DataObject) -> None:
    document = data.draw(rules_documents(name))
    assume(not _has_known_difference(document))
    assert _ok(_mode(name), document) == _spec_accepts(name, document), document


# -- one test per rule ---------------------------------------------------------------------------

REFUSED = [
    # (mode, rules, expected text in the message)
    (DECISION_MODE, [], "rules must be a JSON object, got []"),
    (DECISION_MODE, b"{}", "rules must be a JSON object, got b'{}'"),
    (DECISION_MODE, {"voting": []}, "rules.voting must be a JSON object, got []"),
    (
        DECISION_MODE,
        {"votes": {}},
        "rules.votes is not a recognised key; rules allows commitment, evaluation,",
    ),
    (DECISION_MODE, {"x-com.example": {}}, 'rules["x-com.example"] is a rule-extension key'),
    (DECISION_MODE, {"voting": {"x-a.b": {}}}, 'rules.voting["x-a.b"] is a rule-extension key'),
    (
        DECISION_MODE,
        {"voting": {"algorithm": "approval"}},
        "rules.voting.algorithm must be one of 'none', 'majority'",
    ),
    (DECISION_MODE, {"voting": {"algorithm": None}}, "got null"),
    (
        DECISION_MODE,
        {"voting": {"threshold": 0}},
        "rules.voting.threshold must be a number greater than 0 and at most 1",
    ),
    (DECISION_MODE, {"voting": {"threshold": 1.01}}, "at most 1, got 1.01"),
    (DECISION_MODE, {"voting": {"threshold": "0.5"}}, 'got "0.5"'),
    (DECISION_MODE, {"voting": {"threshold": True}}, "got true"),
    (
        DECISION_MODE,
        {"voting": {"algorithm": "majority", "threshold": 0.49}},
        "at least 0.5 when algorithm is 'majority'",
    ),
    (
        DECISION_MODE,
        {"voting": {"algorithm": "supermajority"}},
        "rules.voting.threshold is required when algorithm",
    ),
    (
        DECISION_MODE,
        {"voting": {"algorithm": "supermajority", "threshold": 0.5}},
        "greater than 0.5 for a 'supermajority'",
    ),
    (
        DECISION_MODE,
        {"voting": {"algorithm": "weighted"}},
        "rules.voting.weights is required when algorithm is 'weighted'",
    ),
    (DECISION_MODE, {"voting": {"weights": {}}}, "rules.voting.weights must name at least one participant"),
    (
        DECISION_MODE,
        {"voting": {"weights": []}},
        "rules.voting.weights must be a JSON object mapping participant ids",
    ),
    (
        DECISION_MODE,
        {"voting": {"weights": {"a": -1}}},
        "rules.voting.weights.a must be a number greater than 0, got -1",
    ),
    (
        DECISION_MODE,
        {"voting": {"weights": {"_a": "1"}}},
        'rules.voting.weights._a must be a number greater than 0, got "1"',
    ),
    (
        DECISION_MODE,
        {"voting": {"quorum": {"type": "fraction"}}},
        "rules.voting.quorum.type must be one of 'count', 'percentage'",
    ),
    (
        DECISION_MODE,
        {"voting": {"quorum": {"value": -1}}},
        "rules.voting.quorum.value must be a number at least 0, got -1",
    ),
    (
        DECISION_MODE,
        {"voting": {"quorum": {"min": 1}}},
        "rules.voting.quorum.min is not a recognised key; rules.voting.quorum allows type, value",
    ),
    (
        DECISION_MODE,
        {"objection_handling": {"critical_severity_vetoes": 1}},
        "critical_severity_vetoes must be true or false, got 1",
    ),
    (
        DECISION_MODE,
        {"objection_handling": {"veto_threshold": 0}},
        "veto_threshold must be an integer of at least 1, got 0",
    ),
    (
        DECISION_MODE,
        {"objection_handling": {"veto_threshold": 2.0}},
        "veto_threshold must be an integer of at least 1, got 2.0",
    ),
    (
        DECISION_MODE,
        {"objection_handling": {"veto_threshold": 2**63}},
        "rules.objection_handling.veto_threshold is an integer outside the signed 64-bit range",
    ),
    (
        DECISION_MODE,
        {"objection_handling": {"veto_threshhold": 2}},
        "rules.objection_handling.veto_threshhold is not a recognised key",
    ),
    (
        DECISION_MODE,
        {"objection_handling": {"critical_objection_action": "escalate"}},
        "one of 'deny', 'finalize_decline', 'hold'",
    ),
    (
        DECISION_MODE,
        {"evaluation": {"minimum_confidence": 1.5}},
        "minimum_confidence must be a number at least 0 and at most 1",
    ),
    (
        DECISION_MODE,
        {"evaluation": {"required_before_voting": "yes"}},
        "required_before_voting must be true or false",
    ),
    (
        DECISION_MODE,
        {"commitment": {"authority": "anyone"}},
        "'initiator_only', 'any_participant', 'designated_role'",
    ),
    (
        DECISION_MODE,
        {"commitment": {"designated_roles": ["a", 1]}},
        "rules.commitment.designated_roles[1] must be a string, got 1",
    ),
    (
        DECISION_MODE,
        {"commitment": {"require_vote_quorum": None}},
        "require_vote_quorum must be true or false",
    ),
    (
        DECISION_MODE,
        {"commitment": {"allow_decline_over_approval": "false"}},
        "allow_decline_over_approval must be true",
    ),
    (DECISION_MODE, {"_note": math.inf}, "rules._note is not a finite number"),
    (
        DECISION_MODE,
        {"voting": {"quorum": {"value": math.inf}}},
        "rules.voting.quorum.value is not a finite number",
    ),
    (DECISION_MODE, {"_note": [float("nan")]}, "rules._note[0] is not a finite number"),
    (DECISION_MODE, {"_note": -(2**63) - 1}, "rules._note is an integer outside the signed 64-bit range"),
    (DECISION_MODE, {"_note": {1: 2}}, "rules._note has a non-string key 1"),
    (DECISION_MODE, {"_note": b"raw"}, "rules._note holds a bytes, which is not a JSON value"),
    (
        PROPOSAL_MODE,
        {"acceptance": {"criterion": "everyone"}},
        "one of 'all_parties', 'counterparty', 'initiator'",
    ),
    (
        PROPOSAL_MODE,
        {"counter_proposal": {"max_rounds": -1}},
        "max_rounds must be an integer of at least 0, got -1",
    ),
    (
        PROPOSAL_MODE,
        {"rejection": {"terminal_on_any_reject": "no"}},
        "terminal_on_any_reject must be true or false",
    ),
    (
        PROPOSAL_MODE,
        {"commitment": {"require_vote_quorum": True}},
        "rules.commitment allows authority, designated_roles",
    ),
    (
        PROPOSAL_MODE,
        {"voting": {}},
        "invalid policy rules for macp.mode.proposal.v1: rules.voting is not a recognised key",
    ),
    (
        TASK_MODE,
        {"assignment": {"allow_reassignment_on_reject": 1}},
        "allow_reassignment_on_reject must be true or false",
    ),
    (
        TASK_MODE,
        {"completion": {"require_output": "true"}},
        "rules.completion.require_output must be true or false",
    ),
    (
        HANDOFF_MODE,
        {"acceptance": {"implicit_accept_timeout_ms": 1.5}},
        "implicit_accept_timeout_ms must be an integer",
    ),
    (
        HANDOFF_MODE,
        {"acceptance": {"criterion": "initiator"}},
        "rules.acceptance allows implicit_accept_timeout_ms",
    ),
    (QUORUM_MODE, {"threshold": {"type": "weighted", "value": 3}}, "'weighted' is reserved"),
    (
        QUORUM_MODE,
        {"threshold": {"type": "majority"}},
        "rules.threshold.type must be one of 'n_of_m', 'count', 'percentage'",
    ),
    (
        QUORUM_MODE,
        {"threshold": {"value": 0}},
        "rules.threshold.value must be an integer of at least 1, got 0",
    ),
    (
        QUORUM_MODE,
        {"threshold": {"value": 66.5}},
        "rules.threshold.value must be an integer of at least 1, got 66.5",
    ),
    (
        QUORUM_MODE,
        {"threshold": {"type": "percentage", "value": 101}},
        "must be at most 100 for a 'percentage', got 101",
    ),
    (
        QUORUM_MODE,
        {"abstention": {"interpretation": "reject"}},
        "one of 'neutral', 'implicit_reject', 'ignored'",
    ),
    (
        QUORUM_MODE,
        {"abstention": {"counts_toward_quorum": "false"}},
        "counts_toward_quorum must be true or false",
    ),
    (
        QUORUM_MODE,
        {"commitment": {"authority": "designated_role", "designated_roles": []}},
        "must list at least one",
    ),
    (
        "*",
        {"voting": {"algorithm": "majority"}},
        "a '*' policy must satisfy every standard mode's rules schema; "
        "for macp.mode.proposal.v1: rules.voting",
    ),
    (
        "*",
        {"commitment": {"require_vote_quorum": True}},
        "for macp.mode.proposal.v1: rules.commitment.require_vote_quorum",
    ),
    (
        "*",
        {"commitment": {"authority": "designated_role"}},
        "for macp.mode.decision.v1: rules.commitment.designated_roles",
    ),
    ("*", "{}", "rules must be a JSON object"),
    ("ext.custom.v1", [1], "rules must be a JSON object, got [1]"),
    ("ext.custom.v1", {"nested": {"deep": [math.nan]}}, "rules.nested.deep[0] is not a finite number"),
]


@pytest.mark.parametrize(("mode", "rules", "expected"), REFUSED, ids=lambda v: repr(v)[:50])
def test_refusal_names_the_key_and_what_is_allowed(mode: str, rules: Any, expected: str) -> None:
    message = _message(mode, rules)
    assert expected in message, message


ACCEPTED = [
    (DECISION_MODE, {}),
    (DECISION_MODE, {"$comment": "x", "_n": {"anything": [1, None]}, "voting": {"_why": 1, "$id": "y"}}),
    (DECISION_MODE, {"voting": {"algorithm": "majority"}}),  # the threshold default (0.5) is legal
    (DECISION_MODE, {"voting": {"algorithm": "majority", "threshold": 0.5}}),
    (DECISION_MODE, {"voting": {"algorithm": "supermajority", "threshold": 0.6666666666666666}}),
    (DECISION_MODE, {"voting": {"algorithm": "supermajority", "threshold": 1}}),
    (DECISION_MODE, {"voting": {"algorithm": "weighted", "threshold": 0.1, "weights": {"a": 0.5, "_b": 2}}}),
    (DECISION_MODE, {"voting": {"algorithm": "plurality", "weights": {"a": 1}}}),  # weights allowed, unused
    (DECISION_MODE, {"voting": {"quorum": {"type": "percentage", "value": 150.5}}}),
    (DECISION_MODE, {"voting": {"quorum": {"value": 0}}, "commitment": {"require_vote_quorum": True}}),
    (
        DECISION_MODE,
        {"objection_handling": {"veto_threshold": MAX_INTEGER, "critical_objection_action": "hold"}},
    ),
    (DECISION_MODE, {"evaluation": {"minimum_confidence": 0, "required_before_voting": False}}),
    (DECISION_MODE, {"commitment": {"authority": "any_participant", "designated_roles": []}}),
    (PROPOSAL_MODE, {"counter_proposal": {"max_rounds": 0}, "acceptance": {"criterion": "initiator"}}),
    (HANDOFF_MODE, {"acceptance": {"implicit_accept_timeout_ms": 0}}),
    (QUORUM_MODE, {"threshold": {"type": "count", "value": 2}}),  # the runtime's alias of n_of_m
    (QUORUM_MODE, {"threshold": {"type": "percentage", "value": 100}}),
    (QUORUM_MODE, {"threshold": {"value": 500}}),  # n_of_m above the roster: unreachable, not malformed
    (QUORUM_MODE, {"threshold": {"type": "n_of_m"}}),  # no value: required_approvals stands
    ("*", {}),
    ("*", {"commitment": {"authority": "designated_role", "designated_roles": ["ops"]}, "_n": 1}),
    ("ext.multi_round.v1", {"anything": {"goes": [1, "two", None, True]}}),
    ("macp.mode.future.v9", {"voting": "not checked"}),
    ("ext.custom.v1", {"x-com.example": 1}),
]


@pytest.mark.parametrize(("mode", "rules"), ACCEPTED, ids=lambda v: repr(v)[:50])
def test_accepted(mode: str, rules: Any) -> None:
    assert validate_rules(mode, rules) is None


def test_first_problem_is_reported_in_key_order() -> None:
    message = _message(DECISION_MODE, {"voting": {"threshold": 0}, "commitment": {"authority": "x"}})
    assert "rules.commitment.authority" in message


def test_cross_field_rules_run_after_the_fields() -> None:
    # The field error wins over the supermajority rule it would also break.
    message = _message(DECISION_MODE, {"voting": {"algorithm": "supermajority", "threshold": 0}})
    assert "greater than 0 and at most 1" in message


def test_long_values_are_shortened_in_messages() -> None:
    message = _message(TASK_MODE, {"completion": {"require_output": "y" * 200}})
    assert "..." in message and len(message) < 200


def test_every_standard_mode_has_a_schema() -> None:
    assert list(RULE_SCHEMAS) == list(MODES.values())
