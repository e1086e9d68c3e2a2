"""Signed decision receipts (``macp-receipt/1``, RFC-MACP-0013 Appendix A).

A receipt describes one binding Commitment so that a third party can check it offline:
the commitment's projection and canonical hash (integrity, no keys needed), plus one
detached-payload EdDSA JWS over the rest of the receipt (authenticity).

Receipts are rebuilt on demand rather than stored, so they must come out byte-identical
on every call: ``issued_at`` is the commitment's acceptance time, not the time of the
request, the receipt is serialized with a fixed member order and separators, and Ed25519
signatures are deterministic. The signing key lives in a PKCS#8 PEM file that is created
(mode 0600) on first use, so receipts stay verifiable across restarts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from macp.v1 import core_pb2

from pymacp.kernel.commitment_hash import hash_projection, project

RECEIPT_FORMAT = "macp-receipt/1"


class ReceiptKeyError(Exception):
    """The receipt signing key file cannot be read, created or used."""


class ReceiptError(Exception):
    """No receipt can be issued for this commitment (RECEIPT_UNAVAILABLE)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rfc3339_ms(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def _decode_commitment(payload: bytes) -> Any:
    try:
        message = core_pb2.CommitmentPayload.FromString(payload)
    except DecodeError:
        raise ReceiptError("the commitment payload is not a valid CommitmentPayload") from None
    # macp-commitment-hash/1 covers exactly nine fields; anything else cannot be vouched for.
    if len(UnknownFieldSet(message)) or (
        message.HasField("supersedes") and len(UnknownFieldSet(message.supersedes))
    ):
        raise ReceiptError(
            "the commitment payload carries fields outside macp-commitment-hash/1, "
            "so no receipt can vouch for it"
        )
    return message


def _write_new_key(path: Path, pem: bytes) -> None:
    """Create ``path`` holding ``pem``, readable by the owner only; never replaces an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written key for the next start to trip over
        raise
    with contextlib.suppress(OSError):  # durability of the new name; not every platform allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_key_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReceiptKeyError(f"cannot read receipt signing key {path}: {exc.strerror or exc}") from None


def _load_key(path: Path, pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ReceiptKeyError(
            f"receipt signing key {path} is not an unencrypted PKCS#8 PEM private key ({exc}); "
            "fix or remove the file (a new key is created when it is missing)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptKeyError(
            f"receipt signing key {path} is not an Ed25519 key; receipts are signed with EdDSA"
        )
    return key


class ReceiptIssuer:
    """Issues signed receipts under one Ed25519 key and publishes that key as a JWK Set."""

    def __init__(self, private_key: Ed25519PrivateKey, *, issuer: str) -> None:
        if not issuer.strip():
            raise ValueError("the receipt issuer must be a non-empty string")
        self._key = private_key
        self.issuer = issuer
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._x = _b64url(raw)
        thumbprint_input = rfc8785.dumps({"crv": "Ed25519", "kty": "OKP", "x": self._x})  # RFC 7638 §3.2
        self._kid = _b64url(hashlib.sha256(thumbprint_input).digest())

    @classmethod
    def ephemeral(cls, issuer: str) -> ReceiptIssuer:
        """A key that lives as long as the process (memory-only runtimes)."""
        return cls(Ed25519PrivateKey.generate(), issuer=issuer)

    @classmethod
    def load_or_create(cls, key_file: Path | None, *, issuer: str) -> ReceiptIssuer:
        """The key in ``key_file``, created there (mode 0600) when missing; ephemeral for ``None``."""
        if key_file is None:
            return cls.ephemeral(issuer)
        pem = _read_key_file(key_file)
        if pem is None:
            key = Ed25519PrivateKey.generate()
            new_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:
                _write_new_key(key_file, new_pem)
                return cls(key, issuer=issuer)
            except FileExistsError:  # another process created it first: use theirs
                pem = _read_key_file(key_file)
                if pem is None:
                    raise ReceiptKeyError(
                        f"receipt signing key {key_file} exists but cannot be opened (a dangling symlink?)"
                    ) from None
            except OSError as exc:
                raise ReceiptKeyError(
                    f"cannot create receipt signing key {key_file}: {exc.strerror or exc}"
                ) from None
        return cls(_load_key(key_file, pem), issuer=issuer)

    @property
    def kid(self) -> str:
        """The RFC 7638 JWK thumbprint of the public key."""
        return self._kid

    def jwks_json(self) -> str:
        """The public key as a JWK Set, for ``GetReceiptKeys``."""
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": self._x, "kid": self._kid, "alg": "EdDSA", "use": "sig"}
        return json.dumps({"keys": [jwk]}, separators=(",", ":"))

    def receipt_json(
        self,
        *,
        session_id: str,
        mode: str,
        commitment_payload: bytes,
        accepted_at_ms: int,
        semantics: tuple[str, int],
    ) -> str:
        """The signed receipt for a binding Commitment, identical bytes for identical inputs.

        ``commitment_payload`` is the Commitment envelope's payload exactly as received and
        ``accepted_at_ms`` the time it was accepted. Raises :class:`ReceiptError` when the
        payload cannot be covered by a receipt.
        """
        if not session_id or not mode:
            raise ReceiptError("a receipt needs the session id and mode")
        if accepted_at_ms < 0:
            raise ReceiptError("the commitment's acceptance time is before 1970")
        implementation, rev = semantics
        projection = project(_decode_commitment(commitment_payload))
        receipt: dict[str, Any] = {
            "receipt_format": RECEIPT_FORMAT,
            "session_id": session_id,
            "mode": mode,
            "commitment": projection,
            "commitment_hash": hash_projection(projection),
            "semantics_rev": {"implementation": implementation, "rev": rev},
            "issuer": self.issuer,
            "issued_at": _rfc3339_ms(accepted_at_ms),
            "commitment_wire_b64": base64.b64encode(commitment_payload).decode("ascii"),
        }
        header = _b64url(rfc8785.dumps({"alg": "EdDSA", "kid": self._kid}))
        signing_input = f"{header}.{_b64url(rfc8785.dumps(receipt))}".encode("ascii")
        signature = _b64url(self._key.sign(signing_input))
        receipt["attestations"] = [{"type": "jws", "jws": f"{header}..{signature}"}]
        return json.dumps(receipt, ensure_ascii=False, separators=(",", ":"))
