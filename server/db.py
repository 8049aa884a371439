"""SQLite access through aiosqlite: one writer, one reader, WAL mode.

All writes go through `Database.transaction()`, which serialises writers with
an asyncio lock and runs `BEGIN IMMEDIATE`, so a read-check-write sequence
inside one transaction is atomic for this process. Callbacks registered with
`Transaction.after_commit` run once the commit succeeded, in commit order,
while the lock is still held; the event broker relies on that ordering.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from server.migrations import MIGRATIONS

log = structlog.get_logger(__name__)

Row = aiosqlite.Row
Params = Iterable[Any] | dict[str, Any]


class Transaction:
    """An open write transaction on the writer connection."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._after_commit: list[Callable[[], None]] = []

    # Each method below costs one hop to the connection's thread: cursors are
    # left to the garbage collector instead of being closed with another hop.
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement and return the last inserted rowid."""
        cursor = await self._connection.execute(sql, params)
        return cursor.lastrowid or 0

    async def execute_rowcount(self, sql: str, params: Params = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        cursor = await self._connection.execute(sql, params)
        return cursor.rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._connection.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._connection.execute_fetchall(sql, params))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` after a successful commit, before the lock is released."""
        self._after_commit.append(callback)


class Database:
    """The SQLite file: a writer connection behind a lock and a reader connection."""

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating if needed) the database file and apply migrations."""
        if not await asyncio.to_thread(_usable_file_path, Path(path)):
            raise OSError(
                f"cannot open database {str(path)!r}: give a file path in an existing folder"
            )
        writer = await _connect(path)
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException:
            # aiosqlite's thread would otherwise keep the process alive.
            await writer.close()
            raise
        return cls(Path(path), writer, reader)

    async def close(self) -> None:
        async with self._write_lock:
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Open a write transaction; commit on success, roll back on error.

        A cancelled caller cannot leave the connection inside a transaction:
        statements run in order on aiosqlite's thread, so the rollback (or the
        commit and its callbacks) queued here still runs after whatever the
        cancelled await had started.
        """
        async with self._write_lock:
            transaction = Transaction(self._writer)
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                yield transaction
            except BaseException:
                await asyncio.shield(asyncio.ensure_future(self._rollback()))
                raise
            commit = asyncio.ensure_future(self._writer.commit())
            commit.add_done_callback(
                lambda done: _run_after_commit(done, transaction._after_commit)
            )
            await asyncio.shield(commit)

    async def execute_alone(self, sql: str, params: Params = ()) -> None:
        """Run one write statement as its own transaction, in a single hop.

        For a change that needs no read, no event and no other statement;
        SQLite commits it on its own because the connection is in autocommit
        mode outside BEGIN.
        """
        async with self._write_lock:
            await asyncio.shield(
                asyncio.ensure_future(self._writer.execute(sql, params))
            )

    async def _rollback(self) -> None:
        try:
            await self._writer.rollback()
        except sqlite3.OperationalError:
            # BEGIN itself failed, so there is no transaction to roll back.
            log.warning("rollback_without_transaction")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Read one row on the reader connection, which reads committed data only."""
        rows = await self._reader.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._reader.execute_fetchall(sql, params))


def _run_after_commit(
    commit: asyncio.Future[None], callbacks: list[Callable[[], None]]
) -> None:
    if commit.cancelled() or commit.exception() is not None:
        return
    for callback in callbacks:
        callback()


def _usable_file_path(path: Path) -> bool:
    return path.parent.is_dir() and not path.is_dir()


async def _connect(path: str | Path) -> aiosqlite.Connection:
    # isolation_level=None: transactions are opened explicitly with BEGIN.
    connection = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        await connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        await connection.close()
        raise
    return connection


async def _migrate(connection: aiosqlite.Connection) -> None:
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    async with connection.execute(
        "SELECT MAX(version) FROM schema_migrations"
    ) as cursor:
        row = await cursor.fetchone()
    current = row[0] if row and row[0] is not None else 0
    for version, script in enumerate(MIGRATIONS, start=1):
        if version <= current:
            continue
        await connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_statements(script):
                await connection.execute(statement)
            await connection.execute(
                "INSERT INTO schema_migrations (version, applied_at)"
                " VALUES (?, CAST(strftime('%s','now') AS INTEGER) * 1000)",
                (version,),
            )
        except BaseException:
            await connection.rollback()
            raise
        await connection.commit()
        log.info("migration_applied", version=version)


def _split_statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
