"""RFC-MACP-0013 canonical commitment hash.

The CommitmentPayload is projected onto its nine fields (eight scalars always present,
``supersedes`` only when set), canonicalized with JCS (RFC 8785), prefixed with the label
``macp-commitment-hash/1:`` and hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

LABEL = b"macp-commitment-hash/1:"
SCALAR_FIELDS = (
    "commitment_id",
    "action",
    "authority_scope",
    "reason",
    "mode_version",
    "policy_version",
    "configuration_version",
    "outcome_positive",
)


def project(payload: Any) -> dict[str, Any]:
    """The hashed projection of a ``macp.v1.CommitmentPayload`` message."""
    out: dict[str, Any] = {name: getattr(payload, name) for name in SCALAR_FIELDS}
    out["outcome_positive"] = bool(payload.outcome_positive)
    if payload.HasField("supersedes"):
        out["supersedes"] = {
            "session_id": payload.supersedes.session_id,
            "commitment_hash": payload.supersedes.commitment_hash,
        }
    return out


def canonical_bytes(projection: dict[str, Any]) -> bytes:
    return rfc8785.dumps(projection)


def hash_projection(projection: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(LABEL + canonical_bytes(projection)).hexdigest()


def commitment_hash(payload: Any) -> str:
    return hash_projection(project(payload))
