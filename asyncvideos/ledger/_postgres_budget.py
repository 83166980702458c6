"""The fleet's rate budgets in PostgreSQL: one row per budget, exchanged under its lock.

``PostgresBudgetStore.exchange`` runs ``_budget.exchange`` (the rules, pure) in one
transaction of two round trips: ``BEGIN`` and the row read ``FOR UPDATE`` with the
server's clock, the rules applied in Python, then the row written back and
``COMMIT``, without waiting for the disk (``synchronous_commit = off`` for this
transaction: the schedule of the next moments is not worth an fsync). So every
process of a fleet takes its slots from one schedule, whatever their own clocks
say, and two exchanges on one budget never interleave. Each round trip is one
query string of two statements (psycopg's ``ClientCursor``, the parameters bound
on the client: numbers and the budget's hashed name), half the client's CPU of the
same transaction in pipeline mode (about 400 against 900 µs an exchange). Needs the
``postgres`` extra (psycopg 3 and its pool); imported only when a PostgreSQL ledger
is used.

Table layout (times are Unix seconds on the database server's clock; the columns
are ``_budget.BudgetRow``'s fields, whose comments say what each means)::

    CREATE TABLE rate_budgets (
        name             TEXT PRIMARY KEY,  -- budget_name(): a hash of base URL and key
        next_at          DOUBLE PRECISION NOT NULL,  -- the next free slot
        generation       BIGINT NOT NULL,            -- the schedule's, rebuilt at events
        event_generation BIGINT NOT NULL,            -- the schedule the last event rebuilt
        built            DOUBLE PRECISION NOT NULL,  -- the spacing it was built on
        refill           DOUBLE PRECISION NOT NULL,  -- refill rate from budget headers ...
        refill_weight    DOUBLE PRECISION NOT NULL,  -- ... the reports' weight ...
        refill_at        DOUBLE PRECISION NOT NULL,  -- ... as of then
        level            DOUBLE PRECISION NOT NULL,  -- remaining / limit, freshest ...
        level_at         DOUBLE PRECISION NOT NULL,  -- ... read then
        spacing          DOUBLE PRECISION NOT NULL,  -- from headers without a limit ...
        spacing_until    DOUBLE PRECISION NOT NULL,  -- ... valid until then
        pause_until      DOUBLE PRECISION NOT NULL,  -- a 429's pause, for the fleet
        estimated        DOUBLE PRECISION NOT NULL,  -- without headers: the rate ...
        estimated_at     DOUBLE PRECISION NOT NULL,  -- ... set then ...
        estimated_issued BIGINT NOT NULL,            -- ... at this many slots issued
        ceiling          DOUBLE PRECISION NOT NULL,  -- the rate the last event measured
        measured         BOOLEAN NOT NULL,           -- ... or the rate that failed
        slow_start       BOOLEAN NOT NULL,           -- no 429 seen yet
        mark_at          DOUBLE PRECISION,           -- the last event ...
        mark_issued      BIGINT NOT NULL,            -- ... and the slots issued by then
        issued           BIGINT NOT NULL,            -- slots issued in all
        last_spacing     DOUBLE PRECISION NOT NULL,  -- the last slots' spacing
        updated_at       TIMESTAMPTZ NOT NULL
    );

A row is the fleet's schedule of the next moments, nothing more: when the rules
change its layout, a migration of the ledger's schema drops the old table
(``CREATE_TABLE_V1`` was the first) and a fleet relearns its budget in seconds.
"""

from __future__ import annotations

from typing import Any

import attrs
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .._budget import BudgetRow, Grant, Report, exchange

__all__ = ["CREATE_TABLE", "CREATE_TABLE_V1", "PostgresBudgetStore"]

_COLUMNS = tuple(field.name for field in attrs.fields(BudgetRow))
#: The first layout (schema version 1), dropped by version 2.
CREATE_TABLE_V1 = """
CREATE TABLE IF NOT EXISTS rate_budgets (
    name          TEXT PRIMARY KEY,
    next_at       DOUBLE PRECISION NOT NULL,
    spacing       DOUBLE PRECISION NOT NULL,
    spacing_until DOUBLE PRECISION NOT NULL,
    pause_until   DOUBLE PRECISION NOT NULL,
    estimated     DOUBLE PRECISION NOT NULL,
    estimated_at  DOUBLE PRECISION NOT NULL,
    slow_start    BOOLEAN NOT NULL,
    mark_at       DOUBLE PRECISION,
    mark_issued   BIGINT NOT NULL,
    issued        BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
)
"""

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS rate_budgets (
    name             TEXT PRIMARY KEY,
    next_at          DOUBLE PRECISION NOT NULL,
    generation       BIGINT NOT NULL,
    event_generation BIGINT NOT NULL,
    built            DOUBLE PRECISION NOT NULL,
    refill           DOUBLE PRECISION NOT NULL,
    refill_weight    DOUBLE PRECISION NOT NULL,
    refill_at        DOUBLE PRECISION NOT NULL,
    level            DOUBLE PRECISION NOT NULL,
    level_at         DOUBLE PRECISION NOT NULL,
    spacing          DOUBLE PRECISION NOT NULL,
    spacing_until    DOUBLE PRECISION NOT NULL,
    pause_until      DOUBLE PRECISION NOT NULL,
    estimated        DOUBLE PRECISION NOT NULL,
    estimated_at     DOUBLE PRECISION NOT NULL,
    estimated_issued BIGINT NOT NULL,
    ceiling          DOUBLE PRECISION NOT NULL,
    measured         BOOLEAN NOT NULL,
    slow_start       BOOLEAN NOT NULL,
    mark_at          DOUBLE PRECISION,
    mark_issued      BIGINT NOT NULL,
    issued           BIGINT NOT NULL,
    last_spacing     DOUBLE PRECISION NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
)
"""
#: The server's clock and the row, locked.
_ROW = (
    "extract(epoch FROM clock_timestamp())::float8, "
    + ", ".join(_COLUMNS)
    + " FROM rate_budgets WHERE name = %s FOR UPDATE"
)
#: The first round trip: the transaction, its commit setting and the row (no row:
#: nothing read, and nothing set).
_LOCK = "BEGIN; SELECT set_config('synchronous_commit', 'off', true), " + _ROW
#: A new budget, in the transaction the first round trip began: the setting, the
#: clock, the row inserted, then read as ``_LOCK`` reads it.
_NOW = "SET LOCAL synchronous_commit = off; SELECT extract(epoch FROM clock_timestamp())::float8"
_INSERT = (
    "INSERT INTO rate_budgets (name, "
    + ", ".join(_COLUMNS)
    + ", updated_at) VALUES (%s, "
    + ", ".join(["%s"] * len(_COLUMNS))
    + ", now()) ON CONFLICT (name) DO NOTHING"
)
_SELECT = "SELECT 'off', " + _ROW
#: The second round trip: the row written back, and the transaction committed.
_WRITE = (
    "UPDATE rate_budgets SET "
    + ", ".join(f"{column} = %s" for column in _COLUMNS)
    + ", updated_at = now() WHERE name = %s; COMMIT"
)


class PostgresBudgetStore:
    """Rate budgets in a PostgreSQL database, over a psycopg ``AsyncConnectionPool``.

    The pool's connections must be in autocommit mode (each exchange is its own
    transaction). ``exchanges`` counts them, for the cost per request.
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self.exchanges: int = 0

    async def create_table(self) -> None:
        async with self._pool.connection() as connection:
            await connection.execute(CREATE_TABLE)

    async def exchange(self, name: str, report: Report, want: int) -> Grant:
        self.exchanges += 1
        async with self._pool.connection() as connection:
            return await _exchange(connection, name, report, want)


async def _exchange(
    connection: AsyncConnection[Any], name: str, report: Report, want: int
) -> Grant:
    # Not committed on an error: the pool's ``connection()`` rolls back (and lets go
    # of the row's lock) before it takes the connection back.
    async with AsyncClientCursor(connection) as cursor:
        await cursor.execute(_LOCK, (name,))
        cursor.nextset()  # past BEGIN's result, to the row's
        found = await cursor.fetchone()
        if found is None:
            # A new budget. Two processes may both find none: the database keeps the
            # first row (ON CONFLICT DO NOTHING) and both go on from it, locked.
            await cursor.execute(_NOW)
            cursor.nextset()
            clock = await cursor.fetchone()
            assert clock is not None
            fresh = BudgetRow.new(float(clock[0]))
            await cursor.execute(_INSERT, (name, *attrs.astuple(fresh)))
            await cursor.execute(_SELECT, (name,))
            found = await cursor.fetchone()
            assert found is not None
        now, row = float(found[1]), BudgetRow(*found[2:])
        row, grant = exchange(row, now, report, want)
        await cursor.execute(_WRITE, (*attrs.astuple(row), name))
    return grant
