"""The ``pymacp bus`` command line and config file: flags, config errors, defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bus_support import ECHO_ARGS

from pymacp.bus.config import BusConfig, ConfigError, Limits, PoolConfig, parse_config


def run_bus(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pymacp.bus", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        **kwargs,
    )


def test_help_explains_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pymacp", "bus", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    for flag in ("--config", "--config-fd", "--stdio", "--tcp", "--unix", "--strict-parity", "--log-level"):
        assert flag in result.stdout


def test_a_minimal_config_gets_the_kernels_defaults() -> None:
    config = parse_config(b'{"pools":[{"id":"p","command":"cat","instances":2}], "extra": 1}')
    assert config == BusConfig((PoolConfig("p", "cat", (), 2),), Limits(), None)
    assert config.limits.max_input_buffer == 10 * 2**20
    assert config.limits.max_output_queue == 40 * 2**20
    assert (config.limits.max_restarts, config.limits.restart_window_sec) == (5, 60.0)
    assert (config.limits.drain_timeout_sec, config.limits.backpressure_timeout_sec) == (30.0, 60.0)


def test_limits_and_transport_are_read() -> None:
    document = {
        "pools": [{"id": "p", "command": "cat", "args": ["-u"], "instances": 1}],
        "limits": {"max_input_buffer": 1024, "max_restarts": 0, "drain_timeout_sec": 0.5},
        "transport": {"mode": "tcp", "framing": "ndjson", "protocol": "json"},
    }
    config = parse_config(json.dumps(document))
    assert config.pools[0].args == ("-u",)
    assert (config.limits.max_input_buffer, config.limits.max_restarts) == (1024, 0)
    assert config.limits.drain_timeout_sec == 0.5
    assert config.mode == "tcp"


BAD_CONFIGS = [
    ("{", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"pools": []}', "at least one worker pool is required"),
    ('{"pools": [{"command": "cat", "instances": 1}]}', "pool 0 missing required 'id'"),
    ('{"pools": [{"id": "p", "instances": 1}]}', "pool 'p' missing required 'command'"),
    ('{"pools": [{"id": "p", "command": "cat", "instances": 0}]}', "pool 'p' must have at least 1 instance"),
    (
        '{"pools": [{"id": "p", "command": "cat", "instances": true}]}',
        "pool 'p' must have at least 1 instance",
    ),
    ('{"pools": [{"id": "p", "command": "cat", "args": [1], "instances": 1}]}', "'args' must be an array"),
    (
        '{"pools": [{"id": "p", "command": "a", "instances": 1}, {"id": "p", "command": "b", "instances": 2}'
        "]}",
        "used twice",
    ),
    (
        '{"pools": [{"id": "p", "command": "cat", "instances": 1}], "limits": {"max_restarts": -1}}',
        "max_restarts",
    ),
    (
        '{"pools": [{"id": "p", "command": "cat", "instances": 1}], "limits": {"restart_window_sec": 0}}',
        "window",
    ),
    (
        '{"pools": [{"id": "p", "command": "cat", "instances": 1}], "transport": {"framing": "length"}}',
        "framing",
    ),
    (
        '{"pools": [{"id": "p", "command": "cat", "instances": 1}], "transport": {"mode": "shm"}}',
        "mode 'shm'",
    ),
]


@pytest.mark.parametrize(("document", "reason"), BAD_CONFIGS)
def test_config_errors_name_the_field(document: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_config(document)


def test_a_config_error_exits_1_fast_with_the_reason_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"pools": [{"id": "p", "command": "cat", "instances": 0}]}')
    began = time.monotonic()
    result = run_bus("--config", str(path), "--stdio", stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("config: pool 'p' must have at least 1 instance")
    assert time.monotonic() - began < 5  # the SDK only notices exits within 0.5 s; see test_bus_sdk


def test_a_missing_config_file_is_reported() -> None:
    result = run_bus("--config", "/nonexistent/bus.json", stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "config: cannot open file '/nonexistent/bus.json'" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--config", "a.json", "--config-fd", "3"],
        ["--config", "a.json", "--stdio", "--tcp", "127.0.0.1:1"],
        ["--config", "a.json", "--tcp", "nohost"],
        ["--config", "a.json", "--tcp", "h:70000"],
    ],
)
def test_contradictory_or_malformed_flags_are_refused(args: list[str]) -> None:
    result = run_bus(*args, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "Error" in result.stderr


def test_config_fd_is_read_to_eof_from_any_descriptor(tmp_path: Path) -> None:
    config = {"pools": [{"id": "echo", "command": sys.executable, "args": ECHO_ARGS, "instances": 1}]}
    read_end, write_end = os.pipe()
    spare = os.dup(read_end)  # a descriptor number other than 3, like the SDK's
    os.close(read_end)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pymacp.bus", "--config-fd", str(spare), "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=(spare,),
        )
    finally:
        os.close(spare)
    os.write(write_end, json.dumps(config).encode())
    os.close(write_end)
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "via-fd"}).encode() + b"\n"
    out, _ = process.communicate(request, timeout=30)
    assert process.returncode == 0
    assert json.loads(out)["result"]["message"]["method"] == "via-fd"


def test_a_transport_mode_in_the_config_needs_its_address(tmp_path: Path) -> None:
    path = tmp_path / "tcp.json"
    path.write_text(
        json.dumps({"pools": [{"id": "p", "command": "cat", "instances": 1}], "transport": {"mode": "tcp"}})
    )
    result = run_bus("--config", str(path), stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "needs --tcp HOST:PORT" in result.stderr
