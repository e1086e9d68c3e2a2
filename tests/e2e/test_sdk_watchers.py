"""The five watch streams through the SDK's watcher classes: sessions, signals, policies,
mode registry and roots."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from macp.v1 import core_pb2
from macp_sdk import (
    DecisionSession,
    MacpAckError,
    MacpClient,
    ModeRegistryWatcher,
    PolicyWatcher,
    RootsWatcher,
    SessionLifecycleEvent,
    SessionLifecycleWatcher,
    SignalEvent,
    SignalWatcher,
    VotingRules,
    build_decision_policy,
    build_envelope,
    build_progress_payload,
    serialize_message,
)

from e2e_support import CANCELLED, EXPIRED, OPEN, READ_TIMEOUT, RESOLVED, SUSPENDED, Connections, Pump, dev

TTL = 60_000


def open_decision(client: MacpClient, ttl_ms: int = TTL) -> DecisionSession:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="watch me", participants=["lead", "alice"], ttl_ms=ttl_ms)
    return s


def about(session_id: str) -> Callable[[SessionLifecycleEvent], bool]:
    return lambda event: event.session.session_id == session_id


def test_watch_sessions_reports_existing_sessions_then_every_transition(
    client: MacpClient, connect: Connections
) -> None:
    existing = open_decision(client)
    finished = open_decision(client)
    finished.propose("p1", "option")
    finished.commit(action="decision.selected", authority_scope="x", reason="r")

    events = connect.pump(lambda c: SessionLifecycleWatcher(c, auth=dev("watcher")).changes())
    initial: dict[str, SessionLifecycleEvent] = {}
    while existing.session_id not in initial or finished.session_id not in initial:
        event = events.next()
        assert event.event_type == "CREATED", f"initial events are CREATED, got {event.event_type}"
        initial[event.session.session_id] = event
    # Terminal sessions are announced too, with their true state in the metadata.
    assert initial[existing.session_id].session.state == OPEN
    assert initial[finished.session_id].session.state == RESOLVED

    live = open_decision(client)
    created = events.until(about(live.session_id))
    assert created.is_created
    assert (created.session.mode, created.session.initiator) == ("macp.mode.decision.v1", "lead")
    assert list(created.session.participants) == ["lead", "alice"]
    assert created.observed_at_unix_ms > 0

    live.suspend(reason="lunch")
    suspended = events.until(about(live.session_id))
    assert (suspended.event_type, suspended.session.state) == ("SUSPENDED", SUSPENDED)
    assert not suspended.is_terminal

    live.resume()
    resumed = events.until(about(live.session_id))
    assert (resumed.event_type, resumed.session.state) == ("RESUMED", OPEN)

    live.propose("p1", "option")
    live.commit(action="decision.selected", authority_scope="x", reason="r")
    resolved = events.until(about(live.session_id))
    assert (resolved.event_type, resolved.session.state) == ("RESOLVED", RESOLVED)
    assert resolved.is_terminal

    existing.cancel(reason="no longer needed")
    cancelled = events.until(about(existing.session_id))
    assert (cancelled.event_type, cancelled.session.state) == ("CANCELLED", CANCELLED)
    assert cancelled.is_cancelled


def test_watch_sessions_reports_expiry_of_a_short_lived_session(
    client: MacpClient, connect: Connections
) -> None:
    events = connect.pump(lambda c: SessionLifecycleWatcher(c, auth=dev("watcher")).changes())
    short = open_decision(client, ttl_ms=300)

    assert events.until(about(short.session_id)).is_created
    expired = events.until(about(short.session_id), timeout=5)  # swept within about a second

    assert (expired.event_type, expired.session.state) == ("EXPIRED", EXPIRED)
    assert short.metadata().metadata.state == EXPIRED


def test_watch_signals_delivers_authenticated_signals_and_ambient_progress(
    client: MacpClient, connect: Connections
) -> None:
    signals = connect.pump(lambda c: SignalWatcher(c, auth=dev("observer")).events())
    wait_until_live(client, signals)
    correlated = open_decision(client)

    ack = client.send_signal(
        signal_type="heartbeat",
        data=json.dumps({"load": 0.3}).encode(),
        confidence=0.8,
        correlation_session_id=correlated.session_id,
        auth=dev("alice"),
    )
    assert ack.ok

    event = signals.until(lambda e: e.envelope.message_id == ack.message_id)
    assert isinstance(event, SignalEvent)
    assert event.sender_authenticated is True
    envelope = event.envelope
    assert (envelope.message_type, envelope.sender, envelope.session_id, envelope.mode) == (
        "Signal",
        "alice",
        "",
        "",
    )
    payload = core_pb2.SignalPayload.FromString(envelope.payload)
    assert (payload.signal_type, payload.correlation_session_id) == ("heartbeat", correlated.session_id)
    assert json.loads(payload.data) == {"load": 0.3}
    assert abs(payload.confidence - 0.8) < 1e-6

    progress = client.send_progress(
        progress_token="job-7", progress=3, total=10, message="3/10", auth=dev("bob")
    )
    assert progress.ok
    event = signals.until(lambda e: e.envelope.message_id == progress.message_id)
    assert (event.envelope.message_type, event.envelope.sender, event.sender_authenticated) == (
        "Progress",
        "bob",
        True,
    )
    assert core_pb2.ProgressPayload.FromString(event.envelope.payload).progress_token == "job-7"


def wait_until_live(client: MacpClient, signals: Pump[SignalEvent]) -> None:
    """Signals are not replayed, so ping until the watcher has demonstrably subscribed."""
    deadline = time.monotonic() + READ_TIMEOUT
    while time.monotonic() < deadline:
        client.send_signal(signal_type="e2e.ping", auth=dev("pinger"))
        try:
            signals.until(lambda e: e.envelope.sender == "pinger", timeout=0.2)
            return
        except AssertionError:
            continue
    raise AssertionError("the signal watcher never received a ping")


def test_session_scoped_progress_is_accepted_from_a_participant(client: MacpClient) -> None:
    s = open_decision(client)

    ack = client.send_progress(
        session_id=s.session_id,
        mode="macp.mode.decision.v1",
        progress_token="analysis",
        progress=1,
        total=2,
        auth=dev("alice"),
    )

    assert (ack.ok, ack.session_id, ack.session_state) == (True, s.session_id, OPEN)


def test_progress_naming_a_session_but_no_mode_is_an_invalid_envelope(client: MacpClient) -> None:
    s = open_decision(client)
    mixed = build_envelope(
        mode="",
        message_type="Progress",
        session_id=s.session_id,
        sender="alice",
        payload=serialize_message(build_progress_payload(progress_token="x", progress=1, total=2)),
    )

    with pytest.raises(MacpAckError) as err:
        client.send(mixed, auth=dev("alice"))

    assert err.value.failure.code == "INVALID_ENVELOPE"


def test_watch_policies_sends_the_full_list_on_every_change(client: MacpClient, connect: Connections) -> None:
    changes = connect.pump(lambda c: PolicyWatcher(c, auth=dev("admin")).changes())
    for opening in changes.drain():  # a snapshot on subscribe is allowed, and must be complete
        assert "policy.default" in {d.policy_id for d in opening.descriptors}
    baseline = {d.policy_id for d in client.list_policies(auth=dev("admin")).descriptors}
    assert "policy.default" in baseline

    descriptor = build_decision_policy(
        "policy.e2e.watched", "watched majority", voting=VotingRules(algorithm="majority", threshold=0.5)
    )
    assert client.register_policy(descriptor, auth=dev("admin")).ok
    after_register = changes.next()
    assert {d.policy_id for d in after_register.descriptors} == baseline | {"policy.e2e.watched"}
    assert after_register.observed_at_unix_ms > 0

    assert client.unregister_policy("policy.e2e.watched", auth=dev("admin")).ok
    assert {d.policy_id for d in changes.next().descriptors} == baseline


def test_watch_mode_registry_hints_on_register_ext_mode(client: MacpClient, connect: Connections) -> None:
    hints = connect.pump(lambda c: ModeRegistryWatcher(c).changes())
    hints.drain()  # an opening hint (this runtime sends one) tells the watcher to read the registry

    descriptor = core_pb2.ModeDescriptor(
        mode="ext.e2e-watched.v1",
        mode_version="1.0.0",
        title="Watched",
        message_types=["SessionStart", "Note", "Commitment"],
        terminal_message_types=["Commitment"],
    )
    assert client.register_ext_mode(descriptor, auth=dev("admin")).ok

    change = hints.next()
    assert change.change.registry == "modes"
    assert change.change.observed_at_unix_ms > 0
    assert "ext.e2e-watched.v1" in {m.mode for m in client.list_ext_modes().modes}


def test_watch_roots_reports_once_and_stays_open(connect: Connections) -> None:
    roots = connect.pump(lambda c: RootsWatcher(c).changes())

    first = roots.next()

    assert first.change.observed_at_unix_ms > 0
    roots.assert_quiet(wait=1.0)  # neither another change nor the end of the stream
