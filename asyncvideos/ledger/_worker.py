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
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["Worker"]

T = TypeVar("T")
#: Work for the thread: the connection, and the time of its transaction (None: a read).
Work = Callable[[sqlite3.Connection, "float | None"], T]


@attrs.define(slots=True)
class _Item(Generic[T]):
    work: Work[T]
    write: bool
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[T] | None
    result: Any = None
    error: BaseException | None = None


_STOP = object()


class Worker:
    """A thread that owns one ``sqlite3`` connection, made by ``connect`` on it."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], clock: Callable[[], float]):
        self._connect = connect
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._serve, name="asyncvideos-ledger", daemon=True)

    async def start(self) -> None:
        """Start the thread and connect on it; the connection's error is raised here."""
        self._thread.start()
        await self.run(lambda connection, _: None)

    async def run(self, work: Work[T], *, write: bool = False) -> T:
        """Run ``work`` on the thread (in a write transaction with ``write``); its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Item(work, write, loop, future))
        return await future

    def stop(self) -> None:
        """Close the connection once the work queued before is done, and end the thread."""
        self._queue.put(_STOP)

    async def stopped(self) -> None:
        self.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    # -- on the thread ---------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._connection = self._connect()
        except BaseException as error:  # reported to start(), and every later item
            self._fail_all(error)
            return
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop = False
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._run_batch(batch)
                if stop:
                    return
        finally:
            self._connection.close()

    def _fail_all(self, error: BaseException) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
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
                self._one(item, connection, round(self._clock(), 6) if item.write else None)
            _deliver(batch)
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            for item in batch:
                item.error = error
            _deliver(batch)
            return
        for item in batch:
            # Microseconds, as a datetime holds them: an Entry's times read back
            # as the very floats stored, so (created_at, key) cursors are exact.
            self._one(item, connection, round(self._clock(), 6) if item.write else None)
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
