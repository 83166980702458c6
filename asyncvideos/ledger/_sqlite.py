"""``SQLiteLedger``: the embedded ledger, one SQLite file, stdlib ``sqlite3``.

Why the standard library's ``sqlite3`` and not ``aiosqlite``: aiosqlite is a
thread per connection that runs sqlite3 calls from a queue, which is what
this module does in about twenty lines, with no dependency, and with the
control a ledger needs over transactions (``BEGIN IMMEDIATE``) and the
connection's thread.

- **The event loop never blocks**: one connection, opened and used by one
  dedicated thread (a one-worker executor); each call is one job for it.
- **One writer at a time**: a write is one transaction taken with ``BEGIN
  IMMEDIATE``, so two processes on one file queue for the write lock
  (``busy_timeout``, 30 s by default) instead of failing half way; readers
  are never blocked (WAL mode).
- **Durable**: ``journal_mode=WAL`` with ``synchronous=FULL`` by default,
  so a committed write survives the process being killed (``kill -9``: WAL
  frames are in the operating system's hands once ``write()`` returned) and
  also the machine losing power (each commit is fsynced). ``"normal"``
  drops the fsync per commit: still safe against a killed process, not
  against a power cut, for about a quarter of the time per write.
- **Versioned**: ``schema_version`` and the numbered ``MIGRATIONS`` below;
  a file with a newer version is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._errors import LedgerError
from ._store import Change, Entry, Intent, LedgerStore, State, VideoOwnedError

__all__ = ["MIGRATIONS", "SQLiteLedger"]

T = TypeVar("T")
Synchronous = Literal["full", "normal"]

#: The schema, one migration per release of it: ``MIGRATIONS[n - 1]`` takes a
#: database from version ``n - 1`` to ``n``. Only ever appended to.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE jobs (
            key              TEXT PRIMARY KEY,
            operation        TEXT NOT NULL,
            fingerprint      TEXT NOT NULL,
            state            TEXT NOT NULL,
            model            TEXT,
            prompt           TEXT NOT NULL,
            size             TEXT,
            seconds          TEXT,
            source_video_id  TEXT,
            request          TEXT NOT NULL,
            video_id         TEXT UNIQUE,
            status           TEXT,
            error_code       TEXT,
            error_message    TEXT,
            expires_at       REAL,
            candidates       TEXT,
            target           TEXT,
            variant          TEXT,
            content_size     INTEGER,
            content_sha256   TEXT,
            downloaded_at    REAL,
            owner            TEXT,
            lease_expires_at REAL,
            created_at       REAL NOT NULL,
            updated_at       REAL NOT NULL
        )
        """,
        "CREATE INDEX jobs_by_state ON jobs (state, created_at, key)",
        "CREATE INDEX jobs_by_time ON jobs (created_at, key)",
    ),
)

_COLUMNS = (
    "key",
    "operation",
    "fingerprint",
    "state",
    "prompt",
    "created_at",
    "updated_at",
    "request",
    "model",
    "size",
    "seconds",
    "source_video_id",
    "video_id",
    "status",
    "error_code",
    "error_message",
    "expires_at",
    "candidates",
    "target",
    "variant",
    "content_size",
    "content_sha256",
    "downloaded_at",
    "owner",
    "lease_expires_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM jobs"
_TIMES = frozenset({"created_at", "updated_at", "expires_at", "downloaded_at", "lease_expires_at"})
#: Reset when a rejected entry's key is sent again: the new intent starts clean.
_CLEARED = (
    "video_id",
    "status",
    "error_code",
    "error_message",
    "expires_at",
    "candidates",
    "target",
    "variant",
    "content_size",
    "content_sha256",
    "downloaded_at",
)
_INTENT_COLUMNS = (
    "key",
    "operation",
    "fingerprint",
    "state",
    "model",
    "prompt",
    "size",
    "seconds",
    "source_video_id",
    "request",
    "owner",
    "lease_expires_at",
    "created_at",
    "updated_at",
)
_BEGIN = (
    f"INSERT INTO jobs ({', '.join(_INTENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _INTENT_COLUMNS)}) "
    "ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _INTENT_COLUMNS[1:])
    + ", "
    + ", ".join(f"{name} = NULL" for name in _CLEARED)
    + " WHERE jobs.state = 'rejected'"
)
#: SQLite's default limit on ``?`` parameters in one statement is 999 before 3.32.
_CHUNK = 500


def _instant(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else round(value.timestamp(), 6)


def _entry(row: Sequence[Any]) -> Entry:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _TIMES:
        values[name] = _instant(values[name])
    values["request"] = json.loads(values["request"])
    candidates = values["candidates"]
    values["candidates"] = () if candidates is None else tuple(json.loads(candidates))
    return Entry(**values)


def _column_value(name: str, value: Any) -> Any:
    if name in _TIMES:
        return _seconds(value)
    if name == "candidates":
        return None if not value else json.dumps(list(value))
    return value


def _placeholders(count: int) -> str:
    return ", ".join("?" for _ in range(count))


class SQLiteLedger(LedgerStore):
    """A job ledger in one SQLite file, for one host (any number of processes).

    ``path`` is the database file (created, with its folders, on first use).
    ``lease_seconds``: how long a claim (a POST in flight, a download) holds
    without renewal. ``synchronous``: ``"full"`` (each commit fsynced: survives
    a power cut) or ``"normal"`` (survives a killed process). ``busy_timeout``:
    seconds a write waits for another process's. ``clock``: the wall clock
    (Unix seconds) for timestamps and leases. Every call runs on the ledger's
    own thread, never blocking the event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease_seconds: float = 60.0,
        synchronous: Synchronous = "full",
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        text = os.fspath(path)
        if not text.strip() or text == ":memory:":
            raise ValueError(
                f"path must name a database file (a ledger outlives the process), got {text!r}"
            )
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise TypeError(f"busy_timeout must be seconds, got {type(busy_timeout).__name__}")
        if not (math.isfinite(busy_timeout) and busy_timeout >= 0):
            raise ValueError(f"busy_timeout must be >= 0 and finite, got {busy_timeout!r}")
        if not callable(clock):
            raise TypeError("clock must be callable")
        self.path = Path(text)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._opening: asyncio.Future[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    # -- the ledger's thread -----------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` on the ledger's thread; sqlite3 errors become
        ``LedgerError``."""
        if self._connection is None:
            await self.open()
        connection, executor = self._connection, self._executor
        if connection is None or executor is None:
            raise RuntimeError("this SQLiteLedger is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(_guarded, work, connection))

    @contextlib.contextmanager
    def _write(self, connection: sqlite3.Connection) -> Iterator[float]:
        """One write transaction (``BEGIN IMMEDIATE``): yields its time on the clock."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Microseconds, as a datetime holds them: an Entry's times read back
            # as the very floats stored, so (created_at, key) cursors are exact.
            yield round(self._clock(), 6)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("this SQLiteLedger is closed")
        if self._connection is not None:
            return
        if self._opening is not None:  # another task is opening it: wait for that
            await asyncio.shield(self._opening)
            return
        loop = asyncio.get_running_loop()
        self._opening = opening = loop.create_future()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asyncvideos-ledger")
        try:
            connection = await loop.run_in_executor(executor, self._connect)
        except BaseException as error:
            executor.shutdown(wait=False)
            self._opening = None
            opening.set_exception(error)
            opening.exception()  # retrieved: the waiters, if any, re-raise it
            raise
        self._connection, self._executor = connection, executor
        self._opening = None
        opening.set_result(None)

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; each write says BEGIN.
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"Cannot open the ledger {str(self.path)!r}: {exc}") from exc
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            _use_wal(connection, self.path)
            connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            self._migrate(connection)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"Cannot open the ledger {str(self.path)!r}: {exc}") from exc
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Apply the missing migrations in one transaction; refuse a newer schema."""
        latest = len(MIGRATIONS)
        with self._write(connection):
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            rows = connection.execute("SELECT version FROM schema_version").fetchall()
            if len(rows) > 1:
                raise LedgerError(
                    f"The ledger {str(self.path)!r} has {len(rows)} schema_version rows, not one"
                )
            version = int(rows[0][0]) if rows else 0
            if version > latest:
                raise LedgerError(
                    f"The ledger {str(self.path)!r} has schema version {version}, newer than "
                    f"this asyncvideos understands ({latest}): upgrade asyncvideos to use it"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    connection.execute(statement)
            if not rows:
                connection.execute("INSERT INTO schema_version (version) VALUES (?)", (latest,))
            elif version != latest:
                connection.execute("UPDATE schema_version SET version = ?", (latest,))

    async def close(self) -> None:
        self._closed = True
        connection, executor = self._connection, self._executor
        self._connection = self._executor = None
        if connection is None or executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, connection.close)
        finally:
            executor.shutdown(wait=False)

    @property
    def schema_version(self) -> int:
        """The schema version this code writes (``len(MIGRATIONS)``)."""
        return len(MIGRATIONS)

    # -- reads -------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        def work(connection: sqlite3.Connection) -> Entry | None:
            row = connection.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
            return None if row is None else _entry(row)

        return await self._run(work)

    async def find(self, video_id: str) -> Entry | None:
        def work(connection: sqlite3.Connection) -> Entry | None:
            row = connection.execute(f"{_SELECT} WHERE video_id = ?", (video_id,)).fetchone()
            return None if row is None else _entry(row)

        return await self._run(work)

    async def select(
        self,
        *,
        states: Collection[State] | None = None,
        since: datetime | None = None,
        after: Entry | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        conditions: list[str] = []
        parameters: list[Any] = []
        if states is not None:
            chosen = sorted(states)
            if not chosen:
                return []
            conditions.append(f"state IN ({_placeholders(len(chosen))})")
            parameters.extend(chosen)
        if since is not None:
            conditions.append("created_at >= ?")
            parameters.append(_seconds(since))
        if after is not None:
            conditions.append("(created_at > ? OR (created_at = ? AND key > ?))")
            moment = _seconds(after.created_at)
            parameters.extend((moment, moment, after.key))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        statement = f"{_SELECT}{where} ORDER BY created_at, key LIMIT ?"
        parameters.append(limit)

        def work(connection: sqlite3.Connection) -> list[Entry]:
            return [_entry(row) for row in connection.execute(statement, parameters)]

        return await self._run(work)

    async def owned(self, video_ids: Collection[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(video_ids))

        def work(connection: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = _placeholders(len(chunk))
                rows = connection.execute(
                    f"SELECT video_id, key FROM jobs WHERE video_id IN ({marks})", chunk
                )
                found.update((video_id, key) for video_id, key in rows)
            return found

        return await self._run(work) if ids else {}

    # -- writes ------------------------------------------------------------

    async def begin(self, intent: Intent, *, owner: str) -> tuple[Entry, bool]:
        request = json.dumps(intent.request, sort_keys=True, separators=(",", ":"))

        def work(connection: sqlite3.Connection) -> tuple[Entry, bool]:
            with self._write(connection) as now:
                values = (
                    intent.key,
                    intent.operation,
                    intent.fingerprint,
                    "intent",
                    intent.model,
                    intent.prompt,
                    intent.size,
                    intent.seconds,
                    intent.source_video_id,
                    request,
                    owner,
                    round(now + self.lease_seconds, 6),
                    now,
                    now,
                )
                written = connection.execute(_BEGIN, values).rowcount == 1
                row = connection.execute(f"{_SELECT} WHERE key = ?", (intent.key,)).fetchone()
            return _entry(row), written

        return await self._run(work)

    async def claim(
        self,
        key: str,
        *,
        owner: str,
        states: Collection[State],
        replacing: str | None = None,
        change: Change | None = None,
    ) -> Entry | None:
        columns = {} if change is None else change.columns()
        chosen = sorted(states)

        def work(connection: sqlite3.Connection) -> Entry | None:
            with self._write(connection) as now:
                sets = ["owner = ?", "lease_expires_at = ?", "updated_at = ?"]
                parameters: list[Any] = [owner, round(now + self.lease_seconds, 6), now]
                for name, value in columns.items():
                    sets.append(f"{name} = ?")
                    parameters.append(_column_value(name, value))
                free = (
                    "owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ? "
                    "OR owner = ?"
                )
                parameters.extend([key, *chosen, now, owner])
                if replacing is not None:
                    free += " OR owner = ?"
                    parameters.append(replacing)
                statement = (
                    f"UPDATE jobs SET {', '.join(sets)} WHERE key = ? "
                    f"AND state IN ({_placeholders(len(chosen))}) AND ({free})"
                )
                return self._changed(connection, statement, parameters, key, columns)

        return await self._run(work) if chosen else None

    async def update(
        self,
        key: str,
        change: Change,
        *,
        states: Collection[State],
        owner: str | None = None,
    ) -> Entry | None:
        columns = change.columns()
        chosen = sorted(states)

        def work(connection: sqlite3.Connection) -> Entry | None:
            with self._write(connection) as now:
                sets = ["updated_at = ?"]
                parameters: list[Any] = [now]
                for name, value in columns.items():
                    sets.append(f"{name} = ?")
                    parameters.append(_column_value(name, value))
                if change.lease == "renew":
                    sets.append("lease_expires_at = ?")
                    parameters.append(round(now + self.lease_seconds, 6))
                elif change.lease == "release":
                    sets.append("owner = NULL, lease_expires_at = NULL")
                parameters.extend([key, *chosen])
                statement = (
                    f"UPDATE jobs SET {', '.join(sets)} WHERE key = ? "
                    f"AND state IN ({_placeholders(len(chosen))})"
                )
                if owner is not None:
                    statement += " AND owner = ?"
                    parameters.append(owner)
                return self._changed(connection, statement, parameters, key, columns)

        return await self._run(work) if chosen else None

    @staticmethod
    def _changed(
        connection: sqlite3.Connection,
        statement: str,
        parameters: Sequence[Any],
        key: str,
        columns: dict[str, Any],
    ) -> Entry | None:
        """Run one conditional UPDATE inside the open transaction; the row if it changed."""
        try:
            cursor = connection.execute(statement, parameters)
        except sqlite3.IntegrityError as exc:
            video_id = columns.get("video_id")
            if video_id is None:  # pragma: no cover - no other constraint can fail
                raise
            row = connection.execute("SELECT key FROM jobs WHERE video_id = ?", (video_id,))
            holder = row.fetchone()
            raise VideoOwnedError(video_id, None if holder is None else holder[0]) from exc
        if cursor.rowcount != 1:
            return None
        return _entry(connection.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone())


def _use_wal(connection: sqlite3.Connection, path: Path) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":  # pragma: no cover - a file system without WAL
        raise LedgerError(f"The ledger {str(path)!r} cannot use WAL mode ({mode})")


def _guarded(work: Callable[[sqlite3.Connection], T], connection: sqlite3.Connection) -> T:
    """``work(connection)`` with sqlite3's errors turned into ``LedgerError``."""
    try:
        return work(connection)
    except sqlite3.Error as exc:
        raise LedgerError(f"The ledger's database failed: {exc}") from exc
