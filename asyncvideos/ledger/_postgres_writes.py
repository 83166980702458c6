"""The PostgreSQL ledger's grouped writes: many keys' ``record``/``note`` in one statement.

A service waiting on hundreds of jobs writes a status now and then for each; one
statement (a pooled connection, a round trip, a commit) per status is most of what
the ledger costs the client. Here the writes on their way are written together,
whatever each sets, one statement for the lot::

    UPDATE jobs SET updated_at = clock_timestamp(), status = g.c_status,
        video_id = CASE WHEN g.w_video_id THEN g.c_video_id ELSE jobs.video_id END, ...
    FROM jsonb_to_recordset(%(writes)s) AS g(key text, c_status text, ...)
    WHERE jobs.key = g.key AND jobs.state IN (...) [AND jobs.owner = g.c_owner]
    RETURNING jobs.key

each row under its own condition (a column some writes leave alone has a flag;
a lease, states or owner that differ between writes are a column each), the
keys returned being those written: one round trip and one commit for the lot,
durable together. The writes go as one JSON parameter, a row an object: psycopg
dumps a list parameter element by element in Python, a column an array of them
(most of a grouped statement's client CPU), and ``json.dumps`` is C.

- **A write someone waits on** (``begin``: an intent before its POST; ``record``:
  a POST's answer) is sent at once: with the writes made in the same turn of the
  event loop, or after the statement in flight, with every write that came while
  it ran (group commit), statements starting at least ``SPACING`` apart. A caller
  alone (no statement in the last ``SPACING``) waits for nothing.
- **A write nobody waits on** (``note``: a status a wait saw) is held up to
  ``HOLD`` seconds for others to go with, as the SQLite ledger's thread does.
- **In order**: a flush holds each key once, so a key's writes are written in the
  order they were made, and the store's other calls first wait for the held writes
  of their key (a keyed call) or all of them (any other call) to be written: a
  call made after a write sees it.
- **One failure is undone alone**: a group whose statement breaks the unique
  ``video_id`` is written again a write at a time, so the one write at fault gets
  its ``VideoOwnedError`` and the others are written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import attrs
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from .._errors import LedgerError
from ._columns import CLEARED, COLUMNS, INTENT_COLUMNS, REWRITTEN
from ._postgres_rows import ALL_COLUMNS, LEASE, entry_of, in_states
from ._store import Change, Entry

__all__ = ["HOLD", "Begin", "GroupedWrites", "Write"]

logger = logging.getLogger("asyncvideos")

#: How long a write nobody waits on (a status) is held for others to go with, at most.
HOLD = 0.05
#: A busy ledger's statements start at least this long apart: the writes that come
#: meanwhile go with the next (a write to an idle ledger goes at once). For 1,000
#: jobs 64 at a time: 0.64 -> 0.35 statements a job, wall time +1 %.
SPACING = 0.01
#: The PostgreSQL type of each column a ``Change`` writes (its recordset column's).
_TYPES = {
    "state": "text",
    "video_id": "text",
    "status": "text",
    "error_code": "text",
    "error_message": "text",
    "expires_at": "timestamptz",
    "candidates": "jsonb",
    "target": "text",
    "variant": "text",
    "content_size": "bigint",
    "content_sha256": "text",
    "downloaded_at": "timestamptz",
}

#: The PostgreSQL type of each of an intent's columns (``begin``).
_INTENT_TYPES = {name: "jsonb" if name == "request" else "text" for name in INTENT_COLUMNS}

#: Runs a statement on a pooled connection: its rows (psycopg errors as they are).
Execute = Callable[[str, dict[str, Any]], Awaitable[list[tuple[Any, ...]]]]
#: Writes one ``Write`` alone (the ledger's one-row UPDATE): whether it was written.
WriteOne = Callable[["Write"], Awaitable[bool]]


@attrs.define(slots=True, eq=False)
class Write:
    """One conditional write of ``key``; ``done`` is its outcome (written or not)."""

    key: str
    columns: dict[str, Any]
    lease: str
    states: tuple[str, ...]
    owner: str | None
    done: asyncio.Future[bool]

    @classmethod
    def of(cls, key: str, change: Change, states: tuple[str, ...], owner: str | None) -> Write:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        return cls(key, change.columns(), change.lease, states, owner, done)


@attrs.define(slots=True, eq=False)
class Begin:
    """One ``begin``: the intent's columns, by name. ``done`` is the entry and
    whether this wrote it; None where the key is an entry written since the
    statement began (another process's): the caller reads it."""

    key: str
    values: dict[str, Any]
    done: asyncio.Future[tuple[Entry, bool] | None]

    @classmethod
    def of(cls, values: dict[str, Any]) -> Begin:
        done: asyncio.Future[tuple[Entry, bool] | None]
        done = asyncio.get_running_loop().create_future()
        return cls(values["key"], values, done)


Item = Write | Begin


class GroupedWrites:
    """The ledger's ``begin``, ``record`` and ``note`` writes, written together (see above)."""

    def __init__(self, execute: Execute, write_one: WriteOne, *, lease_seconds: float) -> None:
        self._execute = execute
        self._write_one = write_one
        self._lease_seconds = lease_seconds
        self._held: deque[Item] = deque()
        #: Writes not finished (held or in flight), by key: what a keyed call waits for.
        self._pending: dict[str, list[Item]] = {}
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent_at = -math.inf
        #: Statements, writes and begins sent, for the benchmarks and the tests.
        self.statements: int = 0
        self.writes: int = 0
        self.begins: int = 0

    # -- the callers' side -------------------------------------------------

    async def begin(self, begin: Begin) -> tuple[Entry, bool] | None:
        """Write ``begin``'s intent with the others on their way (see ``Begin``)."""
        self._add(begin)
        self._flush_soon()
        return await asyncio.shield(begin.done)

    async def record(self, write: Write) -> bool:
        """Write ``write`` with the others on their way; whether it was written."""
        self._add(write)
        self._flush_soon()
        return await asyncio.shield(write.done)

    def note(self, write: Write) -> None:
        """Write ``write`` within ``HOLD`` seconds (sooner if another write goes);
        a failure is logged."""
        write.done.add_done_callback(functools.partial(_logged, write.key))
        self._add(write)
        if self._task is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(HOLD, self._flush_soon)

    async def before(self, key: str | None) -> None:
        """Wait until the writes made so far of ``key`` (None: of every key) are written."""
        if not self._pending:
            return
        if key is None:
            waiting = [item.done for items in self._pending.values() for item in items]
        else:
            items = self._pending.get(key)
            if items is None:
                return
            waiting = [item.done for item in items]
        self._flush_soon()
        await asyncio.gather(*(asyncio.shield(done) for done in waiting), return_exceptions=True)

    def _add(self, item: Item) -> None:
        self._held.append(item)
        self._pending.setdefault(item.key, []).append(item)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            # Started, not run: the writes made in this turn of the loop go with it.
            self._task = asyncio.get_running_loop().create_task(self._flush())

    # -- the flusher -------------------------------------------------------

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._held:
                wait = self._sent_at + SPACING - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._sent_at = loop.time()
                await self._send(self._take())
        finally:
            self._task = None

    def _take(self) -> list[Item]:
        """The held writes up to the first key seen twice (a key once per statement:
        its next write goes in the next)."""
        items: list[Item] = []
        keys: set[str] = set()
        held = self._held
        while held and held[0].key not in keys:
            item = held.popleft()
            keys.add(item.key)
            items.append(item)
        return items

    async def _send(self, items: list[Item]) -> None:
        writes = [item for item in items if isinstance(item, Write)]
        begins = [item for item in items if isinstance(item, Begin)]
        try:
            if len(writes) == 1 and not begins:
                await self._alone(writes[0])
            else:
                await self._together(writes, begins)
        finally:
            for item in items:
                # Not settled: the flush was interrupted (the loop closing).
                _settle(item, None, LedgerError(f"The write of {item.key} was interrupted"))
                self._finished(item)

    async def _together(self, writes: list[Write], begins: list[Begin]) -> None:
        shape = _Shape.of(writes) if writes else None
        parameters: dict[str, Any] = {"lease": self._lease_seconds}
        if shape is not None:
            parameters.update(shape.parameters(writes))
        if begins:
            parameters["intents"] = Jsonb([begin.values for begin in begins])
        self.statements += 1
        self.writes += len(writes)
        self.begins += len(begins)
        try:
            rows = await self._execute(_statement(shape, bool(begins)), parameters)
        except pg_errors.UniqueViolation as violation:
            if not writes:  # pragma: no cover - an intent sets no unique column but its key
                for begin in begins:
                    _settle(begin, None, LedgerError(f"The ledger's database failed: {violation}"))
                return
            # One write at fault (a job id another entry has): the intents together,
            # each write alone, so that only that one fails.
            if begins:
                await self._together([], begins)
            for write in writes:
                await self._alone(write)
            return
        except Exception as error:  # a LedgerError: the database failed
            items: list[Item] = [*writes, *begins]
            for item in items:
                _settle(item, None, error)
            return
        if not begins:
            written = {row[0] for row in rows}
        else:
            written, found = set(), {}
            for tag, *row in rows:
                if tag == _WRITTEN:
                    written.add(row[0])
                else:
                    found[row[0]] = (entry_of(row), tag == _BEGUN)
            for begin in begins:
                _settle(begin, found.get(begin.key))
        for write in writes:
            _settle(write, write.key in written)

    async def _alone(self, write: Write) -> None:
        self.statements += 1
        self.writes += 1
        try:
            written = await self._write_one(write)
        except Exception as error:
            _settle(write, None, error)
        else:
            _settle(write, written)

    def _finished(self, item: Item) -> None:
        items = self._pending.get(item.key)
        if items is None:  # pragma: no cover - a write is finished once
            return
        items.remove(item)
        if not items:
            del self._pending[item.key]


def _settle(item: Item, outcome: Any, error: BaseException | None = None) -> None:
    done: asyncio.Future[Any] = item.done
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(outcome)


def _logged(key: str, done: asyncio.Future[bool]) -> None:
    """A note's outcome: nobody waits on it, so its failure is logged here."""
    if done.cancelled():  # pragma: no cover - the flusher never cancels a write
        return
    error = done.exception()
    if error is not None:
        logger.warning("The ledger could not record a status of %s: %s", key, error)


@attrs.frozen
class _Shape:
    """What one UPDATE for a list of writes must say: each column written and
    whether every write sets it; the lease, states and owner condition, where the
    writes share one (None, ``"some"``: a column of each write's own)."""

    columns: tuple[tuple[str, bool], ...]
    lease: str | None
    states: tuple[str, ...] | None
    owners: str  # "none", "all" or "some" of the writes hold an owner condition

    @classmethod
    def of(cls, writes: list[Write]) -> _Shape:
        counts: dict[str, int] = {}
        for write in writes:
            for name in write.columns:
                counts[name] = counts.get(name, 0) + 1
        columns = tuple((name, counts[name] == len(writes)) for name in _TYPES if name in counts)
        leases = {write.lease for write in writes}
        states = {write.states for write in writes}
        owned = sum(write.owner is not None for write in writes)
        return cls(
            columns,
            leases.pop() if len(leases) == 1 else None,
            states.pop() if len(states) == 1 else None,
            "none" if not owned else "all" if owned == len(writes) else "some",
        )

    def parameters(self, writes: list[Write]) -> dict[str, Any]:
        """The UPDATE's parameters: the writes as one JSON array, an object each."""
        rows = []
        for write in writes:
            row: dict[str, Any] = {"key": write.key}
            for name, everywhere in self.columns:
                if name in write.columns:
                    row[f"c_{name}"] = _json_value(write.columns[name])
                if not everywhere:
                    row[f"w_{name}"] = name in write.columns
            if self.lease is None:
                row["c_lease"] = write.lease
            if self.states is None:
                row["c_states"] = write.states
            if self.owners != "none":
                row["c_owner"] = write.owner
            rows.append(row)
        parameters: dict[str, Any] = {"writes": Jsonb(rows)}
        if self.states is not None:
            parameters["states"] = list(self.states)
        return parameters


def _json_value(value: Any) -> Any:
    """A column's value as JSON: a time as ISO 8601 (``timestamptz`` reads it back);
    the candidates, a tuple, as an array."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value) or None  # no candidates: NULL, as the one-row UPDATE writes
    return value


#: The tag of each row the statement of writes and intents returns: a write's key,
#: an intent written, an entry that was there (``Begin``).
_WRITTEN, _BEGUN, _THERE = 0, 1, 2


@functools.lru_cache(maxsize=256)
def _statement(shape: _Shape | None, begins: bool) -> str:
    """The statement for writes of ``shape`` (None: none) and intents (if ``begins``):
    an UPDATE alone, else one statement of both, a tagged row each::

        WITH w AS (UPDATE ... RETURNING jobs.key),
             b AS (INSERT ... SELECT ... FROM unnest(...) ON CONFLICT ... RETURNING ...)
        SELECT 1, <entry> FROM b                       -- written
        UNION ALL SELECT 2, <entry> FROM jobs WHERE ... -- there before, not rejected
        UNION ALL SELECT 0, key, NULL, ... FROM w       -- a write written

    (a key being in a statement once, the parts touch different rows)."""
    if not begins:
        assert shape is not None
        return _update(shape)
    parts = [] if shape is None else [f"w AS ({_update(shape)})"]
    parts.append(f"b AS ({_INSERT_INTENTS})")
    select = (
        f"SELECT {_BEGUN}, {ALL_COLUMNS} FROM b UNION ALL SELECT {_THERE}, {ALL_COLUMNS} "
        "FROM jobs WHERE key IN (SELECT key FROM jsonb_to_recordset(%(intents)s) AS k(key text)) "
        "AND key NOT IN (SELECT key FROM b)"
    )
    if shape is not None:
        keys = ", ".join("w.key" if name == "key" else "NULL" for name in COLUMNS)
        select += f" UNION ALL SELECT {_WRITTEN}, {keys} FROM w"
    return f"WITH {', '.join(parts)} {select}"


#: The intents, many in one INSERT: ``begin``'s, an object of the JSON array each.
_INSERT_INTENTS = (
    f"INSERT INTO jobs ({', '.join(INTENT_COLUMNS)}, lease_expires_at, created_at, updated_at) "
    f"SELECT {', '.join(f'i.{name}' for name in INTENT_COLUMNS)}, {LEASE}, "
    "clock_timestamp(), clock_timestamp() FROM jsonb_to_recordset(%(intents)s) AS i("
    + ", ".join(f"{name} {_INTENT_TYPES[name]}" for name in INTENT_COLUMNS)
    + ") ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in REWRITTEN)
    + ", "
    + ", ".join(f"{name} = NULL" for name in CLEARED)
    + f" WHERE jobs.state = 'rejected' RETURNING {ALL_COLUMNS}"
)


def _update(shape: _Shape) -> str:
    """One UPDATE for writes of this shape (see the module's docstring)."""
    sets = ["updated_at = clock_timestamp()"]
    for name, everywhere in shape.columns:
        sets.append(
            f"{name} = g.c_{name}"
            if everywhere
            else f"{name} = CASE WHEN g.w_{name} THEN g.c_{name} ELSE jobs.{name} END"
        )
    if shape.lease == "renew":
        sets.append(f"lease_expires_at = {LEASE}")
    elif shape.lease == "release":
        sets.append("owner = NULL, lease_expires_at = NULL")
    elif shape.lease is None:
        sets.append(
            f"lease_expires_at = CASE g.c_lease WHEN 'renew' THEN {LEASE} "
            "WHEN 'release' THEN NULL ELSE jobs.lease_expires_at END, "
            "owner = CASE WHEN g.c_lease = 'release' THEN NULL ELSE jobs.owner END"
        )
    columns = ["key text"]
    for name, everywhere in shape.columns:
        columns.append(f"c_{name} {_TYPES[name]}")
        if not everywhere:
            columns.append(f"w_{name} boolean")
    if shape.lease is None:
        columns.append("c_lease text")
    if shape.states is None:
        columns.append("c_states jsonb")
    if shape.owners != "none":
        columns.append("c_owner text")
    # The states as a JSON array each where they differ: ``?`` is "has this element".
    if shape.states is None:
        states = "g.c_states ? jobs.state"
    else:
        states = f"jobs.{in_states(shape.states)}"
    statement = (
        f"UPDATE jobs SET {', '.join(sets)} FROM jsonb_to_recordset(%(writes)s) "
        f"AS g({', '.join(columns)}) WHERE jobs.key = g.key AND {states}"
    )
    if shape.owners == "all":
        statement += " AND jobs.owner = g.c_owner"
    elif shape.owners == "some":
        statement += " AND (g.c_owner IS NULL OR jobs.owner = g.c_owner)"
    return statement + " RETURNING jobs.key"
