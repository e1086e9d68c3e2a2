"""Helpers for the end-to-end tests, which drive a real ``pymacp serve`` with the official SDK.

Everything that blocks (stream reads, watcher iterators, agent threads) is read through a
timeout here, so a server that stops answering fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, cast

from macp.v1 import envelope_pb2
from macp_sdk import AuthConfig, MacpClient, MacpStream, MacpTimeoutError, MacpTransportError

T = TypeVar("T")

# The defaults (60 session starts a minute per sender) are meant for production; a test
# module legitimately starts more than that from one identity.
E2E_ENV = {
    "MACP_SESSION_START_LIMIT_PER_MINUTE": "100000",
    "MACP_MESSAGE_LIMIT_PER_MINUTE": "100000",
}
READ_TIMEOUT = 5.0
QUIET = 0.3

OPEN = envelope_pb2.SESSION_STATE_OPEN
RESOLVED = envelope_pb2.SESSION_STATE_RESOLVED
EXPIRED = envelope_pb2.SESSION_STATE_EXPIRED
SUSPENDED = envelope_pb2.SESSION_STATE_SUSPENDED
CANCELLED = envelope_pb2.SESSION_STATE_CANCELLED


def dev(agent: str) -> AuthConfig:
    """Dev-mode credentials: the runtime takes the bearer value as the sender."""
    return AuthConfig.for_dev_agent(agent)


def make_client(target: str, agent: str = "coordinator") -> MacpClient:
    return MacpClient(target=target, allow_insecure=True, auth=dev(agent))


class Connections:
    """Clients, streams and background readers opened by one test, all torn down after it.

    Closing a client's channel cancels every call on it, which is how watcher threads
    blocked inside a server stream are released.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._clients: list[MacpClient] = []
        self._streams: list[MacpStream] = []

    def client(self, agent: str = "coordinator") -> MacpClient:
        c = make_client(self.target, agent)
        self._clients.append(c)
        return c

    def stream(self, agent: str) -> StreamProbe:
        """A stream on a fresh channel, authenticated as ``agent``."""
        stream = self.client(agent).open_stream(auth=dev(agent))
        self._streams.append(stream)
        return StreamProbe(stream)

    def subscribe(self, agent: str, session_id: str, after_sequence: int = 0) -> StreamProbe:
        probe = self.stream(agent)
        probe.stream.send_subscribe(session_id, after_sequence=after_sequence)
        return probe

    def pump(self, make_iterator: Callable[[MacpClient], Iterable[T]], agent: str = "watcher") -> Pump[T]:
        """Run a watcher on its own channel, drained by a daemon thread."""
        return Pump(make_iterator(self.client(agent)))

    def close(self) -> None:
        for stream in self._streams:
            stream.cancel()
        for c in self._clients:
            c.close()


class StreamProbe:
    """A :class:`MacpStream` plus the inline error frames it received."""

    def __init__(self, stream: MacpStream) -> None:
        self.stream = stream
        self._errors: queue.Queue[Any] = queue.Queue()
        stream.on_inline_error(self._errors.put)

    def send(self, envelope: envelope_pb2.Envelope) -> None:
        self.stream.send(envelope)

    def read(self, count: int, timeout: float = READ_TIMEOUT) -> list[envelope_pb2.Envelope]:
        """Exactly the next ``count`` envelopes; fails if the stream ends or stalls first."""
        received: list[envelope_pb2.Envelope] = []
        deadline = time.monotonic() + timeout
        while len(received) < count:
            remaining = deadline - time.monotonic()
            try:
                envelope = self.stream.read(timeout=max(remaining, 0.01))
            except MacpTimeoutError:
                raise AssertionError(
                    f"only {len(received)} of {count} envelopes within {timeout}s: {types(received)}"
                ) from None
            assert envelope is not None, f"stream ended after {types(received)}; expected {count} envelopes"
            received.append(envelope)
        return received

    def assert_quiet(self, wait: float = QUIET) -> None:
        """Nothing more arrives for ``wait`` seconds (the stream may stay open or have ended)."""
        try:
            envelope = self.stream.read(timeout=wait)
        except MacpTimeoutError:
            return
        assert envelope is None, f"unexpected {envelope.message_type} {envelope.message_id}"

    def error(self, timeout: float = READ_TIMEOUT) -> Any:
        """The next inline ``MACPError`` frame."""
        try:
            return self._errors.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no inline error within {timeout}s") from None

    def refusal_code(self, timeout: float = READ_TIMEOUT) -> str:
        """The registry code of a refusal, sent inline or as the call's final status.

        Fails if an envelope arrives instead: a refused subscriber must see nothing.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return str(self._errors.get_nowait().code)
            except queue.Empty:
                pass
            try:
                envelope = self.stream.read(timeout=0.05)
            except MacpTimeoutError:
                continue
            except MacpTransportError as exc:
                return str(exc.macp_code or exc.code)
            assert envelope is not None, "the stream ended without saying why"
            raise AssertionError(f"a refused subscriber received {envelope.message_type}")
        raise AssertionError(f"no refusal within {timeout}s")


_END = object()


class Pump(Generic[T]):
    """Drains a blocking iterator (a watcher) on a daemon thread, for reads with timeouts."""

    def __init__(self, iterable: Iterable[T]) -> None:
        self._items: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, args=(iterable,), daemon=True)
        self._thread.start()

    def _drain(self, iterable: Iterable[T]) -> None:
        try:
            for item in iterable:
                self._items.put(item)
        except BaseException as exc:  # handed to the reading test
            self._items.put(exc)
        else:
            self._items.put(_END)

    def next(self, timeout: float = READ_TIMEOUT) -> T:
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing arrived within {timeout}s") from None
        if item is _END:
            self._items.put(_END)
            raise AssertionError("the server ended the stream")
        if isinstance(item, BaseException):
            raise item
        return cast(T, item)

    def until(self, predicate: Callable[[T], bool], timeout: float = READ_TIMEOUT) -> T:
        """The first item matching ``predicate``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(timeout=max(deadline - time.monotonic(), 0.01))
            if predicate(item):
                return item

    def drain(self, wait: float = QUIET) -> list[T]:
        """Whatever arrives until the stream has been silent for ``wait`` seconds."""
        drained: list[T] = []
        while True:
            try:
                item = self._items.get(timeout=wait)
            except queue.Empty:
                return drained
            if item is _END or isinstance(item, BaseException):
                self._items.put(item)
                return drained
            drained.append(cast(T, item))

    def assert_quiet(self, wait: float = QUIET) -> None:
        try:
            item = self._items.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected item (or end of stream): {item!r}")


def types(envelopes: Iterable[envelope_pb2.Envelope]) -> list[str]:
    return [e.message_type for e in envelopes]


def ids(envelopes: Iterable[envelope_pb2.Envelope]) -> list[str]:
    return [e.message_id for e in envelopes]


def wait_for(condition: Callable[[], bool], timeout: float = READ_TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_json(url: str, accept: Any, timeout: float = 20.0) -> Any:
    """Poll a JSON endpoint (an HTTP service started by the test) until ``accept`` approves."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = get_json(url)
        except OSError as exc:
            last = exc
        else:
            if accept(last):
                return last
        time.sleep(0.05)
    raise AssertionError(f"{url} never matched; last answer: {last!r}")
