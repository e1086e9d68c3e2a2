"""Who is calling: bearer credentials in gRPC metadata to a kernel :class:`Identity`.

Every RPC is authenticated from its own metadata (one client channel may carry many
identities). The resolvers form a chain, tried in this order:

1. **JWT**, when an issuer and a JWKS source are configured. It reads only
   ``authorization: Bearer <token>`` and only tokens containing a ``.``. The key is chosen
   by ``kid`` (every key is tried when no ``kid`` matches), the algorithm must be in the
   configured list (``none`` never is), and ``iss``, ``aud``, ``exp`` and ``sub`` are
   required. A token that fails any check is refused; the chain does not fall through.
2. **Static tokens**, a configured token -> identity table. It reads the bearer, or
   ``x-macp-token`` when there is no ``authorization`` header. With JWT configured, a
   token containing ``.`` belongs to JWT and is never looked up here. An unknown token
   is refused.
3. **Dev mode**, only when neither of the above is configured *and* insecure operation
   was asked for explicitly: the bearer value itself is the sender. Without that flag a
   runtime with no resolver refuses to start (``AuthConfigError``), so a broken JWT or
   token configuration can never silently become "anyone may be anyone".

Messages of :class:`AuthError` are safe to return to the client: they never contain the
presented credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from pymacp.kernel.identity import Identity

log = logging.getLogger(__name__)

SUPPORTED_JWT_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
    | {"HS256", "HS384", "HS512"}
)
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
JWT_LEEWAY_SECS = 60  # clock skew tolerated on exp/nbf/iat, as the reference runtime's JWT library
JWKS_CONNECT_TIMEOUT_SECS = 3.0
JWKS_TOTAL_TIMEOUT_SECS = 5.0
JWKS_STALE_GRACE_SECS = 3600.0  # a cached key set outlives its TTL this long while the endpoint fails
JWKS_RETRY_BACKOFF_SECS = 5.0  # after a failed refresh, no new attempt for this long
JWKS_MAX_BYTES = 1 << 20
MIN_INTERNAL_TOKEN_LENGTH = 32
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_BEARER = re.compile(r"bearer +(\S+)", re.IGNORECASE)
_TOKEN_FIELDS = frozenset(
    {"token", "sender", "allowed_modes", "can_start_sessions", "max_open_sessions"}
    | {"can_manage_mode_registry", "is_observer"}
)


class AuthConfigError(Exception):
    """The authentication configuration is unusable; the message names the setting."""


class AuthError(Exception):
    """The caller is refused (UNAUTHENTICATED). The message is safe to show the caller."""


@dataclass(frozen=True)
class AuthSettings:
    """Auth configuration, one field per ``MACP_AUTH_*`` variable (plus ``MACP_ALLOW_INSECURE``)."""

    tokens_json: str | None = None
    tokens_file: Path | None = None
    issuer: str | None = None
    audience: str = "macp-runtime"
    jwks_json: str | None = None
    jwks_url: str | None = None
    jwks_ttl_secs: int = 300
    jwt_algs: tuple[str, ...] = ("RS256", "ES256")
    allow_insecure: bool = False


# --- credentials in metadata ---------------------------------------------------------------------


def _header(metadata: Sequence[tuple[str, str | bytes]], name: str) -> str | None:
    values = [value for key, value in metadata if key.lower() == name]
    if not values:
        return None
    if len(values) > 1:
        raise AuthError(f"more than one {name} header was sent; send exactly one")
    value = values[0]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthError(f"the {name} header is not valid UTF-8 text") from None
    return value


@dataclass(frozen=True, slots=True)
class _Credential:
    token: str
    from_authorization: bool


def _credential(metadata: Sequence[tuple[str, str | bytes]]) -> _Credential:
    authorization = _header(metadata, "authorization")
    if authorization is not None:
        match = _BEARER.fullmatch(authorization.strip())
        if match is None:
            raise AuthError("the authorization header must be 'Bearer <token>' with a non-empty token")
        return _Credential(match.group(1), from_authorization=True)
    token = _header(metadata, "x-macp-token")
    if token is None or not token.strip():
        raise AuthError("authentication required: send 'authorization: Bearer <token>'")
    return _Credential(token.strip(), from_authorization=False)


# --- static tokens ---------------------------------------------------------------------------------


def _allowed_modes(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ValueError(f"{where} 'allowed_modes' must be a list of mode names")
    return frozenset(value) or None  # [] means every mode


def _flag(item: Mapping[str, Any], name: str, default: bool, where: str) -> bool:
    value = item.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where} '{name}' must be true or false")
    return value


def _cap(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} 'max_open_sessions' must be a non-negative integer or null")
    return value


def _static_identity(item: Any, where: str) -> tuple[str, Identity]:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object with 'token' and 'sender'")
    unknown = sorted(set(item) - _TOKEN_FIELDS)
    if unknown:
        raise ValueError(
            f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOKEN_FIELDS))}"
        )
    for name in ("token", "sender"):
        if name not in item:
            raise ValueError(f"{where} has no '{name}'")
        if not isinstance(item[name], str) or not item[name].strip():
            raise ValueError(f"{where} '{name}' must be a non-empty string")
    token: str = item["token"]
    if any(c.isspace() for c in token):
        raise ValueError(f"{where} 'token' must not contain whitespace")
    return token, Identity(
        sender=item["sender"],
        can_start_sessions=_flag(item, "can_start_sessions", True, where),
        allowed_modes=_allowed_modes(item.get("allowed_modes"), where),
        is_observer=_flag(item, "is_observer", False, where),
        can_manage_mode_registry=_flag(item, "can_manage_mode_registry", False, where),
        max_open_sessions=_cap(item.get("max_open_sessions"), where),
    )


@dataclass(frozen=True, slots=True)
class _StaticEntry:
    digest: bytes  # SHA-256 of the token: fixed length, so comparison time does not depend on it
    identity: Identity


def _parse_tokens(text: str, source: str, *, jwt_configured: bool) -> tuple[_StaticEntry, ...]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AuthConfigError(f"{source}: not valid JSON ({exc})") from None
    items = data.get("tokens") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise AuthConfigError(f'{source}: expected a list of tokens or {{"tokens": [...]}}')
    if not items:
        raise AuthConfigError(f"{source}: the token list is empty; configure at least one token")
    entries: list[_StaticEntry] = []
    seen: dict[bytes, int] = {}
    for number, item in enumerate(items, start=1):
        try:
            token, identity = _static_identity(item, f"item {number}")
        except ValueError as exc:
            raise AuthConfigError(f"{source}: {exc}") from None
        if jwt_configured and "." in token:
            raise AuthConfigError(
                f"{source}: item {number} 'token' contains '.', which is read as a JWT when "
                "MACP_AUTH_ISSUER is set; use an opaque token without '.'"
            )
        digest = hashlib.sha256(token.encode()).digest()
        if digest in seen:
            raise AuthConfigError(f"{source}: item {number} repeats the token of item {seen[digest]}")
        seen[digest] = number
        entries.append(_StaticEntry(digest, identity))
    return tuple(entries)


def _lookup(entries: Sequence[_StaticEntry], token: str) -> Identity | None:
    digest = hashlib.sha256(token.encode()).digest()
    found: Identity | None = None
    for entry in entries:  # no early exit: every entry is compared, in constant time
        if hmac.compare_digest(entry.digest, digest):
            found = entry.identity
    return found


# --- JWT -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TrustedKey:
    kid: str | None
    by_alg: Mapping[str, jwt.PyJWK]  # the key prepared for each configured algorithm it suits


def _prepare_key(jwk: Any, algs: Sequence[str]) -> _TrustedKey | None:
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
        return None
    kid = jwk.get("kid")
    by_alg: dict[str, jwt.PyJWK] = {}
    for alg in algs:
        if "alg" in jwk and jwk["alg"] != alg:
            continue
        if alg in _EC_CURVES and jwk.get("crv") != _EC_CURVES[alg]:
            continue
        try:
            by_alg[alg] = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            continue
    if not by_alg:
        return None
    return _TrustedKey(kid if isinstance(kid, str) else None, by_alg)


def _parse_jwks(text: str | bytes, algs: Sequence[str]) -> tuple[_TrustedKey, ...]:
    """The usable keys of a JWK Set; ``ValueError`` when it is not one or has none."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    raw = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ValueError('not a JWK Set (expected {"keys": [...]})')
    keys = tuple(k for k in (_prepare_key(jwk, algs) for jwk in raw) if k is not None)
    if not keys:
        raise ValueError(f"no key usable with the accepted algorithms ({', '.join(algs)})")
    return keys


def _http_get(url: str) -> bytes:
    """GET ``url`` (in a worker thread); the deadline also bounds a server that trickles its reply."""
    deadline = time.monotonic() + JWKS_TOTAL_TIMEOUT_SECS
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(request, timeout=JWKS_CONNECT_TIMEOUT_SECS) as response:
        while chunk := response.read1(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > JWKS_MAX_BYTES:
                raise ValueError(f"the key set is larger than {JWKS_MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError("the key set took too long to arrive")
    return b"".join(chunks)


def _redacted(url: str) -> str:
    """The URL without credentials or query, for logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _RemoteJwks:
    """A JWK Set fetched from a URL off the event loop, cached, refreshed single-flight."""

    def __init__(self, url: str, ttl: float, algs: Sequence[str], clock: Callable[[], float]) -> None:
        self.url = url
        self._ttl = ttl
        self._algs = tuple(algs)
        self._clock = clock
        self._keys: tuple[_TrustedKey, ...] | None = None
        self._fetched_at = 0.0
        self._retry_at = float("-inf")
        self._lock = asyncio.Lock()

    def _cached(self, now: float, max_age: float) -> tuple[_TrustedKey, ...] | None:
        if self._keys is not None and now - self._fetched_at < max_age:
            return self._keys
        return None

    async def keys(self) -> tuple[_TrustedKey, ...]:
        fresh = self._cached(self._clock(), self._ttl)
        if fresh is not None:
            return fresh
        async with self._lock:  # one refresh at a time; the tasks queued behind it reuse its result
            now = self._clock()
            fresh = self._cached(now, self._ttl)
            if fresh is not None:
                return fresh
            if now >= self._retry_at:
                try:
                    body = await asyncio.wait_for(
                        asyncio.to_thread(_http_get, self.url), JWKS_TOTAL_TIMEOUT_SECS
                    )
                    keys = _parse_jwks(body, self._algs)
                except (OSError, ValueError, TimeoutError) as exc:
                    self._retry_at = now + JWKS_RETRY_BACKOFF_SECS
                    reason = str(exc) or type(exc).__name__
                    log.warning("fetching the JWT key set from %s failed: %s", _redacted(self.url), reason)
                else:
                    self._keys, self._fetched_at = keys, now
                    return keys
            stale = self._cached(now, self._ttl + JWKS_STALE_GRACE_SECS)
            if stale is not None:
                return stale
            raise AuthError("the token issuer's keys are unavailable; try again later")


def _scopes_identity(sender: str, scopes: Any) -> Identity:
    if scopes is None:
        return Identity(sender=sender)
    where = "the token's macp_scopes claim:"
    try:
        if not isinstance(scopes, dict):
            raise ValueError(f"{where} must be an object")
        return Identity(
            sender=sender,
            can_start_sessions=_flag(scopes, "can_start_sessions", True, where),
            allowed_modes=_allowed_modes(scopes.get("allowed_modes"), where),
            is_observer=_flag(scopes, "is_observer", False, where),
            can_manage_mode_registry=_flag(scopes, "can_manage_mode_registry", False, where),
            max_open_sessions=_cap(scopes.get("max_open_sessions"), where),
        )
    except ValueError as exc:
        raise AuthError(str(exc)) from None


_CLAIM_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token was issued by an issuer this runtime does not trust"),
    (jwt.InvalidAudienceError, "the token is not meant for this runtime (wrong audience)"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (iss, aud, exp and sub are required)"),
)


class _JwtVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        algs: Sequence[str],
        inline: tuple[_TrustedKey, ...] | None,
        remote: _RemoteJwks | None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algs = tuple(algs)
        self._inline = inline
        self.remote = remote

    async def _keys(self) -> tuple[_TrustedKey, ...]:
        if self._inline is not None:
            return self._inline
        assert self.remote is not None  # from_settings configures exactly one source
        return await self.remote.keys()

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in self.algs:
            raise AuthError(
                f"the token's signing algorithm is not accepted (accepted: {', '.join(self.algs)})"
            )
        keys = await self._keys()
        kid = header.get("kid")
        candidates = [k for k in keys if kid is not None and k.kid == kid] or list(keys)
        for key in candidates:
            if alg not in key.by_alg:
                continue
            try:
                claims = jwt.decode(
                    token,
                    key=key.by_alg[alg],
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=JWT_LEEWAY_SECS,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                continue
            except jwt.PyJWTError as exc:
                # Claims are checked only after the signature verified, so this is final.
                message = next((m for cls, m in _CLAIM_ERRORS if isinstance(exc, cls)), None)
                raise AuthError(message or "the token's claims are invalid") from None
            sender = claims["sub"]
            if not sender.strip():
                raise AuthError("the token's 'sub' claim is empty")
            return _scopes_identity(sender, claims.get("macp_scopes"))
        raise AuthError("the token's signature does not verify with any trusted key")


# --- the chain -------------------------------------------------------------------------------------


def _check_jwks_url(url: str, allow_insecure: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and (parts.hostname in _LOOPBACK_HOSTS or allow_insecure):
        return
    raise AuthConfigError(
        "MACP_AUTH_JWKS_URL must be an https:// URL (plain http only to a loopback host or with "
        f"MACP_ALLOW_INSECURE=1), got {_redacted(url)!r}"
    )


def _jwt_verifier(settings: AuthSettings, clock: Callable[[], float]) -> _JwtVerifier | None:
    source = settings.jwks_json is not None or settings.jwks_url is not None
    if settings.issuer is None:
        if source:
            raise AuthConfigError("MACP_AUTH_JWKS_JSON/MACP_AUTH_JWKS_URL is set but MACP_AUTH_ISSUER is not")
        return None
    if not settings.issuer.strip():
        raise AuthConfigError("MACP_AUTH_ISSUER must not be blank")
    if not source:
        raise AuthConfigError(
            "MACP_AUTH_ISSUER is set but no key set is: set MACP_AUTH_JWKS_JSON or MACP_AUTH_JWKS_URL"
        )
    if not settings.audience.strip():
        raise AuthConfigError("MACP_AUTH_AUDIENCE must not be blank")
    algs = settings.jwt_algs
    if not algs:
        raise AuthConfigError("MACP_AUTH_JWT_ALGS must list at least one algorithm")
    for alg in algs:
        if alg.lower() == "none":
            raise AuthConfigError("MACP_AUTH_JWT_ALGS: 'none' is never accepted")
        if alg not in SUPPORTED_JWT_ALGS:
            raise AuthConfigError(
                f"MACP_AUTH_JWT_ALGS: unknown algorithm {alg!r}; "
                f"supported: {', '.join(sorted(SUPPORTED_JWT_ALGS))}"
            )
    if settings.jwks_json is not None:
        try:
            inline = _parse_jwks(settings.jwks_json, algs)
        except ValueError as exc:
            raise AuthConfigError(f"MACP_AUTH_JWKS_JSON: {exc}") from None
        return _JwtVerifier(settings.issuer, settings.audience, algs, inline, None)
    assert settings.jwks_url is not None
    _check_jwks_url(settings.jwks_url, settings.allow_insecure)
    if settings.jwks_ttl_secs <= 0:
        raise AuthConfigError(f"MACP_AUTH_JWKS_TTL_SECS must be positive, got {settings.jwks_ttl_secs}")
    remote = _RemoteJwks(settings.jwks_url, settings.jwks_ttl_secs, algs, clock)
    return _JwtVerifier(settings.issuer, settings.audience, algs, None, remote)


def _static_tokens(settings: AuthSettings, jwt_configured: bool) -> tuple[_StaticEntry, ...] | None:
    if settings.tokens_json is not None:  # the inline JSON wins over the file
        return _parse_tokens(settings.tokens_json, "MACP_AUTH_TOKENS_JSON", jwt_configured=jwt_configured)
    if settings.tokens_file is None:
        return None
    source = f"MACP_AUTH_TOKENS_FILE ({settings.tokens_file})"
    try:
        text = settings.tokens_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise AuthConfigError(f"{source}: cannot read the file ({reason})") from None
    return _parse_tokens(text, source, jwt_configured=jwt_configured)


class Authenticator:
    """The configured resolver chain. Build it with :meth:`from_settings`."""

    def __init__(
        self,
        *,
        jwt: _JwtVerifier | None,
        static: tuple[_StaticEntry, ...] | None,
        dev_mode: bool,
        internal: tuple[_StaticEntry, ...] = (),
    ) -> None:
        self._jwt = jwt
        self._static = static
        self._dev_mode = dev_mode
        self._internal = internal

    def with_internal_identity(self, token: str, identity: Identity) -> Authenticator:
        """A copy that also accepts ``token`` as ``identity``, checked before every other resolver.

        For components started in the same process (``pymacp serve --console``): the token
        is generated there and never leaves the process, so it works in every auth mode,
        dev mode included, without weakening the configured one.
        """
        if len(token) < MIN_INTERNAL_TOKEN_LENGTH:
            raise ValueError(f"an internal token must have at least {MIN_INTERNAL_TOKEN_LENGTH} characters")
        entry = _StaticEntry(hashlib.sha256(token.encode()).digest(), identity)
        return Authenticator(
            jwt=self._jwt, static=self._static, dev_mode=self._dev_mode, internal=(*self._internal, entry)
        )

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> Authenticator:
        """Validate ``settings`` and build the chain; ``clock`` times the JWKS cache."""
        verifier = _jwt_verifier(settings, clock)
        static = _static_tokens(settings, jwt_configured=verifier is not None)
        if verifier is None and static is None:
            if not settings.allow_insecure:
                raise AuthConfigError(
                    "no authentication configured; set MACP_AUTH_TOKENS_JSON/MACP_AUTH_TOKENS_FILE or "
                    "MACP_AUTH_ISSUER with MACP_AUTH_JWKS_JSON/MACP_AUTH_JWKS_URL, or MACP_ALLOW_INSECURE=1 "
                    "for development"
                )
            return cls(jwt=None, static=None, dev_mode=True)
        return cls(jwt=verifier, static=static, dev_mode=False)

    @property
    def dev_mode(self) -> bool:
        return self._dev_mode

    def describe(self) -> str:
        if self._dev_mode:
            return "dev mode (INSECURE: the bearer value is taken as the sender)"
        parts = []
        if self._jwt is not None:
            source = (
                "inline key set"
                if self._jwt.remote is None
                else f"keys from {_redacted(self._jwt.remote.url)}"
            )
            parts.append(
                f"JWT (issuer {self._jwt.issuer}, audience {self._jwt.audience}, {source}, "
                f"algorithms {', '.join(self._jwt.algs)})"
            )
        if self._static is not None:
            count = len(self._static)
            parts.append(f"static tokens ({count} {'identity' if count == 1 else 'identities'})")
        return ", ".join(parts)

    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Identity:
        credential = _credential(metadata)
        token = credential.token
        if self._internal:
            internal = _lookup(self._internal, token)
            if internal is not None:
                return internal
        if self._dev_mode:
            return Identity(sender=token, can_manage_mode_registry=True)
        if self._jwt is not None and "." in token:
            if credential.from_authorization:
                return await self._jwt.verify(token)
            raise AuthError("a JWT must be sent as 'authorization: Bearer <token>'")
        if self._static is not None:
            identity = _lookup(self._static, token)
            if identity is not None:
                return identity
        raise AuthError("the bearer token is not recognised")
