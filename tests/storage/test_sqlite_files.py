"""The SQLite store lays out its write-ahead log before writing, and never touches a live one."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from storage_entries import assert_same, history, session_id

from pymacp.storage import SqliteStore, files
from pymacp.storage.files import SIZE_BYTES, log_path, preallocate_log

SID = session_id(1)


def scratch_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".pymacp-new"))


def test_a_new_store_writes_its_log_over_a_file_laid_out_in_advance(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    entries = history(SID, 40)

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            assert log_path(path).stat().st_size == SIZE_BYTES
            for entry in entries:
                await store.append(SID, [entry], f"summary {entry.index}")
            # every commit went over the zeros: the file did not grow
            assert log_path(path).stat().st_size == SIZE_BYTES
            assert_same(await store.read(SID), entries)
        finally:
            await store.close()

    asyncio.run(main())
    assert scratch_files(tmp_path) == []


def test_appends_survive_a_crash_with_the_log_laid_out(tmp_path: Path) -> None:
    """A copy of the files taken while the store is open is what a crash leaves on disk."""
    path, crashed = tmp_path / "macp.db", tmp_path / "crashed"
    entries = history(SID, 25)

    async def write_then_copy() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            for entry in entries:
                await store.append(SID, [entry], "summary")
            crashed.mkdir()
            for source in (path, log_path(path)):
                shutil.copyfile(source, crashed / source.name)
        finally:
            await store.close()

    async def recover() -> None:
        store = SqliteStore(crashed / path.name)
        await store.open()
        try:
            assert_same(await store.read(SID), entries)
            await store.append(SID, history(SID, 26)[25:], "summary")  # and the log goes on
            assert len(await store.read(SID)) == 26
        finally:
            await store.close()

    asyncio.run(write_then_copy())
    assert log_path(crashed / path.name).stat().st_size == SIZE_BYTES  # the zeros after the frames too
    asyncio.run(recover())


def test_an_existing_log_is_left_alone(tmp_path: Path) -> None:
    database = tmp_path / "macp.db"
    database.write_bytes(b"pages")
    log_path(database).write_bytes(b"a log another process has open")
    assert preallocate_log(database) is False
    assert log_path(database).read_bytes() == b"a log another process has open"
    assert scratch_files(tmp_path) == []


def test_the_log_gets_the_permissions_of_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def open_and_close() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            assert os.stat(log_path(path)).st_mode & 0o777 == 0o640
        finally:
            await store.close()

    async def create() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()  # SQLite removes the log as the last connection closes

    asyncio.run(create())
    assert not log_path(path).exists()
    path.chmod(0o640)
    asyncio.run(open_and_close())


def test_without_room_for_it_no_log_is_laid_out(tmp_path: Path) -> None:
    database = tmp_path / "macp.db"
    database.write_bytes(b"pages")
    free = shutil.disk_usage(tmp_path).free
    assert preallocate_log(database, size=free) is False  # it wants several times the size free
    assert not log_path(database).exists()
    assert scratch_files(tmp_path) == []


def test_every_directory_a_new_store_adds_an_entry_to_is_synced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real_sync = files.sync_directory

    def recording_sync(directory: Path) -> None:
        synced.append(directory)
        real_sync(directory)

    laid_out: list[bool] = []
    real_preallocate = files.preallocate_log

    def recording_preallocate(database: Path) -> bool:
        laid_out.append(real_preallocate(database))
        return laid_out[-1]

    monkeypatch.setattr(files, "sync_directory", recording_sync)
    monkeypatch.setattr(files, "preallocate_log", recording_preallocate)
    data = tmp_path / "a" / "b"

    async def open_and_close() -> None:
        store = SqliteStore(data / "macp.db")
        await store.open()
        await store.close()

    asyncio.run(open_and_close())
    # the database and its log in b, b in a, a in tmp_path: each directory once
    assert sorted(synced) == sorted([data, data.parent, tmp_path])
    synced.clear()
    asyncio.run(open_and_close())  # a clean close removed the log: reopening lays out a new one
    assert synced == ([data] if laid_out[-1] else [])  # (not on a disk short of room for it)
