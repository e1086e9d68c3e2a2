"""An acknowledged append survives SIGKILL, and nothing is ever half-applied.

A child process appends to a SqliteStore from many concurrent sessions as fast as it
can and prints ``<session> <last index>`` after each ``append`` returns, which is the
moment the runtime would acknowledge. The parent reads a few hundred of those, kills the
child with SIGKILL (usually mid-batch, mid-fsync), collects every acknowledgement the child
managed to write before it died, reopens the store and checks that:

* every acknowledged entry is stored and intact;
* every stored history is exactly the expected entries 0..n-1 (contiguous, undamaged);
* every stored history ends on the boundary of one append call (no call half-applied).

This runs for a few rounds, each child continuing the histories the last kill left.
Each append call carries 1 to 3 entries, chosen from the index it starts at, so the parent
knows where the boundaries are.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from pathlib import Path

import pytest
from storage_entries import entries, history, session_id

from pymacp.storage import SqliteStore

HERE = Path(__file__).resolve().parent
SESSIONS = 16
ACKS_BEFORE_KILL = 300
ROUNDS = 3
READ_TIMEOUT_S = 60.0

CHILD = "import sys; sys.path.insert(0, sys.argv[1]); import test_crash; test_crash.child_main(sys.argv[2])"


def group_size(start: int) -> int:
    return 1 + start % 3


def boundaries(limit: int) -> set[int]:
    """History lengths at which one append call ends, up to ``limit``."""
    found = {0}
    length = 0
    while length < limit:
        length += group_size(length)
        found.add(length)
    return found


def child_main(path: str) -> None:
    """Run in the child: append forever, acknowledging each call on stdout."""

    async def writer(store: SqliteStore, sid: str) -> None:
        start = len(await store.read(sid))  # a later round continues what survived the last kill
        stream = itertools.islice(entries(sid), start, None)
        while True:
            batch = list(itertools.islice(stream, group_size(start)))
            await store.append(sid, batch)
            start += len(batch)
            sys.stdout.write(f"{sid} {start - 1}\n")
            sys.stdout.flush()

    async def main() -> None:
        store = SqliteStore(Path(path))
        await store.open()
        await asyncio.gather(*(writer(store, session_id(n)) for n in range(SESSIONS)))

    asyncio.run(main())


async def run_and_kill(path: Path) -> dict[str, int]:
    """Start the child, let it acknowledge a few hundred appends, SIGKILL it.

    Returns the highest acknowledged index per session, counting every acknowledgement the
    child wrote before it died (the pipe keeps them), not only those read before the kill.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(HERE),
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    lines: list[bytes] = []
    try:
        while len(lines) < ACKS_BEFORE_KILL:
            line = await asyncio.wait_for(child.stdout.readline(), READ_TIMEOUT_S)
            if not line:
                problem = await child.stderr.read()
                pytest.fail(f"the child stopped before it was killed: {problem.decode(errors='replace')}")
            lines.append(line)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        rest = await child.stdout.read()
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    lines += rest.splitlines(keepends=True)
    acked: dict[str, int] = {}
    for line in lines:
        if line.endswith(b"\n"):  # a line cut short by the kill was never a complete acknowledgement
            sid, index = line.decode().split()
            acked[sid] = max(acked.get(sid, -1), int(index))
    return acked


async def stored_histories(path: Path) -> dict[str, list[object]]:
    store = SqliteStore(path)
    await store.open()
    try:
        return {sid: list(entries) async for sid, entries in store.sessions()}
    finally:
        await store.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "data" / "macp.db"
    acked: dict[str, int] = {}
    for _ in range(ROUNDS):  # each round reopens what the last kill left and continues it
        for sid, index in asyncio.run(run_and_kill(path)).items():
            acked[sid] = max(acked.get(sid, -1), index)
        assert len(acked) > 1, "the child should have acknowledged appends for several sessions"

        stored = asyncio.run(stored_histories(path))
        for sid, last_index in acked.items():
            assert sid in stored, f"session {sid} was acknowledged up to index {last_index} but is gone"
            assert len(stored[sid]) > last_index, (
                f"session {sid} was acknowledged up to index {last_index} "
                f"but only {len(stored[sid])} entries survived"
            )
        for sid, found in stored.items():
            assert found == history(sid, len(found)), f"session {sid} is damaged or not contiguous from 0"
            assert len(found) in boundaries(len(found)), f"session {sid} ends inside an append call"
