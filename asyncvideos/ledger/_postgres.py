"""``PostgresLedger``: the fleet's ledger, one PostgreSQL database for every worker.

Needs the ``postgres`` extra (psycopg 3 and psycopg-pool; ``docs/guide/fleets.md``
says why that driver); imported only when a PostgreSQL ledger is made.

Every rule of ``LedgerStore`` is decided by the database, with any number of
processes on it:

- **At most one entry per key**: ``INSERT ... ON CONFLICT (key) DO UPDATE ...
  WHERE jobs.state = 'rejected'``, so N workers beginning one key at once write
  one intent; ``video_id`` is ``UNIQUE``, so a server job has one entry.
- **Leases**: ``claim`` and ``update`` are one conditional ``UPDATE``; under
  PostgreSQL's row locks a second claimant waits for the first's commit and then
  re-reads the row, so exactly one wins, and an expired lease (``lease_expires_at
  <= now()`` on the server's clock) is taken over by one worker. ``claim_next``
  takes several free entries in one statement with ``FOR UPDATE SKIP LOCKED``: a
  worker never blocks on another's claim, and two never take the same entry.
- **Events reach every process**: ``record_status`` writes a webhook's status and
  ``NOTIFY``-s the channel ``asyncvideos_jobs`` with the job's id in the same
  transaction, so every listening process hears of it once it is committed.
- **Versioned**: ``schema_version`` and the numbered ``MIGRATIONS`` below, applied
  under an advisory lock (workers starting together migrate once); a database
  with a newer version is refused.

Connections come from a psycopg ``AsyncConnectionPool``: the ledger's own, made
from a URL, or one the application already has (``pool=``, borrowed, never
closed). Server-side prepared statements are off by default
(``prepare_threshold=None``), which a pooler in transaction mode such as
PgBouncer needs; every operation is one transaction, which such a pooler keeps
on one server connection.

Table layout (PostgreSQL's types for the layout in ``_store.py``)::

    CREATE TABLE schema_version (version INTEGER NOT NULL);   -- exactly one row
    CREATE TABLE jobs (
        key TEXT PRIMARY KEY, operation TEXT NOT NULL, fingerprint TEXT NOT NULL,
        state TEXT NOT NULL, model TEXT, prompt TEXT NOT NULL, size TEXT,
        seconds TEXT, source_video_id TEXT, request JSONB NOT NULL,
        video_id TEXT UNIQUE, status TEXT, error_code TEXT, error_message TEXT,
        expires_at TIMESTAMPTZ, candidates JSONB, target TEXT, variant TEXT,
        content_size BIGINT, content_sha256 TEXT, downloaded_at TIMESTAMPTZ,
        owner TEXT, lease_expires_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX jobs_by_state ON jobs (state, created_at, key);
    CREATE INDEX jobs_by_time ON jobs (created_at, key);
    CREATE INDEX jobs_finished ON jobs (updated_at) WHERE state IN (<finished>);
    -- and rate_budgets, the fleet's rate budgets (asyncvideos/ledger/_postgres_budget.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

from .._errors import LedgerError
from .._webhooks import WebhookReceiver
from ._columns import COLUMNS
from ._postgres_budget import CREATE_TABLE as CREATE_RATE_BUDGETS
from ._postgres_budget import CREATE_TABLE_V1 as CREATE_RATE_BUDGETS_V1
from ._postgres_budget import PostgresBudgetStore
from ._postgres_events import EventRelay
from ._postgres_rows import (
    ALL_COLUMNS,
    FREE_LEASE,
    LEASE,
    SELECT_JOBS,
    column_value,
    entry_of,
    in_states,
)
from ._postgres_writes import Begin, GroupedWrites, Write
from ._store import (
    FINISHED,
    Change,
    Entry,
    Intent,
    LedgerStore,
    State,
    VideoOwnedError,
    check_age,
)

__all__ = ["CHANNEL", "MIGRATIONS", "PostgresLedger", "ledger_from_url"]

logger = logging.getLogger("asyncvideos")

#: The NOTIFY channel of status changes recorded from webhook events.
CHANNEL = "asyncvideos_jobs"
#: Taken for the duration of a migration, so that workers starting at once
#: migrate one after the other (the second then finds nothing to do).
_MIGRATION_LOCK = 0x61767631  # "avv1"
_FINISHED_SQL = ", ".join(f"'{state}'" for state in sorted(FINISHED))


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
            request          JSONB NOT NULL,
            video_id         TEXT UNIQUE,
            status           TEXT,
            error_code       TEXT,
            error_message    TEXT,
            expires_at       TIMESTAMPTZ,
            candidates       JSONB,
            target           TEXT,
            variant          TEXT,
            content_size     BIGINT,
            content_sha256   TEXT,
            downloaded_at    TIMESTAMPTZ,
            owner            TEXT,
            lease_expires_at TIMESTAMPTZ,
            created_at       TIMESTAMPTZ NOT NULL,
            updated_at       TIMESTAMPTZ NOT NULL
        )
        """,
        "CREATE INDEX jobs_by_state ON jobs (state, created_at, key)",
        "CREATE INDEX jobs_by_time ON jobs (created_at, key)",
        f"CREATE INDEX jobs_finished ON jobs (updated_at) WHERE state IN ({_FINISHED_SQL})",
        CREATE_RATE_BUDGETS_V1,
    ),
    # The fleet's budget as one control loop (schedules rebuilt at events, a shared
    # AIMD estimate without headers): a new layout. A row is the next moments'
    # schedule only, relearned in seconds: dropped, not converted.
    ("DROP TABLE rate_budgets", CREATE_RATE_BUDGETS),
)


class PostgresLedger(LedgerStore):
    """A job ledger in a PostgreSQL database, shared by every process of a fleet.

    ``url`` is a libpq connection string (``postgresql://user@host/db``); or pass
    ``pool=``, a psycopg ``AsyncConnectionPool`` the application already has
    (borrowed: opened and closed by its owner). ``lease_seconds``: how long a
    claim holds without renewal. ``max_connections``: the size of the ledger's
    own pool. ``prepare_threshold``: psycopg's (None, the default: no server-side
    prepared statements, as PgBouncer in transaction mode needs). The ledger
    connects and migrates on first use.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        lease_seconds: float = 60.0,
        max_connections: int = 10,
        prepare_threshold: int | None = None,
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        if (url is None) == (pool is None):
            raise TypeError("PostgresLedger needs a url or a pool (one of them)")
        if url is not None and not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        if pool is not None and not isinstance(pool, AsyncConnectionPool):
            raise TypeError(
                f"pool must be a psycopg_pool.AsyncConnectionPool, got {type(pool).__name__}"
            )
        if type(max_connections) is not int or max_connections < 1:
            raise ValueError(f"max_connections must be an int >= 1, got {max_connections!r}")
        if prepare_threshold is not None and (
            type(prepare_threshold) is not int or prepare_threshold < 0
        ):
            raise ValueError(
                f"prepare_threshold must be an int >= 0 or None, got {prepare_threshold!r}"
            )
        self._url = url
        self._pool = pool
        self._owns_pool = pool is None
        self._max_connections = max_connections
        self._prepare_threshold = prepare_threshold
        self._opened = False
        self._opening: asyncio.Lock | None = None
        self._closed = False
        #: The fleet's rate budgets, in the same database.
        self.rate_budgets: PostgresBudgetStore | None = None
        #: ``begin``, ``record`` and ``note``, many keys a statement.
        self.grouped_writes: GroupedWrites = GroupedWrites(
            self._execute, self._write_one, lease_seconds=self.lease_seconds
        )

    def __repr__(self) -> str:
        if self._url is None:
            return "PostgresLedger(pool=...)"
        parts = urlsplit(self._url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        # No user, no password, no query: a repr ends up in logs.
        return f"PostgresLedger('{parts.scheme}://{host}{port}{parts.path}')"

    @property
    def schema_version(self) -> int:
        """The schema version this code writes (``len(MIGRATIONS)``)."""
        return len(MIGRATIONS)

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("this PostgresLedger is closed")
        if self._opened:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._opened:
                return
            try:
                if self._pool is None:
                    # One connection first, for the migrations: a database that is not
                    # there fails here, with its reason, rather than in the pool's retries.
                    async with await psycopg.AsyncConnection.connect(
                        self._url or "", autocommit=True, prepare_threshold=None
                    ) as connection:
                        await self._migrate(connection)
                    self._pool = AsyncConnectionPool(
                        self._url or "",
                        min_size=1,
                        max_size=self._max_connections,
                        open=False,
                        kwargs={
                            "autocommit": True,
                            "prepare_threshold": self._prepare_threshold,
                        },
                    )
                    await self._pool.open(wait=True)
                else:
                    async with self._pool.connection() as connection:
                        await self._migrate(connection)
            except psycopg.Error as exc:
                await self._drop_own_pool()
                raise LedgerError(f"Cannot open the ledger {self!r}: {exc}") from exc
            except BaseException:
                await self._drop_own_pool()
                raise
            self.rate_budgets = PostgresBudgetStore(self._pool)
            self._opened = True

    async def _drop_own_pool(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _migrate(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Apply the missing migrations in one transaction; refuse a newer schema."""
        latest = len(MIGRATIONS)
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            rows = await (await connection.execute("SELECT version FROM schema_version")).fetchall()
            if len(rows) > 1:
                raise LedgerError(f"The ledger {self!r} has {len(rows)} schema_version rows")
            version = int(rows[0][0]) if rows else 0
            if version > latest:
                raise LedgerError(
                    f"The ledger {self!r} has schema version {version}, newer than this "
                    f"asyncvideos understands ({latest}): upgrade asyncvideos to use it"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    await connection.execute(statement.encode())
            if not rows:
                await connection.execute(
                    "INSERT INTO schema_version (version) VALUES (%s)", (latest,)
                )
            elif version != latest:
                await connection.execute("UPDATE schema_version SET version = %s", (latest,))

    async def close(self) -> None:
        self._closed = True
        if self._opened:
            await self.flush()  # the held statuses go first
        self._opened = False
        await self._drop_own_pool()

    # -- the one place that talks to the database --------------------------

    async def _fetch(
        self, statement: str, parameters: Any = None, key: str | None = None
    ) -> list[Entry]:
        rows = await self._rows(statement, parameters, key)
        return [entry_of(row) for row in rows]

    async def _rows(
        self, statement: str, parameters: Any = None, key: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``statement`` once the grouped writes made before it of ``key`` (a
        keyed call) or of every key (None) are written: it sees them."""
        if not self._opened:
            await self.open()
        await self.grouped_writes.before(key)
        return await self._execute(statement, parameters)

    async def _execute(self, statement: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        assert self._pool is not None
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(statement.encode(), parameters)
                # The result's status, not ``cursor.description``: that builds a
                # Column per column of every result (a tenth of a write under cProfile).
                result = cursor.pgresult
                if result is None or result.status != pq.ExecStatus.TUPLES_OK:
                    return []
                rows: list[tuple[Any, ...]] = await cursor.fetchall()
                return rows
        except pg_errors.UniqueViolation:
            raise  # the caller knows which constraint
        except psycopg.Error as exc:
            raise LedgerError(f"The ledger's database failed: {exc}") from exc

    # -- reads -------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        found = await self._fetch(f"{SELECT_JOBS} WHERE key = %s", (key,), key)
        return found[0] if found else None

    async def find(self, video_id: str) -> Entry | None:
        found = await self._fetch(f"{SELECT_JOBS} WHERE video_id = %s", (video_id,))
        return found[0] if found else None

    async def select(
        self,
        *,
        states: Collection[State] | None = None,
        since: datetime | None = None,
        after: Entry | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        conditions: list[str] = []
        parameters: dict[str, Any] = {"limit": limit}
        if states is not None:
            if not states:
                return []
            conditions.append("state = ANY(%(states)s)")
            parameters["states"] = sorted(states)
        if since is not None:
            conditions.append("created_at >= %(since)s")
            parameters["since"] = since
        if after is not None:
            conditions.append("(created_at, key) > (%(after_at)s, %(after_key)s)")
            parameters["after_at"], parameters["after_key"] = after.created_at, after.key
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return await self._fetch(
            f"{SELECT_JOBS}{where} ORDER BY created_at, key LIMIT %(limit)s", parameters
        )

    async def owned(self, video_ids: Collection[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(video_ids))
        if not ids:
            return {}
        rows = await self._rows("SELECT video_id, key FROM jobs WHERE video_id = ANY(%s)", (ids,))
        return {str(video_id): str(key) for video_id, key in rows}

    # -- writes ------------------------------------------------------------

    async def begin(self, intent: Intent, *, owner: str) -> tuple[Entry, bool]:
        """Written with the other keys' writes on their way (``_postgres_writes``)."""
        if not self._opened:
            await self.open()
        values = {
            "key": intent.key,
            "operation": intent.operation,
            "fingerprint": intent.fingerprint,
            "state": "intent",
            "model": intent.model,
            "prompt": intent.prompt,
            "size": intent.size,
            "seconds": intent.seconds,
            "source_video_id": intent.source_video_id,
            "request": json.loads(json.dumps(intent.request)),
            "owner": owner,
        }
        found = await self.grouped_writes.begin(Begin.of(values))
        if found is not None:
            return found
        # The key is an entry written since the statement began (another
        # process's): it cannot have gone since (only finished entries are
        # purged, and never a live intent).
        existing = await self.get(intent.key)
        assert existing is not None
        return existing, False

    async def claim(
        self,
        key: str,
        *,
        owner: str,
        states: Collection[State],
        replacing: str | None = None,
        change: Change | None = None,
    ) -> Entry | None:
        chosen = sorted(states)
        if not chosen:
            return None
        sets = [
            "owner = %(owner)s",
            f"lease_expires_at = {LEASE}",
            "updated_at = clock_timestamp()",
        ]
        parameters: dict[str, Any] = {
            "owner": owner,
            "lease": self.lease_seconds,
            "key": key,
            "states": chosen,
            "replacing": replacing,
        }
        for name, value in ({} if change is None else change.columns()).items():
            sets.append(f"{name} = %(set_{name})s")
            parameters[f"set_{name}"] = column_value(name, value)
        free = f"({FREE_LEASE} OR owner = %(owner)s"
        free += " OR owner = %(replacing)s)" if replacing is not None else ")"
        statement = (
            f"UPDATE jobs SET {', '.join(sets)} WHERE key = %(key)s "
            f"AND {in_states(tuple(chosen))} AND {free} RETURNING {ALL_COLUMNS}"
        )
        return await self._changed(statement, parameters, key, change)

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
        statement, parameters = self._update(key, change.columns(), change.lease, chosen, owner)
        return await self._changed(f"{statement} RETURNING {ALL_COLUMNS}", parameters, key, change)

    async def record(
        self,
        key: str,
        change: Change,
        *,
        states: Collection[State],
        owner: str | None = None,
    ) -> bool:
        """``update()`` without the row read back: whether it was written. Written
        with the other keys' on their way, in one statement (``_postgres_writes``)."""
        chosen = tuple(sorted(states))
        if not chosen:
            return False
        if not self._opened:
            await self.open()
        return await self.grouped_writes.record(Write.of(key, change, chosen, owner))

    async def flush(self) -> None:
        await self.grouped_writes.before(None)

    async def note(self, key: str, change: Change, *, states: Collection[State]) -> None:
        """A status nobody waits on: held a moment for other keys' to go with it."""
        chosen = tuple(sorted(states))
        if not self._opened or not chosen:
            await super().note(key, change, states=states)
            return
        self.grouped_writes.note(Write.of(key, change, chosen, None))

    def _update(
        self,
        key: str,
        columns: dict[str, Any],
        lease: str,
        chosen: tuple[str, ...],
        owner: str | None,
    ) -> tuple[str, dict[str, Any]]:
        """One conditional UPDATE of ``key``: its statement (no RETURNING) and parameters."""
        sets = ["updated_at = clock_timestamp()"]
        parameters: dict[str, Any] = {
            "key": key,
            "states": list(chosen),
            "owner": owner,
            "lease": self.lease_seconds,
        }
        for name, value in columns.items():
            sets.append(f"{name} = %(set_{name})s")
            parameters[f"set_{name}"] = column_value(name, value)
        if lease == "renew":
            sets.append(f"lease_expires_at = {LEASE}")
        elif lease == "release":
            sets.append("owner = NULL, lease_expires_at = NULL")
        where = f"key = %(key)s AND {in_states(chosen)}"
        statement = f"UPDATE jobs SET {', '.join(sets)} WHERE {where}"
        if owner is not None:
            statement += " AND owner = %(owner)s"
        return statement, parameters

    async def _write_one(self, write: Write) -> bool:
        """A grouped write alone (the group's statement failed on a unique id)."""
        statement, parameters = self._update(
            write.key, write.columns, write.lease, write.states, write.owner
        )
        try:
            return bool(await self._execute(f"{statement} RETURNING 1", parameters))
        except pg_errors.UniqueViolation as exc:
            raise await self._owned_error(write.columns.get("video_id"), exc) from exc

    async def _changed(
        self, statement: str, parameters: dict[str, Any], key: str, change: Change | None
    ) -> Entry | None:
        try:
            found = await self._fetch(statement, parameters, key)
        except pg_errors.UniqueViolation as exc:
            video_id = None if change is None else change.columns().get("video_id")
            raise await self._owned_error(video_id, exc) from exc
        return found[0] if found else None

    async def _owned_error(self, video_id: str | None, exc: Exception) -> Exception:
        """The error for a unique violation: ``video_id`` is the one unique column written.
        (Its holder is read directly: this runs inside the grouped writes' flush.)"""
        if video_id is None:  # pragma: no cover - no other unique column is written
            return LedgerError(f"The ledger's database failed: {exc}")
        rows = await self._execute(f"{SELECT_JOBS} WHERE video_id = %s", (video_id,))
        return VideoOwnedError(video_id, entry_of(rows[0]).key if rows else None)

    async def claim_next(
        self,
        *,
        owner: str,
        states: Collection[State],
        limit: int = 100,
    ) -> list[Entry]:
        """Claim up to ``limit`` free entries in ``states``, oldest first, in one
        statement: rows another worker is claiming are skipped, not waited on."""
        chosen = sorted(states)
        if not chosen or limit < 1:
            return []
        statement = (
            "WITH picked AS ("
            f"SELECT key FROM jobs WHERE state = ANY(%(states)s) AND {FREE_LEASE} "
            "ORDER BY created_at, key LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            f"UPDATE jobs SET owner = %(owner)s, lease_expires_at = {LEASE}, "
            "updated_at = clock_timestamp() FROM picked WHERE jobs.key = picked.key "
            f"RETURNING {', '.join(f'jobs.{name}' for name in COLUMNS)}"
        )
        parameters = {"states": chosen, "limit": limit, "owner": owner, "lease": self.lease_seconds}
        claimed = await self._fetch(statement, parameters)
        return sorted(claimed, key=lambda entry: (entry.created_at, entry.key))

    async def record_status(
        self,
        video_id: str,
        *,
        status: str,
        state: State,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> Entry | None:
        """Record a webhook's status for the ``created`` entry owning ``video_id``
        and notify every listening process (``NOTIFY asyncvideos_jobs``), in one
        transaction."""
        statement = (
            "WITH changed AS (UPDATE jobs SET state = %(state)s, status = %(status)s, "
            "error_code = %(error_code)s, error_message = %(error_message)s, "
            "updated_at = clock_timestamp() WHERE video_id = %(video_id)s "
            f"AND state = 'created' RETURNING {ALL_COLUMNS}) "
            f"SELECT {ALL_COLUMNS} FROM changed, "
            "LATERAL (SELECT pg_notify(%(channel)s, changed.video_id)) AS notified"
        )
        parameters = {
            "state": state,
            "status": status,
            "error_code": error_code,
            "error_message": error_message,
            "video_id": video_id,
            "channel": CHANNEL,
        }
        found = await self._fetch(statement, parameters)
        return found[0] if found else None

    # -- the fleet ---------------------------------------------------------

    async def _join_fleet(self, client: Any, stack: contextlib.AsyncExitStack) -> None:
        """What ``AsyncVideos(ledger=this)`` does once the ledger is open: its requests
        take turns from the key's one budget in this database (unless ``pacing=False``
        or the key is a callable, which has no name yet), and its ``webhooks=``
        receiver's events are shared with every replica (``share_webhooks``)."""
        assert self.rate_budgets is not None
        if client._adaptive:
            try:
                client._share_rate_budget(self.rate_budgets)
            except TypeError:
                logger.info(
                    "A callable api_key: this client keeps its own rate budget "
                    "(the fleet's is named after the key)"
                )
        if client._webhooks is not None:
            await stack.enter_async_context(self.share_webhooks(client._webhooks))

    # -- the fleet's webhooks ------------------------------------------------

    @contextlib.asynccontextmanager
    async def share_webhooks(self, receiver: WebhookReceiver) -> AsyncIterator[EventRelay]:
        """Share ``receiver``'s events with every replica on this database, and
        theirs with it, while the block runs: each verified event is recorded and
        ``NOTIFY``-ed, and the notifications wake this replica's waits (see
        ``_postgres_events``). Polling stays the fallback."""
        if not isinstance(receiver, WebhookReceiver):
            raise TypeError(f"receiver must be a WebhookReceiver, got {type(receiver).__name__}")
        await self.open()
        assert self._pool is not None
        conninfo = self._url if self._url is not None else self._pool.conninfo
        if not isinstance(conninfo, str):
            raise TypeError("share_webhooks needs a pool made from a connection string")
        relay = EventRelay(self, receiver, conninfo)
        await relay.start()
        try:
            yield relay
        finally:
            await relay.stop()

    # -- operations --------------------------------------------------------

    async def purge(self, *, older_than: timedelta) -> int:
        """Delete finished entries (``failed``, ``downloaded``, ``expired``,
        ``rejected``) not written for ``older_than``; how many were deleted.
        Unfinished entries are never purged, however old."""
        check_age(older_than)
        rows = await self._rows(
            "WITH gone AS (DELETE FROM jobs WHERE state = ANY(%(states)s) "
            "AND updated_at < clock_timestamp() - %(age)s RETURNING 1) SELECT count(*) FROM gone",
            {"states": sorted(FINISHED), "age": older_than},
        )
        return int(rows[0][0])


_OPTIONS = {"lease_seconds": float, "max_connections": int, "prepare_threshold": int}


def ledger_from_url(url: str) -> PostgresLedger:
    """``postgresql://...`` (``open_ledger``'s): the ledger's own options
    (``lease_seconds``, ``max_connections``, ``prepare_threshold``) are taken out
    of the query string; the rest goes to libpq as it is."""
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _OPTIONS.get(name)
        if kind is None:
            kept.append((name, value))
            continue
        try:
            options[name] = kind(value)
        except ValueError:
            raise ValueError(f"ledger option {name} must be a number, got {value!r}") from None
    clean = urlunsplit(parts._replace(query=urlencode(kept)))
    return PostgresLedger(clean, **options)
