"""ConsoleSettings: every knob of ``pymacp console``, from the environment and the command line.

One table, :data:`OPTIONS`, names each setting's environment variable, command-line flag,
default and parser. The CLI builds its flags from it and the docs list it, so the three can
not drift apart. A command-line value beats the environment; both go through the same
parser, and a bad value is reported with the flag and the variable it could have come from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .service import DEFAULT_DATABASE_URL, CoreConfig

MIN_API_KEY_CHARS = 16


class SettingsError(ValueError):
    """A setting has a value the console cannot use; the message names where it came from."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    runtime: str = "127.0.0.1:50051"
    runtime_token: str | None = None
    runtime_tls: bool = False
    runtime_ca: str | None = None
    bind_host: str = "127.0.0.1"
    bind_port: int = 8080
    database: str = DEFAULT_DATABASE_URL
    api_keys: tuple[str, ...] = ()
    no_auth: bool = False
    rate_limit_per_minute: int = 600  # per client (API key, or address without one); 0 turns it off
    rate_limit_burst: int = 60
    heartbeat_ms: int = 15000
    poll_base_ms: int = 100
    poll_max_ms: int = 1000
    poll_timeout_ms: int = 60000
    discovery: bool = True

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def bind(self) -> str:
        host = f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host
        return f"{host}:{self.bind_port}"

    def check(self) -> ConsoleSettings:
        """Refuse combinations that would start an unsafe or useless console."""
        if not self.api_keys and not self.no_auth:
            raise SettingsError(
                "no API keys configured: set PYMACP_CONSOLE_API_KEYS to a comma-separated list of "
                f"keys (each at least {MIN_API_KEY_CHARS} characters), or pass --no-auth "
                "(PYMACP_CONSOLE_NO_AUTH=1) to run without authentication on a trusted machine"
            )
        if self.poll_base_ms > self.poll_max_ms:
            raise SettingsError(
                f"PYMACP_CONSOLE_POLL_BASE_MS ({self.poll_base_ms}) must not exceed "
                f"PYMACP_CONSOLE_POLL_MAX_MS ({self.poll_max_ms})"
            )
        return self

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            runtime_target=self.runtime,
            runtime_token=self.runtime_token,
            runtime_tls=self.runtime_tls,
            runtime_root_cert=self.runtime_ca,
            database_url=self.database,
            poll_base_ms=self.poll_base_ms,
            poll_max_ms=self.poll_max_ms,
            poll_timeout_ms=self.poll_timeout_ms,
            discovery=self.discovery,
        )


# --- parsers: raw text in, a field value (or a dict of field values) out ----------------------------


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``; the port must be 0-65535 (0 picks a free one)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError names the bad address
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. [::1]:8080; got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


def _bind(text: str) -> dict[str, Any]:
    host, port = parse_host_port(text)
    return {"bind_host": host, "bind_port": port}


def _runtime(text: str) -> str:
    _host, port = parse_host_port(text)
    if port == 0:
        raise ValueError("the runtime's port must not be 0")
    return text.strip()


def _api_keys(text: str) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(key.strip() for key in text.split(",") if key.strip()))
    short = [index for index, key in enumerate(keys) if len(key) < MIN_API_KEY_CHARS]
    if short:
        # Never echo a key: say which position is too short.
        positions = ", ".join(str(index + 1) for index in short)
        raise ValueError(f"key(s) at position {positions} are shorter than {MIN_API_KEY_CHARS} characters")
    return keys


def _database(text: str) -> str:
    url = text.strip()
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ValueError(
            "expected sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db"
        )
    return url


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off; got {text!r}")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}; got {value}")
        return value

    return parse


def _text(text: str) -> str | None:
    return text.strip() or None


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # the ConsoleSettings field (or a pseudo-field split by the parser, e.g. bind)
    env: str
    flag: str | None  # None: environment only
    parse: Callable[[str], Any]
    default: str
    help: str
    is_flag: bool = False  # a boolean switch on the command line


OPTIONS: tuple[Option, ...] = (
    Option(
        "runtime",
        "PYMACP_CONSOLE_RUNTIME",
        "--runtime",
        _runtime,
        "127.0.0.1:50051",
        "Runtime gRPC HOST:PORT.",
    ),
    Option(
        "runtime_token",
        "PYMACP_CONSOLE_RUNTIME_TOKEN",
        "--runtime-token",
        _text,
        "none",
        "Bearer token of the console's observer identity at the runtime.",
    ),
    Option(
        "runtime_tls",
        "PYMACP_CONSOLE_RUNTIME_TLS",
        "--runtime-tls",
        parse_bool,
        "off",
        "Connect to the runtime over TLS.",
        is_flag=True,
    ),
    Option(
        "runtime_ca",
        "PYMACP_CONSOLE_RUNTIME_CA",
        "--runtime-ca",
        _text,
        "system roots",
        "PEM file of a private CA that signed the runtime's certificate (implies TLS).",
    ),
    Option("bind", "PYMACP_CONSOLE_BIND", "--bind", _bind, "127.0.0.1:8080", "HTTP HOST:PORT to listen on."),
    Option(
        "database",
        "PYMACP_CONSOLE_DATABASE",
        "--database",
        _database,
        DEFAULT_DATABASE_URL,
        "Where runs and events are kept: sqlite:///PATH or postgresql://...",
    ),
    Option(
        "api_keys",
        "PYMACP_CONSOLE_API_KEYS",
        None,
        _api_keys,
        "none",
        f"Comma-separated API keys (each at least {MIN_API_KEY_CHARS} characters), "
        "sent as 'Authorization: Bearer KEY'. Environment only, so keys stay out of ps.",
    ),
    Option(
        "no_auth",
        "PYMACP_CONSOLE_NO_AUTH",
        "--no-auth",
        parse_bool,
        "off",
        "Run without API keys (only on a trusted machine).",
        is_flag=True,
    ),
    Option(
        "rate_limit_per_minute",
        "PYMACP_CONSOLE_RATE_LIMIT",
        "--rate-limit",
        _int_in(0, 1_000_000),
        "600",
        "Requests per minute per client; 0 turns rate limiting off.",
    ),
    Option(
        "rate_limit_burst",
        "PYMACP_CONSOLE_RATE_BURST",
        "--rate-burst",
        _int_in(1, 1_000_000),
        "60",
        "Requests a client may make at once before the per-minute rate applies.",
    ),
    Option(
        "heartbeat_ms",
        "PYMACP_CONSOLE_HEARTBEAT_MS",
        "--heartbeat-ms",
        _int_in(1000, 300_000),
        "15000",
        "Idle interval after which an SSE stream sends a heartbeat.",
    ),
    Option(
        "poll_base_ms",
        "PYMACP_CONSOLE_POLL_BASE_MS",
        None,
        _int_in(10, 60_000),
        "100",
        "First delay while waiting for a submitted run's session to open.",
    ),
    Option(
        "poll_max_ms",
        "PYMACP_CONSOLE_POLL_MAX_MS",
        None,
        _int_in(10, 600_000),
        "1000",
        "Longest delay between those polls.",
    ),
    Option(
        "poll_timeout_ms",
        "PYMACP_CONSOLE_POLL_TIMEOUT_MS",
        None,
        _int_in(1000, 86_400_000),
        "60000",
        "How long a submitted run waits for its session before it fails.",
    ),
    Option(
        "discovery",
        "PYMACP_CONSOLE_DISCOVERY",
        None,
        parse_bool,
        "on",
        "Also observe sessions nobody submitted (WatchSessions); 0 to watch submitted runs only.",
    ),
)

_FIELDS = frozenset(f.name for f in fields(ConsoleSettings))


def load_settings(
    environ: Mapping[str, str], overrides: Mapping[str, str | bool | None] | None = None
) -> ConsoleSettings:
    """Settings from ``environ``, then ``overrides`` (option name -> raw CLI value; None = unset).

    Does not call :meth:`ConsoleSettings.check`; the caller decides when to refuse.
    """
    values: dict[str, Any] = {}
    given = overrides or {}
    for option in OPTIONS:
        raw = given.get(option.name)
        source = option.flag or option.env
        if raw is None or (raw is False and option.is_flag):
            raw = environ.get(option.env)
            source = option.env
        if raw is None:
            continue
        text = ("1" if raw else "0") if isinstance(raw, bool) else raw
        try:
            parsed = option.parse(text)
        except ValueError as exc:
            where = source if source == option.env else f"{source} ({option.env})"
            raise SettingsError(f"{where}: {exc}") from None
        if isinstance(parsed, dict):
            values.update(parsed)
        elif parsed is not None:
            values[option.name] = parsed
    if values.get("runtime_ca"):
        values["runtime_tls"] = True
    assert set(values) <= _FIELDS
    return replace(ConsoleSettings(), **values)
