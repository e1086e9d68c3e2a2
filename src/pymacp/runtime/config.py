"""Runtime settings, read from the same ``MACP_*`` environment variables as the Rust runtime.

Every setting has a documented variable and a default; :func:`Settings.from_env` parses
and checks them all and raises :class:`ConfigError` naming the variable that is wrong,
so a misconfigured runtime refuses to start instead of running with a surprise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .auth import AuthSettings


class ConfigError(Exception):
    """A setting is missing, malformed or contradictory; the message names the variable."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={env[name]!r}: expected 1/0, true/false, yes/no or on/off")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value}: must be at least {minimum}")
    return value


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = _str(env, name)
    return Path(value) if value else None


def parse_address(value: str, name: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}={value!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={value!r}: the port must be between 0 and 65535")
    return host.strip("[]"), port


@dataclass(frozen=True, slots=True)
class Settings:
    bind_addr: str = "127.0.0.1:50051"
    data_dir: Path = Path(".macp-data")
    memory_only: bool = False
    allow_insecure: bool = False
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    max_payload_bytes: int = 1_048_576
    session_start_limit_per_minute: int = 60
    message_limit_per_minute: int = 600
    policies_dir: Path | None = None
    cleanup_interval_secs: int = 60
    session_retention_secs: int = 3600
    session_disk_retention_secs: int = 0
    strict_recovery: bool = False
    metrics_addr: str | None = None
    shutdown_drain_secs: int = 10
    list_sessions_default_page_size: int = 100
    list_sessions_max_page_size: int = 1000
    max_concurrent_streams: int = 128
    stream_queue_capacity: int = 256
    receipt_key_file: Path | None = None
    receipt_issuer: str = "runtime:pymacp"
    log_format: str = "text"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, check: bool = True) -> Settings:
        env = os.environ if env is None else env
        allow_insecure = _flag(env, "MACP_ALLOW_INSECURE")
        algs = tuple(
            a.strip().upper() for a in env.get("MACP_AUTH_JWT_ALGS", "RS256,ES256").split(",") if a.strip()
        )
        unknown_algs = set(algs) - {"RS256", "ES256", "HS256"}
        if unknown_algs:
            raise ConfigError(
                f"MACP_AUTH_JWT_ALGS: unsupported algorithm(s) {sorted(unknown_algs)}; "
                "use RS256, ES256, HS256"
            )
        auth = AuthSettings(
            tokens_json=_str(env, "MACP_AUTH_TOKENS_JSON"),
            tokens_file=_path(env, "MACP_AUTH_TOKENS_FILE"),
            issuer=_str(env, "MACP_AUTH_ISSUER"),
            audience=_str(env, "MACP_AUTH_AUDIENCE") or "macp-runtime",
            jwks_json=_str(env, "MACP_AUTH_JWKS_JSON"),
            jwks_url=_str(env, "MACP_AUTH_JWKS_URL"),
            jwks_ttl_secs=_int(env, "MACP_AUTH_JWKS_TTL_SECS", 300, minimum=1),
            jwt_algs=algs,
            allow_insecure=allow_insecure,
        )
        settings = cls(
            bind_addr=_str(env, "MACP_BIND_ADDR") or "127.0.0.1:50051",
            data_dir=_path(env, "MACP_DATA_DIR") or Path(".macp-data"),
            memory_only=_flag(env, "MACP_MEMORY_ONLY"),
            allow_insecure=allow_insecure,
            tls_cert_path=_path(env, "MACP_TLS_CERT_PATH"),
            tls_key_path=_path(env, "MACP_TLS_KEY_PATH"),
            auth=auth,
            max_payload_bytes=_int(env, "MACP_MAX_PAYLOAD_BYTES", 1_048_576, minimum=1),
            session_start_limit_per_minute=_int(env, "MACP_SESSION_START_LIMIT_PER_MINUTE", 60, minimum=1),
            message_limit_per_minute=_int(env, "MACP_MESSAGE_LIMIT_PER_MINUTE", 600, minimum=1),
            policies_dir=_path(env, "MACP_POLICIES_DIR"),
            cleanup_interval_secs=_int(env, "MACP_CLEANUP_INTERVAL_SECS", 60, minimum=1),
            session_retention_secs=_int(env, "MACP_SESSION_RETENTION_SECS", 3600),
            session_disk_retention_secs=_int(env, "MACP_SESSION_DISK_RETENTION_SECS", 0),
            strict_recovery=_flag(env, "MACP_STRICT_RECOVERY"),
            metrics_addr=_str(env, "MACP_METRICS_ADDR"),
            shutdown_drain_secs=_int(env, "MACP_SHUTDOWN_DRAIN_SECS", 10),
            list_sessions_default_page_size=_int(env, "MACP_LIST_SESSIONS_DEFAULT_PAGE_SIZE", 100, minimum=1),
            list_sessions_max_page_size=_int(env, "MACP_LIST_SESSIONS_MAX_PAGE_SIZE", 1000, minimum=1),
            max_concurrent_streams=_int(env, "MACP_MAX_CONCURRENT_STREAMS", 128, minimum=1),
            stream_queue_capacity=_int(env, "MACP_STREAM_QUEUE_CAPACITY", 256, minimum=1),
            receipt_key_file=_path(env, "MACP_RECEIPT_SIGNING_KEY_FILE"),
            receipt_issuer=_str(env, "MACP_RECEIPT_ISSUER") or "runtime:pymacp",
            log_format=(_str(env, "MACP_LOG_FORMAT") or "text").lower(),
            log_level=(_str(env, "MACP_LOG_LEVEL") or "INFO").upper(),
        )
        if check:
            settings.check()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (None values are ignored), then checked."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {sorted(unknown)}")
        updated = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        if updated.auth.allow_insecure != updated.allow_insecure:
            updated = replace(updated, auth=replace(updated.auth, allow_insecure=updated.allow_insecure))
        updated.check()
        return updated

    def check(self) -> None:
        parse_address(self.bind_addr, "MACP_BIND_ADDR")
        if self.metrics_addr:
            parse_address(self.metrics_addr, "MACP_METRICS_ADDR")
        if bool(self.tls_cert_path) != bool(self.tls_key_path):
            raise ConfigError("MACP_TLS_CERT_PATH and MACP_TLS_KEY_PATH must be set together")
        for name, path in (
            ("MACP_TLS_CERT_PATH", self.tls_cert_path),
            ("MACP_TLS_KEY_PATH", self.tls_key_path),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"{name}={path}: no such file")
        if not self.tls_enabled and not self.allow_insecure:
            raise ConfigError(
                "TLS is required: set MACP_TLS_CERT_PATH and MACP_TLS_KEY_PATH, "
                "or MACP_ALLOW_INSECURE=1 for plaintext development use"
            )
        if self.policies_dir is not None and not self.policies_dir.is_dir():
            raise ConfigError(f"MACP_POLICIES_DIR={self.policies_dir}: no such directory")
        if self.list_sessions_default_page_size > self.list_sessions_max_page_size:
            raise ConfigError(
                "MACP_LIST_SESSIONS_DEFAULT_PAGE_SIZE must not exceed MACP_LIST_SESSIONS_MAX_PAGE_SIZE"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"MACP_LOG_FORMAT={self.log_format!r}: expected text or json")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"MACP_LOG_LEVEL={self.log_level!r}: expected DEBUG, INFO, WARNING or ERROR")

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_path is not None and self.tls_key_path is not None

    @property
    def policies_read_only(self) -> bool:
        return self.policies_dir is not None
