"""An echo worker for ``pymacp bus``: ``python -m pymacp.bus.examples.echo_worker``.

It speaks NDJSON JSON-RPC on stdin/stdout, one message per line, and exits on stdin EOF.
Every reply and notification carries the ``sessionId`` of the message that caused it, so the
bus can route it back. It serves the tests, the benchmark and the documentation:

- any request → ``{"result": {"pid": <its pid>, "message": <the request as received>}}``
- ``echo/raw`` → ``{"result": {"pid": ..., "raw": <the request line, byte for byte>}}``
- ``echo/stream`` with ``{"chunks": [...]}`` → one ACP ``session/update`` notification
  (``agent_message_chunk``) per chunk, then ``{"result": {"chunks": n}}``
- ``echo/fail`` with ``{"code": c, "message": m}`` → a JSON-RPC error with that code
- ``echo/crash`` with ``{"code": c}`` → exits with code ``c`` (default 3) without answering
- ``echo/sleep`` with ``{"seconds": s}`` → answers after ``s`` seconds
- ``echo/ask`` → asks the client first (a worker-initiated request ``client/confirm`` with
  id ``ask-<n>``) and answers with the client's result once its reply arrives
- ``stdio_bus/hello`` → the result shape the stdiobus SDK's ``hello()`` expects
- a notification → the notification ``echo/notified`` with ``{"method": ..., "params": ...}``
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, BinaryIO

PID = os.getpid()


class EchoWorker:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.asks: dict[str, tuple[Any, Any]] = {}  # ask id -> (request id, sessionId)

    def write(self, message: dict[str, Any], session: Any) -> None:
        if session is not None:
            message["sessionId"] = session
        self.out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.out.flush()

    def reply(self, request_id: Any, session: Any, result: Any) -> None:
        self.write({"jsonrpc": "2.0", "id": request_id, "result": result}, session)

    def handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            print(f"echo_worker: ignoring a line that is not JSON: {line[:80]!r}", file=sys.stderr)
            return
        if not isinstance(message, dict):
            return
        session = message.get("sessionId")
        method = message.get("method")
        request_id = message.get("id")
        raw_params = message.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        if method is None:  # a client's reply to one of our asks
            asked = self.asks.pop(str(request_id), None)
            if asked is not None:
                self.reply(asked[0], asked[1], {"pid": PID, "answer": message.get("result")})
            return
        if request_id is None:
            notified = {"method": method, "params": raw_params}
            self.write({"jsonrpc": "2.0", "method": "echo/notified", "params": notified}, session)
            return
        self.request(request_id, method, params, session, message, line)

    def request(
        self, request_id: Any, method: str, params: dict[str, Any], session: Any, message: Any, line: bytes
    ) -> None:
        if method == "echo/raw":
            raw = line[:-1] if line.endswith(b"\n") else line
            self.reply(request_id, session, {"pid": PID, "raw": raw.decode()})
        elif method == "echo/stream":
            chunks = params.get("chunks", [])
            for text in chunks:
                update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
                notification = {"jsonrpc": "2.0", "method": "session/update", "params": {"update": update}}
                self.write(notification, session)
            self.reply(request_id, session, {"chunks": len(chunks)})
        elif method == "echo/fail":
            error = {"code": params.get("code", -32000), "message": params.get("message", "failed")}
            self.write({"jsonrpc": "2.0", "id": request_id, "error": error}, session)
        elif method == "echo/crash":
            code = params.get("code", 3)
            os._exit(code if isinstance(code, int) else 3)
        elif method == "echo/sleep":
            time.sleep(float(params.get("seconds", 1)))
            self.reply(request_id, session, {"pid": PID, "slept": params.get("seconds", 1)})
        elif method == "echo/ask":
            ask_id = f"ask-{len(self.asks) + 1}-{request_id}"
            self.asks[ask_id] = (request_id, session)
            ask = {"jsonrpc": "2.0", "id": ask_id, "method": "client/confirm", "params": params}
            self.write(ask, session)
        elif method == "stdio_bus/hello":
            version = params.get("protocolVersion", "0.1.0")
            result = {"negotiatedProtocolVersion": version, "sessionId": f"echo-{PID}", "extensions": {}}
            self.reply(request_id, session, result)
        else:
            self.reply(request_id, session, {"pid": PID, "message": message})


def main() -> None:
    worker = EchoWorker(sys.stdout.buffer)
    try:
        for line in sys.stdin.buffer:
            worker.handle(line)
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the bus went away or we were interrupted: nothing left to answer


if __name__ == "__main__":
    main()
