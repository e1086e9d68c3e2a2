"""Receipt checking, against receipts built and signed by the official SDK."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from macp.v1 import core_pb2
from macp_sdk.receipt import ReceiptSigner, build_receipt

from pymacp.console.receipt import verify_receipt
from pymacp.kernel.commitment_hash import commitment_hash

SEED = bytes(range(32))
COMMITMENT = core_pb2.CommitmentPayload(
    commitment_id="c1",
    action="decision.selected",
    authority_scope="release",
    reason="majority",
    mode_version="1.0.0",
    policy_version="policy.default",
    configuration_version="config.default",
    outcome_positive=True,
)
OBSERVED = commitment_hash(COMMITMENT)


def jwks(kid: str = "rt-1", seed: bytes = SEED) -> str:
    public = (
        Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    return json.dumps(
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x, "alg": "EdDSA", "use": "sig"}]}
    )


def receipt(**changes: Any) -> dict[str, Any]:
    built = build_receipt(
        COMMITMENT,
        session_id="s1",
        mode="macp.mode.decision.v1",
        issuer="runtime:test",
        issued_at="2026-01-01T00:00:00.000Z",
        signer=ReceiptSigner("rt-1", private_key=SEED),
        commitment_wire=COMMITMENT.SerializeToString(),
    )
    document = copy.deepcopy(dict(built))
    document.update(changes)
    return document


def test_a_signed_receipt_for_the_observed_commitment_is_attested() -> None:
    result = verify_receipt(json.dumps(receipt()), jwks(), OBSERVED)
    assert result["verdict"] == "attested"
    assert (result["integrity"], result["attestations"]) == ("match", ["valid"])
    assert result["matchesObserved"] is True and result["commitmentHash"] == OBSERVED


def test_without_the_key_the_receipt_is_integrity_only() -> None:
    result = verify_receipt(json.dumps(receipt()), json.dumps({"keys": []}), None)
    assert (result["verdict"], result["attestations"], result["matchesObserved"]) == (
        "integrity_only",
        ["unknown_key"],
        None,
    )


def test_a_signature_by_another_key_is_invalid() -> None:
    result = verify_receipt(json.dumps(receipt()), jwks(seed=bytes(32)), OBSERVED)
    assert (result["verdict"], result["attestations"]) == ("integrity_only", ["invalid"])


def test_a_changed_body_breaks_the_signature_but_not_integrity() -> None:
    result = verify_receipt(json.dumps(receipt(issuer="runtime:forged")), jwks(), OBSERVED)
    assert result["attestations"] == ["invalid"]


def test_a_tampered_commitment_is_unverified_and_differs_from_what_was_observed() -> None:
    tampered = receipt()
    tampered["commitment"]["action"] = "decision.rejected"
    result = verify_receipt(json.dumps(tampered), jwks(), OBSERVED)
    assert (result["verdict"], result["integrity"]) == ("unverified", "mismatch")

    rehashed = receipt(commitment_hash="sha256:" + "0" * 64)
    assert verify_receipt(json.dumps(rehashed), jwks(), OBSERVED)["matchesObserved"] is False


@pytest.mark.parametrize(
    ("document", "verdict"),
    [
        ("not json", "refused"),
        ("[]", "refused"),
        (json.dumps({"receipt_format": "macp-receipt/2"}), "refused"),
        (json.dumps({"receipt_format": "macp-receipt/1"}), "unverified"),
    ],
)
def test_malformed_receipts_get_a_verdict_not_an_exception(document: str, verdict: str) -> None:
    assert verify_receipt(document, "garbage", None)["verdict"] == verdict


def test_extra_commitment_members_cannot_be_verified() -> None:
    extended = receipt()
    extended["commitment"]["note"] = "x"
    assert verify_receipt(json.dumps(extended), jwks(), OBSERVED)["integrity"] == "cannot_verify"


def test_vendor_attestations_are_unsupported() -> None:
    vendor = receipt(attestations=[{"type": "vendor", "format": "x", "binds": "receipt", "value": "v"}])
    assert verify_receipt(json.dumps(vendor), jwks(), OBSERVED)["attestations"] == ["unsupported"]
