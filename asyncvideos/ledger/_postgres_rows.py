"""A job's row in the PostgreSQL ledger: how it is written and read.

What the ledger's statements share (``_postgres`` for one row a statement,
``_postgres_writes`` for many) besides the columns (``_columns``, shared with
SQLite): the list of them to read, the lease, the condition on ``state``, and
the conversions between a row and an ``Entry``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from psycopg.types.json import Jsonb

from ._columns import COLUMNS, TIMES
from ._store import STATES, Entry

__all__ = [
    "ALL_COLUMNS",
    "FREE_LEASE",
    "LEASE",
    "SELECT_JOBS",
    "column_value",
    "entry_of",
    "in_states",
    "utc",
]


@functools.lru_cache(maxsize=256)
def in_states(chosen: tuple[str, ...]) -> str:
    """The condition ``state`` is one of ``chosen`` (sorted, not empty).

    The ledger's own states are written into the statement as literals: dumping
    a list as an array parameter is about a tenth of a write's client CPU.
    Any other string (``states`` is a caller's argument) goes as the
    ``%(states)s`` parameter, as before, never into the text.
    """
    if all(state in STATES for state in chosen):
        literals = ", ".join(f"'{state}'" for state in chosen)
        return f"state IN ({literals})"
    return "state = ANY(%(states)s)"


ALL_COLUMNS = ", ".join(COLUMNS)
SELECT_JOBS = f"SELECT {ALL_COLUMNS} FROM jobs"
LEASE = "clock_timestamp() + %(lease)s * interval '1 second'"
#: A lease that no one holds now: free to claim.
FREE_LEASE = "(owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())"


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def entry_of(row: Sequence[Any]) -> Entry:
    values = dict(zip(COLUMNS, row, strict=True))
    for name in TIMES:
        values[name] = utc(values[name])
    candidates = values["candidates"]
    values["candidates"] = () if candidates is None else tuple(candidates)
    values["request"] = values["request"] or {}
    return Entry(**values)


def column_value(name: str, value: Any) -> Any:
    if name == "candidates":
        return None if not value else Jsonb(list(value))
    return value
