"""RFC-MACP-0013 commitment hash against the public vectors, built from real protobuf payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from macp.v1 import core_pb2

import macp_fixtures as fx
from pymacp.kernel.commitment_hash import LABEL, canonical_bytes, commitment_hash, hash_projection, project


def _vectors() -> list[Path]:
    return sorted((fx.CONFORMANCE_DIR / "cmt-hash").glob("cmt_hash_*.json")) if fx.available() else []


def _payload(projection: dict[str, Any]) -> core_pb2.CommitmentPayload:
    fields = {k: v for k, v in projection.items() if k != "supersedes"}
    msg = core_pb2.CommitmentPayload(**fields)
    if "supersedes" in projection:
        msg.supersedes.SetInParent()  # present even when both fields are empty
        msg.supersedes.session_id = projection["supersedes"]["session_id"]
        msg.supersedes.commitment_hash = projection["supersedes"]["commitment_hash"]
    return msg


@pytest.mark.parametrize("path", _vectors(), ids=[p.stem for p in _vectors()])
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert vector["label"] + ":" == LABEL.decode()
    payload = _payload(vector["payload"])
    assert project(payload) == vector["payload"]
    assert canonical_bytes(project(payload)).hex() == vector["jcs_utf8_hex"]
    assert (LABEL + canonical_bytes(project(payload))).hex() == vector["preimage_utf8_hex"]
    assert commitment_hash(payload) == vector["hash"]
    # the hash survives a wire round trip of the payload
    assert (
        commitment_hash(core_pb2.CommitmentPayload.FromString(payload.SerializeToString())) == vector["hash"]
    )


def test_vector_set_is_complete_and_distinct() -> None:
    fx.require()
    vectors = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in _vectors()}
    assert len(vectors) == 5
    for vector in vectors.values():
        if "must_differ_from" in vector:
            assert vector["hash"] != vectors[vector["must_differ_from"]]["hash"]


def test_false_outcome_and_unset_supersedes_are_explicit() -> None:
    projection = project(core_pb2.CommitmentPayload())
    assert projection["outcome_positive"] is False
    assert "supersedes" not in projection
    assert hash_projection(projection).startswith("sha256:")
    assert len(hash_projection(projection)) == len("sha256:") + 64
