"""Policy registration: parsing descriptors (wire and JSON forms), admission, register/unregister."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from macp.v1 import policy_pb2

import macp_fixtures as fx
from pymacp.kernel.errors import ErrorCode, Rejection
from pymacp.kernel.policy.descriptor import DEFAULT_POLICY, STANDARD_POLICIES, PolicyDescriptor
from pymacp.kernel.policy.registration import (
    descriptor_from_json,
    descriptor_from_proto,
    parse_rules,
    register,
    unregister,
    validate_descriptor,
)

T0 = 1_780_000_000_000
DECISION = "macp.mode.decision.v1"


def _descriptor(**overrides: Any) -> PolicyDescriptor:
    fields: dict[str, Any] = {
        "policy_id": "policy.test.majority",
        "mode": DECISION,
        "description": "majority vote",
        "rules": {"voting": {"algorithm": "majority"}},
        "schema_version": 3,
    }
    fields.update(overrides)
    return PolicyDescriptor(**fields)


def _wire(**overrides: Any) -> policy_pb2.PolicyDescriptor:
    fields: dict[str, Any] = {
        "policy_id": "policy.test.majority",
        "mode": DECISION,
        "description": "majority vote",
        "rules": '{"voting": {"algorithm": "majority"}}',
        "schema_version": 3,
    }
    fields.update(overrides)
    return policy_pb2.PolicyDescriptor(**fields)


def _refused(result: object, code: ErrorCode = ErrorCode.INVALID_POLICY_DEFINITION) -> str:
    assert isinstance(result, Rejection), f"expected a refusal, got {result!r}"
    assert result.code is code, result
    return result.message


def _document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "policy_id": "policy.test.doc",
        "mode": DECISION,
        "description": "d",
        "rules": {},
        "schema_version": 1,
    }
    doc.update(overrides)
    return doc


# -- the spec's descriptor schema tests ---------------------------------------------------------


def _descriptor_docs() -> list[Path]:
    path = fx.CONFORMANCE_DIR / "json-schema-tests" / "invalid-policy-descriptors"
    return sorted(path.glob("*.json")) if path.is_dir() else []


@pytest.mark.skipif(not fx.available(), reason=fx.MISSING)
def test_all_four_invalid_descriptor_documents_are_present() -> None:
    assert [p.stem for p in _descriptor_docs()] == [
        "missing-description",
        "missing-rules",
        "policy-id-empty",
        "schema-version-out-of-range",
    ]


@pytest.mark.skipif(not fx.available(), reason=fx.MISSING)
@pytest.mark.parametrize("path", _descriptor_docs(), ids=lambda p: p.stem)
def test_spec_invalid_descriptors_are_refused(path: Path) -> None:
    _refused(descriptor_from_json(json.loads(path.read_text())))


def _fixture_policies() -> list[Any]:
    found = ((p, json.loads(p.read_text()).get("policy")) for p in fx.transcript_files())
    return [pytest.param(policy, id=p.stem) for p, policy in found if policy is not None]


@pytest.mark.skipif(not fx.available(), reason=fx.MISSING)
def test_seventeen_fixtures_carry_an_inline_policy() -> None:
    assert len(_fixture_policies()) == 17


@pytest.mark.skipif(not fx.available(), reason=fx.MISSING)
@pytest.mark.parametrize("policy", _fixture_policies())
def test_every_fixture_policy_parses_and_registers(policy: dict[str, Any]) -> None:
    parsed = descriptor_from_json(policy)
    assert isinstance(parsed, PolicyDescriptor), parsed
    assert isinstance(register({}, parsed, T0), dict)
    # The same descriptor through the wire form.
    assert descriptor_from_proto(parsed.to_proto()) == parsed


# -- validate_descriptor ------------------------------------------------------------------------


def test_a_valid_descriptor_passes() -> None:
    assert validate_descriptor(_descriptor()) is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"policy_id": "  "}, "policy_id must not be blank"),
        ({"mode": ""}, "mode must be a mode id"),
        ({"schema_version": 0}, "schema_version must be 1, 2 or 3, got 0"),
        ({"schema_version": 4}, "schema_version must be 1, 2 or 3, got 4"),
        ({"rules": {"voting": {"algorithm": "supermajority"}}}, "rules.voting.threshold is required"),
        ({"mode": "*", "rules": {"voting": {}}}, "a '*' policy must satisfy every standard mode"),
    ],
)
def test_validate_descriptor_refusals(overrides: dict[str, Any], expected: str) -> None:
    message = _refused(validate_descriptor(_descriptor(**overrides)))
    assert expected in message, message


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_supported_schema_version_is_admitted(version: int) -> None:
    assert validate_descriptor(_descriptor(schema_version=version)) is None


def test_extension_mode_policy_accepts_any_object() -> None:
    assert validate_descriptor(_descriptor(mode="ext.custom.v1", rules={"free": ["form"]})) is None


# -- descriptor_from_proto ----------------------------------------------------------------------


def test_from_proto_parses_every_field() -> None:
    result = descriptor_from_proto(_wire(registered_at_unix_ms=42))
    assert isinstance(result, PolicyDescriptor)
    assert result.policy_id == "policy.test.majority"
    assert result.mode == DECISION
    assert result.description == "majority vote"
    assert result.rules == {"voting": {"algorithm": "majority"}}
    assert result.schema_version == 3
    assert result.registered_at_unix_ms == 42


def test_from_proto_round_trips_the_standard_policies() -> None:
    for policy in STANDARD_POLICIES:
        assert descriptor_from_proto(policy.to_proto()) == policy


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("", "rules is not valid JSON: Expecting value at line 1 column 1 (send {} for no rules)"),
        ("   ", "(send {} for no rules)"),
        ('{"voting": ', "rules is not valid JSON: Expecting value at line 1 column 12"),
        ("{'voting': {}}", "rules is not valid JSON: Expecting property name enclosed in double quotes"),
        ("{} {}", "rules is not valid JSON: Extra data"),
        ("[]", "rules must be a JSON object, got a JSON list"),
        ('"{}"', "rules must be a JSON object, got a JSON str"),
        ("null", "rules must be a JSON object, got a JSON NoneType"),
        ('{"_n": NaN}', "rules is not acceptable JSON: NaN is not a JSON number"),
        ('{"_n": Infinity}', "Infinity is not a JSON number"),
        ('{"_n": -Infinity}', "-Infinity is not a JSON number"),
        ('{"_n": 1e400}', "the number 1e400 is too large for a 64-bit float"),
        ('{"_n": ' + "9" * 5000 + "}", "rules is not acceptable JSON: Exceeds the limit"),
        ('{"a": 1, "a": 2}', "key 'a' appears twice in one object"),
        ('{"voting": {"algorithm": "none", "algorithm": "majority"}}', "key 'algorithm' appears twice"),
        ("[" * 100_000 + "]" * 100_000, "rules is nested too deeply"),
    ],
)
def test_from_proto_refuses_unacceptable_rules_text(rules: str, expected: str) -> None:
    message = _refused(descriptor_from_proto(_wire(rules=rules)))
    assert expected in message, message


def test_from_proto_refuses_a_large_integer_beyond_64_bits() -> None:
    message = _refused(descriptor_from_proto(_wire(mode="ext.x.v1", rules='{"n": 18446744073709551616}')))
    assert "rules.n is an integer outside the signed 64-bit range" in message


@pytest.mark.parametrize("version", [0, 4, 99])
def test_from_proto_refuses_unsupported_schema_versions(version: int) -> None:
    message = _refused(descriptor_from_proto(_wire(schema_version=version)))
    assert f"schema_version must be 1, 2 or 3, got {version}" in message


def test_from_proto_applies_the_rules_schema() -> None:
    message = _refused(descriptor_from_proto(_wire(rules='{"voting": {"thresold": 0.6}}')))
    assert "rules.voting.thresold is not a recognised key" in message


def test_from_proto_accepts_an_empty_description_which_proto3_cannot_tell_from_missing() -> None:
    assert isinstance(descriptor_from_proto(_wire(description="")), PolicyDescriptor)


def test_from_proto_does_not_decide_reserved_ids() -> None:
    # Reservation is a registry rule: parsing policy.default (e.g. for display) succeeds.
    assert descriptor_from_proto(DEFAULT_POLICY.to_proto()) == DEFAULT_POLICY


# -- descriptor_from_json -----------------------------------------------------------------------


def test_from_json_parses_a_document() -> None:
    result = descriptor_from_json(_document(registered_at_unix_ms=7, _note="annotations are ignored"))
    assert isinstance(result, PolicyDescriptor)
    assert (result.policy_id, result.schema_version) == ("policy.test.doc", 1)
    assert result.registered_at_unix_ms == 7


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "a policy descriptor must be a JSON object"),
        ({"policy_id": "p"}, "missing required keys: mode, description, rules, schema_version"),
        (_document(policy_id=1), "policy descriptor policy_id must be a string"),
        (_document(mode=None), "policy descriptor mode must be a string"),
        (_document(description=["d"]), "policy descriptor description must be a string"),
        (_document(schema_version="1"), "schema_version must be the integer 1, 2 or 3, got '1'"),
        (_document(schema_version=True), "schema_version must be the integer 1, 2 or 3, got True"),
        (_document(schema_version=1.0), "schema_version must be the integer 1, 2 or 3, got 1.0"),
        (_document(schema_version=99), "schema_version must be 1, 2 or 3, got 99"),
        (_document(registered_at_unix_ms=-1), "registered_at_unix_ms must be a non-negative integer"),
        (_document(registered_at_unix_ms="now"), "registered_at_unix_ms must be a non-negative integer"),
        (_document(rules="{}"), "rules must be a JSON object"),
        (_document(policy_id=""), "policy_id must not be blank"),
        (_document(rules={"commitment": {"authority": "designated_role"}}), "designated_roles must list"),
    ],
)
def test_from_json_refusals(document: Any, expected: str) -> None:
    message = _refused(descriptor_from_json(document))
    assert expected in message, message


# -- register / unregister ----------------------------------------------------------------------


def test_register_adds_a_stamped_copy_and_leaves_the_input_alone() -> None:
    registry: dict[str, PolicyDescriptor] = {}
    result = register(registry, _descriptor(registered_at_unix_ms=5), T0)
    assert isinstance(result, dict)
    assert registry == {}
    stored = result["policy.test.majority"]
    assert stored.registered_at_unix_ms == T0
    assert stored == _descriptor()  # identity excludes registration time


@pytest.mark.parametrize("policy_id", ["policy.default", "policy.std.majority", "policy.std.new-profile"])
def test_register_refuses_reserved_ids(policy_id: str) -> None:
    message = _refused(register({}, _descriptor(policy_id=policy_id), T0))
    assert f"policy id {policy_id!r} is reserved" in message


def test_register_refuses_an_existing_id_even_with_identical_rules() -> None:
    first = register({}, _descriptor(), T0)
    assert isinstance(first, dict)
    message = _refused(register(first, _descriptor(), T0 + 1))
    assert "already registered; policy ids are immutable" in message
    assert first["policy.test.majority"].registered_at_unix_ms == T0


def test_register_validates_the_descriptor() -> None:
    message = _refused(register({}, _descriptor(rules={"voting": {"weights": {}}}), T0))
    assert "rules.voting.weights must name at least one participant" in message


def test_register_checks_reservation_before_validity() -> None:
    message = _refused(register({}, _descriptor(policy_id="policy.default", schema_version=0), T0))
    assert "reserved" in message


def test_unregister_removes_only_that_policy() -> None:
    registry = register({}, _descriptor(), T0)
    assert isinstance(registry, dict)
    registry = register(registry, _descriptor(policy_id="policy.test.other"), T0)
    assert isinstance(registry, dict)
    result = unregister(registry, "policy.test.majority")
    assert isinstance(result, dict)
    assert list(result) == ["policy.test.other"]
    assert "policy.test.majority" in registry


@pytest.mark.parametrize("policy_id", ["policy.default", "policy.std.unanimous", "policy.std.unknown"])
def test_unregister_refuses_reserved_ids(policy_id: str) -> None:
    message = _refused(unregister({}, policy_id))
    assert "is reserved and cannot be unregistered" in message


def test_unregister_unknown_id() -> None:
    message = _refused(unregister({}, "policy.test.nothing"), ErrorCode.UNKNOWN_POLICY_VERSION)
    assert message == "policy 'policy.test.nothing' is not registered"


def test_an_unregistered_id_cannot_be_reused_with_other_rules_while_registered_but_can_after() -> None:
    registry = register({}, _descriptor(), T0)
    assert isinstance(registry, dict)
    emptied = unregister(registry, "policy.test.majority")
    assert isinstance(emptied, dict)
    assert isinstance(register(emptied, _descriptor(rules={}), T0 + 1), dict)


def test_parse_rules_returns_the_object() -> None:
    assert parse_rules('{"voting": {"threshold": 0.5}, "_n": [1, 2.5, null]}') == {
        "voting": {"threshold": 0.5},
        "_n": [1, 2.5, None],
    }
