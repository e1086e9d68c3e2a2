"""The MACP bridge end to end: sessions started by an SDK agent reach real worker processes.

The coordinator is the official SDK with its own static token; the workers are the example
task worker run by ``pymacp agents``. What a worker received is read from its journal; what
it sent is read back from the runtime.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from agents_support import TOKENS, Stack, iter_journal, session_history, wait_until
from macp.v1 import core_pb2
from macp_sdk import AuthConfig, MacpClient, SignalEvent, SignalWatcher, TaskSession


def auth(name: str) -> AuthConfig:
    token, sender, _ = TOKENS[name]
    return AuthConfig.for_bearer(token, expected_sender=sender)


@contextmanager
def sdk_client(stack: Stack, name: str = "coordinator") -> Iterator[MacpClient]:
    with MacpClient(target=stack.runtime, allow_insecure=True, auth=auth(name)) as client:
        yield client


class ProgressSeen:
    """Another subscriber: an SDK WatchSignals stream drained on a thread."""

    def __init__(self, client: MacpClient) -> None:
        self.items: queue.Queue[SignalEvent] = queue.Queue()
        events = SignalWatcher(client, auth=auth("outsider")).events()
        self.thread = threading.Thread(target=self._drain, args=(events,), daemon=True)
        self.thread.start()

    def _drain(self, events: Iterator[SignalEvent]) -> None:
        try:
            for event in events:
                self.items.put(event)
        except Exception:  # the channel closed at the end of the test
            pass

    def until(self, predicate: object, timeout: float = 10.0) -> SignalEvent:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.items.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no matching event within {timeout}s") from None
            if callable(predicate) and predicate(event):
                return event

    def wait_live(self, client: MacpClient) -> None:
        """Signals are not replayed: ping until the watcher has demonstrably subscribed."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ack = client.send_signal(signal_type="agents-test.ping", auth=auth("coordinator"))
            try:
                self.until(lambda e, sent=ack.message_id: e.envelope.message_id == sent, timeout=0.2)
                return
            except AssertionError:
                continue
        raise AssertionError("the signal watcher never received a ping")


def test_a_session_declaring_the_participant_is_delivered_and_answered_under_its_identity(
    stack: Stack,
) -> None:
    with sdk_client(stack) as client, sdk_client(stack, "outsider") as watcher_client:
        progress = ProgressSeen(watcher_client)
        progress.wait_live(client)

        session = TaskSession(client, auth=auth("coordinator"))
        assert session.start(intent="bridge check", participants=["agent://tasks"], ttl_ms=60_000).ok
        task_input = {"spoof": "agent://mallory", "chunks": ["thinking about it"], "steps": 1}
        ack = session.request_task(
            "bridge-t1",
            "Check the bridge",
            requested_assignee="agent://tasks",
            input_data=json.dumps(task_input).encode(),
        )
        assert ack.ok
        sid = session.session_id

        # The chunk became a Progress that another subscriber sees, sent as the participant.
        seen = progress.until(
            lambda e: e.envelope.session_id == sid and e.envelope.message_type == "Progress"
        )
        assert seen.envelope.sender == "agent://tasks"
        assert seen.sender_authenticated
        payload = core_pb2.ProgressPayload.FromString(seen.envelope.payload)
        assert (payload.message, payload.progress_token, payload.progress) == (
            "thinking about it",
            "agent_message_chunk",
            1.0,
        )

        wait_until(lambda: list(iter_journal(stack.agents, event="finish", sessionId=sid)), what="the task")
        history = wait_until(
            lambda: (
                (h := session_history(stack, sid, "coordinator"))
                and h[-1].message_type == "TaskComplete"
                and h
            ),
            what="the TaskComplete in the session",
        )
        # Every send went out under the pool's identity; the spoofed sender was ignored.
        assert [(e.message_type, e.sender) for e in history] == [
            ("SessionStart", "agent://coordinator"),
            ("TaskRequest", "agent://coordinator"),
            ("TaskAccept", "agent://tasks"),
            ("TaskUpdate", "agent://tasks"),
            ("TaskComplete", "agent://tasks"),
        ]

        assert session.commit(action="task.completed", authority_scope="test", reason="bridged").ok

    ended = wait_until(
        lambda: list(iter_journal(stack.agents, event="ended", sessionId=sid)), what="macp/sessionEnded"
    )
    assert [e["state"] for e in ended] == ["SESSION_STATE_RESOLVED"]
    delivered = list(iter_journal(stack.agents, event="envelope", sessionId=sid))
    # One worker got the whole session, in acceptance order, its own envelopes included.
    assert len({e["pid"] for e in delivered}) == 1
    assert [(e["messageType"], e["sender"]) for e in delivered] == [
        ("SessionStart", "agent://coordinator"),
        ("TaskRequest", "agent://coordinator"),
        ("TaskAccept", "agent://tasks"),
        ("TaskUpdate", "agent://tasks"),
        ("TaskComplete", "agent://tasks"),
        ("Commitment", "agent://coordinator"),
    ]
    assert all(r["ok"] for r in iter_journal(stack.agents, event="response", pid=delivered[0]["pid"]))


def test_only_sessions_that_declare_the_participant_are_delivered(stack: Stack) -> None:
    with sdk_client(stack) as client:
        elsewhere = TaskSession(client, auth=auth("coordinator"))
        assert elsewhere.start(
            intent="not for the bridge", participants=["agent://outsider"], ttl_ms=60_000
        ).ok
        assert elsewhere.request_task("t-out", "Someone else's", requested_assignee="agent://outsider").ok
        # The bridge-only pool (cap 0) still serves MACP sessions that name it.
        mine = TaskSession(client, auth=auth("coordinator"))
        assert mine.start(intent="for the listener", participants=["agent://listener"], ttl_ms=60_000).ok
        assert mine.request_task("t-in", "Listener's", input_data=b'{"steps": 0}').ok
        wait_until(
            lambda: list(iter_journal(stack.agents, event="finish", sessionId=mine.session_id)),
            what="the listener pool to do its task",
        )
        history = session_history(stack, mine.session_id, "coordinator")
        assert [(e.message_type, e.sender) for e in history][-2:] == [
            ("TaskAccept", "agent://listener"),
            ("TaskComplete", "agent://listener"),
        ]
        assert mine.cancel(reason="done looking").ok
        assert elsewhere.cancel(reason="done looking").ok
    assert not list(iter_journal(stack.agents, sessionId=elsewhere.session_id))
