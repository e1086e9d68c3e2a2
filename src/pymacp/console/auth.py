"""API-key authentication, and the short-lived SSE ticket cookie for browsers.

Clients send ``Authorization: Bearer KEY``. A presented key is hashed and compared with the
hash of *every* configured key using :func:`hmac.compare_digest`, without stopping at a
match, so neither timing nor the number of keys tells an attacker anything. Keys never
appear in logs, responses or metrics labels: a caller is known by a short fingerprint.

Browsers cannot put headers on an ``EventSource``. Instead of a key in the query string
(which lands in logs, history and Referer headers), the UI trades its key for an SSE ticket
(``POST /auth/sse-ticket``): an HttpOnly, SameSite=Strict cookie scoped to ``/runs``, valid
for :data:`TICKET_TTL_SECS`, signed with a secret derived from the configured keys. It is
accepted only on the two read-only SSE routes, so it can neither change anything nor be
sent cross-site. Deriving the secret from the keys means a ticket survives a console
restart (the browser's automatic reconnect keeps working) and dies when the keys change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

TICKET_COOKIE = "pymacp_sse"
TICKET_TTL_SECS = 300
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
_SSE_PATH = re.compile(r"^/runs/(?:stream|[^/]+/stream)$")


def fingerprint(key: str) -> str:
    """A stable, non-reversible name for a key: safe for logs and rate-limit buckets."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    match = _BEARER.match(authorization)
    return match.group(1) if match else None


def accepts_ticket(method: str, path: str) -> bool:
    """Only the read-only SSE streams take the cookie; every other route needs the header."""
    return method == "GET" and _SSE_PATH.match(path) is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``key:<fingerprint>`` once authenticated, otherwise anonymous."""

    id: str | None  # None: no valid credential
    problem: str | None = None  # why a presented credential was refused


class ApiKeys:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple((hashlib.sha256(key.encode()).digest(), fingerprint(key)) for key in keys)
        material = "\n".join(sorted(keys)).encode()
        self._ticket_secret = hmac.new(b"pymacp-console sse ticket v1", material, hashlib.sha256).digest()

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def match(self, presented: str) -> str | None:
        """The fingerprint of the matching key, or None; constant time over all keys."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for candidate, name in self._digests:
            if hmac.compare_digest(digest, candidate):
                found = name
        return found

    def issue_ticket(self, principal: str, now: float) -> str:
        expires = int(now) + TICKET_TTL_SECS
        body = f"{expires}.{principal}"
        return f"{body}.{self._sign(body)}"

    def verify_ticket(self, ticket: str, now: float) -> str | None:
        """The principal a ticket was issued to, or None if forged, malformed or expired."""
        body, _, signature = ticket.rpartition(".")
        expires_text, _, principal = body.partition(".")
        if not (body and expires_text.isdigit() and principal):
            return None
        # bytes, not str: compare_digest refuses non-ASCII text, and a cookie may carry any
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        if int(expires_text) < now:
            return None
        return principal

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._ticket_secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def identify(
        self, method: str, path: str, authorization: str | None, cookie: str | None, now: float
    ) -> Principal:
        token = bearer_token(authorization)
        if token is not None:
            name = self.match(token)
            return Principal(f"key:{name}") if name else Principal(None, "the API key is not valid")
        if authorization:
            return Principal(None, "the Authorization header must read 'Bearer <API key>'")
        if cookie and accepts_ticket(method, path):
            principal = self.verify_ticket(cookie, now)
            if principal is not None:
                return Principal(principal)
            return Principal(None, "the SSE ticket has expired or is not valid; request a new one")
        return Principal(None)
