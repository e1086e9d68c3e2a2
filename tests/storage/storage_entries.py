"""Deterministic session histories built from real envelopes, shared by the storage tests.

``history(sid, n)`` is the same list every time it is called, so a test (or a crash-test
parent process) can rebuild exactly what should have been stored from a session id and a
length. Entry 0 is a SessionStart with a binding; every fourth entry is an INTERNAL
lifecycle record (ordinal 0); a few are RUNTIME entries; the rest are CLIENT envelopes
with binary payloads of varying length.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from macp.v1 import core_pb2

from pymacp.kernel import (
    EntryKind,
    Envelope,
    HistoryEntry,
    ModeDescriptor,
    PolicyDescriptor,
    StartBinding,
)

T0 = 1_780_000_000_000
MODE = ModeDescriptor(
    mode="ext.storage.v1",
    mode_version="0.1.0",
    title="Storage test",
    description="a mode used only to build history entries",
    determinism_class="structural-only",
    participant_model="peer",
    message_types=("SessionStart", "Note", "Commitment"),
    schema_uris={"Note": "https://example.invalid/note.json"},
)
POLICY = PolicyDescriptor(
    policy_id="policy.storage.test",
    mode="*",
    description="weighted votes, stored exactly",
    rules={"voting": {"algorithm": "weighted", "threshold": 0.6666666666666666, "weights": {"a": 2.5}}},
    schema_version=3,
    registered_at_unix_ms=T0 - 5,
)
BINDING = StartBinding(policy=POLICY, mode_descriptor=MODE, max_suspend_ms=3_600_000)
INTERNAL_TYPES = ("SessionSuspend", "SessionResume", "SessionCancel", "SessionExpire")


def session_id(number: int) -> str:
    return f"5f0c2a4e-8b1d-4c3e-9f2a-{number:012x}"


def kind_at(index: int) -> EntryKind:
    if index % 4 == 3:
        return EntryKind.INTERNAL
    if index % 7 == 5:
        return EntryKind.RUNTIME
    return EntryKind.CLIENT


def _start_payload() -> bytes:
    payload = core_pb2.SessionStartPayload(
        intent="store me",
        participants=["agent://alice", "agent://bob"],
        mode_version="0.1.0",
        configuration_version="cfg-1",
        ttl_ms=60_000,
    )
    data: bytes = payload.SerializeToString()
    return data


def entry(sid: str, index: int, ordinal: int) -> HistoryEntry:
    kind = kind_at(index)
    if index == 0:
        message_type, payload = "SessionStart", _start_payload()
    elif kind is EntryKind.INTERNAL:
        message_type, payload = INTERNAL_TYPES[index % 4], b""
    else:
        message_type, payload = "Note", bytes((index * 7 + k) % 256 for k in range(index % 50))
    envelope = Envelope(
        macp_version="1.0",
        mode=MODE.mode,
        message_type=message_type,
        message_id=f"m-{index}",
        session_id=sid,
        sender="agent://alice" if kind is not EntryKind.INTERNAL else "_runtime",
        timestamp_unix_ms=T0 + index,
        payload=payload,
    )
    return HistoryEntry(
        index=index,
        ordinal=0 if kind is EntryKind.INTERNAL else ordinal,
        kind=kind,
        envelope=envelope,
        accepted_at_ms=T0 + 10 * index,
        binding=BINDING if index == 0 else None,
    )


def entries(sid: str) -> Iterator[HistoryEntry]:
    """The endless history of ``sid``; ``history`` is its first ``length`` entries."""
    ordinal = 0
    for index in itertools.count():
        if kind_at(index) is not EntryKind.INTERNAL:
            ordinal += 1
        yield entry(sid, index, ordinal)


def history(sid: str, length: int) -> list[HistoryEntry]:
    return list(itertools.islice(entries(sid), length))


def assert_same(actual: list[HistoryEntry], expected: list[HistoryEntry]) -> None:
    """Equal entries, and bindings equal down to the fields PolicyDescriptor equality ignores."""
    assert actual == expected
    assert [e.binding.to_json() if e.binding else None for e in actual] == [
        e.binding.to_json() if e.binding else None for e in expected
    ]
