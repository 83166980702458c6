"""The SQLite ledger's own thread: one connection, and writes committed in groups.

Every call on the ledger is one item on this thread's queue; the event loop
never touches the connection. Items that arrive while the thread is busy are
run together, in order, in **one transaction**: one ``BEGIN IMMEDIATE``, one
``COMMIT`` (one fsync with ``synchronous=FULL``) and one wake-up of the event
loop for the lot. A write is one statement (its row read back with it), and
SQLite undoes a statement that fails (a ``VideoOwnedError``) without ending the
transaction, so one failed write is undone alone; and each caller hears of its
write only after the commit it is part of, so "durable before the next step"
holds for every one of them. A write alone is one autocommit statement.

A write nobody waits on (``post``: a status a wait saw) is not handed to the
thread on its own: it is held on the callers' side and goes with the next call
(queued just before it, so that call sees it), or ``HOLD`` seconds later if no
call comes first, or when the thread is stopped. A status is then one more
statement in another write's transaction, instead of a transaction, a commit
(an fsync) and a wake-up of the thread of its own: half the ledger's commits,
when a service polls many jobs (``benchmarks/ledger_overhead.py``).

When the ledger is busy (the last batch had several callers waiting), the thread
waits ``GROUP`` seconds before it starts the next write batch, so that the writes
on their way join it: fewer, larger transactions, a third fewer commits under
load for a few milliseconds more per write. A caller alone never waits for it.
All the writes of a transaction have its time (one clock read).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["Worker"]

T = TypeVar("T")
#: Work for the thread: the connection, and the time of its transaction (None: a read).
Work = Callable[[sqlite3.Connection, "float | None"], T]
#: How long a held write (``post``) waits for a call to go with, at most.
HOLD = 0.05
#: How long a busy ledger's thread waits for more writes to join a transaction.
GROUP = 0.003


@attrs.define(slots=True)
class _Item(Generic[T]):
    work: Work[T]
    write: bool
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[T] | None
    result: Any = None
    error: BaseException | None = None


@attrs.define(slots=True)
class _Stop:
    """Close the connection (after the work queued before) and end the thread."""

    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None


_STOP = _Stop()


def micro(seconds: float) -> float:
    """``seconds`` to the microsecond, as a datetime holds it: an Entry's times read
    back as the very floats stored (k / 10**6 rounds the same both ways), so
    ``(created_at, key)`` cursors are exact. (``round(x, 6)`` is ten times dearer.)"""
    return round(seconds * 1_000_000) / 1_000_000


class Worker:
    """A thread that owns one ``sqlite3`` connection, made by ``connect`` on it."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], clock: Callable[[], float]):
        self._connect = connect
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._serve, name="asyncvideos-ledger", daemon=True)
        #: Posted writes not queued yet, and the loop whose timer will flush them
        #: (None: no flush scheduled); callers on other threads (other event
        #: loops) share them under the lock.
        self._held: list[_Item[Any]] = []
        self._flushing: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        """Start the thread and connect on it; the connection's error is raised here."""
        self._thread.start()
        await self.run(lambda connection, _: None)

    async def run(self, work: Work[T], *, write: bool = False) -> T:
        """Run ``work`` on the thread (in a write transaction with ``write``); its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        item = _Item(work, write, loop, future)
        if self._held:
            self._send(item)
        else:
            self._queue.put(item)
        return await future

    def post(self, work: Work[Any], on_error: Callable[[BaseException], None]) -> None:
        """A write nobody waits on; ``on_error`` is called on the thread if it fails.

        Held until the next call (or ``HOLD`` seconds, or ``stop()``), then queued
        before it: done in order with the rest, and any call made after it sees
        it written. Call it from a running event loop (its timer flushes).
        """

        def guarded(connection: sqlite3.Connection, now: float | None) -> None:
            try:
                work(connection, now)
            except Exception as error:
                on_error(error)

        loop = asyncio.get_running_loop()
        with self._lock:
            self._held.append(_Item(guarded, True, None, None))
            flushing = self._flushing
            if flushing is not None and not flushing.is_closed():
                return  # (a closed loop's timer never fires: this loop's will)
            self._flushing = loop
        loop.call_later(HOLD, self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._flushing = None
        self._send(None)

    def _send(self, item: _Item[Any] | _Stop | None) -> None:
        """Queue the held writes, then ``item``: under the lock, so that two callers
        sending at once keep every write in the order it was made."""
        with self._lock:
            held, self._held = self._held, []
            for write in held:
                self._queue.put(write)
            if item is not None:
                self._queue.put(item)

    def stop(self) -> None:
        """Close the connection once the work queued before is done, and end the thread."""
        self._send(_STOP)

    async def stopped(self) -> None:
        """``stop()``, and wait until the connection is closed."""
        if not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._send(_Stop(loop, future))
        await future

    # -- on the thread ---------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._connection = self._connect()
        except BaseException as error:  # reported to start(), and every later item
            _stopped(self._fail_all(error))
            return
        stop: _Stop | None = None
        busy = False
        try:
            while stop is None:
                first = self._queue.get()
                if isinstance(first, _Stop):
                    stop = first
                    break
                if busy and first.write:
                    time.sleep(GROUP)  # more writes are on their way: one commit for all
                batch = [first]
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, _Stop):
                        stop = item
                        break
                    batch.append(item)
                busy = sum(item.future is not None for item in batch) > 1
                self._run_batch(batch)
        finally:
            self._connection.close()
            if stop is not None:
                _stopped(stop)

    def _fail_all(self, error: BaseException) -> _Stop:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                return item
            item.error = error
            _deliver([item])

    def _run_batch(self, batch: list[_Item[Any]]) -> None:
        connection = self._connection
        assert connection is not None
        if len(batch) == 1 or not any(item.write for item in batch):
            # A read, or a write alone: one statement (autocommit) is its own
            # transaction; a write statement takes the write lock before it reads,
            # waiting for other processes' (busy_timeout) as BEGIN IMMEDIATE does.
            for item in batch:
                self._one(item, connection, micro(self._clock()) if item.write else None)
            _deliver(batch)
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:  # no write lock: the writes fail, the reads run
            for item in batch:
                if item.write:
                    item.error = error
                else:
                    self._one(item, connection, None)
            _deliver(batch)
            return
        now = micro(self._clock())  # the transaction's time, for all its writes
        for item in batch:
            self._one(item, connection, now if item.write else None)
        self._end(batch, connection)

    @staticmethod
    def _end(batch: list[_Item[Any]], connection: sqlite3.Connection) -> None:
        """Commit the batch's transaction, then tell the callers."""
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as error:  # nothing of the batch was written
            connection.rollback()
            for item in batch:
                item.result, item.error = None, error
        _deliver(batch)

    @staticmethod
    def _one(item: _Item[Any], connection: sqlite3.Connection, now: float | None) -> None:
        try:
            item.result = item.work(connection, now)
        except Exception as error:
            item.error = error


def _stopped(stop: _Stop) -> None:
    """Tell ``stopped()`` that the connection is closed."""
    loop, future = stop.loop, stop.future
    if loop is None or future is None:
        return

    def settle() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
        loop.call_soon_threadsafe(settle)


def _deliver(batch: list[_Item[Any]]) -> None:
    """Hand each item's outcome to its caller's event loop, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Item[Any]]] = {}
    for item in batch:
        if item.loop is not None:
            by_loop.setdefault(item.loop, []).append(item)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[_Item[Any]]) -> None:
    for item in items:
        future = item.future
        if future is None or future.done():  # the caller was cancelled
            continue
        if item.error is not None:
            future.set_exception(item.error)
        else:
            future.set_result(item.result)
