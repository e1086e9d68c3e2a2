"""A token bucket per client: ``burst`` requests at once, refilled at ``per_minute``.

A client is its API key (by fingerprint) once authenticated, otherwise its address, so a
shared NAT does not throttle well-behaved key holders and guessing keys is throttled per
address. Health, readiness and metrics are never throttled (see :mod:`.guard`): a probe
that gets 429 would restart a healthy console. An SSE stream costs one request when it
connects. The table of buckets is bounded; the least recently seen client is forgotten
first, which at worst hands it a fresh bucket.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: int, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self.per_second = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def take(self, client: str, now: float) -> float:
        """Spend one token; 0.0 if allowed, else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[client] = bucket
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it succeeds."""
    return str(max(1, math.ceil(seconds)))
