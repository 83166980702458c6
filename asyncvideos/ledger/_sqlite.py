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
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._errors import LedgerError
from ._columns import CLEARED, COLUMNS, REWRITTEN, TIMES
from ._store import FINISHED, Change, Entry, Intent, LedgerStore, State, VideoOwnedError, check_age
from ._worker import Work, Worker, micro

__all__ = ["MIGRATIONS", "SQLiteLedger"]

logger = logging.getLogger("asyncvideos")
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

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"
#: Writes read the row they wrote in the same statement where SQLite can (3.35+).
_RETURNING = f" RETURNING {', '.join(COLUMNS)}" if sqlite3.sqlite_version_info >= (3, 35) else ""
#: The columns of an intent that may be None (written as NULL when they are).
_OPTIONAL = ("model", "size", "seconds", "source_video_id")
#: ``Intent.request`` as stored: canonical JSON, by an encoder made once.
_REQUEST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=16)
def _begin_statement(given: tuple[str, ...]) -> str:
    """``begin``'s one statement, for the optional columns ``given`` (the others NULL)."""
    bound = ("key", "operation", "fingerprint", "prompt", "request", "owner", *given)
    bound += ("lease_expires_at", "created_at", "updated_at")
    nulls = tuple(name for name in _OPTIONAL if name not in given)
    names = (*bound, "state", *nulls)
    values = ("?",) * len(bound) + ("'intent'",) + ("NULL",) * len(nulls)
    return (
        f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join(values)}) "
        "ON CONFLICT (key) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in REWRITTEN)
        + ", "
        + ", ".join(f"{name} = NULL" for name in CLEARED)
        + " WHERE jobs.state = 'rejected'"
    )


#: SQLite's default limit on ``?`` parameters in one statement is 999 before 3.32.
_CHUNK = 500


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else micro(value.timestamp())


class _Request(Mapping[str, Any]):
    """``Entry.request``, parsed from its JSON only when it is read (most are not)."""

    __slots__ = ("_parsed", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._parsed: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = json.loads(self._text)
        return self._parsed

    def __getitem__(self, name: str) -> Any:
        return self._data()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())


_TIMED = tuple(index for index, name in enumerate(COLUMNS) if name in TIMES)
_REQUEST = COLUMNS.index("request")
_CANDIDATES = COLUMNS.index("candidates")


def _entry(row: Sequence[Any]) -> Entry:
    values = list(row)
    for index in _TIMED:
        if values[index] is not None:
            values[index] = datetime.fromtimestamp(values[index], timezone.utc)
    values[_REQUEST] = _Request(values[_REQUEST])
    candidates = values[_CANDIDATES]
    values[_CANDIDATES] = () if candidates is None else tuple(json.loads(candidates))
    return Entry(*values)


def _column_value(name: str, value: Any) -> Any:
    if name in TIMES:
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
        self.path: Path = Path(text)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout: float = float(busy_timeout)
        self._clock = clock
        self._worker: Worker | None = None
        self._opening: asyncio.Future[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    # -- the ledger's thread -----------------------------------------------

    async def _run(self, work: Work[T], *, write: bool = False) -> T:
        """Run ``work(connection, now)`` on the ledger's thread (``write``: inside a
        write transaction, ``now`` its time); sqlite3 errors become ``LedgerError``."""
        worker = self._worker
        if worker is None:
            await self.open()
            worker = self._worker
            assert worker is not None
        try:
            return await worker.run(work, write=write)
        except sqlite3.Error as exc:
            raise LedgerError(f"The ledger's database failed: {exc}") from exc

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("this SQLiteLedger is closed")
        if self._worker is not None:
            return
        if self._opening is not None:  # another task is opening it: wait for that
            await asyncio.shield(self._opening)
            return
        loop = asyncio.get_running_loop()
        self._opening = opening = loop.create_future()
        worker = Worker(self._connect, self._clock)
        try:
            await worker.start()
        except BaseException as error:
            worker.stop()  # the thread ends; the next open() starts another
            self._opening = None
            opening.set_exception(error)
            opening.exception()  # retrieved: the waiters, if any, re-raise it
            raise
        self._worker = worker
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
            connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            self._set_up(connection)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"Cannot open the ledger {str(self.path)!r}: {exc}") from exc
            raise
        return connection

    def _set_up(self, connection: sqlite3.Connection) -> None:
        """WAL mode and the schema, retried while another process holds the lock.

        SQLite answers "database is locked" at once, not after ``busy_timeout``,
        where waiting could deadlock: two processes switching a new file to WAL
        together (seen under load in the crash harness). Retrying is safe: each
        attempt is one statement or one transaction.
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                _use_wal(connection, self.path)
                self._migrate(connection)
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)  # on the ledger's own thread, never the event loop's
            pause = min(pause * 2, 0.25)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Apply the missing migrations in one transaction; refuse a newer schema."""
        latest = len(MIGRATIONS)
        with _transaction(connection):
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
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stopped()

    @property
    def schema_version(self) -> int:
        """The schema version this code writes (``len(MIGRATIONS)``)."""
        return len(MIGRATIONS)

    # -- reads -------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        def work(connection: sqlite3.Connection, _: float | None) -> Entry | None:
            row = connection.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
            return None if row is None else _entry(row)

        return await self._run(work)

    async def find(self, video_id: str) -> Entry | None:
        def work(connection: sqlite3.Connection, _: float | None) -> Entry | None:
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

        def work(connection: sqlite3.Connection, _: float | None) -> list[Entry]:
            return [_entry(row) for row in connection.execute(statement, parameters)]

        return await self._run(work)

    async def owned(self, video_ids: Collection[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(video_ids))

        def work(connection: sqlite3.Connection, _: float | None) -> dict[str, str]:
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
        request = _REQUEST_JSON.encode(intent.request)
        given = tuple(name for name in _OPTIONAL if getattr(intent, name) is not None)
        statement = _begin_statement(given)
        values = (
            intent.key,
            intent.operation,
            intent.fingerprint,
            intent.prompt,
            request,
            owner,
            *(getattr(intent, name) for name in given),
        )
        lease_seconds = self.lease_seconds

        def work(connection: sqlite3.Connection, now: float | None) -> float | Entry:
            assert now is not None
            written = connection.execute(statement, (*values, micro(now + lease_seconds), now, now))
            if written.rowcount == 1:
                return now  # the row is what was sent: no need to read it back
            row = connection.execute(f"{_SELECT} WHERE key = ?", (intent.key,)).fetchone()
            return _entry(row)

        done = await self._run(work, write=True)
        if isinstance(done, Entry):
            return done, False
        return _begun(intent, request, owner, done, micro(done + lease_seconds)), True

    async def claim(
        self,
        key: str,
        *,
        owner: str,
        states: Collection[State],
        replacing: str | None = None,
        change: Change | None = None,
    ) -> Entry | None:
        terms, values = _assignments(change)
        chosen = tuple(sorted(states))
        statement = _claim_statement(terms, len(chosen), replacing is not None)
        video_id = None if change is None else change.video_id

        def work(connection: sqlite3.Connection, now: float | None) -> Entry | None:
            assert now is not None
            parameters: list[Any] = [owner, micro(now + self.lease_seconds), now, *values]
            parameters.extend([key, *chosen, now, owner])
            if replacing is not None:
                parameters.append(replacing)
            return _changed(connection, statement, parameters, key, video_id)

        return await self._run(work, write=True) if chosen else None

    async def record(
        self,
        key: str,
        change: Change,
        *,
        states: Collection[State],
        owner: str | None = None,
    ) -> bool:
        chosen = tuple(sorted(states))
        if not chosen:
            return False
        statement, parameters = self._write(key, change, chosen, owner, returning=False)

        def work(connection: sqlite3.Connection, now: float | None) -> bool:
            assert now is not None
            try:
                return connection.execute(statement, parameters(now)).rowcount == 1
            except sqlite3.IntegrityError as exc:
                raise _owned(connection, change.video_id, exc) from exc

        return await self._run(work, write=True)

    async def purge(self, *, older_than: timedelta) -> int:
        """Delete finished entries (``failed``, ``downloaded``, ``expired``,
        ``rejected``) not written for ``older_than``; how many were deleted.
        Unfinished entries are never purged, however old."""
        age = check_age(older_than).total_seconds()
        finished = tuple(sorted(FINISHED))
        statement = (
            f"DELETE FROM jobs WHERE state IN ({_placeholders(len(finished))}) AND updated_at < ?"
        )

        def work(connection: sqlite3.Connection, now: float | None) -> int:
            assert now is not None
            return connection.execute(statement, (*finished, micro(now - age))).rowcount

        return await self._run(work, write=True)

    async def flush(self) -> None:
        if self._worker is not None:  # a call goes after the writes held before it
            await self._run(_nothing)

    async def note(self, key: str, change: Change, *, states: Collection[State]) -> None:
        worker = self._worker
        if worker is None:  # not open yet: the ordinary way opens it
            await super().note(key, change, states=states)
            return
        statement, parameters = self._write(key, change, tuple(sorted(states)), None)

        def work(connection: sqlite3.Connection, now: float | None) -> None:
            assert now is not None
            connection.execute(statement, parameters(now))

        def failed(error: BaseException) -> None:
            logger.warning("The ledger could not record a status of %s: %s", key, error)

        worker.post(work, failed)

    async def update(
        self,
        key: str,
        change: Change,
        *,
        states: Collection[State],
        owner: str | None = None,
    ) -> Entry | None:
        chosen = tuple(sorted(states))
        if not chosen:
            return None
        statement, parameters = self._write(key, change, chosen, owner, returning=True)

        def work(connection: sqlite3.Connection, now: float | None) -> Entry | None:
            assert now is not None
            return _changed(connection, statement, parameters(now), key, change.video_id)

        return await self._run(work, write=True)

    def _write(
        self,
        key: str,
        change: Change,
        states: tuple[str, ...],
        owner: str | None,
        *,
        returning: bool = False,
    ) -> tuple[str, Callable[[float], list[Any]]]:
        """One conditional UPDATE of ``key``: its statement, and its parameters
        given the transaction's time (``updated_at``, a renewed lease's expiry)."""
        terms, values = _assignments(change)
        owned = owner is not None
        statement = _update_statement(terms, change.lease, len(states), owned, returning)
        where = [key, *states] if owner is None else [key, *states, owner]
        renew = self.lease_seconds if change.lease == "renew" else None

        def parameters(now: float) -> list[Any]:
            if renew is None:
                return [now, *values, *where]
            return [now, *values, micro(now + renew), *where]

        return statement, parameters


def _begun(intent: Intent, request: str, owner: str, now: float, lease: float) -> Entry:
    """The entry ``begin`` wrote: exactly the row (``_entry`` of it reads the same)."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    return Entry(
        key=intent.key,
        operation=intent.operation,
        fingerprint=intent.fingerprint,
        state="intent",
        prompt=intent.prompt,
        created_at=moment,
        updated_at=moment,
        request=_Request(request),
        model=intent.model,
        size=intent.size,
        seconds=intent.seconds,
        source_video_id=intent.source_video_id,
        owner=owner,
        lease_expires_at=datetime.fromtimestamp(lease, timezone.utc),
    )


def _assignments(change: Change | None) -> tuple[tuple[str, ...], list[Any]]:
    """``change``'s columns as ``SET`` terms, and the values they bind. A None is
    written as ``NULL`` in the statement, not bound: sqlite3 binds None through
    its adapters' lookup, the dearest kind of parameter (a microsecond each)."""
    terms: list[str] = []
    values: list[Any] = []
    if change is not None:
        for name, value in change.columns().items():
            stored = _column_value(name, value)
            if stored is None:
                terms.append(f"{name} = NULL")
            else:
                terms.append(f"{name} = ?")
                values.append(stored)
    return tuple(terms), values


@functools.lru_cache(maxsize=256)
def _update_statement(
    terms: tuple[str, ...], lease: str, states: int, owned: bool, returning: bool
) -> str:
    sets = ["updated_at = ?", *terms]
    if lease == "renew":
        sets.append("lease_expires_at = ?")
    elif lease == "release":
        sets.append("owner = NULL, lease_expires_at = NULL")
    statement = (
        f"UPDATE jobs SET {', '.join(sets)} WHERE key = ? AND state IN ({_placeholders(states)})"
    )
    statement = statement + " AND owner = ?" if owned else statement
    return statement + _RETURNING if returning else statement


@functools.lru_cache(maxsize=256)
def _claim_statement(terms: tuple[str, ...], states: int, replacing: bool) -> str:
    sets = ["owner = ?", "lease_expires_at = ?", "updated_at = ?", *terms]
    free = "owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ? OR owner = ?"
    if replacing:
        free += " OR owner = ?"
    return (
        f"UPDATE jobs SET {', '.join(sets)} WHERE key = ? "
        f"AND state IN ({_placeholders(states)}) AND ({free})" + _RETURNING
    )


def _changed(
    connection: sqlite3.Connection,
    statement: str,
    parameters: Sequence[Any],
    key: str,
    video_id: str | None,
) -> Entry | None:
    """Run one conditional UPDATE inside the open transaction; the row if it changed."""
    try:
        cursor = connection.execute(statement, parameters)
    except sqlite3.IntegrityError as exc:
        raise _owned(connection, video_id, exc) from exc
    if _RETURNING:
        rows = cursor.fetchall()  # the statement is finished before the commit
        return _entry(rows[0]) if rows else None
    if cursor.rowcount != 1:  # pragma: no cover - SQLite before 3.35
        return None
    return _entry(
        connection.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
    )  # pragma: no cover


def _owned(
    connection: sqlite3.Connection, video_id: str | None, exc: sqlite3.IntegrityError
) -> Exception:
    """The ``VideoOwnedError`` a unique ``video_id`` raised (no other constraint can)."""
    if not video_id:  # pragma: no cover - no other constraint can fail
        return exc
    holder = connection.execute("SELECT key FROM jobs WHERE video_id = ?", (video_id,)).fetchone()
    return VideoOwnedError(video_id, None if holder is None else holder[0])


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """A write transaction of its own (for migrations, before the thread serves)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _use_wal(connection: sqlite3.Connection, path: Path) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":  # pragma: no cover - a file system without WAL
        raise LedgerError(f"The ledger {str(path)!r} cannot use WAL mode ({mode})")


def _nothing(connection: sqlite3.Connection, now: float | None) -> None:
    """A call that does nothing: the writes held before it are written first."""
