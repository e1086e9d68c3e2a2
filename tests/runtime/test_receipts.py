"""Decision receipts, checked with the official SDK's verifier as an independent oracle."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from macp.v1 import core_pb2
from macp_sdk.receipt import ReceiptSigner, build_receipt, trusted_keys_from_jwks, verify_receipt

import macp_fixtures as fx
from pymacp.runtime import receipts
from pymacp.runtime.receipts import ReceiptError, ReceiptIssuer, ReceiptKeyError

DECISION = "macp.mode.decision.v1"
ACCEPTED_AT_MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
SEMANTICS = ("pymacp", 1)
PAYLOAD = core_pb2.CommitmentPayload(
    commitment_id="c1",
    action="decision.approved",
    authority_scope="seam",
    reason="sealed by seam",
    mode_version=DECISION,
    policy_version="1.0.0",
    configuration_version="1.0.0",
    outcome_positive=True,
)


def issue(issuer: ReceiptIssuer, payload: bytes | None = None, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "session_id": "s-1",
        "mode": DECISION,
        "commitment_payload": PAYLOAD.SerializeToString() if payload is None else payload,
        "accepted_at_ms": ACCEPTED_AT_MS,
        "semantics": SEMANTICS,
    }
    arguments.update(overrides)
    return issuer.receipt_json(**arguments)


def verify(issuer: ReceiptIssuer, receipt: dict[str, Any]) -> dict[str, Any]:
    return dict(verify_receipt(receipt, trusted_keys_from_jwks(json.loads(issuer.jwks_json()))))


@pytest.fixture(scope="module")
def issuer() -> ReceiptIssuer:
    return ReceiptIssuer.ephemeral("runtime:test")


def test_receipt_is_attested_by_the_sdk_verifier(issuer: ReceiptIssuer) -> None:
    receipt = json.loads(issue(issuer))
    assert verify(issuer, receipt) == {"integrity": "match", "attestations": ["valid"], "verdict": "attested"}
    assert receipt["receipt_format"] == "macp-receipt/1"
    assert receipt["session_id"] == "s-1"
    assert receipt["mode"] == DECISION
    assert receipt["semantics_rev"] == {"implementation": "pymacp", "rev": 1}
    assert receipt["issuer"] == "runtime:test"
    assert receipt["issued_at"] == "2026-01-01T00:00:00.123Z"
    assert base64.b64decode(receipt["commitment_wire_b64"]) == PAYLOAD.SerializeToString()
    assert receipt["commitment"]["outcome_positive"] is True
    assert "supersedes" not in receipt["commitment"]
    # an untrusted key proves nothing
    assert verify_receipt(receipt, {})["verdict"] == "integrity_only"


def test_receipt_matches_the_sdk_builder_for_the_same_key() -> None:
    seed = bytes(range(32))
    ours = ReceiptIssuer(Ed25519PrivateKey.from_private_bytes(seed), issuer="runtime:example")
    theirs = build_receipt(
        PAYLOAD,
        session_id="s-1",
        mode=DECISION,
        issuer="runtime:example",
        issued_at="2026-01-01T00:00:00.123Z",
        signer=ReceiptSigner(ours.kid, private_key=seed),
        semantics_rev={"implementation": "pymacp", "rev": 1},
        commitment_wire=PAYLOAD.SerializeToString(),
    )
    assert json.loads(issue(ours)) == theirs


def test_receipt_is_byte_identical_on_every_call_and_after_reloading_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "receipt.pem"
    first = ReceiptIssuer.load_or_create(path, issuer="runtime:test")
    reloaded = ReceiptIssuer.load_or_create(path, issuer="runtime:test")
    assert reloaded.kid == first.kid
    assert reloaded.jwks_json() == first.jwks_json()
    assert issue(first) == issue(first) == issue(reloaded)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda r: r["commitment"].update(reason="changed after the fact"), "mismatch"),
        (lambda r: r.update(commitment_hash="sha256:" + "0" * 64), "mismatch"),
        (lambda r: r.update(commitment_wire_b64=base64.b64encode(b"\x0a\x02c2").decode()), "mismatch"),
        (lambda r: r["commitment"].update(extra="x"), "cannot_verify"),
    ],
)
def test_tampered_commitment_is_not_attested(issuer: ReceiptIssuer, tamper: Any, expected: str) -> None:
    receipt = json.loads(issue(issuer))
    tamper(receipt)
    assert verify(issuer, receipt) == {"integrity": expected, "attestations": [], "verdict": "unverified"}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(issuer="runtime:someone-else"),
        lambda r: r.update(issued_at="2030-01-01T00:00:00.000Z"),
        lambda r: r.update(session_id="s-2"),
        lambda r: r["semantics_rev"].update(rev=2),
    ],
)
def test_tampered_body_breaks_the_signature(issuer: ReceiptIssuer, tamper: Any) -> None:
    receipt = json.loads(issue(issuer))
    tamper(receipt)
    assert verify(issuer, receipt) == {
        "integrity": "match",
        "attestations": ["invalid"],
        "verdict": "integrity_only",
    }


def test_another_issuers_key_does_not_attest(issuer: ReceiptIssuer) -> None:
    receipt = json.loads(issue(issuer))
    other = ReceiptIssuer.ephemeral("runtime:test")
    assert other.kid != issuer.kid
    assert verify(other, receipt)["attestations"] == ["unknown_key"]


def test_supersedes_is_carried_into_the_commitment(issuer: ReceiptIssuer) -> None:
    payload = core_pb2.CommitmentPayload()
    payload.CopyFrom(PAYLOAD)
    payload.supersedes.SetInParent()  # present though empty
    receipt = json.loads(issue(issuer, payload.SerializeToString()))
    assert receipt["commitment"]["supersedes"] == {"session_id": "", "commitment_hash": ""}
    assert verify(issuer, receipt)["verdict"] == "attested"


def test_cmt_hash_vector_001_hashes_as_published(issuer: ReceiptIssuer) -> None:
    vector = json.loads((fx.require() / "cmt-hash" / "cmt_hash_001_minimal.json").read_text())
    payload = core_pb2.CommitmentPayload(**vector["payload"])
    receipt = json.loads(issue(issuer, payload.SerializeToString()))
    assert receipt["commitment"] == vector["payload"]
    assert receipt["commitment_hash"] == vector["hash"]


def test_payloads_outside_the_hashed_field_set_get_no_receipt(issuer: ReceiptIssuer) -> None:
    unknown_top = PAYLOAD.SerializeToString() + b"\xa0\x06\x01"  # field 100, varint
    with pytest.raises(ReceiptError, match="outside macp-commitment-hash/1"):
        issue(issuer, unknown_top)
    nested = core_pb2.CommitmentPayload()
    nested.CopyFrom(PAYLOAD)
    nested.supersedes.session_id = "s-0"
    supersedes = nested.supersedes.SerializeToString() + b"\xa0\x06\x01"
    tag = (core_pb2.CommitmentPayload.DESCRIPTOR.fields_by_name["supersedes"].number << 3) | 2
    unknown_nested = PAYLOAD.SerializeToString() + bytes([tag, len(supersedes)]) + supersedes
    with pytest.raises(ReceiptError, match="outside macp-commitment-hash/1"):
        issue(issuer, unknown_nested)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"commitment_payload": b"\xff\xff"}, "not a valid CommitmentPayload"),
        ({"session_id": ""}, "session id and mode"),
        ({"mode": ""}, "session id and mode"),
        ({"accepted_at_ms": -1}, "before 1970"),
    ],
)
def test_unusable_inputs_are_refused(issuer: ReceiptIssuer, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ReceiptError, match=message):
        issue(issuer, **overrides)


def test_issued_at_is_the_acceptance_time_in_rfc3339_utc(issuer: ReceiptIssuer) -> None:
    assert json.loads(issue(issuer, accepted_at_ms=0))["issued_at"] == "1970-01-01T00:00:00.000Z"
    assert (
        json.loads(issue(issuer, accepted_at_ms=1_000_000_000_007))["issued_at"] == "2001-09-09T01:46:40.007Z"
    )


# --- keys ------------------------------------------------------------------------------------------


def test_jwks_publishes_only_the_public_key_with_an_rfc7638_kid() -> None:
    # RFC 8037 appendix A.1-A.3: this private key's public JWK has this thumbprint.
    seed = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    issuer = ReceiptIssuer(Ed25519PrivateKey.from_private_bytes(seed), issuer="runtime:test")
    assert issuer.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert json.loads(issuer.jwks_json()) == {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                "alg": "EdDSA",
                "use": "sig",
            }
        ]
    }
    assert trusted_keys_from_jwks(json.loads(issuer.jwks_json())) == {
        issuer.kid: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }


def test_new_key_file_is_private_pkcs8_pem(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "receipt.pem"
    issuer = ReceiptIssuer.load_or_create(path, issuer="runtime:test")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert ReceiptIssuer(key, issuer="runtime:test").kid == issuer.kid


def test_no_key_file_means_an_ephemeral_key() -> None:
    first = ReceiptIssuer.load_or_create(None, issuer="runtime:test")
    second = ReceiptIssuer.load_or_create(None, issuer="runtime:test")
    assert first.kid != second.kid


def test_invalid_key_files_are_reported(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ReceiptKeyError, match=r"garbage.pem is not an unencrypted PKCS#8 PEM private key"):
        ReceiptIssuer.load_or_create(garbage, issuer="runtime:test")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    wrong_type = tmp_path / "ec.pem"
    wrong_type.write_bytes(ec_pem)
    with pytest.raises(ReceiptKeyError, match="is not an Ed25519 key"):
        ReceiptIssuer.load_or_create(wrong_type, issuer="runtime:test")
    with pytest.raises(ReceiptKeyError, match="cannot read receipt signing key"):
        ReceiptIssuer.load_or_create(tmp_path, issuer="runtime:test")  # a directory
    dangling = tmp_path / "dangling.pem"
    dangling.symlink_to(tmp_path / "nowhere" / "receipt.pem")
    with pytest.raises(ReceiptKeyError, match="exists but cannot be opened"):
        ReceiptIssuer.load_or_create(dangling, issuer="runtime:test")


def test_a_failed_key_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    path = tmp_path / "receipt.pem"
    with pytest.raises(ReceiptKeyError, match=r"cannot create receipt signing key .*No space left on device"):
        ReceiptIssuer.load_or_create(path, issuer="runtime:test")
    assert not path.exists()


def test_a_key_created_concurrently_by_another_process_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "receipt.pem"
    winner = Ed25519PrivateKey.generate()
    real_write = receipts._write_new_key

    def lose_the_race(target: Path, pem: bytes) -> None:
        real_write(
            target,
            winner.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        real_write(target, pem)  # raises FileExistsError: never clobbers

    monkeypatch.setattr(receipts, "_write_new_key", lose_the_race)
    issuer = ReceiptIssuer.load_or_create(path, issuer="runtime:test")
    assert issuer.kid == ReceiptIssuer(winner, issuer="runtime:test").kid


def test_issuer_must_be_named() -> None:
    with pytest.raises(ValueError, match="issuer must be a non-empty string"):
        ReceiptIssuer.ephemeral(" ")
