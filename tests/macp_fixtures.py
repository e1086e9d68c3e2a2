"""Reading the public MACP conformance data from ``../shared/conformance``.

The fixtures are not copied into this repository: tests read them where CI (and a
developer checkout) has them, beside the project, and skip with a clear message where
they are absent. Set ``MACP_CONFORMANCE_DIR`` to point elsewhere.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE_DIR = Path(os.environ.get("MACP_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance"))
MISSING = (
    f"MACP conformance data not found at {CONFORMANCE_DIR} "
    "(expected ../shared/conformance beside the checkout, or set MACP_CONFORMANCE_DIR)"
)


def available() -> bool:
    return CONFORMANCE_DIR.is_dir()


def require() -> Path:
    if not available():
        pytest.skip(MISSING)
    return CONFORMANCE_DIR


def transcript_files() -> list[Path]:
    if not available():
        return []
    return sorted(p for p in CONFORMANCE_DIR.glob("*.json") if p.name != "schema.json")


def strip_annotations(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_annotations(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [strip_annotations(v) for v in value]
    return value


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = strip_annotations(json.loads(path.read_text()))
    return data


def payload_class(payload_type: str) -> Any:
    """``macp.modes.<m>.v1.<Name>`` -> ``macp.modes.<m>.v1.<m>_pb2.<Name>``; ``macp.v1.X`` -> core_pb2."""
    package, _, name = payload_type.rpartition(".")
    if package == "macp.v1":
        module = importlib.import_module("macp.v1.core_pb2")
    else:
        mode = package.split(".")[2]
        module = importlib.import_module(f"{package}.{mode}_pb2")
    return getattr(module, name)


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def build_message(cls: Any, data: dict[str, Any]) -> Any:
    msg = cls()
    for key, value in data.items():
        field = cls.DESCRIPTOR.fields_by_name[key]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            build_into(getattr(msg, key), value)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            setattr(msg, key, _to_bytes(value))
        elif field.is_repeated:
            getattr(msg, key).extend(value)
        else:
            setattr(msg, key, value)
    return msg


def build_into(msg: Any, data: dict[str, Any]) -> None:
    msg.CopyFrom(build_message(type(msg), data))


def encode_payload(payload_type: str, payload: dict[str, Any]) -> bytes:
    data: bytes = build_message(payload_class(payload_type), payload).SerializeToString()
    return data


@dataclass
class FixtureMessage:
    index: int
    sender: str
    message_type: str
    payload: bytes
    expect: str
    expected_error_code: str | None


def messages(fixture: dict[str, Any]) -> Iterator[FixtureMessage]:
    for i, m in enumerate(fixture["messages"], start=1):
        yield FixtureMessage(
            index=i,
            sender=m["sender"],
            message_type=m["message_type"],
            payload=encode_payload(m["payload_type"], m["payload"]),
            expect=m["expect"],
            expected_error_code=m.get("expected_error_code"),
        )


def subset_mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """None when ``expected`` is a subset of ``actual`` (objects by key, lists by index)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing (have {sorted(actual)})"
            problem = subset_mismatch(value, actual[key], f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return f"{path}: expected at least {len(expected)} items, got {actual!r}"
        for i, value in enumerate(expected):
            problem = subset_mismatch(value, actual[i], f"{path}[{i}]")
            if problem:
                return problem
        return None
    if expected != actual:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None
