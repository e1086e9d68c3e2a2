"""The ``pymacp serve`` command as an operator meets it: help, configuration errors, the
file-loaded policy registry and its dry run, signals, and what survives a restart.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from macp.v1 import core_pb2, envelope_pb2, policy_pb2
from macp_sdk.auth import AuthConfig
from macp_sdk.client import MacpClient
from macp_sdk.errors import MacpAckError

import wire_support as wire
from runtime_process import RuntimeProcess, running_runtime
from wire_support import DECISION, Stub, bearer

SRC = Path(__file__).resolve().parents[2] / "src" / "pymacp"
OPTIONS = [
    "--bind",
    "--data-dir",
    "--memory-only",
    "--allow-insecure",
    "--tls-cert",
    "--tls-key",
    "--policies-dir",
    "--metrics-addr",
    "--log-format",
    "--log-level",
    "--help",
]
ENV_VARS = [
    "MACP_BIND_ADDR",
    "MACP_DATA_DIR",
    "MACP_MEMORY_ONLY",
    "MACP_ALLOW_INSECURE",
    "MACP_TLS_CERT_PATH",
    "MACP_TLS_KEY_PATH",
    "MACP_POLICIES_DIR",
    "MACP_POLICIES_DRY_RUN",
    "MACP_METRICS_ADDR",
    "MACP_LOG_FORMAT",
    "MACP_LOG_LEVEL",
    "MACP_AUTH_TOKENS_JSON",
    "MACP_AUTH_TOKENS_FILE",
    "MACP_AUTH_ISSUER",
    "MACP_AUTH_AUDIENCE",
    "MACP_AUTH_JWKS_JSON",
    "MACP_AUTH_JWKS_URL",
    "MACP_AUTH_JWKS_TTL_SECS",
    "MACP_AUTH_JWT_ALGS",
    "MACP_MAX_PAYLOAD_BYTES",
    "MACP_SESSION_START_LIMIT_PER_MINUTE",
    "MACP_MESSAGE_LIMIT_PER_MINUTE",
    "MACP_CLEANUP_INTERVAL_SECS",
    "MACP_SESSION_RETENTION_SECS",
    "MACP_SESSION_DISK_RETENTION_SECS",
    "MACP_STRICT_RECOVERY",
    "MACP_SHUTDOWN_DRAIN_SECS",
    "MACP_LIST_SESSIONS_DEFAULT_PAGE_SIZE",
    "MACP_LIST_SESSIONS_MAX_PAGE_SIZE",
    "MACP_MAX_CONCURRENT_STREAMS",
    "MACP_STREAM_QUEUE_CAPACITY",
    "MACP_RECEIPT_SIGNING_KEY_FILE",
    "MACP_RECEIPT_ISSUER",
]
UNANIMOUS: dict[str, Any] = {
    "policy_id": "policy.files.unanimous",
    "mode": DECISION,
    "description": "Every participant must approve.",
    "schema_version": 3,
    "rules": {"voting": {"algorithm": "unanimous"}, "commitment": {"authority": "initiator_only"}},
}
PLURALITY: dict[str, Any] = {
    "policy_id": "policy.files.plurality",
    "mode": DECISION,
    "description": "More approvals than rejections.",
    "schema_version": 3,
    "rules": {"voting": {"algorithm": "plurality"}},
}


def write_policies(directory: Path, *documents: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for document in documents:
        (directory / f"{document['policy_id']}.json").write_text(json.dumps(document))
    return directory


def insecure_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MACP_BIND_ADDR": f"127.0.0.1:{wire.free_port()}",
        "MACP_DATA_DIR": str(tmp_path / "data"),
        "MACP_ALLOW_INSECURE": "1",
        **extra,
    }


# --- help --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def help_text() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pymacp", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("option", OPTIONS)
def test_help_lists_every_option(help_text: str, option: str) -> None:
    assert re.search(rf"(^|\s){re.escape(option)}\b", help_text), f"{option} is not in `pymacp serve --help`"


@pytest.mark.parametrize("name", ENV_VARS)
def test_help_names_every_environment_variable(help_text: str, name: str) -> None:
    assert re.search(rf"\b{name}\b", help_text), f"{name} is not in `pymacp serve --help`"


def test_the_documented_variables_are_all_the_runtime_reads() -> None:
    read = set()
    for source in (SRC / "runtime" / "config.py", SRC / "cli.py"):
        read |= set(re.findall(r'"(MACP_[A-Z0-9_]+)"', source.read_text()))
    assert read, "no MACP_* variable found in the sources"
    assert read <= set(ENV_VARS), f"read but not covered here: {sorted(read - set(ENV_VARS))}"


# --- configuration errors ----------------------------------------------------------------------------


BAD_VALUES = [
    ("MACP_BIND_ADDR", "nonsense"),
    ("MACP_BIND_ADDR", "127.0.0.1:99999"),
    ("MACP_MAX_PAYLOAD_BYTES", "0"),
    ("MACP_MAX_PAYLOAD_BYTES", "a lot"),
    ("MACP_SESSION_START_LIMIT_PER_MINUTE", "0"),
    ("MACP_METRICS_ADDR", "nowhere"),
    ("MACP_POLICIES_DIR", "/nonexistent/policies"),
    ("MACP_STRICT_RECOVERY", "maybe"),
    ("MACP_AUTH_JWT_ALGS", "none"),
    ("MACP_LIST_SESSIONS_DEFAULT_PAGE_SIZE", "5000"),
    ("MACP_LOG_FORMAT", "xml"),
    ("MACP_MEMORY_ONLY", "maybe"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path: Path, name: str, value: str) -> None:
    result = wire.serve_and_exit(insecure_env(tmp_path, **{name: value}))
    assert result.returncode != 0
    assert name in result.stderr, f"the error does not name {name}: {result.stderr.strip()}"
    assert "listening" not in result.stderr


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert = wire.self_signed_certificate(tmp_path)
    result = wire.serve_and_exit(insecure_env(tmp_path, MACP_TLS_CERT_PATH=str(cert.cert_path)))
    assert result.returncode != 0
    assert "MACP_TLS_KEY_PATH" in result.stderr


def test_a_missing_certificate_file_is_refused(tmp_path: Path) -> None:
    result = wire.serve_and_exit(
        insecure_env(
            tmp_path,
            MACP_TLS_CERT_PATH=str(tmp_path / "absent.crt"),
            MACP_TLS_KEY_PATH=str(tmp_path / "absent.key"),
        )
    )
    assert result.returncode != 0
    assert "MACP_TLS_CERT_PATH" in result.stderr
    assert "absent.crt" in result.stderr


def test_a_port_in_use_is_reported(tmp_path: Path) -> None:
    """A second runtime must not share a port with the first (gRPC's SO_REUSEPORT would let it)."""
    with running_runtime(tmp_path / "first") as first:
        try:
            result = wire.serve_and_exit(insecure_env(tmp_path, MACP_BIND_ADDR=first.target), timeout=10)
        except subprocess.TimeoutExpired as still_running:
            log = still_running.stderr
            pytest.fail(f"a second runtime started on {first.target}, which the first one holds: {log!r}")
    assert result.returncode != 0
    assert first.target in result.stderr


def test_command_line_options_override_the_environment(tmp_path: Path) -> None:
    address = f"127.0.0.1:{wire.free_port()}"
    runtime = RuntimeProcess(tmp_path / "data", args=("--bind", address, "--memory-only"))
    runtime.target = address  # the environment still names another port
    runtime.start()
    try:
        assert f"listening on {address}" in runtime.log()
        assert "memory only" in runtime.log()
    finally:
        runtime.stop()


# --- MACP_POLICIES_DIR -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def file_policies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    base = tmp_path_factory.mktemp("policies-dir")
    directory = write_policies(base / "policies", UNANIMOUS, PLURALITY)
    with running_runtime(base / "data", {"MACP_POLICIES_DIR": str(directory)}) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def file_stub(file_policies: RuntimeProcess) -> Iterator[Stub]:
    with grpc.insecure_channel(file_policies.target) as channel:
        yield wire.stub_for(channel)


def test_policies_dir_makes_the_registry_read_only(file_policies: RuntimeProcess, file_stub: Stub) -> None:
    with MacpClient(target=file_policies.target, allow_insecure=True, default_timeout=10) as client:
        capabilities = client.initialize().capabilities
        assert capabilities.policy_registry.register_policy is False
        assert capabilities.policy_registry.list_policies is True
        descriptor = wire.policy_descriptor("policy.e2e.extra", {"voting": {"algorithm": "majority"}})
        with pytest.raises(MacpAckError) as refused:
            client.register_policy(descriptor, auth=AuthConfig.for_dev_agent("agent://admin"))
        assert (refused.value.failure.code, refused.value.macp_code) == (
            "FAILED_PRECONDITION",
            "REGISTRY_READ_ONLY",
        )

    request = policy_pb2.UnregisterPolicyRequest(policy_id=UNANIMOUS["policy_id"])
    err = wire.expect_rpc_error(lambda: file_stub.UnregisterPolicy(request, metadata=bearer("agent://admin")))
    assert wire.status_of(err) == grpc.StatusCode.FAILED_PRECONDITION
    assert wire.trailer(err, "macp-error-code") == "REGISTRY_READ_ONLY"


def test_file_policies_are_listed(file_stub: Stub) -> None:
    listed = file_stub.ListPolicies(
        policy_pb2.ListPoliciesRequest(mode=DECISION), metadata=bearer("agent://reader"), timeout=10
    )
    ids = {d.policy_id for d in listed.descriptors}
    assert {UNANIMOUS["policy_id"], PLURALITY["policy_id"]} <= ids
    got = file_stub.GetPolicy(
        policy_pb2.GetPolicyRequest(policy_id=UNANIMOUS["policy_id"]),
        metadata=bearer("agent://reader"),
        timeout=10,
    )
    assert json.loads(got.policy_descriptor.rules)["voting"]["algorithm"] == "unanimous"
    assert got.policy_descriptor.schema_version == 3


def test_a_session_binds_a_file_policy_and_is_governed_by_it(file_stub: Stub) -> None:
    lead, a, b = "agent://lead", "agent://a", "agent://b"
    session_id = wire.new_id()
    policy_id = UNANIMOUS["policy_id"]
    start = wire.session_start(DECISION, session_id, lead, [lead, a, b], policy_version=policy_id)
    assert wire.send(file_stub, start, bearer(lead)).ok
    assert wire.get_session(file_stub, session_id, bearer(lead)).policy_version == policy_id

    assert wire.send(file_stub, wire.proposal(session_id, lead, "p1"), bearer(lead)).ok
    assert wire.send(file_stub, wire.vote(session_id, a, "p1"), bearer(a)).ok
    early = wire.send(
        file_stub, wire.commitment(DECISION, session_id, lead, policy_version=policy_id), bearer(lead)
    )
    assert (early.ok, early.code) == (False, "POLICY_DENIED")  # b has not approved yet
    assert wire.send(file_stub, wire.vote(session_id, b, "p1"), bearer(b)).ok
    assert wire.send(file_stub, wire.vote(session_id, lead, "p1"), bearer(lead)).ok
    final = wire.send(
        file_stub, wire.commitment(DECISION, session_id, lead, policy_version=policy_id), bearer(lead)
    )
    assert final.ok, final
    assert wire.get_session(file_stub, session_id, bearer(lead)).state == envelope_pb2.SESSION_STATE_RESOLVED


def test_a_bad_policy_file_stops_start_up(tmp_path: Path) -> None:
    bad = dict(PLURALITY, policy_id="policy.files.bad", rules={"voting": {"algorithm": "coinflip"}})
    directory = write_policies(tmp_path / "policies", UNANIMOUS, bad)
    result = wire.serve_and_exit(insecure_env(tmp_path, MACP_POLICIES_DIR=str(directory)))
    assert result.returncode != 0
    assert "policy.files.bad.json" in result.stderr
    assert "coinflip" in result.stderr


# --- MACP_POLICIES_DRY_RUN ---------------------------------------------------------------------------


def test_dry_run_prints_ok_for_each_valid_file(tmp_path: Path) -> None:
    directory = write_policies(tmp_path / "policies", UNANIMOUS, PLURALITY)
    env = insecure_env(tmp_path, MACP_POLICIES_DIR=str(directory), MACP_POLICIES_DRY_RUN="1")
    result = wire.serve_and_exit(env)
    assert result.returncode == 0, result.stderr
    ok_lines = [line for line in result.stdout.splitlines() if line.startswith("OK ")]
    assert len(ok_lines) == 2
    for policy in (UNANIMOUS, PLURALITY):
        assert any(policy["policy_id"] in line for line in ok_lines)
    assert not (tmp_path / "data").exists(), "a dry run opens no storage"


def test_dry_run_exits_1_with_rejected_for_a_bad_file(tmp_path: Path) -> None:
    reserved = dict(UNANIMOUS, policy_id="policy.std.mine")
    directory = write_policies(tmp_path / "policies", PLURALITY, reserved)
    env = insecure_env(tmp_path, MACP_POLICIES_DIR=str(directory), MACP_POLICIES_DRY_RUN="1")
    result = wire.serve_and_exit(env)
    assert result.returncode == 1
    rejected = [line for line in result.stderr.splitlines() if line.startswith("REJECTED")]
    assert len(rejected) == 1
    assert "policy.std.mine.json" in rejected[0]


def test_dry_run_needs_no_tls_and_no_insecure_flag(tmp_path: Path) -> None:
    """Validating files binds no port, so it must not demand transport settings (reference §3.8)."""
    directory = write_policies(tmp_path / "policies", UNANIMOUS)
    result = wire.serve_and_exit({"MACP_POLICIES_DIR": str(directory), "MACP_POLICIES_DRY_RUN": "1"})
    assert result.returncode == 0, result.stderr
    assert f"OK {UNANIMOUS['policy_id']}" in result.stdout


# --- signals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_runtime_promptly_and_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    runtime = RuntimeProcess(tmp_path / "data")
    runtime.start()
    with grpc.insecure_channel(runtime.target) as channel:
        start = wire.session_start(DECISION, wire.new_id(), "agent://lead", ["agent://a"])
        assert wire.send(wire.stub_for(channel), start, bearer("agent://lead")).ok
    began = time.monotonic()
    code = runtime.stop(sig, timeout=15)
    elapsed = time.monotonic() - began
    assert code == 0, runtime.log()
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    assert "shutting down" in runtime.log()


def test_sigterm_with_an_open_watch_stream_honours_the_drain_deadline(tmp_path: Path) -> None:
    runtime = RuntimeProcess(tmp_path / "data", {"MACP_SHUTDOWN_DRAIN_SECS": "1"})
    runtime.start()
    ended = threading.Event()
    with grpc.insecure_channel(runtime.target) as channel:
        watch = wire.stub_for(channel).WatchSessions(
            core_pb2.WatchSessionsRequest(), metadata=bearer("agent://w")
        )

        def drain() -> None:
            try:
                for _ in watch:
                    pass
            except grpc.RpcError:
                pass
            ended.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        time.sleep(0.3)
        began = time.monotonic()
        code = runtime.stop(signal.SIGTERM, timeout=15)
        elapsed = time.monotonic() - began
        assert ended.wait(5), "the watch stream was not ended by the shutdown"
    assert code == 0, runtime.log()
    assert elapsed < 5, f"took {elapsed:.1f}s to stop with a 1 s drain deadline"


# --- what survives a restart -------------------------------------------------------------------------


def _populate(stub: Stub) -> tuple[str, list[str], str]:
    session_id = wire.new_id()
    envelopes = [
        wire.session_start(DECISION, session_id, "agent://lead", ["agent://lead"]),
        wire.proposal(session_id, "agent://lead", "p1"),
    ]
    for env in envelopes:
        assert wire.send(stub, env, bearer("agent://lead")).ok
    descriptor = wire.policy_descriptor("policy.e2e.kept", {"voting": {"algorithm": "majority"}})
    assert stub.RegisterPolicy(
        policy_pb2.RegisterPolicyRequest(policy_descriptor=descriptor), metadata=bearer("agent://lead")
    ).ok
    keys = stub.GetReceiptKeys(core_pb2.GetReceiptKeysRequest(), timeout=10).jwks_json
    return session_id, [e.message_id for e in envelopes], keys


def _restart_cycle(tmp_path: Path, env: dict[str, str]) -> tuple[tuple[str, list[str], str], RuntimeProcess]:
    with running_runtime(tmp_path / "data", env) as first, grpc.insecure_channel(first.target) as channel:
        before = _populate(wire.stub_for(channel))
    second = RuntimeProcess(tmp_path / "data", env)
    second.start()
    return before, second


def test_memory_only_keeps_nothing_across_restarts(tmp_path: Path) -> None:
    (session_id, _, keys), second = _restart_cycle(tmp_path, {"MACP_MEMORY_ONLY": "1"})
    try:
        with grpc.insecure_channel(second.target) as channel:
            stub = wire.stub_for(channel)
            err = wire.expect_rpc_error(lambda: wire.get_session(stub, session_id, bearer("agent://lead")))
            assert wire.status_of(err) == grpc.StatusCode.NOT_FOUND
            listed = stub.ListSessions(
                core_pb2.ListSessionsRequest(), metadata=bearer("agent://lead"), timeout=10
            )
            assert list(listed.sessions) == []
            request = policy_pb2.GetPolicyRequest(policy_id="policy.e2e.kept")
            err = wire.expect_rpc_error(lambda: stub.GetPolicy(request, metadata=bearer("agent://lead")))
            assert wire.trailer(err, "macp-error-code") == "UNKNOWN_POLICY_VERSION"
            assert stub.GetReceiptKeys(core_pb2.GetReceiptKeysRequest(), timeout=10).jwks_json != keys
    finally:
        second.stop()
    data = tmp_path / "data"
    assert not data.exists() or not any(data.iterdir()), f"memory-only wrote {sorted(data.iterdir())}"


def test_the_default_storage_keeps_everything_across_restarts(tmp_path: Path) -> None:
    (session_id, message_ids, keys), second = _restart_cycle(tmp_path, {})
    try:
        with grpc.insecure_channel(second.target) as channel:
            stub = wire.stub_for(channel)
            metadata = wire.get_session(stub, session_id, bearer("agent://lead"))
            assert (metadata.state, metadata.initiator) == (envelope_pb2.SESSION_STATE_OPEN, "agent://lead")
            assert wire.read_history(stub, session_id, bearer("agent://lead")).message_ids == message_ids
            got = stub.GetPolicy(
                policy_pb2.GetPolicyRequest(policy_id="policy.e2e.kept"),
                metadata=bearer("agent://lead"),
                timeout=10,
            )
            assert got.policy_descriptor.policy_id == "policy.e2e.kept"
            assert stub.GetReceiptKeys(core_pb2.GetReceiptKeysRequest(), timeout=10).jwks_json == keys
    finally:
        second.stop()
