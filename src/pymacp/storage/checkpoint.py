"""WAL checkpoints on their own thread, off the commit path.

SQLite copies the write-ahead log back into the database file in a *checkpoint*. Left to
itself it does that inside a COMMIT once the log passes 1,000 pages, so one unlucky commit
(and every caller batched with it) also pays for copying and fsyncing the database file:
a tail-latency spike every second or so under load. Here a separate connection runs a
PASSIVE checkpoint every ``interval`` seconds instead. PASSIVE never waits for the writer
or for readers, so commits and checkpoints proceed side by side; the writer rewinds the log
to its start once a checkpoint has copied all of it. The writer's own automatic checkpoint
stays on with a much higher threshold, as a bound on the log's size should this thread
ever fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("pymacp.storage")

CHECKPOINT_INTERVAL_S = 0.5
WRITER_AUTOCHECKPOINT_PAGES = 16_384  # about 64 MiB of log with 4 KiB pages


class Checkpointer:
    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        self.last_result: tuple[int, int, int] | None = None  # (busy, log frames, checkpointed frames)

    def start(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name="pymacp-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while not self._stop.wait(self._interval):
                try:
                    row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # the next round tries again; the writer's bound still holds
                    log.warning("background checkpoint of %s failed: %s", self._path, exc)
                    continue
                self.last_result = (int(row[0]), int(row[1]), int(row[2]))
                self.checkpoints += 1
        finally:
            connection.close()
