"""The job ledger on the client side: every paid call, its reconciliation, its statuses.

Written once against ``LedgerStore`` (``_store.py``): it knows no SQL, and no
HTTP either (the client hands it a ``send`` and a ``retrieve`` per call, and a
listing of its newest jobs). One paid call goes, each step durable before the
next:

1. **intent**: ``begin()`` writes the key (the ``Idempotency-Key``), the
   request's fingerprint and fields, leased to this call;
2. **POST**, the lease renewed while it runs;
3. **created**: the server's id as soon as the POST answers, then
   ``on_created``;
4. **progress and the end**: each status a wait (or a webhook event) sees,
   one write per change (``recording``);
5. **downloaded** (``_resume.py``).

A key the ledger knows is never sent blindly. Its fingerprint must match
(else ``ValueError``); a known server id is returned with one retrieve; an
``intent`` whose holder is alive (another task of this process, waited on in
memory; another process, by its lease) is waited on; one whose holder is gone
is claimed, in one statement, and reconciled by the policy (``resend``,
``adopt`` or ``raise``: ``_reconcile.py``).

A POST that certainly did nothing (the connection never opened, a 4xx other
than 408, 409, 425 or 499) leaves a ``rejected`` entry, so the key can be sent
again; every other failure is ambiguous and goes to the policy at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .._callbacks import call_back
from .._errors import AsyncVideosError, LedgerError
from .._models import Video
from ._owners import new_owner, owner_is_dead
from ._reconcile import reconcile, still_ambiguous
from ._request import PaidRequest, refused, state_of, status_change
from ._store import UNSET, Change, Entry, LedgerStore, State

if TYPE_CHECKING:
    from .._waiting import Fetch
    from .._webhooks import WebhookEvent, WebhookReceiver

__all__ = ["RECONCILE_POLICIES", "Journal", "PaidRequest", "Reconcile", "refused"]

logger = logging.getLogger("asyncvideos")

Reconcile: TypeAlias = Literal["raise", "resend", "adopt"]
RECONCILE_POLICIES: tuple[Reconcile, ...] = ("raise", "resend", "adopt")
Send = Callable[[PaidRequest, str], Awaitable[Video]]
Retrieve = Callable[[str], Awaitable[Video]]
#: The server's jobs, newest first, down to (about) the given time.
Newest = Callable[[datetime], AsyncIterator[Video]]
OnCreated = Callable[[Entry], Any]
Attempt = Literal["first", "resend"]

_INTENT: tuple[State, ...] = ("intent",)
_UNANSWERED: tuple[State, ...] = ("intent", "ambiguous")
_CREATED: tuple[State, ...] = ("created",)
_FINAL_EVENTS = {
    "video.completed": ("completed", "completed"),
    "video.failed": ("failed", "failed"),
}


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Journal:
    """A client's ledger: the store, the policy, and the calls in flight in memory."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        reconcile: Reconcile,
        clock_skew: float,
        on_created: OnCreated | None,
        newest: Newest,
        owns_store: bool,
    ) -> None:
        self.store = store
        self.reconcile = reconcile
        self.clock_skew = clock_skew
        self._on_created = on_created
        self.newest = newest
        self._owns_store = owns_store
        self._token = uuid.uuid4().hex[:12]
        self._opened = False
        #: key -> (fingerprint, outcome of the call on it: its Video, or None if it failed)
        self._active: dict[str, tuple[str, asyncio.Future[Video | None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    async def ready(self) -> LedgerStore:
        if not self._opened:
            await self.store.open()
            self._opened = True
        return self.store

    def owner(self) -> str:
        return new_owner(self._token)

    @property
    def poll_interval(self) -> float:
        """How often a held entry is looked at again."""
        return min(1.0, max(0.02, self.store.lease_seconds / 20))

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        pending = [*self._writes, *([listener] if listener is not None else [])]
        if listener is not None:
            listener.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._owns_store:
            await self.store.close()
            return
        try:
            await self.store.flush()
        except LedgerError as error:
            logger.warning("The ledger could not write the statuses it held: %s", error)

    # -- one paid call -----------------------------------------------------

    async def create(self, request: PaidRequest, key: str, send: Send, retrieve: Retrieve) -> Video:
        """The paid call ``request`` under ``key``: its job, paid for at most once."""
        await self.ready()
        wanted = request.fingerprint()
        # Another task of this process on the same key: wait for it, take its job.
        while (running := self._active.get(key)) is not None:
            if running[0] != wanted:
                raise _reused(key)
            outcome = await asyncio.shield(running[1])
            if outcome is not None:
                return outcome
        done: asyncio.Future[Video | None] = asyncio.get_running_loop().create_future()
        self._active[key] = (wanted, done)
        try:
            video = await self._create(request, key, wanted, send, retrieve)
        except BaseException:
            done.set_result(None)
            raise
        else:
            done.set_result(video)
            return video
        finally:
            del self._active[key]

    async def _create(
        self, request: PaidRequest, key: str, wanted: str, send: Send, retrieve: Retrieve
    ) -> Video:
        owner = self.owner()
        while True:
            entry, written = await self.store.begin(request.intent(key), owner=owner)
            if written:
                return await self.send_held(entry, request, send, retrieve, owner, "first")
            if entry.fingerprint != wanted:
                raise _reused(key, entry)
            if entry.video_id is not None and entry.state not in _UNANSWERED:
                video = await retrieve(entry.video_id)  # one retrieve, no POST
                await self.observed(entry, video)
                return video
            if entry.state == "ambiguous":
                raise still_ambiguous(entry)
            if entry.state == "intent":
                claimed = await self._claim_intent(entry, owner)
                if claimed is not None:
                    last_seen = entry.updated_at
                    return await reconcile(self, claimed, request, send, retrieve, owner, last_seen)
            # Otherwise it changed under us (created, rejected, resolved): read again.

    async def _claim_intent(self, entry: Entry, owner: str) -> Entry | None:
        """Claim an ``intent`` once its holder is gone (its lease expired, or its
        process dead); until then wait. None when it stops being an intent."""
        while True:
            holder = entry.owner
            dead = holder is not None and owner_is_dead(holder)
            expires = entry.lease_expires_at
            live = holder is not None and not dead and expires is not None and expires > _utc_now()
            if not live:
                claimed = await self.store.claim(
                    entry.key, owner=owner, states=_INTENT, replacing=holder if dead else None
                )
                if claimed is not None:
                    return claimed
            await asyncio.sleep(self.poll_interval)
            current = await self.store.get(entry.key)
            if current is None or current.state != "intent":
                return None
            entry = current

    async def send_held(
        self,
        entry: Entry,
        request: PaidRequest,
        send: Send,
        retrieve: Retrieve,
        owner: str,
        attempt: Attempt,
    ) -> Video:
        """POST with the lease held and record the answer; a failure goes to the
        policy (after a first attempt) or is raised (after a resend)."""
        renewal = self.renewal(entry.key, owner, _INTENT)
        try:
            try:
                video = await send(request, entry.key)
            finally:
                await renewal.stop()
        except asyncio.CancelledError:
            await self.release(entry.key, owner)
            raise
        except Exception as error:
            if attempt == "first" and refused(error):
                await self._reject(entry.key, owner, error)
                raise
            if attempt == "resend" or not isinstance(error, AsyncVideosError):
                # Unknown still: the entry stays an intent for the next call.
                await self.release(entry.key, owner)
                raise
            return await reconcile(self, entry, request, send, retrieve, owner, None, error)
        await self.record_created(entry.key, video)
        return video

    async def record_created(self, key: str, video: Video, *, adopted: bool = False) -> None:
        """Write the server's id (and its first status) to ``key``'s entry, then hand
        the entry to ``on_created``: read back only when there is that hook."""
        error = video.error
        change = Change(
            state=state_of(video),
            video_id=video.id,
            status=video.status,
            expires_at=video.expires_at,
            error_code=None if error is None else error.code,
            error_message=None if error is None else error.message,
            candidates=() if adopted else UNSET,
            lease="release",
        )
        on_created = self._on_created
        if on_created is None:
            entry = None
            if await self.store.record(key, change, states=_UNANSWERED):
                return
        else:
            entry = await self.store.update(key, change, states=_UNANSWERED)
        if entry is None:
            current = await self.store.get(key)
            if current is None or current.video_id != video.id:
                # The server made a second job for one key (a lease lost mid-POST).
                logger.error(
                    "Key %s already has job %s; the server also made %s, which is recorded nowhere",
                    key,
                    None if current is None else current.video_id,
                    video.id,
                )
            if current is None:  # pragma: no cover - an entry is never deleted
                raise AsyncVideosError(f"The ledger has no entry {key!r}")
            return
        assert on_created is not None
        await call_back(on_created, entry)

    async def _reject(self, key: str, owner: str, error: BaseException) -> None:
        code = getattr(error, "code", None)
        change = Change(
            state="rejected",
            error_code=code if isinstance(code, str) else type(error).__name__,
            error_message=str(error)[:1000],
            lease="release",
        )
        await self.store.update(key, change, states=_INTENT, owner=owner)

    async def release(self, key: str, owner: str, states: tuple[State, ...] = _INTENT) -> None:
        """Give the lease back (also while being cancelled), so the next call
        reconciles at once instead of waiting out the lease."""
        task = asyncio.ensure_future(
            self.store.update(key, Change(lease="release"), states=states, owner=owner)
        )
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            raise
        except AsyncVideosError as error:  # the lease then simply expires
            logger.warning("Could not release the lease on %s: %s", key, error)

    def renewal(self, key: str, owner: str, states: tuple[State, ...]) -> _Renewal:
        """Renew the lease on ``key`` from now until ``stop()``: every third of the
        lease, from when a third has passed (most POSTs end well before, and
        cost a timer only)."""
        return _Renewal(self.store, key, owner, states)

    @contextlib.asynccontextmanager
    async def renewing(
        self, key: str, owner: str, states: tuple[State, ...]
    ) -> AsyncIterator[None]:
        """``renewal()`` while the block runs (a download, a listing)."""
        renewal = self.renewal(key, owner, states)
        try:
            yield
        finally:
            await renewal.stop()

    async def observed(self, entry: Entry, video: Video) -> None:
        """Record the job's status if it changed from what the entry says."""
        if video.status != entry.status and entry.state == "created":
            await self.store.note(entry.key, status_change(video), states=_CREATED)

    def recording(
        self, fetch: Fetch, video_id: str, known: tuple[str, str | None] | None = None
    ) -> Fetch:
        """``fetch`` (a wait's poll), writing each status change to the job's entry.

        ``known`` is ``(key, last status)`` when the caller has it; otherwise the
        entry is looked up on the first poll (a job of no entry is not recorded).
        """
        store = self.store
        looked = known is not None
        key, last = known if known is not None else ("", None)

        async def polled() -> tuple[Video, float | None]:
            nonlocal looked, key, last
            if not looked:
                looked = True
                entry = await store.find(video_id)
                if entry is not None:
                    key, last = entry.key, entry.status
            video, hint = await fetch()
            if key and video.status != last:
                last = video.status
                # Not waited on: the store does it before anything later of ours.
                await store.note(key, status_change(video), states=_CREATED)
            return video, hint

        return polled

    async def settle(self, entry: Entry, send: Send, retrieve: Retrieve) -> Video:
        """``resume()`` on an ``intent`` entry: claim it once its holder is gone and
        reconcile it from what it recorded; its job."""
        owner = self.owner()
        while True:
            if entry.state == "intent":
                claimed = await self._claim_intent(entry, owner)
                if claimed is not None:
                    return await reconcile(
                        self, claimed, None, send, retrieve, owner, entry.updated_at
                    )
            elif entry.video_id is not None and entry.state != "ambiguous":
                return await retrieve(entry.video_id)
            elif entry.state == "ambiguous":
                raise still_ambiguous(entry)
            else:
                raise AsyncVideosError(
                    f"The create with key {entry.key!r} was refused: {entry.error_message}"
                )
            current = await self.store.get(entry.key)
            if current is None:  # pragma: no cover - an entry is never deleted
                raise AsyncVideosError(f"The ledger has no entry {entry.key!r}")
            entry = current

    # -- webhook events ----------------------------------------------------

    def listen(self, receiver: WebhookReceiver) -> None:
        """Record the final events ``receiver`` verifies as statuses (from now on)."""
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._listen(receiver))

    async def _listen(self, receiver: WebhookReceiver) -> None:
        async for event in receiver.events():
            await self.on_event(event)

    async def on_event(self, event: WebhookEvent) -> None:
        final = _FINAL_EVENTS.get(event.type)
        if final is None or event.video_id is None:
            return
        status, state = final
        try:
            await self.store.record_status(event.video_id, status=status, state=state)  # type: ignore[arg-type]
        except AsyncVideosError as error:
            logger.warning("Could not record event %s in the ledger: %s", event.id, error)


class _Renewal:
    """A lease kept alive: a timer, then a task renewing every third of the lease."""

    __slots__ = ("_interval", "_key", "_owner", "_states", "_store", "_task", "_timer")

    def __init__(self, store: LedgerStore, key: str, owner: str, states: tuple[State, ...]) -> None:
        self._store, self._key, self._owner, self._states = store, key, owner, states
        self._interval = store.lease_seconds / 3
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._start)

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        while True:
            try:
                await self._store.update(
                    self._key, Change(lease="renew"), states=self._states, owner=self._owner
                )
            except AsyncVideosError as error:
                logger.warning("Could not renew the lease on %s: %s", self._key, error)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        self._timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _reused(key: str, entry: Entry | None = None) -> ValueError:
    what = "" if entry is None else f" ({entry.operation} of {entry.prompt[:60]!r})"
    return ValueError(
        f"idempotency_key {key!r} is already the key of another request{what}: "
        "a key names exactly one request; use a new key for a different one"
    )
