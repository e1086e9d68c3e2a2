"""The ``pymacp agents`` config file: pools that are MACP participants, the dispatcher, callbacks.

JSON, or TOML when the file name ends in ``.toml``::

    {"dispatcher": {"tokenEnv": "DISPATCHER_TOKEN"},
     "callbacks": {"secretEnv": "PYMACP_AGENTS_CALLBACK_SECRET", "maxAttempts": 8,
                   "allowedHosts": ["hooks.example.com", "*.internal.example"]},
     "pools": [{"id": "tasks", "command": "python3",
                "args": ["-m", "pymacp.bus.agents.examples.task_worker"], "instances": 2,
                "participant": "agent://tasks", "tokenEnv": "TASKS_TOKEN",
                "cap": 2, "queueLimit": 100, "taskTtlMs": 600000}],
     "limits": {"max_restarts": 5}}

A pool's process fields (``id``, ``command``, ``args``, ``instances``) and ``limits`` are the
stdio_bus ones and are validated by :mod:`pymacp.bus.config`. The rest is ours, and stricter
than the bus: an unknown key is an error (a misspelt ``tokenEnv`` must not silently leave a
pool without its identity).

Secrets: a runtime token is given inline (``token``) or, better, by naming an environment
variable (``tokenEnv``); the callback signing secret only ever comes from the environment.
Token fields are excluded from ``repr`` so that they never reach a log line.

``callbacks.allowedHosts`` limits where the service may be told to POST: without it, any
http(s) URL a dispatcher gives is called back, including hosts on the service's own network.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MAX_CONFIG_BYTES, ConfigError, Limits, PoolConfig, parse_config

DEFAULT_SECRET_ENV = "PYMACP_AGENTS_CALLBACK_SECRET"
MIN_SECRET_CHARS = 16
MAX_TTL_MS = 86_400_000  # the runtime's own cap on a session's TTL

_TOP_KEYS = ("pools", "limits", "dispatcher", "callbacks")
_POOL_KEYS = (
    "id",
    "command",
    "args",
    "instances",
    "participant",
    "token",
    "tokenEnv",
    "cap",
    "queueLimit",
    "taskTtlMs",
)
_DISPATCHER_KEYS = ("token", "tokenEnv")
_CALLBACK_KEYS = ("secretEnv", "maxAttempts", "backoffMs", "maxBackoffMs", "timeoutMs", "allowedHosts")


@dataclass(frozen=True, slots=True)
class AgentPool:
    """A worker pool that acts as one MACP participant, and its dispatch limits."""

    process: PoolConfig
    participant: str
    token: str = field(repr=False)
    cap: int  # tasks running at once; 0: the pool is bridge-only and takes no dispatched tasks
    queue_limit: int  # tasks waiting for a free slot before POST /dispatch is refused
    task_ttl_ms: int  # TTL of a dispatched task's session

    @property
    def id(self) -> str:
        return self.process.id


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    secret: str | None = field(default=None, repr=False)  # None: callbacks are refused
    max_attempts: int = 8
    backoff_ms: int = 1000  # first retry after this long, doubling each time
    max_backoff_ms: int = 60_000
    timeout_ms: int = 10_000  # per attempt
    allowed_hosts: tuple[str, ...] | None = None  # None: any host; else names, addresses, "*.domain"

    def allows(self, host: str) -> bool:
        """Whether a callback may go to ``host`` (a URL's host name: no port, no brackets)."""
        if self.allowed_hosts is None:
            return True
        host = host.lower().rstrip(".")
        return any(
            host.endswith(allowed[1:]) if allowed.startswith("*.") else host == allowed
            for allowed in self.allowed_hosts
        )


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    pools: tuple[AgentPool, ...]
    dispatcher_token: str = field(repr=False)
    limits: Limits = field(default_factory=Limits)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)

    def pool(self, pool_id: str) -> AgentPool | None:
        return next((p for p in self.pools if p.id == pool_id), None)


def load_agents_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AgentsConfig:
    """Read and validate the config file at ``path``; secrets are resolved from ``environ``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot open config file {str(path)!r}: {exc.strerror or exc}") from None
    toml = str(path).endswith(".toml")
    return parse_agents_config(data, environ, source=str(path), toml=toml)


def parse_agents_config(
    data: bytes | str,
    environ: Mapping[str, str] | None = None,
    *,
    source: str = "config",
    toml: bool = False,
) -> AgentsConfig:
    env = os.environ if environ is None else environ
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source} is larger than {MAX_CONFIG_BYTES} bytes")
    document = _decode(data, source, toml)
    _only(document, _TOP_KEYS, "the top level")
    raw_pools = document.get("pools")
    if not isinstance(raw_pools, list) or not raw_pools:
        raise ConfigError("at least one worker pool is required ('pools' must be a non-empty array)")
    # The bus validates the process fields and the limits (and ignores our extra keys).
    bus = parse_config(
        json.dumps({"pools": raw_pools, "limits": document.get("limits")}, default=str), source
    )
    pools = tuple(_pool(raw, process, env) for raw, process in zip(raw_pools, bus.pools, strict=True))
    participants: dict[str, str] = {}
    for pool in pools:
        if pool.participant in participants:
            raise ConfigError(
                f"pools {participants[pool.participant]!r} and {pool.id!r} both use participant "
                f"{pool.participant!r}; each pool is its own participant"
            )
        participants[pool.participant] = pool.id
    dispatcher = document.get("dispatcher")
    if not isinstance(dispatcher, dict):
        raise ConfigError(
            "'dispatcher' is required: an object with 'tokenEnv' (or 'token') naming the runtime "
            "token the dispatcher uses (it must be allowed to start sessions)"
        )
    _only(dispatcher, _DISPATCHER_KEYS, "'dispatcher'")
    token = _token(dispatcher, "dispatcher", env)
    return AgentsConfig(pools, token, bus.limits, _callbacks(document.get("callbacks"), env))


def _decode(data: bytes | str, source: str, toml: bool) -> dict[str, Any]:
    try:
        if toml:
            text = data.decode() if isinstance(data, bytes) else data
            document: Any = tomllib.loads(text)
        else:
            document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{source} is not valid {'TOML' if toml else 'JSON'}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source} must be an object with a 'pools' array")
    return document


def _only(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(key for key in raw if key not in allowed)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; expected one of: {', '.join(allowed)}")


def _pool(raw: dict[str, Any], process: PoolConfig, env: Mapping[str, str]) -> AgentPool:
    where = f"pool {process.id!r}"
    _only(raw, _POOL_KEYS, where)
    participant = raw.get("participant")
    if not isinstance(participant, str) or not participant.strip():
        raise ConfigError(f"{where} needs 'participant': the MACP participant id its workers act as")
    return AgentPool(
        process=process,
        participant=participant,
        token=_token(raw, where, env),
        cap=_count(raw, "cap", where, process.instances, 0),
        queue_limit=_count(raw, "queueLimit", where, 100, 0),
        task_ttl_ms=_count(raw, "taskTtlMs", where, 600_000, 1, MAX_TTL_MS),
    )


def _token(raw: Mapping[str, Any], where: str, env: Mapping[str, str]) -> str:
    inline, variable = raw.get("token"), raw.get("tokenEnv")
    if (inline is None) == (variable is None):
        raise ConfigError(
            f"{where} needs exactly one of 'tokenEnv' (the name of an environment variable holding "
            "its runtime token; preferred) and 'token'"
        )
    if inline is not None:
        if not isinstance(inline, str) or not inline:
            raise ConfigError(f"{where}: 'token' must be a non-empty string")
        return inline
    if not isinstance(variable, str) or not variable:
        raise ConfigError(f"{where}: 'tokenEnv' must name an environment variable")
    value = env.get(variable, "")
    if not value:
        raise ConfigError(f"{where}: environment variable {variable} (its tokenEnv) is not set or empty")
    return value


def _count(
    raw: Mapping[str, Any], name: str, where: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    value = raw.get(name, default)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{where}: '{name}' must be an integer {bound}, not {value!r}")
    return value


def _callbacks(raw: Any, env: Mapping[str, str]) -> CallbackSettings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("'callbacks' must be an object")
    _only(raw, _CALLBACK_KEYS, "'callbacks'")
    variable = raw.get("secretEnv", DEFAULT_SECRET_ENV)
    if not isinstance(variable, str) or not variable:
        raise ConfigError("callbacks.secretEnv must name an environment variable")
    secret = env.get(variable) or None
    if secret is None and "secretEnv" in raw:
        raise ConfigError(f"callbacks.secretEnv: environment variable {variable} is not set or empty")
    if secret is not None and len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"the callback signing secret in {variable} is too short; use at least {MIN_SECRET_CHARS} "
            "random characters (e.g. `openssl rand -hex 32`)"
        )
    where = "'callbacks'"
    backoff = _count(raw, "backoffMs", where, 1000, 1)
    return CallbackSettings(
        secret=secret,
        max_attempts=_count(raw, "maxAttempts", where, 8, 1, 100),
        backoff_ms=backoff,
        max_backoff_ms=_count(raw, "maxBackoffMs", where, max(60_000, backoff), backoff),
        timeout_ms=_count(raw, "timeoutMs", where, 10_000, 1),
        allowed_hosts=_allowed_hosts(raw.get("allowedHosts")),
    )


def _allowed_hosts(raw: Any) -> tuple[str, ...] | None:
    """``callbacks.allowedHosts``: exact host names or IP addresses, and ``*.domain`` patterns."""
    if raw is None:
        return None
    usage = "a non-empty list of host names, IP addresses and '*.domain' patterns"
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"callbacks.allowedHosts must be {usage}")
    hosts: list[str] = []
    for entry in raw:
        if not isinstance(entry, str):
            raise ConfigError(f"callbacks.allowedHosts must be {usage}, not {entry!r}")
        host = entry.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
        name = host.removeprefix("*.")
        if not name or any(c in name for c in "*/@?# \t") or (":" in name and not _is_address(name)):
            raise ConfigError(
                f"callbacks.allowedHosts: {entry!r} is not a host; give a name (hooks.example.com), "
                "an address (10.0.0.7) or '*.example.com', without scheme, port or path"
            )
        hosts.append(host)
    return tuple(hosts)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
