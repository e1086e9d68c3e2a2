"""The authentication chain: JWT, static tokens and dev mode, through ``Authenticator``."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pymacp.kernel.identity import Identity
from pymacp.runtime import auth
from pymacp.runtime.auth import AuthConfigError, Authenticator, AuthError, AuthSettings

ISSUER = "https://issuer.example"
HS_SECRET = b"0123456789abcdef0123456789abcdef"

# --- keys and tokens -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.HMACAlgorithm.to_jwk(key, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return {**jwk, **extra}


def jwks(*keys: Any) -> str:
    return json.dumps({"keys": list(keys)})


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "macp-runtime",
        "sub": "alice",
        "exp": int(time.time()) + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, alg: str = "RS256", kid: str | None = "k1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def bearer(token: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {token}")]


def run(authenticator: Authenticator, metadata: Sequence[tuple[str, str | bytes]]) -> Identity:
    return asyncio.run(authenticator.authenticate(metadata))


def refused(authenticator: Authenticator, metadata: Sequence[tuple[str, str | bytes]]) -> str:
    with pytest.raises(AuthError) as info:
        run(authenticator, metadata)
    return str(info.value)


def jwt_auth(keyset: str, **settings: Any) -> Authenticator:
    return Authenticator.from_settings(AuthSettings(issuer=ISSUER, jwks_json=keyset, **settings))


def config_error(**settings: Any) -> str:
    with pytest.raises(AuthConfigError) as info:
        Authenticator.from_settings(AuthSettings(**settings))
    return str(info.value)


# --- JWT -------------------------------------------------------------------------------------------


def test_rs256_token_gives_the_subject_with_default_capabilities(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")))
    assert run(authenticator, bearer(sign(rsa_key))) == Identity(sender="alice")
    assert not authenticator.dev_mode
    assert authenticator.describe() == (
        f"JWT (issuer {ISSUER}, audience macp-runtime, inline key set, algorithms RS256, ES256)"
    )
    assert "not recognised" in refused(authenticator, bearer("opaque-token"))  # no static table


def test_es256_token_with_scopes_maps_every_capability(ec_key: ec.EllipticCurvePrivateKey) -> None:
    scopes = {
        "allowed_modes": ["macp.mode.decision.v1", ""],
        "can_start_sessions": False,
        "max_open_sessions": 3,
        "can_manage_mode_registry": True,
        "is_observer": True,
        "future_scope": "ignored",
    }
    authenticator = jwt_auth(jwks(public_jwk(ec_key, "ec")))
    token = sign(ec_key, "ES256", kid="ec", sub="bob", macp_scopes=scopes)
    assert run(authenticator, bearer(token)) == Identity(
        sender="bob",
        can_start_sessions=False,
        allowed_modes=frozenset({"macp.mode.decision.v1", ""}),
        is_observer=True,
        can_manage_mode_registry=True,
        max_open_sessions=3,
    )


def test_empty_allowed_modes_scope_means_every_mode(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")))
    identity = run(authenticator, bearer(sign(rsa_key, macp_scopes={"allowed_modes": []})))
    assert identity.allowed_modes is None
    assert identity.can_start_sessions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"sub": None}, "required claim"),
        ({"exp": None}, "required claim"),
        ({"aud": None}, "required claim"),
        ({"iss": None}, "required claim"),
        ({"jti": 5}, "claims are invalid"),
        ({"sub": "  "}, "'sub' claim is empty"),
        ({"macp_scopes": ["observer"]}, "macp_scopes claim: must be an object"),
        ({"macp_scopes": {"is_observer": "yes"}}, "'is_observer' must be true or false"),
        ({"macp_scopes": {"allowed_modes": "x"}}, "'allowed_modes' must be a list"),
        ({"macp_scopes": {"max_open_sessions": -1}}, "'max_open_sessions' must be a non-negative"),
        ({"macp_scopes": {"max_open_sessions": True}}, "'max_open_sessions' must be a non-negative"),
    ],
)
def test_bad_claims_are_refused(rsa_key: rsa.RSAPrivateKey, overrides: dict[str, Any], message: str) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")))
    assert message in refused(authenticator, bearer(sign(rsa_key, **overrides)))


def test_audience_may_be_configured_and_listed_in_the_token(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")), audience="rt-7")
    assert run(authenticator, bearer(sign(rsa_key, aud=["other", "rt-7"]))).sender == "alice"
    assert "audience" in refused(authenticator, bearer(sign(rsa_key)))


def test_bad_signature_is_refused(rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")))
    assert "signature" in refused(authenticator, bearer(sign(other_rsa_key, kid="k1")))
    header, _, signature = sign(rsa_key).split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims(sub="mallory")).encode()).decode()
    assert "signature" in refused(authenticator, bearer(f"{header}.{forged_payload}.{signature}"))


def test_alg_none_is_always_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")), jwt_algs=("RS256", "HS256"))
    unsigned = jwt.encode(claims(), "", algorithm="none")
    assert "algorithm is not accepted" in refused(authenticator, bearer(unsigned))
    assert "never accepted" in config_error(issuer=ISSUER, jwks_json="{}", jwt_algs=("RS256", "none"))


def test_hs256_only_when_listed(rsa_key: rsa.RSAPrivateKey) -> None:
    keyset = jwks(public_jwk(rsa_key, "k1"), public_jwk(HS_SECRET, "hmac"))
    token = sign(HS_SECRET, "HS256", kid="hmac")
    assert "algorithm is not accepted" in refused(jwt_auth(keyset), bearer(token))
    listed = jwt_auth(keyset, jwt_algs=("RS256", "HS256"))
    assert run(listed, bearer(token)).sender == "alice"


def test_hs256_cannot_be_forged_with_the_rsa_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """Key confusion: an HMAC over the RSA public key must not verify."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    segments = [
        jwt.utils.base64url_encode(json.dumps(part).encode()).decode()
        for part in ({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims())
    ]
    signing_input = ".".join(segments).encode()
    mac = jwt.utils.base64url_encode(hmac.new(pem, signing_input, "sha256").digest()).decode()
    forged_with_pem = f"{signing_input.decode()}.{mac}"
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")), jwt_algs=("RS256", "HS256"))
    assert "signature" in refused(authenticator, bearer(forged_with_pem))


def test_unknown_kid_falls_back_to_trying_every_key(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    keyset = jwks(public_jwk(other_rsa_key, "k0"), public_jwk(rsa_key, "k1"))
    authenticator = jwt_auth(keyset)
    assert run(authenticator, bearer(sign(rsa_key, kid="rotated-away"))).sender == "alice"
    assert run(authenticator, bearer(sign(rsa_key, kid=None))).sender == "alice"


def test_a_matching_kid_selects_only_that_key(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    authenticator = jwt_auth(jwks(public_jwk(other_rsa_key, "k0"), public_jwk(rsa_key, "k1")))
    assert "signature" in refused(authenticator, bearer(sign(rsa_key, kid="k0")))


def test_keys_unfit_for_the_algorithm_are_skipped(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    keyset = jwks(
        public_jwk(rsa_key, "enc", use="enc"),  # encryption keys never verify
        public_jwk(rsa_key, "ps", alg="PS256"),  # pinned to an algorithm that is not accepted
        public_jwk(ec.generate_private_key(ec.SECP384R1()), "p384"),  # wrong curve for ES256
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not a key",
        public_jwk(ec_key, "ec"),
    )
    authenticator = jwt_auth(keyset)
    assert run(authenticator, bearer(sign(ec_key, "ES256", kid="ec"))).sender == "alice"
    assert "signature" in refused(authenticator, bearer(sign(rsa_key, kid="enc")))


def test_more_algorithms_and_key_types_can_be_enabled() -> None:
    okp = ed25519.Ed25519PrivateKey.generate()
    authenticator = jwt_auth(jwks(public_jwk(okp, "ed")), jwt_algs=("EdDSA",))
    assert run(authenticator, bearer(sign(okp, "EdDSA", kid="ed"))).sender == "alice"


def test_a_token_the_key_set_cannot_check_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(ec_key, "ec")), jwt_algs=("RS256", "ES256"))
    rsa_token = sign(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="ec")
    assert "signature does not verify" in refused(authenticator, bearer(rsa_token))


def test_malformed_jwt_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")))
    assert "not a well-formed JWT" in refused(authenticator, bearer("abc.def"))


def test_jwt_is_read_only_from_the_authorization_header(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = jwt_auth(jwks(public_jwk(rsa_key, "k1")))
    assert "authorization: Bearer" in refused(authenticator, [("x-macp-token", sign(rsa_key))])


# --- JWT configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"issuer": ISSUER}, "MACP_AUTH_ISSUER is set but no key set"),
        ({"jwks_json": "{}"}, "MACP_AUTH_ISSUER is not"),
        ({"jwks_url": "https://x/jwks"}, "MACP_AUTH_ISSUER is not"),
        ({"issuer": " ", "jwks_json": "{}"}, "MACP_AUTH_ISSUER must not be blank"),
        ({"issuer": ISSUER, "jwks_json": "{}", "audience": ""}, "MACP_AUTH_AUDIENCE"),
        ({"issuer": ISSUER, "jwks_json": "{}", "jwt_algs": ()}, "at least one algorithm"),
        ({"issuer": ISSUER, "jwks_json": "{}", "jwt_algs": ("RS1",)}, "unknown algorithm 'RS1'"),
        ({"issuer": ISSUER, "jwks_json": "{"}, "MACP_AUTH_JWKS_JSON: not valid JSON"),
        ({"issuer": ISSUER, "jwks_json": "[]"}, "MACP_AUTH_JWKS_JSON: not a JWK Set"),
        (
            {"issuer": ISSUER, "jwks_json": '{"keys": []}'},
            "no key usable with the accepted algorithms (RS256, ES256)",
        ),
        ({"issuer": ISSUER, "jwks_url": "ftp://x/jwks"}, "must be an https:// URL"),
        ({"issuer": ISSUER, "jwks_url": "http://keys.example/jwks"}, "must be an https:// URL"),
        ({"issuer": ISSUER, "jwks_url": "https://x/jwks", "jwks_ttl_secs": 0}, "MACP_AUTH_JWKS_TTL_SECS"),
    ],
)
def test_jwt_misconfiguration_refuses_to_start(settings: dict[str, Any], message: str) -> None:
    assert message in config_error(**settings)


def test_plain_http_jwks_is_allowed_to_loopback_or_when_insecure() -> None:
    for url, insecure in [("http://127.0.0.1:1/jwks", False), ("http://keys.example/jwks", True)]:
        authenticator = Authenticator.from_settings(
            AuthSettings(issuer=ISSUER, jwks_url=url, allow_insecure=insecure)
        )
        assert not authenticator.dev_mode


def test_described_jwks_url_hides_credentials_and_query() -> None:
    settings = AuthSettings(issuer=ISSUER, jwks_url="https://user:pw@keys.example:8443/jwks?key=s3")
    description = Authenticator.from_settings(settings).describe()
    assert "keys from https://keys.example:8443/jwks," in description
    assert "pw" not in description and "s3" not in description


def test_inline_jwks_wins_over_the_url(rsa_key: rsa.RSAPrivateKey) -> None:
    settings = AuthSettings(
        issuer=ISSUER, jwks_json=jwks(public_jwk(rsa_key, "k1")), jwks_url="https://x:1/jwks"
    )
    authenticator = Authenticator.from_settings(settings)
    assert "inline key set" in authenticator.describe()
    assert run(authenticator, bearer(sign(rsa_key))).sender == "alice"


# --- JWKS from a URL -------------------------------------------------------------------------------


@dataclass
class KeyServer:
    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    hits: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    state = KeyServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits += 1
            time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks?secret=1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def url_auth(server: KeyServer, clock: FakeClock, ttl: int = 300) -> Authenticator:
    settings = AuthSettings(issuer=ISSUER, jwks_url=server.url, jwks_ttl_secs=ttl)
    return Authenticator.from_settings(settings, clock=clock)


def test_jwks_is_fetched_cached_for_the_ttl_then_refreshed(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    key_server.body = jwks(public_jwk(rsa_key, "k1")).encode()
    clock = FakeClock()
    authenticator = url_auth(key_server, clock)
    token = sign(rsa_key)

    async def scenario() -> None:
        assert (await authenticator.authenticate(bearer(token))).sender == "alice"
        clock.now += 299
        await authenticator.authenticate(bearer(token))
        assert key_server.hits == 1
        clock.now += 2
        await authenticator.authenticate(bearer(token))
        assert key_server.hits == 2

    asyncio.run(scenario())
    description = authenticator.describe()
    assert f"keys from {key_server.url.split('?')[0]}," in description
    assert "secret" not in description


def test_stale_keys_serve_for_an_hour_while_the_endpoint_fails(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    key_server.body = jwks(public_jwk(rsa_key, "k1")).encode()
    clock = FakeClock()
    authenticator = url_auth(key_server, clock)
    token = sign(rsa_key)

    async def scenario() -> None:
        await authenticator.authenticate(bearer(token))
        key_server.status = 500
        clock.now += 301
        assert (
            await authenticator.authenticate(bearer(token))
        ).sender == "alice"  # stale, after a failed try
        assert key_server.hits == 2
        clock.now += 1
        await authenticator.authenticate(bearer(token))
        assert key_server.hits == 2  # backing off: no new attempt yet
        clock.now += 3600
        with pytest.raises(AuthError, match="keys are unavailable"):
            await authenticator.authenticate(bearer(token))
        assert key_server.hits == 3
        key_server.status = 200
        clock.now += 10
        assert (await authenticator.authenticate(bearer(token))).sender == "alice"

    asyncio.run(scenario())
    assert "fetching the JWT key set" in caplog.text
    assert "secret" not in caplog.text


def test_unusable_endpoint_bodies_are_failures(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sign(rsa_key)
    for body in [b"<html>", b'{"keys": []}']:
        key_server.body = body
        assert "keys are unavailable" in refused(url_auth(key_server, FakeClock()), bearer(token))
    monkeypatch.setattr(auth, "JWKS_MAX_BYTES", 10)
    key_server.body = jwks(public_jwk(rsa_key, "k1")).encode()
    assert "keys are unavailable" in refused(url_auth(key_server, FakeClock()), bearer(token))


def test_refresh_is_single_flight(key_server: KeyServer, rsa_key: rsa.RSAPrivateKey) -> None:
    key_server.body = jwks(public_jwk(rsa_key, "k1")).encode()
    key_server.delay = 0.2
    authenticator = url_auth(key_server, FakeClock())
    token = sign(rsa_key)

    async def scenario() -> list[Identity]:
        return await asyncio.gather(*(authenticator.authenticate(bearer(token)) for _ in range(8)))

    assert {i.sender for i in asyncio.run(scenario())} == {"alice"}
    assert key_server.hits == 1


def test_slow_endpoint_times_out(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "JWKS_TOTAL_TIMEOUT_SECS", 0.1)
    key_server.body = jwks(public_jwk(rsa_key, "k1")).encode()
    key_server.delay = 0.5
    authenticator = url_auth(key_server, FakeClock())

    async def scenario() -> float:
        started = time.monotonic()
        with pytest.raises(AuthError, match="keys are unavailable"):
            await authenticator.authenticate(bearer(sign(rsa_key)))
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 0.45  # the event loop is not held up by the slow worker


def test_a_trickling_endpoint_is_cut_off(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "JWKS_TOTAL_TIMEOUT_SECS", -1.0)  # the worker's own deadline has passed
    key_server.body = jwks(public_jwk(rsa_key, "k1")).encode()
    with pytest.raises(TimeoutError):
        auth._http_get(key_server.url)


# --- static tokens ---------------------------------------------------------------------------------

TOKENS = [
    {"token": "tok-alice", "sender": "alice"},
    {
        "token": "tok-bob",
        "sender": "bob",
        "allowed_modes": ["macp.mode.task.v1"],
        "can_start_sessions": False,
        "max_open_sessions": 2,
        "can_manage_mode_registry": True,
        "is_observer": True,
    },
    {"token": "tok.dotted", "sender": "carol", "allowed_modes": []},
]


def static_auth(tokens: Any = TOKENS, **settings: Any) -> Authenticator:
    return Authenticator.from_settings(AuthSettings(tokens_json=json.dumps(tokens), **settings))


def test_static_tokens_map_to_identities() -> None:
    authenticator = static_auth()
    assert run(authenticator, bearer("tok-alice")) == Identity(sender="alice")
    assert run(authenticator, [("x-macp-token", "tok-bob")]) == Identity(
        sender="bob",
        can_start_sessions=False,
        allowed_modes=frozenset({"macp.mode.task.v1"}),
        is_observer=True,
        can_manage_mode_registry=True,
        max_open_sessions=2,
    )
    assert run(authenticator, bearer("tok.dotted")).allowed_modes is None  # no JWT: '.' is just a character
    assert authenticator.describe() == "static tokens (3 identities)"


def test_tokens_object_form_and_authorization_precedence() -> None:
    authenticator = static_auth({"tokens": TOKENS[:1]})
    assert authenticator.describe() == "static tokens (1 identity)"
    metadata: list[tuple[str, str | bytes]] = [
        ("x-macp-token", "tok-bob"),
        ("authorization", "Bearer tok-alice"),
    ]
    assert run(authenticator, metadata).sender == "alice"


def test_unknown_token_is_refused_without_echoing_it() -> None:
    message = refused(static_auth(), bearer("tok-secret-guess"))
    assert "not recognised" in message
    assert "tok-secret-guess" not in message


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    authenticator = static_auth()
    assert run(authenticator, bearer("tok-alice")).sender == "alice"
    assert len(calls) == len(TOKENS)  # no early exit on the first match
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests, so the length leaks nothing


def test_inline_json_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"token": "file-tok", "sender": "from-file"}]))
    from_file = Authenticator.from_settings(AuthSettings(tokens_file=path))
    assert run(from_file, bearer("file-tok")).sender == "from-file"
    both = static_auth(tokens_file=path)
    assert run(both, bearer("tok-alice")).sender == "alice"
    assert "not recognised" in refused(both, bearer("file-tok"))


def test_unreadable_token_file_names_the_variable(tmp_path: Path) -> None:
    message = config_error(tokens_file=tmp_path / "missing.json")
    assert message.startswith(f"MACP_AUTH_TOKENS_FILE ({tmp_path / 'missing.json'}): cannot read the file")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe")
    assert "cannot read the file" in config_error(tokens_file=binary)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("{", "MACP_AUTH_TOKENS_JSON: not valid JSON"),
        ('{"tokens": {}}', "expected a list of tokens"),
        ('"tok"', "expected a list of tokens"),
        ("[]", "the token list is empty"),
        ('["tok"]', "item 1 must be an object"),
        ('[{"token": "a", "sender": "x"}, {"token": "b"}]', "MACP_AUTH_TOKENS_JSON: item 2 has no 'sender'"),
        ('[{"sender": "x"}]', "item 1 has no 'token'"),
        ('[{"token": " ", "sender": "x"}]', "item 1 'token' must be a non-empty string"),
        ('[{"token": "a", "sender": 7}]', "item 1 'sender' must be a non-empty string"),
        ('[{"token": "a b", "sender": "x"}]', "must not contain whitespace"),
        ('[{"token": "a", "sender": "x", "is_admin": true}]', "unknown field(s) is_admin"),
        ('[{"token": "a", "sender": "x", "is_observer": 1}]', "'is_observer' must be true or false"),
        ('[{"token": "a", "sender": "x", "allowed_modes": [1]}]', "'allowed_modes' must be a list"),
        ('[{"token": "a", "sender": "x", "max_open_sessions": "3"}]', "'max_open_sessions'"),
        (
            '[{"token": "a", "sender": "x"}, {"token": "a", "sender": "y"}]',
            "item 2 repeats the token of item 1",
        ),
    ],
)
def test_malformed_token_json_refuses_to_start(tokens: str, message: str) -> None:
    assert message in config_error(tokens_json=tokens)


def test_null_allowed_modes_and_cap_mean_unrestricted() -> None:
    authenticator = static_auth(
        [{"token": "t", "sender": "s", "allowed_modes": None, "max_open_sessions": None}]
    )
    assert run(authenticator, bearer("t")) == Identity(sender="s")


# --- static tokens with JWT ------------------------------------------------------------------------


def test_opaque_tokens_go_to_the_table_and_jwts_to_the_verifier(rsa_key: rsa.RSAPrivateKey) -> None:
    authenticator = Authenticator.from_settings(
        AuthSettings(
            tokens_json=json.dumps(TOKENS[:2]), issuer=ISSUER, jwks_json=jwks(public_jwk(rsa_key, "k1"))
        )
    )
    assert run(authenticator, bearer("tok-alice")).sender == "alice"
    assert run(authenticator, bearer(sign(rsa_key, sub="jwt-user"))).sender == "jwt-user"
    assert "expired" in refused(authenticator, bearer(sign(rsa_key, exp=int(time.time()) - 3600)))
    assert authenticator.describe() == (
        f"JWT (issuer {ISSUER}, audience macp-runtime, inline key set, algorithms RS256, ES256), "
        "static tokens (2 identities)"
    )


def test_a_dotted_static_token_is_refused_when_jwt_is_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    message = config_error(
        tokens_json=json.dumps(TOKENS), issuer=ISSUER, jwks_json=jwks(public_jwk(rsa_key, "k1"))
    )
    assert "item 3 'token' contains '.'" in message


# --- metadata parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        [("Authorization", "Bearer tok-alice")],
        [("authorization", "bearer tok-alice")],
        [("authorization", "BEARER    tok-alice  ")],
        [("authorization", b"Bearer tok-alice")],
        [("x-macp-token", b" tok-alice ")],
        [("user-agent", "grpc-python"), ("authorization", "Bearer tok-alice")],
    ],
)
def test_header_names_and_the_bearer_scheme_are_case_insensitive(
    metadata: list[tuple[str, str | bytes]],
) -> None:
    assert run(static_auth(), metadata).sender == "alice"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "authentication required"),
        ([("x-macp-token", "  ")], "authentication required"),
        ([("authorization", "Bearer")], "must be 'Bearer <token>'"),
        ([("authorization", "Bearer   ")], "must be 'Bearer <token>'"),
        ([("authorization", "Basic dG9rOg==")], "must be 'Bearer <token>'"),
        ([("authorization", "Bearer a b")], "must be 'Bearer <token>'"),
        ([("authorization", "Bearertok-alice")], "must be 'Bearer <token>'"),
        ([("authorization", b"Bearer \xff")], "not valid UTF-8"),
        ([("authorization", "Bearer tok-alice"), ("Authorization", "Bearer tok-bob")], "more than one"),
    ],
)
def test_missing_or_malformed_credentials_are_refused(
    metadata: list[tuple[str, str | bytes]], message: str
) -> None:
    assert message in refused(static_auth(), metadata)


# --- dev mode --------------------------------------------------------------------------------------


def test_dev_mode_takes_the_bearer_as_sender_only_when_insecure_is_allowed() -> None:
    authenticator = Authenticator.from_settings(AuthSettings(allow_insecure=True))
    assert authenticator.dev_mode
    assert "INSECURE" in authenticator.describe()
    assert run(authenticator, bearer("alice")) == Identity(
        sender="alice",
        can_start_sessions=True,
        allowed_modes=None,
        is_observer=False,
        can_manage_mode_registry=True,
        max_open_sessions=None,
    )
    assert run(authenticator, [("x-macp-token", "bob")]).sender == "bob"
    assert "authentication required" in refused(authenticator, [])


def test_no_resolver_and_not_insecure_refuses_to_start() -> None:
    message = config_error()
    assert message.startswith("no authentication configured; set MACP_AUTH_TOKENS_JSON/")
    assert "MACP_ALLOW_INSECURE=1 for development" in message


def test_insecure_flag_does_not_open_dev_mode_when_a_resolver_is_configured() -> None:
    authenticator = static_auth(allow_insecure=True)
    assert not authenticator.dev_mode
    assert "not recognised" in refused(authenticator, bearer("anyone"))


# --- identities of components in the same process ---------------------------------------------------


OBSERVER = Identity(sender="pymacp-console", can_start_sessions=False, is_observer=True)
INTERNAL_TOKEN = "t" * auth.MIN_INTERNAL_TOKEN_LENGTH


def test_an_internal_identity_is_recognised_in_dev_mode_and_others_keep_dev_semantics() -> None:
    authenticator = Authenticator.from_settings(AuthSettings(allow_insecure=True)).with_internal_identity(
        INTERNAL_TOKEN, OBSERVER
    )
    assert run(authenticator, bearer(INTERNAL_TOKEN)) == OBSERVER
    assert run(authenticator, bearer("alice")).sender == "alice"
    assert not run(authenticator, bearer("alice")).is_observer


def test_an_internal_identity_adds_to_static_tokens_without_replacing_them() -> None:
    authenticator = static_auth().with_internal_identity(INTERNAL_TOKEN, OBSERVER)
    assert run(authenticator, bearer(INTERNAL_TOKEN)) == OBSERVER
    assert "not recognised" in refused(authenticator, bearer(INTERNAL_TOKEN[:-1]))


def test_a_short_internal_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        static_auth().with_internal_identity("short", OBSERVER)
