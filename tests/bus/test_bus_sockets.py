"""``pymacp bus --tcp`` and ``--unix``: many clients, session ownership, per-client request ids."""

from __future__ import annotations

import json
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bus_support import RawBus, echo_pool, raw_bus, wait_until, write_config


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        line = self.reader.readline()
        assert line, "the bus closed the connection"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _address(bus: RawBus) -> str:
    wait_until(lambda: "listening on" in bus.stderr_text(), what="the bus to listen")
    found = re.search(r"listening on (\S+)", bus.stderr_text())
    assert found is not None
    return found.group(1)


@pytest.fixture
def tcp_bus(tmp_path: Path) -> Iterator[tuple[RawBus, tuple[str, int]]]:
    config = write_config(tmp_path, echo_pool(instances=2))
    with raw_bus(config, "--tcp", "127.0.0.1:0") as bus:
        host, port = _address(bus).rsplit(":", 1)
        yield bus, (host, int(port))


def _connect(address: tuple[str, int]) -> Conn:
    return Conn(socket.create_connection(address))


def test_notifications_go_to_the_session_owner(tcp_bus: tuple[RawBus, tuple[str, int]]) -> None:
    _, address = tcp_bus
    owner, other = _connect(address), _connect(address)
    try:
        owner.send({"jsonrpc": "2.0", "id": "o1", "method": "open", "sessionId": "s-owned"})
        assert owner.receive()["id"] == "o1"
        other.send({"jsonrpc": "2.0", "method": "poke", "sessionId": "s-owned"})
        notified = owner.receive()
        assert notified["method"] == "echo/notified" and notified["params"]["method"] == "poke"
        other.send({"jsonrpc": "2.0", "id": "x", "method": "mine", "sessionId": "s-other"})
        assert other.receive()["id"] == "x"  # the notification did not go to `other` first
    finally:
        owner.close()
        other.close()


def test_two_clients_with_the_same_id_get_their_own_answers(tcp_bus: tuple[RawBus, tuple[str, int]]) -> None:
    _, address = tcp_bus
    a, b = _connect(address), _connect(address)
    try:
        for rounds in range(3):
            a.send({"jsonrpc": "2.0", "id": "same", "method": "from-a", "params": {"r": rounds}})
            b.send({"jsonrpc": "2.0", "id": "same", "method": "from-b", "params": {"r": rounds}})
            assert a.receive()["result"]["message"]["method"] == "from-a"
            assert b.receive()["result"]["message"]["method"] == "from-b"
    finally:
        a.close()
        b.close()


def test_a_client_that_half_closes_still_gets_its_answer(tcp_bus: tuple[RawBus, tuple[str, int]]) -> None:
    _, address = tcp_bus
    conn = _connect(address)
    try:
        conn.send({"jsonrpc": "2.0", "id": 1, "method": "echo/sleep", "params": {"seconds": 0.2}})
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.receive()["result"]["slept"] == 0.2
        assert conn.reader.readline() == b""  # then the bus closes the connection
    finally:
        conn.close()


def test_bad_input_on_one_connection_does_not_hurt_the_others(
    tcp_bus: tuple[RawBus, tuple[str, int]],
) -> None:
    bus, address = tcp_bus
    bad, good = _connect(address), _connect(address)
    try:
        bad.sock.sendall(b"{not json\n")
        assert bad.receive()["error"]["code"] == -32700
        bad.close()
        good.send({"jsonrpc": "2.0", "id": 1, "method": "fine"})
        assert good.receive()["id"] == 1
        assert bus.process.poll() is None
    finally:
        good.close()


def test_unix_socket_round_trip_and_cleanup(tmp_path: Path) -> None:
    config = write_config(tmp_path, echo_pool())
    path = tmp_path / "bus.sock"
    with raw_bus(config, "--unix", str(path)) as bus:
        _address(bus)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        conn = Conn(sock)
        conn.send({"jsonrpc": "2.0", "id": "u", "method": "over-unix"})
        assert conn.receive()["result"]["message"]["method"] == "over-unix"
        conn.close()
        bus.process.send_signal(signal.SIGTERM)
        assert bus.wait(10) == 0
    assert not path.exists()
