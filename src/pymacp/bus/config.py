"""The stdio_bus configuration file: pools of workers and operational limits.

The format is the C kernel's, so existing config files work unchanged::

    {"pools": [{"id": "echo", "command": "python3", "args": ["worker.py"], "instances": 2}],
     "limits": {"max_input_buffer": 10485760, "max_restarts": 5, ...}}

``pools`` is required and non-empty; each pool needs a unique non-empty ``id``, a non-empty
``command`` (resolved through PATH), optional ``args`` (argv without argv[0]) and
``instances >= 1``. Every limit is optional; the defaults are what the real binary uses
(10 MiB / 40 MiB buffers, not the 1 MiB / 4 MiB its README claims). Unknown keys are ignored,
as the kernel does. Of ``transport`` only what this bus implements is accepted: NDJSON framing
with the JSON protocol; its ``mode`` is used when the command line names none.

Errors are :class:`ConfigError` with a sentence that names the offending field.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 16 * 2**20
MAX_CONFIG_FD = 1024
MODES = ("stdio", "tcp", "unix")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Operational limits; every field defaults to the real kernel's value."""

    max_input_buffer: int = 10 * 2**20  # longest line accepted, from a client or a worker
    max_output_queue: int = 40 * 2**20  # bytes queued for one peer before its sources are paused
    max_restarts: int = 5  # restarts of one worker slot allowed within the window
    restart_window_sec: float = 60.0
    drain_timeout_sec: float = 30.0  # on shutdown: for pending requests, then for workers to exit
    backpressure_timeout_sec: float = 60.0  # a peer whose queue stays full this long is closed


@dataclass(frozen=True, slots=True)
class PoolConfig:
    id: str
    command: str
    args: tuple[str, ...] = ()
    instances: int = 1


@dataclass(frozen=True, slots=True)
class BusConfig:
    pools: tuple[PoolConfig, ...]
    limits: Limits = field(default_factory=Limits)
    mode: str | None = None  # transport.mode, used when the command line names no mode

    def pool(self, pool_id: str) -> PoolConfig:
        for pool in self.pools:
            if pool.id == pool_id:
                return pool
        raise KeyError(pool_id)


def load_config(path: str | Path) -> BusConfig:
    """Read and validate the config file at ``path``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot open file {str(path)!r}: {exc.strerror or exc}") from None
    return parse_config(data, source=str(path))


def read_config_fd(fd: int) -> BusConfig:
    """Read the config from file descriptor ``fd`` until EOF, close it, and validate it."""
    if not 0 <= fd <= MAX_CONFIG_FD:
        raise ConfigError(f"--config-fd {fd}: must be between 0 and {MAX_CONFIG_FD}")
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read --config-fd {fd}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):  # already closed or never open: the read reported it
            os.close(fd)
    return parse_config(b"".join(chunks), source=f"fd {fd}")


def parse_config(data: bytes | str, source: str = "config") -> BusConfig:
    """Validate a config document; ``source`` names it in error messages."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source} must be a JSON object with a 'pools' array")
    pools = document.get("pools")
    if not isinstance(pools, list) or not pools:
        raise ConfigError("at least one worker pool is required ('pools' must be a non-empty array)")
    parsed = tuple(_pool(index, raw) for index, raw in enumerate(pools))
    seen: set[str] = set()
    for pool in parsed:
        if pool.id in seen:
            raise ConfigError(f"pool id {pool.id!r} is used twice; pool ids must be unique")
        seen.add(pool.id)
    return BusConfig(parsed, _limits(document.get("limits")), _mode(document.get("transport")))


def _pool(index: int, raw: Any) -> PoolConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"pool {index} must be an object")
    pool_id = raw.get("id")
    if not isinstance(pool_id, str) or not pool_id:
        raise ConfigError(f"pool {index} missing required 'id' field (a non-empty string)")
    command = raw.get("command")
    if not isinstance(command, str) or not command:
        raise ConfigError(f"pool {pool_id!r} missing required 'command' field (a non-empty string)")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"pool {pool_id!r}: 'args' must be an array of strings")
    instances = raw.get("instances")
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
        raise ConfigError(f"pool {pool_id!r} must have at least 1 instance ('instances' >= 1)")
    return PoolConfig(pool_id, command, tuple(args), instances)


_COUNTS = {"max_input_buffer": 1, "max_output_queue": 1, "max_restarts": 0}
_SECONDS = {"restart_window_sec": False, "drain_timeout_sec": True, "backpressure_timeout_sec": False}


def _limits(raw: Any) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise ConfigError("'limits' must be an object")
    values: dict[str, Any] = {}
    for name, minimum in _COUNTS.items():
        value = raw.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"limits.{name} must be an integer >= {minimum}")
        values[name] = value
    for name, zero_ok in _SECONDS.items():
        value = raw.get(name)
        if value is None:
            continue
        if not _is_number(value) or value < 0 or (value == 0 and not zero_ok):
            raise ConfigError(f"limits.{name} must be a number of seconds {'>= 0' if zero_ok else '> 0'}")
        values[name] = float(value)
    return Limits(**values)


def _mode(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("'transport' must be an object")
    framing = raw.get("framing", "ndjson")
    if framing != "ndjson":
        raise ConfigError(f"transport.framing {framing!r} is not supported; pymacp bus speaks 'ndjson'")
    protocol = raw.get("protocol", "json")
    if protocol != "json":
        raise ConfigError(f"transport.protocol {protocol!r} is not supported; pymacp bus speaks 'json'")
    mode = raw.get("mode")
    if mode is None:
        return None
    if mode not in MODES:
        raise ConfigError(f"transport.mode {mode!r} is not supported; use one of {', '.join(MODES)}")
    return str(mode)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
