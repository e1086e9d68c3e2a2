"""The Prometheus endpoint of a real ``pymacp serve`` (``MACP_METRICS_ADDR``).

Counters are compared as deltas between two scrapes around a known workload, so each test
stands alone while the module shares one runtime.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from macp.v1 import core_pb2
from prometheus_client.parser import text_string_to_metric_families

import wire_support as wire
from runtime_process import RuntimeProcess, running_runtime
from wire_support import DECISION, TASK, Stub, bearer


@dataclass(frozen=True)
class Scrape:
    content_type: str
    text: str

    def value(self, sample_name: str, **labels: str) -> float:
        """The sample's value, 0 when the series does not exist yet."""
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return wire.free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[RuntimeProcess]:
    env = {"MACP_METRICS_ADDR": f"127.0.0.1:{metrics_port}", **wire.NO_RATE_LIMITS}
    with running_runtime(tmp_path_factory.mktemp("metrics") / "data", env) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def stub(server: RuntimeProcess) -> Iterator[Stub]:
    with grpc.insecure_channel(server.target) as channel:
        yield wire.stub_for(channel)


def scrape(port: int) -> Scrape:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return Scrape(response.headers.get("Content-Type", ""), response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_metrics_endpoint_serves_prometheus_text(server: RuntimeProcess, metrics_port: int) -> None:
    result = scrape(metrics_port)
    assert result.content_type.startswith("text/plain")
    types = {family.name: family.type for family in text_string_to_metric_families(result.text)}
    assert types.get("macp_messages_accepted") == "counter"
    assert types.get("macp_sessions_started") == "counter"
    assert types.get("macp_sessions_loaded") == "gauge"
    assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in server.log()


def test_counters_count_what_the_clients_did(stub: Stub, metrics_port: int) -> None:
    before = scrape(metrics_port)
    lead, alice = "agent://lead", "agent://alice"

    for _ in range(2):  # two decision sessions: start, propose, commit -> 3 accepted each
        session_id = wire.new_id()
        start = wire.session_start(DECISION, session_id, lead, [lead, alice])
        proposal = wire.proposal(session_id, alice, "p1")
        for env, who in ((start, lead), (proposal, alice)):
            assert wire.send(stub, env, bearer(who)).ok
        duplicate = wire.send(stub, proposal, bearer(alice))
        assert duplicate.ack is not None and duplicate.ack.duplicate  # a duplicate is not a new acceptance
        outsider = wire.send(
            stub, wire.proposal(session_id, "agent://outsider", "p2"), bearer("agent://outsider")
        )
        assert outsider.code == "FORBIDDEN"
        assert wire.send(stub, wire.commitment(DECISION, session_id, lead), bearer(lead)).ok

    task_session = wire.new_id()
    assert wire.send(stub, wire.session_start(TASK, task_session, lead, [alice]), bearer(lead)).ok
    cancelled = stub.CancelSession(
        core_pb2.CancelSessionRequest(session_id=task_session, reason="not needed"),
        metadata=bearer(lead),
        timeout=10,
    )
    assert cancelled.ack.ok

    after = scrape(metrics_port)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("macp_messages_accepted_total", mode=DECISION) == 6
    assert delta("macp_messages_accepted_total", mode=TASK) == 1
    assert delta("macp_sessions_started_total", mode=DECISION) == 2
    assert delta("macp_sessions_started_total", mode=TASK) == 1
    assert delta("macp_sessions_resolved_total", mode=DECISION) == 2
    assert delta("macp_commitments_accepted_total", mode=DECISION) == 2
    assert delta("macp_sessions_cancelled_total", mode=TASK) == 1
    assert delta("macp_messages_rejected_total", mode=DECISION, code="FORBIDDEN") == 2
    assert delta("macp_sessions_resolved_total", mode=TASK) == 0
    assert after.value("macp_sessions_loaded") >= 3
    # Every acceptance (7) and the cancel reached the disk, in at most one commit each (one
    # client sends one at a time); inline commits are a subset of all commits.
    assert 1 <= delta("macp_storage_commits_total") <= 8
    assert delta("macp_storage_entries_total") >= 8
    assert 0 <= delta("macp_storage_inline_commits_total") <= delta("macp_storage_commits_total")
