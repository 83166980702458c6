"""The job ledger's storage interface: states, entries, the fingerprint, ``LedgerStore``.

Interface: stable

Every backend (``SQLiteLedger`` here, ``PostgresLedger`` for fleets) implements
``LedgerStore``'s abstract methods and nothing else; the client-side flow
(``_flow.py``: intent, POST, created, reconciliation, resume, downloads) is
written once against them and knows no SQL. Changes after the ``stable``
line are additive only (new optional methods with a default), listed at the
end of this docstring.

States
------
One entry per job key (the ``Idempotency-Key`` sent with the POST)::

    intent      written before the POST; the POST may be in flight (the lease
                is held) or its outcome unknown (the holder died or gave up)
    ambiguous   reconciliation could not tell whether the server made the job
                (``reconcile="raise"``); waits for ``resolve()``
    rejected    no job was made: the server refused the POST, the request never
                left, or ``resolve(key, video_id=None)``; the key may be sent again
    created     the server's id is known; the job is not finished
    completed   the job finished with its content to fetch
    failed      the job finished without content (``error_*`` say why)
    downloaded  the content was written whole: ``target``, ``content_size``,
                ``content_sha256``
    expired     the job completed but its content expired before it was downloaded

Transitions (anything else is refused by the ``states`` condition of the
write that would make it)::

    (none), rejected        -> intent            begin()
    intent                  -> created           the POST answered (or reconciliation found it)
    intent                  -> rejected          the POST certainly did nothing
    intent                  -> ambiguous         reconcile="raise"
    ambiguous               -> created, rejected resolve()
    created                 -> created           a new status (one write per status change)
    created                 -> completed, failed the job finished
    completed, downloaded   -> downloaded        the content was written whole (again)
    completed               -> expired           its content expired first
    any                     -> (same)            a lease taken, renewed or given back; a target

Table layout
------------
SQL-generic; ``<time>`` is a wall-clock instant (SQLite: REAL Unix seconds;
PostgreSQL: ``timestamptz``), ``<json>`` JSON text (or ``jsonb``)::

    CREATE TABLE schema_version (version INTEGER NOT NULL);   -- exactly one row
    CREATE TABLE jobs (
        key              TEXT PRIMARY KEY,     -- the Idempotency-Key: one entry per key
        operation        TEXT NOT NULL,        -- create | remix | edit | extend
        fingerprint      TEXT NOT NULL,        -- fingerprint() of the request
        state            TEXT NOT NULL,        -- one of the states above
        model            TEXT,                 -- what reconciliation matches on ...
        prompt           TEXT NOT NULL,
        size             TEXT,
        seconds          TEXT,
        source_video_id  TEXT,                 -- ... (remix, edit, extend of a job)
        request          <json> NOT NULL,      -- what the POST sent (see Intent.request)
        video_id         TEXT UNIQUE,          -- the server's id: one entry per server job
        status           TEXT,                 -- the last status seen
        error_code       TEXT,
        error_message    TEXT,
        expires_at       <time>,               -- when the server said the content expires
        candidates       <json>,               -- ambiguous: ids the listing found
        target           TEXT,                 -- where the content is to be written
        variant          TEXT,
        content_size     INTEGER,              -- downloaded: what was written
        content_sha256   TEXT,
        downloaded_at    <time>,
        owner            TEXT,                 -- who works on the entry now ...
        lease_expires_at <time>,               -- ... until then (renewed while working)
        created_at       <time> NOT NULL,      -- when the intent was written
        updated_at       <time> NOT NULL
    );
    CREATE INDEX jobs_by_state ON jobs (state, created_at, key);
    CREATE INDEX jobs_by_time ON jobs (created_at, key);

No column holds a secret: no API key, no header. Prompts (and the request's
other fields) are the caller's data and are kept: reconciliation needs them.

Migrations are numbered from 1 (this layout); ``schema_version`` holds the
highest applied. A backend applies the missing ones in order, each in a
transaction, and refuses (``LedgerError``) a database whose version is higher
than it knows.

The rules the database enforces (never a read-then-write in Python):

- ``begin``: ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE jobs.state =
  'rejected'``: at most one entry per key, and only a rejected one is reused.
- ``video_id`` is unique: a server job belongs to at most one entry (a second
  claim of it raises ``VideoOwnedError``).
- ``claim``/``update``: one conditional ``UPDATE ... WHERE key = ? AND state IN
  (...) [AND owner = ?]``; the caller learns from the returned row (or None)
  whether its condition held.

Leases use the backend's clock: ``claim`` and ``begin`` set
``lease_expires_at`` to its now plus ``lease_seconds``; a lease is free when
``owner`` is NULL or ``lease_expires_at <= now``. Owners are opaque strings
made by the flow (host, process and call; see ``_owners.py``).

``tests/ledger_contract.py`` is this contract as tests: a backend's test module
subclasses ``LedgerContract`` and gives it a ``make_store`` fixture.

Additive changes since ``stable``:

- ``record(key, change, states=, owner=) -> bool``: ``update`` without the
  entry read back; the default calls ``update``.
- ``note(key, change, states=) -> None``: a write nobody waits on (statuses),
  done in order before any later call returns, failures logged; the default
  awaits ``record``.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeAlias

import attrs

from .._errors import LedgerError

__all__ = [
    "FINISHED",
    "STATES",
    "UNFINISHED",
    "Change",
    "Entry",
    "Intent",
    "LedgerStore",
    "Operation",
    "State",
    "VideoOwnedError",
    "check_age",
    "fingerprint",
]

logger = logging.getLogger("asyncvideos")

State: TypeAlias = Literal[
    "intent",
    "ambiguous",
    "rejected",
    "created",
    "completed",
    "failed",
    "downloaded",
    "expired",
]
Operation: TypeAlias = Literal["create", "remix", "edit", "extend"]
Lease: TypeAlias = Literal["keep", "renew", "release"]

STATES: tuple[State, ...] = (
    "intent",
    "ambiguous",
    "rejected",
    "created",
    "completed",
    "failed",
    "downloaded",
    "expired",
)
#: States that ``resume()`` has work for (a completed entry only with a target).
UNFINISHED: frozenset[State] = frozenset({"intent", "ambiguous", "created", "completed"})
#: States nothing more happens to (``rejected`` too, until the key is sent again).
FINISHED: frozenset[State] = frozenset({"failed", "downloaded", "expired", "rejected"})
OPERATIONS: tuple[Operation, ...] = ("create", "remix", "edit", "extend")
_CREATED: tuple[State, ...] = ("created",)
_AMBIGUOUS: tuple[State, ...] = ("ambiguous",)

FINGERPRINT_VERSION = 1


def fingerprint(operation: str, fields: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of what defines a request: its operation and body fields.

    ``fields`` are the body as sent (``extra_body`` merged in, ``seconds`` as
    the string the API takes, the source job as ``{"video": {"id": ...}}`` or
    the remix path's id), with a file given as ``{"sha256": <hex>}`` rather
    than its bytes. Serialized as canonical JSON (sorted keys, no spaces,
    UTF-8), so the same request always gives the same fingerprint.
    """
    canonical = _CANONICAL.encode(
        {"v": FINGERPRINT_VERSION, "operation": operation, "fields": fields}
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


#: ``fingerprint``'s serialization, made once (``json.dumps`` with options makes
#: an encoder per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class VideoOwnedError(LedgerError, ValueError):
    """A server job that another ledger entry already owns (``video_id`` is unique).

    ``video_id`` is the job; ``owner_key`` the key of the entry that has it,
    when the backend can tell.
    """

    def __init__(self, video_id: str, owner_key: str | None = None) -> None:
        held = f" (entry {owner_key!r})" if owner_key else ""
        super().__init__(f"Video job {video_id} already belongs to another ledger entry{held}")
        self.video_id = video_id
        self.owner_key = owner_key


@attrs.frozen(slots=True)
class Intent:
    """What ``begin()`` writes before a POST.

    ``request`` is what the POST sends, enough to send it again and nothing
    secret: ``{"path": "/videos", "json": {...}}`` for a JSON body, or
    ``{"path": ..., "form": {...}, "file": {"part", "filename",
    "content_type", "sha256", "path"}}`` for a multipart one (``file.path``
    is the file's path when it was given as one, else None). Headers and the
    key are never in it.
    """

    key: str
    operation: Operation
    fingerprint: str
    prompt: str
    request: Mapping[str, Any]
    model: str | None = None
    size: str | None = None
    seconds: str | None = None
    source_video_id: str | None = None


@attrs.frozen(slots=True)
class Entry:
    """One job as the ledger knows it (see the states in ``asyncvideos.ledger``).

    ``key`` is the job's ``Idempotency-Key``; ``video_id`` the server's id
    once known; ``status`` the last status seen (written when it changes);
    ``target``, ``content_size`` and ``content_sha256`` where the content
    was written and what was written. Timestamps are timezone-aware UTC
    datetimes, on the ledger's clock.
    """

    key: str
    operation: Operation
    fingerprint: str
    state: State
    prompt: str
    created_at: datetime
    updated_at: datetime
    request: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    model: str | None = None
    size: str | None = None
    seconds: str | None = None
    source_video_id: str | None = None
    video_id: str | None = None
    status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    expires_at: datetime | None = None
    candidates: tuple[str, ...] = ()
    target: str | None = None
    variant: str | None = None
    content_size: int | None = None
    content_sha256: str | None = None
    downloaded_at: datetime | None = None
    owner: str | None = None
    lease_expires_at: datetime | None = None

    @property
    def is_finished(self) -> bool:
        """Whether nothing more will happen to the entry (see ``FINISHED``)."""
        return self.state in FINISHED


class _Unset:
    """The type of ``UNSET``: "leave this column as it is"."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@attrs.frozen(slots=True)
class Change:
    """The columns one ``update()`` writes; a field left ``UNSET`` is not written.

    ``lease``: ``"keep"`` leaves the lease alone, ``"renew"`` moves its expiry
    to now plus ``lease_seconds`` (owner unchanged), ``"release"`` clears
    ``owner`` and ``lease_expires_at``. ``updated_at`` is always set to now.
    """

    state: State = UNSET
    video_id: str | None = UNSET
    status: str | None = UNSET
    error_code: str | None = UNSET
    error_message: str | None = UNSET
    expires_at: datetime | None = UNSET
    candidates: tuple[str, ...] = UNSET
    target: str | None = UNSET
    variant: str | None = UNSET
    content_size: int | None = UNSET
    content_sha256: str | None = UNSET
    downloaded_at: datetime | None = UNSET
    lease: Lease = "keep"

    def columns(self) -> dict[str, Any]:
        """The fields to write, by column name (``lease`` and ``UNSET`` left out)."""
        return {
            name: value for name in _CHANGE_COLUMNS if (value := getattr(self, name)) is not UNSET
        }


def check_age(older_than: object) -> timedelta:
    """``purge``'s ``older_than``: a ``timedelta`` of zero or more, else an error naming it."""
    if not isinstance(older_than, timedelta):
        raise TypeError(f"older_than must be a timedelta, got {type(older_than).__name__}")
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than!r}")
    return older_than


_CHANGE_COLUMNS = tuple(field.name for field in attrs.fields(Change) if field.name != "lease")


class LedgerStore(abc.ABC):
    """Where a job ledger keeps its entries: the interface every backend implements.

    Give one to ``AsyncVideos(ledger=...)`` (``SQLiteLedger`` embedded, or
    ``open_ledger(url)``); ``videos.ledger`` is the same object. For callers:
    ``get``, ``find``, ``entries``, ``resolve``. For backends: the abstract
    methods, each one statement (or one transaction) in which the database,
    not Python, decides. ``lease_seconds`` is how long a claim holds without
    being renewed. Use it as ``async with``, or call ``open()`` and
    ``close()``; a client opens a ledger on first use.
    """

    def __init__(self, *, lease_seconds: float = 60.0) -> None:
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)):
            raise TypeError(
                f"lease_seconds must be a number of seconds, got {type(lease_seconds).__name__}"
            )
        if not 0 < lease_seconds < float("inf"):
            raise ValueError(f"lease_seconds must be > 0 and finite, got {lease_seconds!r}")
        self.lease_seconds: float = float(lease_seconds)

    # -- lifecycle ---------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (``LedgerError`` for a newer
        one). Idempotent: a second call does nothing."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection(s). Idempotent."""

    async def __aenter__(self) -> LedgerStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- reads -------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None:
        """The entry for ``key``, or None."""

    @abc.abstractmethod
    async def find(self, video_id: str) -> Entry | None:
        """The entry that owns the server job ``video_id``, or None."""

    @abc.abstractmethod
    async def select(
        self,
        *,
        states: Collection[State] | None = None,
        since: datetime | None = None,
        after: Entry | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        """Up to ``limit`` entries in ``(created_at, key)`` order: those in ``states``
        (None: any), written at or after ``since``, and after the entry ``after``
        (a cursor: the last one of the previous page)."""

    @abc.abstractmethod
    async def owned(self, video_ids: Collection[str]) -> dict[str, str]:
        """Which of ``video_ids`` an entry owns: ``{video_id: key}``."""

    # -- writes ------------------------------------------------------------

    @abc.abstractmethod
    async def begin(self, intent: Intent, *, owner: str) -> tuple[Entry, bool]:
        """Write ``intent`` as a new entry in state ``intent``, its lease held by ``owner``.

        One statement: an entry already there with this key is replaced only
        when it is ``rejected``. Returns ``(entry, True)`` when written, else
        ``(the existing entry, False)`` (nothing written).
        """

    @abc.abstractmethod
    async def claim(
        self,
        key: str,
        *,
        owner: str,
        states: Collection[State],
        replacing: str | None = None,
        change: Change | None = None,
    ) -> Entry | None:
        """Take the lease of ``key`` for ``owner`` (for ``lease_seconds``), when its
        state is in ``states`` and its lease is free: no owner, an expired
        lease, held by ``owner`` already (a renewal), or held by ``replacing``
        (an owner the caller knows to be dead). ``change`` (its ``lease`` field
        ignored) is written in the same statement. One statement; the entry
        as written, or None when the condition did not hold."""

    @abc.abstractmethod
    async def update(
        self,
        key: str,
        change: Change,
        *,
        states: Collection[State],
        owner: str | None = None,
    ) -> Entry | None:
        """Write ``change`` to ``key`` when its state is in ``states`` (and, with
        ``owner``, when ``owner`` holds its lease). One statement; the entry
        as written, or None when the condition did not hold (nothing written).
        A ``video_id`` that another entry owns raises ``VideoOwnedError``."""

    # -- optional, with defaults a backend may replace ---------------------

    async def claim_next(
        self,
        *,
        owner: str,
        states: Collection[State],
        limit: int = 100,
    ) -> list[Entry]:
        """Claim up to ``limit`` entries in ``states`` whose lease is free, oldest
        first. The default claims them one by one; a server database does it
        in one statement (``FOR UPDATE SKIP LOCKED``)."""
        claimed: list[Entry] = []
        after: Entry | None = None
        while len(claimed) < limit:
            page = await self.select(states=states, after=after, limit=limit)
            if not page:
                break
            for entry in page:
                taken = await self.claim(entry.key, owner=owner, states=states)
                if taken is not None:
                    claimed.append(taken)
                    if len(claimed) == limit:
                        break
            after = page[-1]
        return claimed

    async def record(
        self,
        key: str,
        change: Change,
        *,
        states: Collection[State],
        owner: str | None = None,
    ) -> bool:
        """``update()`` for a caller that does not need the entry back (a status
        write): whether it was written. A backend may skip reading the row."""
        return await self.update(key, change, states=states, owner=owner) is not None

    async def note(self, key: str, change: Change, *, states: Collection[State]) -> None:
        """A write nobody waits on (a status seen by a wait): done before any later
        call on this store returns, in order; a failure is logged, not raised. The
        default awaits ``record()``; a backend with a queue just queues it."""
        try:
            await self.record(key, change, states=states)
        except LedgerError as error:
            logger.warning("The ledger could not record a status of %s: %s", key, error)

    async def flush(self) -> None:
        """Write now what ``note()`` queued. A client calls it when it closes, as it
        leaves a ledger object it was given open: a queue that waits on the event
        loop would otherwise be lost with it. The default has no queue."""
        return  # nothing held

    async def record_status(
        self,
        video_id: str,
        *,
        status: str,
        state: State,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> Entry | None:
        """Record a status learnt outside a wait (a webhook event) for the entry
        owning ``video_id``, if it is still ``created``; the entry as written,
        or None. A fleet backend also tells the other processes (``NOTIFY``)."""
        entry = await self.find(video_id)
        if entry is None or entry.state != "created":
            return None
        change = Change(
            state=state, status=status, error_code=error_code, error_message=error_message
        )
        return await self.update(entry.key, change, states=_CREATED)

    @abc.abstractmethod
    async def purge(self, *, older_than: timedelta) -> int:
        """Delete the finished entries (``FINISHED``: ``failed``, ``downloaded``,
        ``expired``, ``rejected``) not written for ``older_than``, in one statement;
        how many were deleted. Unfinished entries are never purged, however old.
        Backends check the age with ``check_age`` first (``TypeError``/``ValueError``)."""

    # -- for callers -------------------------------------------------------

    async def entries(
        self,
        *,
        state: State | Collection[State] | None = None,
        since: datetime | None = None,
    ) -> list[Entry]:
        """Every entry (or those in ``state``, one or several), written at or
        after ``since``, oldest first."""
        states = _states(state)
        found: list[Entry] = []
        after: Entry | None = None
        while True:
            page = await self.select(states=states, since=since, after=after, limit=500)
            found.extend(page)
            if len(page) < 500:
                return found
            after = page[-1]

    async def resolve(self, key: str, *, video_id: str | None) -> Entry:
        """Settle an ``ambiguous`` entry: ``video_id`` is the server job that is its
        (it becomes ``created`` and ``resume()`` waits on it), or None when the
        server made none (it becomes ``rejected``: the next call with the key
        sends it). ``ValueError`` when ``key`` is not ambiguous, or when the job
        belongs to another entry."""
        if not isinstance(key, str) or not key:
            raise TypeError("key must be a non-empty str")
        if video_id is not None and (not isinstance(video_id, str) or not video_id):
            raise TypeError("video_id must be a non-empty str or None")
        if video_id is None:
            change = Change(
                state="rejected",
                error_code="resolved",
                error_message="resolved: the server made no job for this key",
                candidates=(),
                lease="release",
            )
        else:
            change = Change(
                state="created",
                video_id=video_id,
                error_code=None,
                error_message=None,
                candidates=(),
                lease="release",
            )
        entry = await self.update(key, change, states=_AMBIGUOUS)
        if entry is None:
            current = await self.get(key)
            state = "no entry" if current is None else f"it is {current.state}"
            raise ValueError(f"key {key!r} is not ambiguous ({state}); nothing to resolve")
        return entry


def _states(state: object) -> frozenset[State] | None:
    """``entries(state=...)``: one state, several, or None; each checked."""
    if state is None:
        return None
    given = [state] if isinstance(state, str) else state
    if not isinstance(given, Collection):
        raise TypeError("state must be a state name, a collection of them, or None")
    for name in given:
        if name not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {name!r}")
    return frozenset(given)
