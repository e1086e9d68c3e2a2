"""``pymacp bus`` over raw pipes: what a client that writes bytes itself sees on the wire."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import pytest
from bus_support import echo_pool, is_running, pid_of, raw_bus, wait_until, write_config

BAD_LINES = [
    b"garbage",
    b'{"jsonrpc":"2.0","id":1,"method":',  # truncated object
    b"[1,2,3]",
    b'"a bare string"',
    b"\xff\xfe{}",  # not UTF-8
    b"[" * 100_000,  # nesting deep enough to exhaust a recursive parser
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, echo_pool(instances=1))


def test_invalid_json_gets_a_parse_error_and_the_bus_keeps_running(config: Path) -> None:
    with raw_bus(config) as bus:
        for line in BAD_LINES:
            bus.send(line)
            assert bus.receive() == {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32700, "message": "Parse error"},
            }
        reply = bus.request({"jsonrpc": "2.0", "id": "after", "method": "still-there"})
        assert reply["id"] == "after" and reply["result"]["message"]["method"] == "still-there"
        assert bus.process.poll() is None


def test_lines_are_forwarded_byte_for_byte(config: Path) -> None:
    line = '{ "method" : "echo/raw",\t"params":{"b":2, "a":[1 ,2]}, "id":"x1", "u":"\\u00e9✓"}\r'
    with raw_bus(config) as bus:
        bus.send(line)
        assert bus.receive()["result"]["raw"] == line


def test_numeric_ids_come_back_as_numbers(config: Path) -> None:
    with raw_bus(config) as bus:
        assert bus.request({"jsonrpc": "2.0", "id": 42, "method": "n"})["id"] == 42


def test_a_line_over_the_limit_is_refused_and_the_next_one_works(tmp_path: Path) -> None:
    config = write_config(tmp_path, echo_pool(), max_input_buffer=4096)
    with raw_bus(config) as bus:
        big = {"jsonrpc": "2.0", "id": "big-1", "method": "m", "params": {"blob": "x" * 10_000}}
        reply = bus.request(big)
        assert reply["id"] == "big-1"  # recovered from the line's head, so the client fails fast
        assert reply["error"]["code"] == -32600
        assert reply["error"]["message"].startswith("Message too large")
        assert bus.request({"jsonrpc": "2.0", "id": "small", "method": "m"})["id"] == "small"


def test_a_notification_without_a_session_is_not_delivered(config: Path) -> None:
    with raw_bus(config) as bus:
        bus.send({"jsonrpc": "2.0", "method": "no/session"})  # the worker answers without sessionId
        bus.send({"jsonrpc": "2.0", "method": "with/session", "sessionId": "s1"})
        assert bus.receive() == {
            "jsonrpc": "2.0",
            "method": "echo/notified",
            "params": {"method": "with/session", "params": None},
            "sessionId": "s1",
        }


def test_unroutable_requests_get_errors_unless_strict(tmp_path: Path) -> None:
    config = write_config(tmp_path, echo_pool("a"), echo_pool("b"))
    with raw_bus(config) as bus:
        missing = bus.request({"jsonrpc": "2.0", "id": 1, "method": "m"})
        assert missing["error"]["code"] == 1 and "several pools" in missing["error"]["message"]
        unknown = bus.request({"jsonrpc": "2.0", "id": 2, "method": "m", "pool": "zzz"})
        assert unknown["error"]["code"] == 1 and "unknown pool 'zzz'" in unknown["error"]["message"]
    with raw_bus(config, "--strict-parity") as bus:
        bus.send({"jsonrpc": "2.0", "id": 1, "method": "m"})  # dropped in silence, like the kernel
        assert bus.request({"jsonrpc": "2.0", "id": 2, "method": "m", "pool": "b"})["id"] == 2


def test_a_slot_that_keeps_crashing_gives_up_and_requests_say_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, echo_pool(), max_restarts=1, restart_window_sec=60)
    with raw_bus(config) as bus:
        for n in range(2):
            reply = bus.request({"jsonrpc": "2.0", "id": n, "method": "echo/crash"})
            assert reply["error"]["code"] == 5, reply
        reply = bus.request({"jsonrpc": "2.0", "id": "late", "method": "m"})
        assert reply["error"]["code"] == 8
        assert "restart limit reached" in reply["error"]["message"]
        assert bus.process.poll() is None


def test_stdin_eof_drains_pending_requests_then_exits(config: Path) -> None:
    with raw_bus(config) as bus:
        pid = pid_of(bus.request({"jsonrpc": "2.0", "id": 0, "method": "who"}))
        bus.send({"jsonrpc": "2.0", "id": 1, "method": "echo/sleep", "params": {"seconds": 0.3}})
        bus.close_stdin()
        assert bus.receive()["result"]["slept"] == 0.3
        assert bus.stdout.readline() == b""
        assert bus.wait(10) == 0
        wait_until(lambda: not is_running(pid), what="the worker to exit")


def test_sigterm_stops_the_bus_and_its_workers(tmp_path: Path) -> None:
    # the worker ignores SIGTERM and stdin EOF: the bus must SIGKILL it after drain_timeout_sec
    stubborn = {
        "id": "stubborn",
        "command": sys.executable,
        "args": ["-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
        "instances": 1,
    }
    config = write_config(tmp_path, echo_pool(), stubborn, drain_timeout_sec=1)
    with raw_bus(config) as bus:
        pid = pid_of(bus.request({"jsonrpc": "2.0", "id": 0, "method": "who", "pool": "echo"}))
        began = time.monotonic()
        bus.process.send_signal(signal.SIGTERM)
        assert bus.wait(15) == 0
        assert time.monotonic() - began < 10  # bounded by drain_timeout_sec, not by the stubborn worker
        assert "ignored SIGTERM" in bus.stderr_text()
        wait_until(lambda: not is_running(pid), what="the worker to exit")


def test_a_worker_that_writes_garbage_is_restarted(tmp_path: Path) -> None:
    noisy = {
        "id": "noisy",
        "command": sys.executable,
        "args": ["-c", "import sys; print('not json', flush=True); sys.stdin.read()"],
        "instances": 1,
    }
    config = write_config(tmp_path, noisy)
    with raw_bus(config) as bus:
        wait_until(lambda: bus.stderr_text().count("not a JSON object") >= 2, what="two restarts")
        assert bus.process.poll() is None


def test_logs_go_to_stderr_in_the_kernels_format(config: Path) -> None:
    with raw_bus(config) as bus:
        bus.request({"jsonrpc": "2.0", "id": 0, "method": "who"})
        wait_until(lambda: "ready on stdio" in bus.stderr_text(), what="the ready line")
        stamp = r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\] \[INFO\] "
        assert re.search(stamp + r"pymacp bus ready on stdio", bus.stderr_text(), re.MULTILINE)
