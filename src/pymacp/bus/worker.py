"""One worker process: spawn it, write lines to its stdin, get its stdout lines, see it exit.

Usable on its own from any asyncio program::

    worker = await Worker.spawn("echo", 0, "python3", ("-m", "pymacp.bus.examples.echo_worker"),
                                on_line=lambda w, line: print(line), on_exit=lambda w, code: ...)
    worker.send(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    await worker.stop(timeout=5)

Contract:

- ``on_line(worker, line)`` gets every stdout line (bytes, without the newline) in order, on
  the event loop. Blank lines are skipped; a line longer than ``max_line`` is a protocol
  violation and the worker is killed (the kernel does the same).
- ``on_exit(worker, returncode)`` (optional; or await :meth:`Worker.wait`) is called exactly
  once, after every line the worker wrote before exiting has been delivered (a negative
  code is the signal that killed it).
- :meth:`Worker.send` never blocks; it queues (see :mod:`.flow`) and returns False once the
  worker is gone.
- stderr is inherited: the worker's logs interleave with the bus's own on its stderr.

Workers never outlive the bus. Each runs in its own process group (so a shell wrapper's
children are signalled too), is killed with its group when it exits or is stopped, and on
Linux is started with ``PR_SET_PDEATHSIG`` = SIGKILL, so the kernel kills it even when the
bus itself is SIGKILLed.

That needs a ``preexec_fn``, so workers are started with fork + exec. In a process where
gRPC is running, gRPC's fork handlers can abort such a child before it execs; a program
that uses gRPC and spawns workers (``pymacp agents``) must set
``GRPC_ENABLE_FORK_SUPPORT=0`` before gRPC starts. ``pymacp bus`` does not use gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from .flow import Inbox, Outbox
from .framing import LineSplitter, Oversize

log = logging.getLogger("pymacp.bus")

LineHandler = Callable[["Worker", bytes], None]
ExitHandler = Callable[["Worker", int], None]

# After the process exits, how long its stdout may stay open (held by a grandchild) before
# the bus stops waiting for more output; and how long a worker that closed its stdout may
# live on (it can no longer answer) before it is killed.
OUTPUT_GRACE_S = 1.0
PR_SET_PDEATHSIG = 1


def _pdeathsig() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when the bus dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec: no logging, no allocation
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the bus died before the signal was armed
            os._exit(1)

    return arm


class Worker:
    """A running worker process; create it with :meth:`spawn`."""

    def __init__(
        self,
        pool_id: str,
        slot: int,
        *,
        max_line: int,
        output_limit: int,
        stuck_after_s: float,
        on_line: LineHandler,
        on_exit: ExitHandler | None,
    ) -> None:
        self.pool_id = pool_id
        self.slot = slot
        self.name = f"{pool_id}#{slot}"
        self.pid: int | None = None
        self.returncode: int | None = None
        self.outbox = Outbox(output_limit, stuck_after_s, self._stuck)
        self.inbox = Inbox()
        self._on_line = on_line
        self._on_exit = on_exit
        self._splitter = LineSplitter(max_line)
        self._transport: asyncio.SubprocessTransport | None = None
        self._exit_code: int | None = None
        self._stdout_open = True
        self._grace: asyncio.TimerHandle | None = None
        self._exited = asyncio.get_running_loop().create_future()

    @classmethod
    async def spawn(
        cls,
        pool_id: str,
        slot: int,
        command: str,
        args: tuple[str, ...] = (),
        *,
        on_line: LineHandler,
        on_exit: ExitHandler | None = None,
        max_line: int = 10 * 2**20,
        output_limit: int = 40 * 2**20,
        stuck_after_s: float = 60.0,
    ) -> Worker:
        """Start ``command args...`` (PATH lookup, inherited env, cwd and stderr).

        Raises OSError when the command cannot be executed.
        """
        worker = cls(
            pool_id,
            slot,
            max_line=max_line,
            output_limit=output_limit,
            stuck_after_s=stuck_after_s,
            on_line=on_line,
            on_exit=on_exit,
        )
        loop = asyncio.get_running_loop()
        await loop.subprocess_exec(  # the protocol attaches the transport to the worker
            lambda: _WorkerProtocol(worker),
            command,
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            process_group=0,
            preexec_fn=_pdeathsig(),
        )
        return worker

    def _attach(self, transport: asyncio.SubprocessTransport) -> None:
        self._transport = transport
        self.pid = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        stdout = transport.get_pipe_transport(1)
        if isinstance(stdin, asyncio.WriteTransport):
            self.outbox.attach(stdin)
        if isinstance(stdout, asyncio.ReadTransport):
            self.inbox.attach(stdout)

    @property
    def alive(self) -> bool:
        return self.returncode is None and self._exit_code is None

    def send(self, line: bytes) -> bool:
        """Queue one line for the worker's stdin; False once the worker is gone."""
        return self.alive and self.outbox.write(line)

    async def wait(self) -> int:
        """The exit code, once the worker has exited and its last output was delivered."""
        return await asyncio.shield(self._exited)

    def close_stdin(self) -> None:
        """Close the worker's stdin once what is queued has been written: EOF asks it to exit."""
        self.outbox.close()

    def terminate(self) -> None:
        """Close the worker's stdin and SIGTERM its process group."""
        self.outbox.close()
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the worker's process group."""
        self._signal(signal.SIGKILL)

    async def stop(self, timeout: float) -> int:
        """Terminate, wait up to ``timeout`` seconds, then kill; returns the exit code."""
        if self.returncode is None:
            self.terminate()
            try:
                return await asyncio.wait_for(self.wait(), timeout)
            except TimeoutError:
                log.warning("worker %s ignored SIGTERM for %gs; killing it", self.name, timeout)
                self.kill()
        return await self.wait()

    def _signal(self, signum: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _stuck(self) -> None:
        log.error("worker %s has not read its stdin for too long; killing it", self.name)
        self.kill()

    # the protocol's events

    def _data(self, data: bytes) -> None:
        lines = self._splitter.feed(data)
        if lines:
            self._deliver(lines)

    def _deliver(self, lines: list[bytes | Oversize]) -> None:
        for line in lines:
            if isinstance(line, Oversize):
                log.error(
                    "worker %s wrote a line of %d bytes, over max_input_buffer=%d; killing it",
                    self.name,
                    line.size,
                    self._splitter.max_line,
                )
                self.kill()
                continue
            try:
                self._on_line(self, line)
            except Exception:  # a handler bug must not stop the other lines
                log.exception("handling a line from worker %s failed", self.name)

    def _stdout_closed(self) -> None:
        self._stdout_open = False
        self._deliver(self._splitter.end())
        if self._exit_code is not None:
            self._finish()
        elif self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(OUTPUT_GRACE_S, self.kill)

    def _process_exited(self, code: int) -> None:
        self._exit_code = code
        self.outbox.close()
        if self._grace is not None:
            self._grace.cancel()
        if self._stdout_open:
            self._grace = asyncio.get_running_loop().call_later(OUTPUT_GRACE_S, self._finish)
        else:
            self._finish()

    def _finish(self) -> None:
        if self.returncode is not None or self._exit_code is None:
            return
        if self._grace is not None:
            self._grace.cancel()
        self.returncode = self._exit_code
        self.kill()  # whatever the worker left running in its group goes with it
        if self._transport is not None:
            self._transport.close()
        self.outbox.resume_writing()  # release peers held by this worker's queue
        self._exited.set_result(self.returncode)
        if self._on_exit is None:
            return
        try:
            self._on_exit(self, self.returncode)
        except Exception:
            log.exception("handling the exit of worker %s failed", self.name)


class _WorkerProtocol(asyncio.SubprocessProtocol):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # before any other event: an instant exit is reported right after this
        if isinstance(transport, asyncio.SubprocessTransport):
            self.worker._attach(transport)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.worker._data(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.worker._stdout_closed()

    def process_exited(self) -> None:
        transport = self.worker._transport
        code = transport.get_returncode() if transport is not None else None
        self.worker._process_exited(code if code is not None else -1)

    def pause_writing(self) -> None:
        self.worker.outbox.pause_writing()

    def resume_writing(self) -> None:
        self.worker.outbox.resume_writing()
