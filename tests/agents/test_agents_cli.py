"""``pymacp agents`` as a command: refusals before start-up, and a clean shutdown."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from agents_support import (
    RUNTIME_ENV,
    SECRET,
    TOKEN_ENV,
    AgentsProcess,
    CallbackReceiver,
    Stack,
    pool,
    runtime_session,
    wait_for_status,
)
from macp.v1 import envelope_pb2

from runtime_process import running_runtime


def run_agents(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYMACP_AGENTS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pymacp", "agents", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def write_config(directory: Path, **changes: object) -> Path:
    document = {"dispatcher": {"tokenEnv": "AGENTS_TEST_DISPATCHER_TOKEN"}, "pools": [pool("tasks", 1, 1)]}
    document.update(changes)
    path = directory / "agents.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "Missing option '--config'"),
        (("--config", "x.json"), {}, "no API keys configured: set PYMACP_AGENTS_API_KEYS"),
        (("--config", "x.json"), {"PYMACP_AGENTS_API_KEYS": "short"}, "at least 16 characters"),
        (("--config", "x.json", "--no-auth", "--bind", "nowhere"), {}, "expected HOST:PORT"),
        (("--no-auth",), {"PYMACP_AGENTS_CONFIG": "/nonexistent/agents.json"}, "cannot open config file"),
    ],
)
def test_refusals_before_start_up(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    result = run_agents(*args, env=env)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_bad_config_names_the_field(tmp_path: Path) -> None:
    config = write_config(tmp_path, pools=[{**pool("tasks", 1, 1), "cap": "two"}])
    result = run_agents("--config", str(config), "--no-auth", env=TOKEN_ENV)
    assert result.returncode == 1
    assert "config: pool 'tasks': 'cap' must be an integer >= 0, not 'two'" in result.stderr
    assert "tok-" not in result.stderr  # no token ever printed


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_agents(
            "--config", str(config), "--no-auth", "--bind", f"127.0.0.1:{port}", env=TOKEN_ENV
        )
    assert result.returncode == 1
    assert (
        f"cannot serve on 127.0.0.1:{port}" in result.stderr
        and "--bind / PYMACP_AGENTS_BIND" in result.stderr
    )


def test_sigterm_cancels_running_tasks_and_still_delivers_their_callbacks(tmp_path: Path) -> None:
    config = {
        "dispatcher": {"tokenEnv": "AGENTS_TEST_DISPATCHER_TOKEN"},
        "callbacks": {"secretEnv": "AGENTS_TEST_SECRET", "backoffMs": 50},
        "pools": [pool("tasks", 1, 1)],
    }
    with running_runtime(tmp_path / "data", env=RUNTIME_ENV) as runtime, CallbackReceiver() as receiver:
        agents = AgentsProcess(tmp_path, config, runtime.target)
        agents.start()
        with agents.client() as http:
            task = {"title": "long", "input": {"gate": str(tmp_path / "never")}}
            body = {"pool": "tasks", "task": task, "callback": {"url": f"{receiver.url}/ok"}}
            accepted = http.post("/dispatch", json=body).json()
            wait_for_status(http, accepted["taskId"], "started", "streaming")
        assert agents.stop() == 0, agents.log()
        stack = Stack(runtime.target, agents, receiver)
        assert runtime_session(stack, accepted["sessionId"]).state == envelope_pb2.SESSION_STATE_CANCELLED
    (delivery,) = receiver.for_task(accepted["taskId"])
    assert delivery.signature_ok and delivery.json["event"] == "cancelled"
    assert delivery.json["task"]["status"] == "cancelled"
    assert SECRET not in agents.log()
