"""The README's agents section is true: its quick start runs as written, its recipe verifies real callbacks.

The tokens file, the config file and the request body are taken from the document itself;
only the addresses differ (free ports instead of the documented ones).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agents_support import AgentsProcess, CallbackReceiver, read_events, wait_until

from readme_support import readme_section
from runtime_process import running_runtime

DOC = readme_section("Agents")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def json_block(predicate: Any) -> Any:
    return next(doc for doc in map(json.loads, blocks("json")) if predicate(doc))


def documented_env() -> dict[str, str]:
    """The variables the quick start sets on the `pymacp agents` command line."""
    command = next(block for block in blocks("sh") if "pymacp agents" in block)
    assignments = command.split("pymacp serve")[-1].split("pymacp agents")[0]
    return dict(re.findall(r"\b([A-Z][A-Z_]+)=(\S+)", assignments))


@pytest.fixture(scope="module")
def verify_signature() -> Any:
    namespace: dict[str, Any] = {}
    (recipe,) = blocks("python")
    exec(recipe, namespace)
    return namespace["verify_signature"]


def test_the_quick_start_runs_as_documented(tmp_path: Path, verify_signature: Any) -> None:
    tokens = json_block(lambda doc: isinstance(doc, list))
    config = json_block(lambda doc: isinstance(doc, dict) and "pools" in doc)
    curl = next(block for block in blocks("sh") if "curl" in block)
    body = json.loads(re.search(r"-d '(.*?)'", curl).group(1))  # type: ignore[union-attr]
    env = documented_env()
    assert set(env) == {"DISPATCHER_TOKEN", "TASKS_TOKEN", "PYMACP_AGENTS_CALLBACK_SECRET"}

    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps(tokens))
    secret = env["PYMACP_AGENTS_CALLBACK_SECRET"]
    with (
        running_runtime(tmp_path / "data", env={"MACP_AUTH_TOKENS_FILE": str(tokens_file)}) as runtime,
        CallbackReceiver(lambda headers, raw: verify_signature(secret, headers, raw)) as receiver,
    ):
        # "python3" in the config must find this interpreter, where pymacp is installed
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        agents = AgentsProcess(tmp_path, config, runtime.target, env={**env, "PATH": path})
        agents.start()
        try:
            with agents.client() as http:
                response = http.post("/dispatch", json={**body, "callback": {"url": f"{receiver.url}/ok"}})
                assert response.status_code == 202, response.text
                task_id = response.json()["taskId"]
                kinds = [event["event"] for event in read_events(http, task_id)]
                # as the document says: a streaming event per chunk and per TaskUpdate
                assert kinds == ["queued", "dispatched", "started", *["streaming"] * 4, "completed"]
                wait_until(lambda: receiver.for_task(task_id), what="the callback")
        finally:
            assert agents.stop() == 0, agents.log()
    (delivery,) = receiver.for_task(task_id)
    assert delivery.signature_ok  # checked with the document's own recipe
    assert not verify_signature(secret, delivery.headers, delivery.body + b" ")


def test_every_documented_flag_and_variable_is_real() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "pymacp", "agents", "--help"], capture_output=True, text=True, check=True
    ).stdout
    section = DOC.split("### Command line")[1].split("###")[0]
    flags = set(re.findall(r"`(--[a-z-]+)", section))
    variables = set(re.findall(r"`(PYMACP_AGENTS_[A-Z_]+)", section))
    assert {"--config", "--runtime", "--bind", "--no-auth", "--runtime-tls", "--runtime-ca"} <= flags
    for name in flags | variables:
        assert name in help_text, f"{name} is documented but not in `pymacp agents --help`"
