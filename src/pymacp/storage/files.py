"""The SQLite store's files: new directories made durable, and the log laid out in advance.

Every commit appends its pages to the write-ahead log and ``fdatasync``s it. While the log
file is growing, each of those syncs must also journal the file's new size and blocks,
which on ext4 roughly doubles its cost (on this project's virtual disks: 190–270 µs a sync
against 115–130 µs for the same write over blocks already on disk, and sync stalls of
2–4 ms instead of under 0.4 ms). SQLite deletes the log when the last connection closes,
grows it again from nothing on the next start, and rewinds it to its start only once it has
been checkpointed up to the writer's bound; so every run of the runtime would pay the
growing cost for its first ``WRITER_AUTOCHECKPOINT_PAGES`` pages of log (64 MiB).

So before the store opens its first connection, :func:`preallocate_log` writes a log file
of zeros of that size, if there is no log file yet. SQLite reads a log whose header is not
valid (all zeros) as an empty log: it writes its own header and frames over the zeros, and
recovery after a crash stops at the first frame whose salt and checksum do not match, as it
does over the remains of an older log. Nothing SQLite has written is ever touched: the file
is filled under another name and linked into place only if no log exists (``os.link``
fails if one does), and an existing log (one another process has open, or a crash left) is
left alone. If anything goes wrong (too little space, no hard links, no permission), the
store starts without it, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from .checkpoint import WRITER_AUTOCHECKPOINT_PAGES

log = logging.getLogger("pymacp.storage")

_HEADER_BYTES = 32  # the WAL header; each frame then has a 24-byte header and one page
_PAGE_BYTES = 4096  # SQLite's default page size, which the store uses
SIZE_BYTES = _HEADER_BYTES + WRITER_AUTOCHECKPOINT_PAGES * (24 + _PAGE_BYTES)
_CHUNK = b"\0" * (1 << 20)
_SPARE_FACTOR = 4  # only on a file system with at least this many times the size free


def log_path(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


def preallocate_log(database: Path, size: int = SIZE_BYTES) -> bool:
    """Lay out ``database``'s log as ``size`` bytes of zeros unless it has one; whether it did.

    Call only before opening a connection to ``database``, and only for a database that has
    pages (SQLite deletes the log of an empty database when it opens it). When it did, the
    caller makes the new directory entry durable (:func:`sync_directory`): SQLite syncs the
    directory only for a log it creates itself.
    """
    target = log_path(database)
    if target.exists():
        return False
    scratch = target.with_name(target.name + ".pymacp-new")
    try:
        stats = os.statvfs(database.parent)
        if stats.f_bavail * stats.f_frsize < _SPARE_FACTOR * size:
            log.debug("not laying out the log of %s: too little free space", database)
            return False
        _write_zeros(scratch, size, os.stat(database).st_mode & 0o777)
        os.link(scratch, target)  # fails if a log appeared meanwhile: that one is SQLite's
    except OSError as exc:
        log.debug("not laying out the log of %s: %s", database, exc)
        return False
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()
    return True


def _write_zeros(path: Path, size: int, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # as the database file, whatever the umask
        written = 0
        while written < size:
            written += os.write(descriptor, _CHUNK[: min(len(_CHUNK), size - written)])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_directory(directory: Path) -> None:
    """Make ``directory``'s entries (a file created or linked there) durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_directories(directory: Path) -> list[Path]:
    """Create ``directory`` if needed; return the directories whose entries changed."""
    missing: list[Path] = []
    current = directory
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    directory.mkdir(parents=True, exist_ok=True)
    return [path.parent for path in missing]


def has_pages(database: Path) -> bool:
    """Whether ``database`` exists and is not empty (SQLite drops an empty database's log)."""
    return database.exists() and database.stat().st_size > 0
