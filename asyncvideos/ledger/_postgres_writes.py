"""The PostgreSQL ledger's grouped writes: many keys' ``record``/``note`` in one statement.

A service waiting on hundreds of jobs writes a status now and then for each; one
statement (a pooled connection, a round trip, a commit) per status is most of what
the ledger costs the client. Here the writes on their way are written together,
whatever each sets, one statement for the lot::

    UPDATE jobs SET updated_at = clock_timestamp(), status = g.c_status,
        video_id = CASE WHEN g.w_video_id THEN g.c_video_id ELSE jobs.video_id END, ...
    FROM unnest(%(keys)s::text[], %(c_status)s::text[], ...) AS g(key, c_status, ...)
    WHERE jobs.key = g.key AND jobs.state IN (...) [AND jobs.owner = g.c_owner]
    RETURNING jobs.key

each row under its own condition (a column some writes leave alone has a flag;
a lease, states or owner that differ between writes are a column each), the
keys returned being those written: one round trip and one commit for the lot,
durable together.

- **A write someone waits on** (``record``: a POST's answer) is sent at once: with
  the writes made in the same turn of the event loop, or after the statement in
  flight, with every write that came while it ran (group commit). A caller alone
  waits for nothing.
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
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from .._errors import LedgerError
from ._store import Change

__all__ = ["HOLD", "GroupedWrites", "Write"]

logger = logging.getLogger("asyncvideos")

#: How long a write nobody waits on (a status) is held for others to go with, at most.
HOLD = 0.05
#: The PostgreSQL type of each column a ``Change`` writes (for its array's cast).
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

#: Runs a statement on a pooled connection: its rows (psycopg errors as they are).
Execute = Callable[[str, dict[str, Any]], Awaitable[list[tuple[Any, ...]]]]
#: Writes one ``Write`` alone (the ledger's one-row UPDATE): whether it was written.
WriteOne = Callable[["Write"], Awaitable[bool]]
#: The SQL condition ``state`` is one of the (sorted) states.
InStates = Callable[[tuple[str, ...]], str]


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


class GroupedWrites:
    """The ledger's ``record`` and ``note`` writes, written in groups (see above)."""

    def __init__(
        self,
        execute: Execute,
        write_one: WriteOne,
        in_states: InStates,
        *,
        lease_seconds: float,
        column_value: Callable[[str, Any], Any],
    ) -> None:
        self._execute = execute
        self._write_one = write_one
        self._in_states = in_states
        self._lease_seconds = lease_seconds
        self._column_value = column_value
        self._held: deque[Write] = deque()
        #: Writes not finished (held or in flight), by key: what a keyed call waits for.
        self._pending: dict[str, list[Write]] = {}
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Statements and writes sent, for the benchmarks and the tests.
        self.statements = 0
        self.writes = 0

    # -- the callers' side -------------------------------------------------

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
            waiting = [write.done for writes in self._pending.values() for write in writes]
        else:
            writes = self._pending.get(key)
            if writes is None:
                return
            waiting = [write.done for write in writes]
        self._flush_soon()
        await asyncio.gather(*(asyncio.shield(done) for done in waiting), return_exceptions=True)

    def _add(self, write: Write) -> None:
        self._held.append(write)
        self._pending.setdefault(write.key, []).append(write)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            # Started, not run: the writes made in this turn of the loop go with it.
            self._task = asyncio.get_running_loop().create_task(self._flush())

    # -- the flusher -------------------------------------------------------

    async def _flush(self) -> None:
        try:
            while self._held:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                await self._send(self._take())
        finally:
            self._task = None

    def _take(self) -> list[Write]:
        """The held writes up to the first key seen twice (a key once per statement:
        its next write goes in the next)."""
        writes: list[Write] = []
        keys: set[str] = set()
        held = self._held
        while held and held[0].key not in keys:
            write = held.popleft()
            keys.add(write.key)
            writes.append(write)
        return writes

    async def _send(self, writes: list[Write]) -> None:
        try:
            if len(writes) == 1:
                await self._alone(writes[0])
            else:
                await self._together(writes)
        finally:
            for write in writes:
                # Not settled: the flush was interrupted (the loop closing).
                _settle(write, error=LedgerError(f"The write of {write.key} was interrupted"))
                self._finished(write)

    async def _together(self, writes: list[Write]) -> None:
        shape = _Shape.of(writes)
        parameters: dict[str, Any] = {"keys": [write.key for write in writes]}
        value = self._column_value
        for name, everywhere in shape.columns:
            parameters[f"c_{name}"] = [
                value(name, write.columns[name]) if name in write.columns else None
                for write in writes
            ]
            if not everywhere:
                parameters[f"w_{name}"] = [name in write.columns for write in writes]
        if shape.lease is None:
            parameters["c_lease"] = [write.lease for write in writes]
        if shape.lease != "keep":
            parameters["lease"] = self._lease_seconds
        if shape.states is None:
            parameters["c_states"] = [Jsonb(list(write.states)) for write in writes]
        else:
            parameters["states"] = list(shape.states)
        if shape.owners != "none":
            parameters["owners"] = [write.owner for write in writes]
        self.statements += 1
        self.writes += len(writes)
        try:
            rows = await self._execute(_statement(shape, self._in_states), parameters)
        except pg_errors.UniqueViolation:
            # One write at fault (a job id another entry has): each alone, so that
            # only that one fails.
            for write in writes:
                await self._alone(write)
            return
        except Exception as error:  # a LedgerError: the database failed
            for write in writes:
                _settle(write, error=error)
            return
        written = {row[0] for row in rows}
        for write in writes:
            _settle(write, write.key in written)

    async def _alone(self, write: Write) -> None:
        self.statements += 1
        self.writes += 1
        try:
            written = await self._write_one(write)
        except Exception as error:
            _settle(write, error=error)
        else:
            _settle(write, written)

    def _finished(self, write: Write) -> None:
        writes = self._pending.get(write.key)
        if writes is None:  # pragma: no cover - a write is finished once
            return
        writes.remove(write)
        if not writes:
            del self._pending[write.key]


def _settle(write: Write, written: bool = False, *, error: BaseException | None = None) -> None:
    if write.done.done():
        return
    if error is not None:
        write.done.set_exception(error)
    else:
        write.done.set_result(written)


def _logged(key: str, done: asyncio.Future[bool]) -> None:
    """A note's outcome: nobody waits on it, so its failure is logged here."""
    if done.cancelled():  # pragma: no cover - the flusher never cancels a write
        return
    error = done.exception()
    if error is not None:
        logger.warning("The ledger could not record a status of %s: %s", key, error)


@attrs.frozen
class _Shape:
    """What one statement for a list of writes must say: each column written and
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


@functools.lru_cache(maxsize=256)
def _statement(shape: _Shape, in_states: InStates) -> str:
    """One UPDATE for writes of this shape (see the module's docstring)."""
    sets = ["updated_at = clock_timestamp()"]
    for name, everywhere in shape.columns:
        sets.append(
            f"{name} = g.c_{name}"
            if everywhere
            else f"{name} = CASE WHEN g.w_{name} THEN g.c_{name} ELSE jobs.{name} END"
        )
    renewed = "clock_timestamp() + %(lease)s * interval '1 second'"
    if shape.lease == "renew":
        sets.append(f"lease_expires_at = {renewed}")
    elif shape.lease == "release":
        sets.append("owner = NULL, lease_expires_at = NULL")
    elif shape.lease is None:
        sets.append(
            f"lease_expires_at = CASE g.c_lease WHEN 'renew' THEN {renewed} "
            "WHEN 'release' THEN NULL ELSE jobs.lease_expires_at END, "
            "owner = CASE WHEN g.c_lease = 'release' THEN NULL ELSE jobs.owner END"
        )
    arrays = ["%(keys)s::text[]"]
    names = ["key"]
    for name, everywhere in shape.columns:
        arrays.append(f"%(c_{name})s::{_TYPES[name]}[]")
        names.append(f"c_{name}")
        if not everywhere:
            arrays.append(f"%(w_{name})s::boolean[]")
            names.append(f"w_{name}")
    if shape.lease is None:
        arrays.append("%(c_lease)s::text[]")
        names.append("c_lease")
    if shape.states is None:
        arrays.append("%(c_states)s::jsonb[]")
        names.append("c_states")
    if shape.owners != "none":
        arrays.append("%(owners)s::text[]")
        names.append("c_owner")
    # The states as a JSON array each where they differ: ``?`` is "has this element".
    if shape.states is None:
        states = "g.c_states ? jobs.state"
    else:
        states = f"jobs.{in_states(shape.states)}"
    statement = (
        f"UPDATE jobs SET {', '.join(sets)} FROM unnest({', '.join(arrays)}) "
        f"AS g({', '.join(names)}) WHERE jobs.key = g.key AND {states}"
    )
    if shape.owners == "all":
        statement += " AND jobs.owner = g.c_owner"
    elif shape.owners == "some":
        statement += " AND (g.c_owner IS NULL OR jobs.owner = g.c_owner)"
    return statement + " RETURNING jobs.key"
