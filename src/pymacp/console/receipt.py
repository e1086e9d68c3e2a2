"""Checking a resolved session's decision receipt (``macp-receipt/1``, RFC-MACP-0013 §13).

The console fetches the receipt and the runtime's keys, then answers three questions:

* **integrity** -- does the receipt's ``commitment`` hash to its ``commitment_hash``
  (``match`` / ``mismatch`` / ``cannot_verify`` when the commitment is malformed or
  carries members outside the nine hashed ones)?
* **attestations** -- does each JWS (Ed25519, detached payload over the JCS form of the
  receipt without ``attestations``) verify with a key from GetReceiptKeys (``valid`` /
  ``invalid`` / ``unknown_key`` / ``unsupported``)?
* **matchesObserved** -- is the hash the same as that of the Commitment envelope the
  console itself saw on the stream? This is the check only an observer can make.

The verdict: ``refused`` (not a macp-receipt/1), ``unverified`` (integrity is not a match),
``attested`` (a valid attestation), else ``integrity_only``; ``unavailable`` when the
runtime could not produce a receipt. Trusting keys served by the runtime proves only that
the runtime vouches for its own receipts (§13 item 9).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError
from macp.v1 import core_pb2

from pymacp.kernel.commitment_hash import SCALAR_FIELDS, hash_projection, project

from .events import NewEvent, console_event
from .recorder import Recorder
from .runtime_client import CallError, RuntimeClient

RECEIPT_FORMAT = "macp-receipt/1"
EVENT_PAGE = 1000


async def check_receipt(client: RuntimeClient, recorder: Recorder, run_id: str, session_id: str) -> NewEvent:
    observed = await _observed_hash(recorder, run_id)
    try:
        receipt_json = await client.decision_receipt(session_id)
        keys_json = await client.receipt_keys()
    except CallError as error:
        return console_event(
            "receipt.checked",
            recorder.clock(),
            verdict="unavailable",
            error=str(error),
            observedCommitmentHash=observed,
        )
    return console_event(
        "receipt.checked", recorder.clock(), **verify_receipt(receipt_json, keys_json, observed)
    )


def verify_receipt(receipt_json: str, keys_json: str, observed_hash: str | None) -> dict[str, Any]:
    try:
        receipt = json.loads(receipt_json)
    except ValueError:
        receipt = None
    if not isinstance(receipt, dict) or receipt.get("receipt_format") != RECEIPT_FORMAT:
        return {"verdict": "refused", "error": f"not a {RECEIPT_FORMAT} receipt"}
    claimed = receipt.get("commitment_hash")
    integrity = _integrity(receipt)
    keys = _keys(keys_json)
    attestations = [_attestation(item, receipt, keys) for item in _list(receipt.get("attestations"))]
    if integrity != "match":
        verdict = "unverified"
    elif "valid" in attestations:
        verdict = "attested"
    else:
        verdict = "integrity_only"
    return {
        "verdict": verdict,
        "integrity": integrity,
        "attestations": attestations,
        "issuer": receipt.get("issuer"),
        "issuedAt": receipt.get("issued_at"),
        "commitmentHash": claimed if isinstance(claimed, str) else None,
        "observedCommitmentHash": observed_hash,
        "matchesObserved": None if observed_hash is None else claimed == observed_hash,
    }


def _integrity(receipt: Mapping[str, Any]) -> str:
    commitment = receipt.get("commitment")
    claimed = receipt.get("commitment_hash")
    if not isinstance(commitment, dict) or not isinstance(claimed, str) or not _well_formed(commitment):
        return "cannot_verify"
    if hash_projection(commitment) != claimed:
        return "mismatch"
    wire = receipt.get("commitment_wire_b64")
    if wire is not None:
        try:
            payload = core_pb2.CommitmentPayload.FromString(base64.b64decode(str(wire), validate=True))
        except (binascii.Error, DecodeError, ValueError):
            return "cannot_verify"
        if project(payload) != commitment:
            return "mismatch"
    return "match"


def _well_formed(commitment: Mapping[str, Any]) -> bool:
    allowed = {*SCALAR_FIELDS, "supersedes"}
    if set(commitment) - allowed or not set(SCALAR_FIELDS) <= set(commitment):
        return False
    for name in SCALAR_FIELDS:
        expected = bool if name == "outcome_positive" else str
        if not isinstance(commitment[name], expected):
            return False
    supersedes = commitment.get("supersedes")
    if supersedes is None:
        return "supersedes" not in commitment
    return (
        isinstance(supersedes, dict)
        and set(supersedes) == {"session_id", "commitment_hash"}
        and all(isinstance(v, str) for v in supersedes.values())
    )


def _keys(keys_json: str) -> dict[str, bytes]:
    try:
        document = json.loads(keys_json)
    except ValueError:
        return {}
    found: dict[str, bytes] = {}
    seen: set[str] = set()
    for key in _list(document.get("keys") if isinstance(document, dict) else None):
        if not isinstance(key, dict) or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        kid, x = key.get("kid"), key.get("x")
        if not isinstance(kid, str) or not kid or not isinstance(x, str):
            continue
        if kid in seen:  # an ambiguous kid is dropped altogether
            found.pop(kid, None)
            continue
        seen.add(kid)
        raw = _b64url(x)
        if raw is not None and len(raw) == 32:
            found[kid] = raw
    return found


def _attestation(item: object, receipt: Mapping[str, Any], keys: Mapping[str, bytes]) -> str:
    if not isinstance(item, dict) or item.get("type") != "jws" or not isinstance(item.get("jws"), str):
        return "unsupported"
    header_b64, _, rest = str(item["jws"]).partition(".")
    payload_b64, _, signature_b64 = rest.partition(".")
    header_raw = _b64url(header_b64)
    signature = _b64url(signature_b64)
    if payload_b64 or header_raw is None or signature is None:
        return "invalid"  # a detached payload leaves the middle part empty
    try:
        header = json.loads(header_raw)
    except ValueError:
        return "invalid"
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        return "unsupported"
    key = keys.get(str(header.get("kid")))
    if key is None:
        return "unknown_key"
    body = {name: value for name, value in receipt.items() if name != "attestations"}
    try:
        signing_input = header_b64.encode() + b"." + _b64url_encode(rfc8785.dumps(body)).encode()
        Ed25519PublicKey.from_public_bytes(key).verify(signature, signing_input)
    except (InvalidSignature, rfc8785.CanonicalizationError, ValueError):
        return "invalid"
    return "valid"


async def _observed_hash(recorder: Recorder, run_id: str) -> str | None:
    found: str | None = None
    after = 0
    while True:
        page = await recorder.events(run_id, after, EVENT_PAGE)
        for event in page:
            if event.type == "commitment.made" and isinstance(event.data.get("_commitment_hash"), str):
                found = str(event.data["_commitment_hash"])
        if len(page) < EVENT_PAGE:
            return found
        after = page[-1].seq


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _b64url(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
