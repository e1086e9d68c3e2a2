"""``pymacp serve --console``: the runtime and the observer console in one process.

The console observes with an in-process observer identity, so it sees sessions even in
development auth mode, where no identity configured by the user is an observer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from macp_sdk import DecisionSession

from e2e_support import RESOLVED, dev, make_client, wait_json
from runtime_process import RuntimeProcess, free_port

TTL = 60_000


@pytest.fixture
def serve_with_console(tmp_path: Path) -> Any:
    port = free_port()
    process = RuntimeProcess(
        tmp_path / "data", args=("--console", "--console-no-auth", "--console-bind", f"127.0.0.1:{port}")
    )
    process.start()
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        assert process.stop() == 0


def test_the_embedded_console_observes_a_session_in_dev_auth_mode(serve_with_console: Any) -> None:
    process, console = serve_with_console
    assert wait_json(f"{console}/readyz", lambda doc: doc.get("ok") is True)["runtime"] == "ok"
    client = make_client(process.target, "lead")
    try:
        s = DecisionSession(client, auth=dev("lead"))
        s.start(intent="pick a release", participants=["lead", "alice"], ttl_ms=TTL)
        s.propose("p1", "ship 2.0")
        s.vote("p1", "approve", auth=dev("alice"))
        assert s.commit(
            action="decision.selected", authority_scope="release", reason="agreed"
        ).session_state == (RESOLVED)
    finally:
        client.close()

    runs = wait_json(
        f"{console}/runs?sessionId={s.session_id}",
        lambda doc: bool(doc["data"]) and doc["data"][0]["status"] == "completed",
    )["data"]
    run = runs[0]
    assert (run["source"], run["modeName"]) == ("discovered", "macp.mode.decision.v1")
    events = wait_json(
        f"{console}/runs/{run['runId']}/events",
        lambda doc: (
            [e["messageType"] for e in doc["data"] if e["ordinal"] is not None][-1:] == ["Commitment"]
        ),
    )["data"]
    envelope_types = [e["messageType"] for e in events if e["ordinal"] is not None]
    assert envelope_types == ["SessionStart", "Proposal", "Vote", "Commitment"]
    assert (Path(process.data_dir) / "console.sqlite3").exists()


def test_serve_console_without_api_keys_or_no_auth_refuses_to_start(tmp_path: Path) -> None:
    process = RuntimeProcess(
        tmp_path / "data", args=("--console", "--console-bind", f"127.0.0.1:{free_port()}")
    )
    with pytest.raises(RuntimeError, match="PYMACP_CONSOLE_API_KEYS"):
        process.start()
