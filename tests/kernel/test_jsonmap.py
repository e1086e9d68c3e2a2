"""The canonical JSON mapping of envelopes (RFC-MACP-0001 §10): pymacp.kernel.jsonmap."""

from __future__ import annotations

import base64
import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from macp.modes.decision.v1 import decision_pb2
from macp.modes.multi_round.v1 import multi_round_pb2
from macp.modes.task.v1 import task_pb2
from macp.v1 import core_pb2

import macp_fixtures as fx
from pymacp.kernel import Envelope, ErrorCode, Rejection
from pymacp.kernel.catalog import BUILTIN_SPECS
from pymacp.kernel.jsonmap import (
    CORE_PAYLOADS,
    envelope_from_json,
    envelope_to_json,
    payload_class,
)

DECISION = "macp.mode.decision.v1"
MULTI_ROUND = "ext.multi_round.v1"
T0 = 1_783_382_400_000  # 2026-07-07T00:00:00Z
HASH = "sha256:" + "0123456789abcdef" * 4
INVALID_DIR = fx.CONFORMANCE_DIR / "json-schema-tests" / "invalid"
SCHEMA_PATH = fx.CONFORMANCE_DIR / "json-schemas" / "macp-envelope.schema.json"


def _invalid_documents() -> list[Path]:
    return sorted(INVALID_DIR.glob("*.json")) if INVALID_DIR.is_dir() else []


@functools.cache
def _schema_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _validator() -> Draft202012Validator:
    fx.require()
    return _schema_validator()


def _doc(**overrides: Any) -> dict[str, Any]:
    """A valid Commitment envelope document, with top-level keys replaced (None removes one)."""
    doc: dict[str, Any] = {
        "macp_version": "1.0",
        "mode": DECISION,
        "message_type": "Commitment",
        "message_id": "m1",
        "session_id": "sess-1",
        "sender": "agent://lead",
        "timestamp": "2026-07-07T00:00:00Z",
        "payload": {"commitment_id": "c1", "action": "decision.approved"},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def _rejected(result: Envelope | Rejection, code: ErrorCode = ErrorCode.INVALID_ENVELOPE) -> str:
    assert isinstance(result, Rejection), f"expected a rejection, got {result}"
    assert result.code == code, result
    return result.message


def _accepted(result: Envelope | Rejection) -> Envelope:
    assert isinstance(result, Envelope), f"expected an envelope, got {result}"
    return result


# --- The conformance documents the schema must refuse ------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def repair(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value

    return repair


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


def _add_versions(doc: dict[str, Any]) -> None:
    doc["payload"].update(ttl_ms=60_000, mode_version="1.0.0", configuration_version="config.default")


# document -> (the one repair its _invalid_because names, code, the field the refusal names)
REPAIRS: dict[str, tuple[Callable[[dict[str, Any]], None], ErrorCode, str]] = {
    "bad_macp_version": (_set("macp_version", "1.0"), ErrorCode.UNSUPPORTED_PROTOCOL_VERSION, "macp_version"),
    "commitment_supersedes_bad_hash_format": (
        _set("payload.supersedes.commitment_hash", HASH),
        ErrorCode.INVALID_ENVELOPE,
        "payload.supersedes.commitment_hash",
    ),
    "commitment_supersedes_empty_session_id": (
        _set("payload.supersedes.session_id", "sess-original-001"),
        ErrorCode.INVALID_ENVELOPE,
        "payload.supersedes.session_id",
    ),
    "missing_payload": (_set("payload", {"commitment_id": "c1"}), ErrorCode.INVALID_ENVELOPE, "payload"),
    "payload_and_payload_b64": (_drop("payload_b64"), ErrorCode.INVALID_ENVELOPE, "payload_b64"),
    "progress_mode_without_session_id": (
        _set("session_id", "sess-abc123"),
        ErrorCode.INVALID_ENVELOPE,
        "session_id",
    ),
    "progress_session_id_without_mode": (
        _set("mode", "macp.mode.task.v1"),
        ErrorCode.INVALID_ENVELOPE,
        "mode is empty",
    ),
    "session_resume_missing_reason": (
        _set("payload.reason", "review complete"),
        ErrorCode.INVALID_ENVELOPE,
        "payload.reason",
    ),
    "session_resume_negative_banked_ms": (
        _set("payload.banked_ms", 0),
        ErrorCode.INVALID_ENVELOPE,
        "payload.banked_ms",
    ),
    "session_scoped_empty_mode": (_set("mode", DECISION), ErrorCode.INVALID_ENVELOPE, "mode must"),
    "session_scoped_empty_session_id": (
        _set("session_id", "sess-ghi789"),
        ErrorCode.INVALID_ENVELOPE,
        "session_id must",
    ),
    "session_start_max_suspend_ms_not_integer": (
        _set("payload.max_suspend_ms", 2),
        ErrorCode.INVALID_ENVELOPE,
        "payload.max_suspend_ms",
    ),
    "session_start_missing_versions": (_add_versions, ErrorCode.INVALID_ENVELOPE, "payload.ttl_ms"),
    "session_start_negative_max_suspend_ms": (
        _set("payload.max_suspend_ms", 0),
        ErrorCode.INVALID_ENVELOPE,
        "payload.max_suspend_ms",
    ),
    "session_suspend_missing_reason": (
        _set("payload.reason", "operator pause"),
        ErrorCode.INVALID_ENVELOPE,
        "payload.reason",
    ),
    "signal_with_mode": (_set("mode", ""), ErrorCode.INVALID_ENVELOPE, "mode must be empty"),
    "signal_with_session_id": (
        _set("session_id", ""),
        ErrorCode.INVALID_ENVELOPE,
        "session_id must be empty",
    ),
}


def test_invalid_documents_present() -> None:
    fx.require()
    assert {p.stem for p in _invalid_documents()} >= set(REPAIRS)


@pytest.mark.parametrize("path", _invalid_documents(), ids=[p.stem for p in _invalid_documents()])
def test_invalid_document_is_refused_for_its_defect(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert "_invalid_because" in doc
    if path.stem not in REPAIRS:
        pytest.fail(f"{path.name} is new: add its one-defect repair to REPAIRS")
    repair, code, field = REPAIRS[path.stem]
    assert field in _rejected(envelope_from_json(doc), code)

    repaired = copy.deepcopy(doc)
    repair(repaired)
    env = _accepted(envelope_from_json(repaired))
    assert env.message_id == doc["message_id"]
    assert _validator().is_valid(repaired)


# --- payload_class ------------------------------------------------------------------------


def test_payload_class_of_core_types_is_the_same_in_every_mode() -> None:
    for mode in ["", DECISION, MULTI_ROUND, "ext.unknown.v1"]:
        assert payload_class(mode, "SessionStart") is core_pb2.SessionStartPayload
        assert payload_class(mode, "Commitment") is core_pb2.CommitmentPayload
        assert payload_class(mode, "Signal") is core_pb2.SignalPayload
        assert payload_class(mode, "Progress") is core_pb2.ProgressPayload
        assert payload_class(mode, "SessionCancel") is core_pb2.SessionCancelPayload
        assert payload_class(mode, "SessionSuspend") is core_pb2.SessionSuspendPayload
        assert payload_class(mode, "SessionResume") is core_pb2.SessionResumePayload


def test_payload_class_of_mode_types() -> None:
    assert payload_class(DECISION, "Vote") is decision_pb2.VotePayload
    assert payload_class("macp.mode.task.v1", "TaskRequest") is task_pb2.TaskRequestPayload
    assert payload_class(MULTI_ROUND, "Contribute") is multi_round_pb2.ContributePayload
    # (mode, message_type) is the key: Proposal means different messages in two modes.
    assert payload_class("macp.mode.proposal.v1", "Proposal") is not payload_class(DECISION, "Proposal")
    assert payload_class(DECISION, "Contribute") is None
    assert payload_class("ext.unknown.v1", "Vote") is None
    assert payload_class(DECISION, "") is None


# --- Envelope -> JSON -----------------------------------------------------------------------


def _env(mode: str, message_type: str, payload: bytes, session_id: str = "sess-1", ts: int = T0) -> Envelope:
    return Envelope("1.0", mode, message_type, "m1", session_id, "agent://a", ts, payload)


def test_to_json_writes_the_decoded_payload_with_every_field() -> None:
    start = core_pb2.SessionStartPayload(
        participants=["agent://a"], mode_version="1.0.0", configuration_version="c", ttl_ms=60_000
    )
    doc = envelope_to_json(_env(DECISION, "SessionStart", start.SerializeToString(), ts=T0 + 5))
    assert doc == {
        "macp_version": "1.0",
        "mode": DECISION,
        "message_type": "SessionStart",
        "message_id": "m1",
        "session_id": "sess-1",
        "sender": "agent://a",
        "timestamp": "2026-07-07T00:00:00.005Z",
        "payload": {
            "intent": "",
            "participants": ["agent://a"],
            "mode_version": "1.0.0",
            "configuration_version": "c",
            "policy_version": "",
            "ttl_ms": 60_000,
            "roots": [],
            "context_id": "",
            "extensions": {},
            "max_suspend_ms": 0,
        },
    }
    assert "payload_b64" not in doc


def test_to_json_of_a_signal_keeps_empty_mode_and_session_id_and_base64_bytes() -> None:
    signal = core_pb2.SignalPayload(signal_type="heartbeat", data=b"\x00\xff", confidence=0.5)
    doc = envelope_to_json(_env("", "Signal", signal.SerializeToString(), session_id=""))
    assert doc["mode"] == "" and doc["session_id"] == ""
    assert doc["payload"] == {
        "signal_type": "heartbeat",
        "data": "AP8=",
        "confidence": 0.5,
        "correlation_session_id": "",
    }


def test_to_json_of_contribute_uses_the_protobuf_form() -> None:
    payload = multi_round_pb2.ContributePayload(value="blue").SerializeToString()
    assert envelope_to_json(_env(MULTI_ROUND, "Contribute", payload))["payload"] == {"value": "blue"}
    legacy = b'{"value":"blue"}'  # not a protobuf: stays opaque, and so round-trips exactly
    doc = envelope_to_json(_env(MULTI_ROUND, "Contribute", legacy))
    assert doc["payload_b64"] == base64.b64encode(legacy).decode()
    assert _accepted(envelope_from_json(doc)).payload == legacy


@pytest.mark.parametrize(
    ("mode", "message_type", "payload"),
    [
        ("ext.unknown.v1", "Anything", b'{"a":1}'),  # unknown type
        (DECISION, "Vote", b"\xff\xff"),  # does not decode
        (DECISION, "Vote", decision_pb2.VotePayload(vote="APPROVE").SerializeToString() + b"\xa0\x06\x01"),
        (DECISION, "SessionStart", core_pb2.SessionStartPayload(ttl_ms=0).SerializeToString()),  # schema
        (DECISION, "Commitment", b""),  # commitment_id is required non-empty
        ("", "Signal", core_pb2.SignalPayload(signal_type="s", confidence=float("nan")).SerializeToString()),
        # int64 beyond 2^53 would be a quoted string, which the schema refuses for ttl_ms
        (
            DECISION,
            "SessionStart",
            core_pb2.SessionStartPayload(
                ttl_ms=2**62 + 1, mode_version="1", configuration_version="c"
            ).SerializeToString(),
        ),
    ],
    ids=["unknown-type", "undecodable", "unknown-field", "ttl-zero", "empty-commitment", "nan", "huge-ttl"],
)
def test_to_json_falls_back_to_payload_b64_and_still_round_trips(
    mode: str, message_type: str, payload: bytes
) -> None:
    env = _env(mode, message_type, payload, session_id="" if message_type == "Signal" else "sess-1")
    doc = envelope_to_json(env)
    assert "payload" not in doc
    assert base64.b64decode(doc["payload_b64"]) == payload
    assert envelope_from_json(json.loads(json.dumps(doc))) == env


def test_to_json_keeps_large_mode_int64_fields_exact() -> None:
    request = task_pb2.TaskRequestPayload(task_id="t", deadline_unix_ms=2**62 + 1)
    env = _env("macp.mode.task.v1", "TaskRequest", request.SerializeToString())
    doc = envelope_to_json(env)
    assert doc["payload"]["deadline_unix_ms"] == str(2**62 + 1)  # proto3 JSON quotes unsafe int64s
    assert envelope_from_json(doc) == env
    small = _env(
        "macp.mode.task.v1",
        "TaskRequest",
        task_pb2.TaskRequestPayload(deadline_unix_ms=7).SerializeToString(),
    )
    assert envelope_to_json(small)["payload"]["deadline_unix_ms"] == 7


@pytest.mark.parametrize(
    ("unix_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (T0 + 123, "2026-07-07T00:00:00.123Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_timestamps_are_rfc3339_utc_with_milliseconds(unix_ms: int, text: str) -> None:
    env = _env(DECISION, "Vote", b"", ts=unix_ms)
    assert envelope_to_json(env)["timestamp"] == text
    assert envelope_from_json(envelope_to_json(env)) == env


@pytest.mark.parametrize(
    ("unix_ms", "text"),
    [(2**63 - 1, "9999-12-31T23:59:59.999Z"), (-(2**63), "0001-01-01T00:00:00.000Z")],
)
def test_timestamps_outside_rfc3339_are_clamped(unix_ms: int, text: str) -> None:
    assert envelope_to_json(_env(DECISION, "Vote", b"", ts=unix_ms))["timestamp"] == text


# --- JSON -> Envelope -------------------------------------------------------------------------


def test_from_json_reads_a_document() -> None:
    doc = _doc(_comment="annotations are ignored", extra_key={"unknown": "keys too"})
    env = _accepted(envelope_from_json(doc))
    assert env == Envelope(
        "1.0",
        DECISION,
        "Commitment",
        "m1",
        "sess-1",
        "agent://lead",
        T0,
        core_pb2.CommitmentPayload(commitment_id="c1", action="decision.approved").SerializeToString(),
    )


@pytest.mark.parametrize(
    ("text", "unix_ms"),
    [
        ("2026-07-07T00:00:00Z", T0),
        ("2026-07-07t00:00:00z", T0),
        ("2026-07-07T00:00:00.1Z", T0 + 100),
        ("2026-07-07T00:00:00.123456789Z", T0 + 123),  # truncated to milliseconds
        ("2026-07-07T02:30:00+02:30", T0),
        ("2026-07-06T23:00:00.5-01:00", T0 + 500),
        ("2026-07-06T23:59:60Z", T0),  # a leap second reads as the next second
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_from_json_reads_rfc3339_timestamps(text: str, unix_ms: int) -> None:
    assert _accepted(envelope_from_json(_doc(timestamp=text))).timestamp_unix_ms == unix_ms


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-07-07",
        "2026-07-07 00:00:00Z",
        "2026-07-07T00:00Z",
        "2026-07-07T00:00:00",
        "2026-07-07T00:00:00.Z",
        "2026-07-07T00:00:00+0200",
        "2026-07-07T00:00:00+24:00",
        "2026-07-07T00:00:00+02:60",
        "2026-13-07T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-07-07T24:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-07-07T00:00:00Z\n",
        "２０２６-07-07T00:00:00Z",
        "1783382400000",
    ],
)
def test_from_json_refuses_other_timestamps(text: str) -> None:
    assert "timestamp" in _rejected(envelope_from_json(_doc(timestamp=text)))


@pytest.mark.parametrize("version", ["1.0", "1.0.0", "2.1-rc.1", "1.0+build.5"])
def test_from_json_accepts_version_shaped_macp_versions(version: str) -> None:
    assert _accepted(envelope_from_json(_doc(macp_version=version))).macp_version == version


@pytest.mark.parametrize("version", ["", "v1", "1", "1.0.0.0", "1.0 ", "1.0\n", "one.zero"])
def test_from_json_refuses_badly_shaped_macp_version(version: str) -> None:
    message = _rejected(
        envelope_from_json(_doc(macp_version=version)), ErrorCode.UNSUPPORTED_PROTOCOL_VERSION
    )
    assert "macp_version" in message


@pytest.mark.parametrize(
    "field", ["macp_version", "mode", "message_type", "message_id", "session_id", "sender", "timestamp"]
)
def test_from_json_requires_every_top_level_field_as_a_string(field: str) -> None:
    assert _rejected(envelope_from_json(_doc(**{field: None}))) == f"{field} is required"
    assert f"{field} must be a string" in _rejected(envelope_from_json(_doc(**{field: 5})))
    assert "Unicode" in _rejected(envelope_from_json(_doc(**{field: "a\ud800"})))


@pytest.mark.parametrize("field", ["message_type", "message_id", "sender"])
def test_from_json_requires_non_empty_type_id_and_sender(field: str) -> None:
    assert _rejected(envelope_from_json(_doc(**{field: ""}))) == f"{field} must not be empty"


@pytest.mark.parametrize("doc", [None, [], "envelope", 5, True])
def test_from_json_refuses_a_non_object(doc: Any) -> None:
    assert "must be an object" in _rejected(envelope_from_json(doc))


def test_from_json_ignores_non_string_keys() -> None:
    doc: dict[Any, Any] = _doc()
    doc[1] = "not JSON, ignored"
    _accepted(envelope_from_json(doc))


def test_ambient_and_session_scoped_progress_are_both_accepted() -> None:
    payload = {"progress_token": "t", "progress": 1, "total": 3}
    ambient = _accepted(
        envelope_from_json(_doc(message_type="Progress", mode="", session_id="", payload=payload))
    )
    scoped = _accepted(envelope_from_json(_doc(message_type="Progress", payload=payload)))
    assert ambient.is_ambient and not scoped.is_ambient
    assert core_pb2.ProgressPayload.FromString(scoped.payload).total == 3


@pytest.mark.parametrize("payload_b64", ["AP8", "AP8=\n", "AP-_", "*", 5, None])
def test_payload_b64_must_be_padded_standard_base64(payload_b64: Any) -> None:
    doc = _doc(payload=None)
    doc["payload_b64"] = payload_b64
    assert "payload_b64" in _rejected(envelope_from_json(doc))


def test_payload_b64_carries_opaque_bytes() -> None:
    doc = _doc(payload=None, payload_b64="AP8=")
    assert _accepted(envelope_from_json(doc)).payload == b"\x00\xff"
    assert _accepted(envelope_from_json(_doc(payload=None, payload_b64=""))).payload == b""


@pytest.mark.parametrize("payload", [None, [], "text", 3, True])
def test_payload_must_be_an_object(payload: Any) -> None:
    doc = _doc(message_type="Vote")
    doc["payload"] = payload
    assert "payload must be a JSON object" in _rejected(envelope_from_json(doc))


@pytest.mark.parametrize(
    ("message_type", "payload", "field"),
    [
        ("Signal", {}, "payload.signal_type is required"),
        ("Signal", {"signal_type": ""}, "payload.signal_type must not be empty"),
        ("Signal", {"signal_type": "s", "confidence": "0.5"}, "payload.confidence must be a number"),
        ("Signal", {"signal_type": "s", "confidence": True}, "payload.confidence must be a number"),
        ("Signal", {"signal_type": "s", "data": 5}, "payload.data must be a string"),
        ("SessionStart", {"ttl_ms": 1, "mode_version": "1"}, "payload.configuration_version is required"),
        ("SessionStart", {"ttl_ms": 0, "mode_version": "1", "configuration_version": "c"}, "payload.ttl_ms"),
        ("SessionStart", {"ttl_ms": "60000", "mode_version": "1", "configuration_version": "c"}, "ttl_ms"),
        ("SessionStart", {"ttl_ms": True, "mode_version": "1", "configuration_version": "c"}, "ttl_ms"),
        ("SessionStart", {"ttl_ms": 1, "mode_version": "", "configuration_version": "c"}, "mode_version"),
        (
            "SessionStart",
            {"ttl_ms": 1, "mode_version": "1", "configuration_version": "c", "participants": "a"},
            "payload.participants must be an array",
        ),
        (
            "SessionStart",
            {"ttl_ms": 1, "mode_version": "1", "configuration_version": "c", "participants": ["a", 2]},
            "payload.participants[1] must be a string",
        ),
        (
            "SessionStart",
            {"ttl_ms": 1, "mode_version": "1", "configuration_version": "c", "roots": [{"name": "r"}]},
            "payload.roots[0].uri is required",
        ),
        (
            "SessionStart",
            {"ttl_ms": 1, "mode_version": "1", "configuration_version": "c", "roots": ["file:///"]},
            "payload.roots[0] must be a JSON object",
        ),
        (
            "SessionStart",
            {"ttl_ms": 1, "mode_version": "1", "configuration_version": "c", "extensions": {"x": 1}},
            "payload.extensions['x'] must be a string",
        ),
        (
            "SessionStart",
            {"ttl_ms": 1, "mode_version": "1", "configuration_version": "c", "extensions": []},
            "payload.extensions must be an object",
        ),
        ("SessionCancel", {"reason": ""}, "payload.reason must not be empty"),
        ("SessionResume", {"reason": "r", "banked_ms": 1.5}, "payload.banked_ms"),
        ("Commitment", {"commitment_id": "c", "outcome_positive": "yes"}, "payload.outcome_positive"),
        (
            "Commitment",
            {"commitment_id": "c", "supersedes": {"session_id": "s"}},
            "commitment_hash is required",
        ),
        ("Commitment", {"commitment_id": "c", "supersedes": "s"}, "payload.supersedes must be a JSON object"),
        (
            "Commitment",
            {"commitment_id": "c", "supersedes": {"session_id": "s", "commitment_hash": HASH.upper()}},
            "commitment_hash must look like sha256:",
        ),
        ("Progress", {"progress": -1}, "payload.progress must be >= 0"),
        ("Progress", {"total": None}, "payload.total must be a number"),
        ("Progress", {"total": -0.5}, "payload.total must be >= 0"),
        ("Progress", {"message": 1}, "payload.message must be a string"),
        ("Signal", {"signal_type": "s", "correlation_session_id": None}, "correlation_session_id must be"),
        ("SessionCancel", {"reason": "r", "cancelled_by": 1}, "payload.cancelled_by must be a string"),
        ("SessionSuspend", {"reason": 1}, "payload.reason must be a string"),
        ("Commitment", {"commitment_id": ""}, "payload.commitment_id must not be empty"),
        ("Commitment", {"action": "a"}, "payload.commitment_id is required"),
    ],
)
def test_core_payloads_meet_the_schema(message_type: str, payload: dict[str, Any], field: str) -> None:
    scope = {"mode": "", "session_id": ""} if message_type == "Signal" else {}
    message = _rejected(envelope_from_json(_doc(message_type=message_type, payload=payload, **scope)))
    assert message.startswith(message_type) and field in message


def test_large_values_are_described_not_printed() -> None:
    for value in [10**5000, "x" * 10_000, [[1]], {"a": 1}, 1.5]:
        message = _rejected(
            envelope_from_json(
                _doc(message_type="SessionResume", payload={"reason": "r", "banked_ms": value})
            )
        )
        assert "banked_ms" in message and len(message) < 250
    assert "integer too large" in _rejected(
        envelope_from_json(
            _doc(message_type="SessionResume", payload={"reason": "r", "banked_ms": -(10**30)})
        )
    )


def test_mode_payload_objects_are_encoded_by_their_class() -> None:
    doc = _doc(message_type="Vote", payload={"proposal_id": "p1", "vote": "APPROVE", "ignored": [1, 2]})
    env = _accepted(envelope_from_json(doc))
    assert decision_pb2.VotePayload.FromString(env.payload) == decision_pb2.VotePayload(
        proposal_id="p1", vote="APPROVE"
    )
    contribute = _doc(mode=MULTI_ROUND, message_type="Contribute", payload={"value": "blue"})
    assert (
        _accepted(envelope_from_json(contribute)).payload
        == multi_round_pb2.ContributePayload(value="blue").SerializeToString()
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"proposal_id": 5},
        {"confidence": "high"},
        {"confidence": float("nan")},
        {"proposal_id": "a\udc00"},
        {"[ext.field]": 1},
    ],
)
def test_mode_payload_objects_that_do_not_fit_are_refused(payload: dict[str, Any]) -> None:
    message = _rejected(envelope_from_json(_doc(message_type="Evaluation", payload=payload)))
    assert "payload does not fit macp.modes.decision.v1.EvaluationPayload" in message


def test_unknown_payload_types_are_stored_as_compact_sorted_json() -> None:
    doc = _doc(mode="ext.custom.v1", message_type="Ping", payload={"b": [1, "é"], "a": {"z": None}})
    assert _accepted(envelope_from_json(doc)).payload == '{"a":{"z":null},"b":[1,"é"]}'.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "a", "b": 2}, "\ud800", {1, 2}])
def test_unknown_payload_types_must_be_json_text(bad: Any) -> None:
    doc = _doc(mode="ext.custom.v1", message_type="Ping", payload={"value": bad})
    assert "payload is not encodable as JSON text" in _rejected(envelope_from_json(doc))


def test_deeply_nested_payloads_do_not_raise() -> None:
    nested: Any = "leaf"
    for _ in range(100_000):
        nested = [nested]
    payload = {"value": nested, "ttl_ms": nested, "roots": nested}
    custom = envelope_from_json(_doc(mode="ext.custom.v1", message_type="Ping", payload=payload))
    assert "payload is not encodable as JSON text" in _rejected(custom)
    versions = {"mode_version": "1", "configuration_version": "c"}
    start = envelope_from_json(_doc(message_type="SessionStart", payload=payload | versions))
    assert "payload.ttl_ms" in _rejected(start)
    vote = envelope_from_json(_doc(message_type="Vote", payload=payload))  # unknown keys are ignored
    assert _accepted(vote).payload == b""


# --- Round trip: every mode and message type --------------------------------------------------

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.text(max_size=8),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=8),
    FieldDescriptor.TYPE_INT64: st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 70_000)),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
}
_FIELD_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "commitment_hash": st.one_of(st.just(HASH), st.text(max_size=4)),
}


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    return _FIELD_OVERRIDES.get(field.name, _SCALARS[field.type])


def messages(cls: Any) -> st.SearchStrategy[Any]:
    """Random instances of a protobuf message class, every field possibly set."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in cls.DESCRIPTOR.fields:
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            keys, values = (_scalar(sub.fields_by_name[n]) for n in ("key", "value"))
            fields[field.name] = st.dictionaries(keys, values, max_size=3)
        elif sub is not None:
            element = messages(message_factory.GetMessageClass(sub))
            fields[field.name] = st.lists(element, max_size=2) if field.is_repeated else element
        elif field.is_repeated:
            fields[field.name] = st.lists(_scalar(field), max_size=3)
        else:
            fields[field.name] = _scalar(field)
    return st.fixed_dictionaries({}, optional=fields).map(lambda kwargs: cls(**kwargs))


MESSAGE_TYPES: list[tuple[str, str]] = sorted(
    {(mode, t) for mode, spec in BUILTIN_SPECS.items() for t in spec.rules}
    | {(DECISION, t) for t in CORE_PAYLOADS if t not in ("Signal", "Progress")}
    | {("", "Signal"), ("", "Progress"), (DECISION, "Progress")}
)


def envelopes(
    mode: str, message_type: str, payloads: st.SearchStrategy[bytes]
) -> st.SearchStrategy[Envelope]:
    return st.builds(
        Envelope,
        macp_version=st.sampled_from(["1.0", "1.0.0", "2.0-rc.1"]),
        mode=st.just(mode),
        message_type=st.just(message_type),
        message_id=st.text(min_size=1, max_size=6),
        session_id=st.just("") if not mode else st.text(min_size=1, max_size=6),
        sender=st.text(min_size=1, max_size=6),
        timestamp_unix_ms=st.integers(-62_135_596_800_000, 253_402_300_799_999),
        payload=payloads,
    )


@pytest.mark.parametrize(("mode", "message_type"), MESSAGE_TYPES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_of_every_message_type(mode: str, message_type: str, data: st.DataObject) -> None:
    cls = payload_class(mode, message_type)
    assert cls is not None
    encoded = messages(cls).map(lambda m: m.SerializeToString())
    env = data.draw(envelopes(mode, message_type, st.one_of(encoded, st.binary(max_size=12))))
    doc = envelope_to_json(env)
    event("payload" if "payload" in doc else "payload_b64")
    text = json.dumps(doc, allow_nan=False)
    assert envelope_from_json(json.loads(text)) == env
    if fx.available():  # the JSON written is valid against the envelope schema
        assert _schema_validator().is_valid(doc), list(_schema_validator().iter_errors(doc))


VALID_CORE_PAYLOADS: dict[str, Any] = {
    "SessionStart": core_pb2.SessionStartPayload(ttl_ms=1, mode_version="1", configuration_version="c"),
    "Commitment": core_pb2.CommitmentPayload(
        commitment_id="c", supersedes=core_pb2.CommitmentRef(session_id="s", commitment_hash=HASH)
    ),
    "Signal": core_pb2.SignalPayload(signal_type="s"),
    "Progress": core_pb2.ProgressPayload(progress=1.5),
    "SessionCancel": core_pb2.SessionCancelPayload(reason="r"),
    "SessionSuspend": core_pb2.SessionSuspendPayload(reason="r"),
    "SessionResume": core_pb2.SessionResumePayload(reason="r", banked_ms=5),
}


@pytest.mark.parametrize(("mode", "message_type"), MESSAGE_TYPES)
def test_valid_payloads_of_every_type_are_written_decoded(mode: str, message_type: str) -> None:
    cls = payload_class(mode, message_type)
    assert cls is not None
    message = VALID_CORE_PAYLOADS.get(message_type, cls())
    env = _env(mode, message_type, message.SerializeToString(), session_id="sess-1" if mode else "")
    doc = envelope_to_json(env)
    fields = cls.DESCRIPTOR.fields
    assert set(doc["payload"]) == {f.name for f in fields if not f.has_presence or message.HasField(f.name)}
    assert envelope_from_json(doc) == env


# --- Differential against the JSON schema ----------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
SURROGATE_TEXT = st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=4)

_TEXTS = st.one_of(st.sampled_from(["", "x", "agent://a"]), st.text(max_size=4), SURROGATE_TEXT)
_INTS = st.one_of(st.sampled_from([-1, 0, 1, 60_000, 1.5, 2.0, True, "5"]), st.integers())
_NUMBERS = st.one_of(st.sampled_from([-1, -0.5, 0, 0.5, 40, -0.0, "1", False]), st.floats())
_B64 = st.sampled_from(["", "AA==", "AP8=", "!!", "AP-_"])
_PAYLOAD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "signal_type": _TEXTS,
    "data": _B64,
    "confidence": _NUMBERS,
    "correlation_session_id": _TEXTS,
    "intent": _TEXTS,
    "participants": st.lists(_TEXTS, max_size=2),
    "mode_version": _TEXTS,
    "configuration_version": _TEXTS,
    "policy_version": _TEXTS,
    "ttl_ms": _INTS,
    "roots": st.lists(
        st.one_of(
            st.sampled_from([{"uri": "file:///w"}, {}, {"name": "n"}, {"uri": ""}, {"uri": "u", "name": 1}]),
            st.fixed_dictionaries({}, optional={"uri": _TEXTS, "name": _TEXTS}),
        ),
        min_size=1,
        max_size=2,
    ),
    "context_id": _TEXTS,
    "extensions": st.dictionaries(_TEXTS, _B64, max_size=2),
    "max_suspend_ms": _INTS,
    "reason": _TEXTS,
    "cancelled_by": _TEXTS,
    "suspended_by": _TEXTS,
    "resumed_by": _TEXTS,
    "banked_ms": _INTS,
    "commitment_id": _TEXTS,
    "action": _TEXTS,
    "outcome_positive": st.one_of(st.booleans(), st.just(1)),
    "supersedes": st.one_of(
        st.sampled_from([{"session_id": "s0", "commitment_hash": HASH}, {"session_id": "s0"}, {}]),
        st.fixed_dictionaries(
            {},
            optional={
                "session_id": _TEXTS,
                "commitment_hash": st.sampled_from([HASH, "sha256:x", HASH + "\n"]),
            },
        ),
    ),
    "progress_token": _TEXTS,
    "progress": _NUMBERS,
    "total": _NUMBERS,
    "message": _TEXTS,
    "proposal_id": _TEXTS,
    "vote": _TEXTS,
    "value": _TEXTS,
}
_PAYLOAD_KEYS: dict[str, list[str]] = {
    "Signal": ["signal_type", "data", "confidence", "correlation_session_id"],
    "SessionStart": [
        *("intent", "participants", "mode_version", "configuration_version", "ttl_ms"),
        *("roots", "policy_version", "context_id", "extensions", "max_suspend_ms"),
    ],
    "SessionCancel": ["reason", "cancelled_by"],
    "SessionSuspend": ["reason", "suspended_by"],
    "SessionResume": ["reason", "resumed_by", "banked_ms"],
    "Commitment": ["commitment_id", "action", "reason", "outcome_positive", "supersedes", "mode_version"],
    "Progress": ["progress_token", "progress", "total", "message"],
}
_DEFAULT_KEYS = ["proposal_id", "vote", "reason", "value", "confidence"]
_TOP_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "macp_version": st.sampled_from(["1.0", "1.0.0", "v1", "", "1.0-rc.1", "1.0\n", "1"]),
    "mode": st.sampled_from(["", DECISION, MULTI_ROUND, "ext.custom.v1"]),
    "message_id": _TEXTS,
    "session_id": st.sampled_from(["", "sess-1"]),
    "sender": _TEXTS,
    "timestamp": st.sampled_from(["2026-07-07T00:00:00Z", "2026-07-07T02:00:00.5+02:00", "yesterday", ""]),
}
_MESSAGE_TYPES = st.one_of(
    st.sampled_from([*_PAYLOAD_KEYS, "Vote", "Contribute", "Ping", "", "SessionExpire"]), st.text(max_size=3)
)
# A schema-valid payload per message type: the starting point documents() mutates.
_VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "Signal": {"signal_type": "heartbeat"},
    "SessionStart": {"ttl_ms": 60_000, "mode_version": "1.0.0", "configuration_version": "c"},
    "SessionCancel": {"reason": "r"},
    "SessionSuspend": {"reason": "r"},
    "SessionResume": {"reason": "r", "banked_ms": 10},
    "Commitment": {"commitment_id": "c1"},
    "Progress": {"progress": 1, "total": 2},
    "Vote": {"proposal_id": "p1", "vote": "APPROVE"},
    "Contribute": {"value": "blue"},
    "Ping": {"anything": [1]},
}
_MUTATIONS = ["top", "top", "drop top", "payload", "payload", "payload", "drop payload", "form", "note"]


def _maybe_garbled(draw: st.DrawFn, plausible: st.SearchStrategy[Any]) -> Any:
    return draw(JSON_VALUES) if draw(st.integers(0, 9)) == 0 else draw(plausible)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Envelope documents near the schema's boundary: a valid document with zero to three mutations."""
    message_type = draw(st.sampled_from(sorted(_VALID_PAYLOADS)))
    mode = {"Signal": "", "Contribute": MULTI_ROUND, "Ping": "ext.custom.v1"}.get(message_type, DECISION)
    ambient = message_type == "Signal" or (message_type == "Progress" and draw(st.booleans()))
    doc: dict[str, Any] = {
        "macp_version": "1.0",
        "mode": "" if ambient else mode,
        "message_type": message_type,
        "message_id": "m1",
        "session_id": "" if ambient else "sess-1",
        "sender": "agent://a",
        "timestamp": "2026-07-07T00:00:00Z",
        "payload": dict(_VALID_PAYLOADS[message_type]),
    }
    fields = {**_TOP_FIELDS, "message_type": _MESSAGE_TYPES}
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(_MUTATIONS))
        payload = doc.get("payload")
        if mutation == "top":
            key = draw(st.sampled_from(sorted(fields)))
            doc[key] = _maybe_garbled(draw, fields[key])
        elif mutation == "drop top" and doc:
            doc.pop(draw(st.sampled_from(sorted(doc))))
        elif mutation == "payload" and isinstance(payload, dict):
            key = draw(st.sampled_from(_PAYLOAD_KEYS.get(message_type, _DEFAULT_KEYS)))
            payload[key] = _maybe_garbled(draw, _PAYLOAD_FIELDS[key])
        elif mutation == "drop payload" and isinstance(payload, dict) and payload:
            payload.pop(draw(st.sampled_from(sorted(payload))))
        elif mutation == "form":
            form = draw(st.sampled_from(["payload_b64", "both", "neither", "garbled"]))
            if form != "both":
                doc.pop("payload", None)
            if form in ("payload_b64", "both"):
                doc["payload_b64"] = draw(_B64)
            if form == "garbled":
                doc[draw(st.sampled_from(["payload", "payload_b64"]))] = draw(JSON_VALUES)
        elif mutation == "note":
            doc["_" + draw(st.text(max_size=4))] = draw(JSON_VALUES)
    return doc


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents())
def test_whatever_the_schema_refuses_is_refused(doc: dict[str, Any]) -> None:
    validator = _validator()
    result = envelope_from_json(doc)
    if not validator.is_valid(doc):
        event("schema refuses")
        assert isinstance(result, Rejection), list(validator.iter_errors(doc))
    else:
        event("schema accepts; we " + ("refuse" if isinstance(result, Rejection) else "accept"))
    if isinstance(result, Envelope):
        written = envelope_to_json(result)
        assert validator.is_valid(written), list(validator.iter_errors(written))
        assert envelope_from_json(written) == result


# --- Arbitrary input never raises --------------------------------------------------------------

ANY_JSON = st.recursive(
    st.one_of(JSON_SCALARS, SURROGATE_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(doc=ANY_JSON)
def test_arbitrary_json_never_raises(doc: Any) -> None:
    assert isinstance(envelope_from_json(doc), Envelope | Rejection)


@settings(max_examples=1000, deadline=None)
@given(
    key=st.sampled_from([*_TOP_FIELDS, "message_type", "payload", "payload_b64"]),
    message_type=st.sampled_from([*_PAYLOAD_KEYS, "Vote", "Contribute", "Ping"]),
    value=ANY_JSON,
)
def test_arbitrary_json_in_any_field_never_raises(key: str, message_type: str, value: Any) -> None:
    doc = _doc(message_type=message_type, mode=MULTI_ROUND if message_type == "Contribute" else DECISION)
    doc[key] = value
    assert isinstance(envelope_from_json(doc), Envelope | Rejection)
    doc.pop(key)
    doc["payload"] = dict.fromkeys(_PAYLOAD_FIELDS, value)
    assert isinstance(envelope_from_json(doc), Envelope | Rejection)
