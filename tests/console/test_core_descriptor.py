"""RunDescriptor parsing: strict, complete error reports, secrets redacted."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from core_support import descriptor
from hypothesis import given
from hypothesis import strategies as st

from pymacp.console.descriptor import DescriptorError, parse_descriptor


def errors_of(document: object) -> dict[str, str]:
    with pytest.raises(DescriptorError) as raised:
        parse_descriptor(document)
    return dict(raised.value.errors)


def test_a_full_descriptor_parses() -> None:
    document = descriptor(
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        metadata={
            "source": "ci",
            "cancelCallback": {"url": "https://initiator.example/cancel", "bearer": "s3cret"},
            "cancellationDelegated": False,
            "anything": {"nested": [1, 2]},
        },
        execution={
            "idempotencyKey": "k1",
            "tags": ["a", "b", "a"],
            "requester": {"actorId": "u1", "actorType": "user"},
        },
    )
    document["session"]["policyVersion"] = "policy.default"
    parsed = parse_descriptor(document)
    assert parsed.session.session_id == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    assert parsed.session.participants == ("lead", "alice", "bob")
    assert (parsed.idempotency_key, parsed.tags, parsed.requester_type) == ("k1", ("a", "b"), "user")
    assert parsed.cancel_callback is not None and parsed.cancel_callback.bearer == "s3cret"
    assert not parsed.cancellation_delegated
    redacted = parsed.redacted("other-session-id-1234567")
    assert redacted["session"]["metadata"]["cancelCallback"]["bearer"] == "***"
    assert redacted["session"]["sessionId"] == "other-session-id-1234567"
    assert parsed.raw["session"]["metadata"]["cancelCallback"]["bearer"] == "s3cret"  # redaction copies


def test_unknown_fields_are_refused_everywhere() -> None:
    document: dict[str, Any] = descriptor(execution={"requester": {"actorId": "u", "team": "x"}})
    document["kickoff"] = []
    document["session"]["participants"][0]["role"] = "boss"
    document["session"]["metadata"] = {"cancelCallback": {"url": "http://x.test/c", "token": "t"}}
    found = errors_of(document)
    assert set(found) == {
        "kickoff",
        "session.participants[0].role",
        "session.metadata.cancelCallback.token",
        "execution.requester.team",
    }
    assert all("unknown field" in message for message in found.values())


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (lambda d: d.pop("mode"), "mode", "required"),
        (lambda d: d.update(mode="prod"), "mode", "live, sandbox"),
        (lambda d: d.pop("runtime"), "runtime", "required"),
        (lambda d: d["runtime"].update(kind=""), "runtime.kind", "empty"),
        (lambda d: d["session"].update(sessionId="not a session"), "session.sessionId", "UUID"),
        (
            lambda d: d["session"].update(sessionId="3F2504E0-4F89-41D3-9A0C-0305E82C3301"),
            "session.sessionId",
            "UUID",
        ),
        (lambda d: d["session"].pop("modeName"), "session.modeName", "required"),
        (lambda d: d["session"].update(ttlMs=0), "session.ttlMs", "between"),
        (lambda d: d["session"].update(ttlMs=1.5), "session.ttlMs", "integer"),
        (lambda d: d["session"].update(ttlMs=True), "session.ttlMs", "integer"),
        (lambda d: d["session"].update(participants=[]), "session.participants", "between 1 and 1000"),
        (
            lambda d: d["session"].update(participants=[{"id": "a"}, {"id": "a"}]),
            "session.participants[1].id",
            "duplicate",
        ),
        (lambda d: d["session"].update(participants=["a"]), "session.participants[0]", "JSON object"),
        (lambda d: d["session"].update(metadata=[]), "session.metadata", "JSON object"),
        (
            lambda d: d["session"].update(metadata={"cancelCallback": {"url": "ftp://x"}}),
            "session.metadata.cancelCallback.url",
            "http",
        ),
        (
            lambda d: d["session"].update(metadata={"cancellationDelegated": "yes"}),
            "session.metadata.cancellationDelegated",
            "true or false",
        ),
        (lambda d: d["session"].update(metadata={"blob": "x" * 70_000}), "session.metadata", "limit"),
        (lambda d: d.update(execution={"tags": "a"}), "execution.tags", "list"),
        (lambda d: d.update(execution={"tags": [""]}), "execution.tags[0]", "non-empty"),
        (
            lambda d: d.update(execution={"requester": {"actorType": "robot"}}),
            "execution.requester.actorType",
            "one of",
        ),
    ],
)
def test_each_problem_names_its_path(change: Any, path: str, fragment: str) -> None:
    document = descriptor()
    change(document)
    found = errors_of(document)
    assert path in found, found
    assert fragment in found[path]


def test_all_problems_are_reported_at_once() -> None:
    document = descriptor()
    document["session"]["ttlMs"] = -1
    document["session"]["modeVersion"] = 3
    document["mode"] = "x"
    assert set(errors_of(document)) == {"mode", "session.ttlMs", "session.modeVersion"}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_value_parses_or_raises_descriptor_error(document: object) -> None:
    try:
        parse_descriptor(document)
    except DescriptorError as exc:
        assert exc.errors and all(isinstance(path, str) and message for path, message in exc.errors)


@given(st.sampled_from(["mode", "runtime", "session", "execution"]), st.integers() | st.text(max_size=3))
def test_mangling_a_valid_descriptor_never_crashes(key: str, value: object) -> None:
    document = copy.deepcopy(descriptor(execution={"tags": ["t"]}))
    document[key] = value
    with pytest.raises(DescriptorError):
        parse_descriptor(document)
