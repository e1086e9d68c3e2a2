"""A small worker for ``pymacp agents``: ``python -m pymacp.bus.agents.examples.task_worker``.

It does ``macp.mode.task.v1`` tasks. On a ``macp/envelope`` carrying a TaskRequest for its
participant it answers, through ``macp/send``, with TaskAccept, a TaskUpdate per step, and
TaskComplete whose ``output`` is ``{"echo": <input>, "title": ..., "worker": <pid>}``. It
serves many sessions at once and exits on stdin EOF.

The task's ``input`` (any JSON) may steer it, for demos and tests:

- ``{"steps": n}`` -- n TaskUpdates (default 2);
- ``{"chunks": ["a", "b"]}`` -- stream ACP ``agent_message_chunk`` updates (they become
  Progress envelopes);
- ``{"gate": "/path"}`` -- hold the task until that file exists;
- ``{"fail": "why"}`` -- end with TaskFail (error_code ``E_WORKER``) instead;
- ``{"decline": "why"}`` -- answer with TaskReject;
- ``{"crash": true}`` -- exit with code 3 right after accepting;
- ``{"spoof": "agent://someone"}`` -- claim that sender on every send (the bridge ignores it).

With ``PYMACP_TASK_WORKER_JOURNAL=/path`` it appends one JSON line per thing it sees or
does (``envelope``, ``begin``, ``finish``, ``ended``, ``response``), so a test or a
curious operator can tell exactly what reached it.
"""

from __future__ import annotations

import base64
import json
import os
import select
import sys
from dataclasses import dataclass
from typing import Any

PID = os.getpid()
POLL_S = 0.02  # how often held tasks look for their gate file


@dataclass
class Job:
    session_id: str
    task_id: str
    title: str
    options: dict[str, Any]
    input: Any
    gate: str | None = None
    spoof: str | None = None


class TaskWorker:
    def __init__(self) -> None:
        self.next_id = 0
        self.held: list[Job] = []
        self.journal_path = os.environ.get("PYMACP_TASK_WORKER_JOURNAL")

    # -------------------------------------------------------------- output
    def write(self, message: dict[str, Any]) -> None:
        sys.stdout.buffer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        sys.stdout.buffer.flush()

    def journal(self, event: str, **fields: Any) -> None:
        if self.journal_path:
            line = json.dumps({"pid": PID, "event": event, **fields}, separators=(",", ":"))
            with open(self.journal_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def send(self, job: Job, message_type: str, payload: dict[str, Any]) -> None:
        self.next_id += 1
        envelope: dict[str, Any] = {
            "message_type": message_type,
            "payload": {"task_id": job.task_id, **payload},
        }
        if job.spoof:
            envelope["sender"] = job.spoof
        params = {"sessionId": job.session_id, "envelope": envelope}
        self.write(
            {
                "jsonrpc": "2.0",
                "id": self.next_id,
                "method": "macp/send",
                "sessionId": job.session_id,
                "params": params,
            }
        )

    def chunk(self, job: Job, text: str) -> None:
        update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
        self.write(
            {
                "jsonrpc": "2.0",
                "method": "session/update",
                "sessionId": job.session_id,
                "params": {"update": update},
            }
        )

    # -------------------------------------------------------------- input
    def handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            print(f"task_worker: ignoring a line that is not JSON: {line[:80]!r}", file=sys.stderr)
            return
        if not isinstance(message, dict):
            return
        method, params = message.get("method"), message.get("params") or {}
        if method is None:  # the answer to one of our macp/send requests
            error = message.get("error")
            code = error.get("data", {}).get("code") if isinstance(error, dict) else None
            self.journal("response", id=message.get("id"), ok="result" in message, code=code)
            if error:
                print(f"task_worker: macp/send {message.get('id')} failed: {error}", file=sys.stderr)
        elif method == "macp/envelope":
            self.envelope(params)
        elif method == "macp/sessionEnded":
            self.journal("ended", sessionId=params.get("sessionId"), state=params.get("state"))

    def envelope(self, params: dict[str, Any]) -> None:
        envelope, participant = params.get("envelope") or {}, params.get("participant")
        kind, session_id = envelope.get("message_type"), params.get("sessionId")
        self.journal("envelope", sessionId=session_id, messageType=kind, sender=envelope.get("sender"))
        payload = envelope.get("payload") or {}
        if kind != "TaskRequest" or payload.get("requested_assignee") not in ("", participant):
            return
        data = base64.b64decode(payload.get("input") or "")
        try:
            task_input = json.loads(data) if data else None
        except ValueError:
            task_input = data.decode("utf-8", "replace")
        options = task_input if isinstance(task_input, dict) else {}
        job = Job(
            str(session_id),
            str(payload.get("task_id", "")),
            str(payload.get("title", "")),
            options,
            task_input,
        )
        job.spoof = options.get("spoof") if isinstance(options.get("spoof"), str) else None
        self.begin(job)

    # -------------------------------------------------------------- the task
    def begin(self, job: Job) -> None:
        options = job.options
        if isinstance(options.get("decline"), str):
            self.send(job, "TaskReject", {"reason": options["decline"]})
            self.journal("finish", sessionId=job.session_id, taskId=job.task_id, outcome="declined")
            return
        self.send(job, "TaskAccept", {})
        self.journal("begin", sessionId=job.session_id, taskId=job.task_id)
        if options.get("crash"):
            os._exit(3)
        for text in options.get("chunks") or []:
            self.chunk(job, str(text))
        steps = options.get("steps", 2)
        steps = steps if isinstance(steps, int) and 0 <= steps <= 1000 else 2
        for step in range(1, steps + 1):
            update = {"status": "working", "progress": step / steps, "message": f"step {step} of {steps}"}
            self.send(job, "TaskUpdate", update)
        gate = options.get("gate")
        if isinstance(gate, str) and not os.path.exists(gate):
            job.gate = gate
            self.held.append(job)
            return
        self.finish(job)

    def finish(self, job: Job) -> None:
        reason = job.options.get("fail")
        if isinstance(reason, str):
            self.send(job, "TaskFail", {"error_code": "E_WORKER", "reason": reason, "retryable": False})
            outcome = "failed"
        else:
            output = json.dumps({"echo": job.input, "title": job.title, "worker": PID}).encode()
            encoded = base64.b64encode(output).decode()
            self.send(job, "TaskComplete", {"output": encoded, "summary": f"done: {job.title}"})
            outcome = "completed"
        self.journal("finish", sessionId=job.session_id, taskId=job.task_id, outcome=outcome)

    def release_held(self) -> None:
        ready = [job for job in self.held if job.gate is not None and os.path.exists(job.gate)]
        for job in ready:
            self.held.remove(job)
            self.finish(job)


def main() -> None:
    worker = TaskWorker()
    stdin = sys.stdin.buffer.fileno()
    pending = b""
    try:
        while True:
            readable, _, _ = select.select([stdin], [], [], POLL_S if worker.held else None)
            if readable:
                data = os.read(stdin, 65536)
                if not data:
                    return  # EOF: the bridge is stopping us
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        worker.handle(line)
            worker.release_held()
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the bridge went away or we were interrupted


if __name__ == "__main__":
    main()
