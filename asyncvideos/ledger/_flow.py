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
is claimed, in one statement, and reconciled by the policy:

- ``resend``: send again with the same key (a server that honours keys
  answers with the job it made), then retrieve it (a replay may be stale);
- ``adopt``: list the server's jobs from the intent's time minus
  ``clock_skew``, drop those another entry owns, match the recorded fields.
  Matches that agree on every field are the same request, so the oldest is
  taken; one inexact match (a server that leaves fields out) is taken too;
  several inexact ones are ambiguous. None: the POST never reached the
  server, once ``clock_skew`` has passed since the intent's last sign of
  life (a server still working on it would show the job by then): it is sent;
- ``raise``: the entry becomes ``ambiguous`` and ``AmbiguousCreateError``
  carries the candidates the listing found.

A POST that certainly did nothing (the connection never opened, a 4xx other
than 408, 409, 425 or 499) leaves a ``rejected`` entry, so the key can be sent
again; every other failure is ambiguous and goes to the policy at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from .._callbacks import call_back
from .._errors import (
    AmbiguousCreateError,
    APIConnectionError,
    APIStatusError,
    AsyncVideosError,
)
from .._models import Video
from .._protocol import FormFile
from ._owners import new_owner, owner_is_dead
from ._store import (
    Change,
    Entry,
    Intent,
    LedgerStore,
    Operation,
    State,
    VideoOwnedError,
    fingerprint,
)

if TYPE_CHECKING:
    from .._waiting import Fetch
    from .._webhooks import WebhookEvent, WebhookReceiver

__all__ = ["RECONCILE_POLICIES", "Journal", "PaidRequest", "Reconcile", "refused"]

logger = logging.getLogger("asyncvideos")

Reconcile: TypeAlias = Literal["raise", "resend", "adopt"]
RECONCILE_POLICIES: tuple[Reconcile, ...] = ("raise", "resend", "adopt")
Send = Callable[["PaidRequest", str], Awaitable[Video]]
Retrieve = Callable[[str], Awaitable[Video]]
#: The server's jobs, newest first, down to (about) the given time.
Newest = Callable[[datetime], AsyncIterator[Video]]
OnCreated = Callable[[Entry], Any]
Attempt = Literal["first", "resend"]

_INTENT: tuple[State, ...] = ("intent",)
_UNANSWERED: tuple[State, ...] = ("intent", "ambiguous")
_CREATED: tuple[State, ...] = ("created",)
#: 4xx statuses that do not prove the server did nothing: a timeout, a request
#: with this key still in progress (409, as careful servers answer), too early, gone.
_NOT_REFUSALS = frozenset({408, 409, 425, 499})
_FINAL_EVENTS = {
    "video.completed": ("completed", "completed"),
    "video.failed": ("failed", "failed"),
}


def refused(error: BaseException) -> bool:
    """Whether a failed POST certainly made no job."""
    if isinstance(error, APIConnectionError):
        return not error.request_sent
    if isinstance(error, APIStatusError):
        return 400 <= error.status_code < 500 and error.status_code not in _NOT_REFUSALS
    return False


def state_of(video: Video) -> State:
    """The ledger state a server's job is in."""
    if video.is_completed:
        return "completed"
    if video.is_failed:
        return "failed"
    return "created"


def status_change(video: Video) -> Change:
    error = video.error
    return Change(
        state=state_of(video),
        status=video.status,
        expires_at=video.expires_at,
        error_code=None if error is None else error.code,
        error_message=None if error is None else error.message,
    )


@attrs.frozen(slots=True)
class PaidRequest:
    """One paid POST, described before it is sent: path and body (JSON, or form
    fields and one file part, read already). ``file_path`` is where the file
    came from, when it was given as a path (so a resend can read it again)."""

    operation: Operation
    path: str
    json: Mapping[str, Any] | None = None
    form: Mapping[str, str] | None = None
    file: FormFile | None = None
    file_path: str | None = None
    source_video_id: str | None = None
    _sha256: str | None = attrs.field(default=None, alias="sha256")

    @property
    def body(self) -> Mapping[str, Any]:
        return self.json if self.json is not None else (self.form or {})

    def file_sha256(self) -> str | None:
        if self.file is None:
            return None
        return self._sha256 or hashlib.sha256(self.file.data).hexdigest()

    def described(self) -> dict[str, Any]:
        """``Intent.request``: what was sent, the file as its name, type and SHA-256."""
        if self.file is None:
            return {"path": self.path, "json": dict(self.body)}
        file = self.file
        return {
            "path": self.path,
            "form": dict(self.body),
            "file": {
                "part": file.name,
                "filename": file.filename,
                "content_type": file.content_type,
                "sha256": self.file_sha256(),
                "path": self.file_path,
            },
        }

    def fingerprint(self) -> str:
        described = self.described()
        if self.file is not None:
            described["file"] = {"sha256": self.file_sha256()}
        return fingerprint(self.operation, described)

    def intent(self, key: str) -> Intent:
        body = self.body

        def field(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) else None

        return Intent(
            key=key,
            operation=self.operation,
            fingerprint=self.fingerprint(),
            prompt=str(body.get("prompt", "")),
            request=self.described(),
            model=field("model"),
            size=field("size"),
            seconds=field("seconds"),
            source_video_id=self.source_video_id,
        )


def rebuilt(entry: Entry) -> PaidRequest | None:
    """The request an entry recorded, to send again; None when it cannot be (a
    file that was not given as a path, or that changed since)."""
    request = entry.request
    path = request.get("path")
    if not isinstance(path, str):
        return None
    if "file" not in request:
        body = request.get("json")
        if not isinstance(body, Mapping):
            return None
        return PaidRequest(entry.operation, path, json=body, source_video_id=entry.source_video_id)
    file = request["file"]
    form = request.get("form")
    if not isinstance(file, Mapping) or not isinstance(form, Mapping):
        return None
    where = file.get("path")
    if not isinstance(where, str):
        return None
    try:
        data = Path(where).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != file.get("sha256"):
        return None
    part = FormFile(str(file["part"]), str(file["filename"]), str(file["content_type"]), data)
    return PaidRequest(
        entry.operation,
        path,
        form=form,
        file=part,
        file_path=where,
        source_video_id=entry.source_video_id,
    )


def _compared(entry: Entry, video: Video) -> Literal["no", "exact", "inexact"]:
    """How a server's job matches an entry's recorded fields: a field the server
    left out makes the match inexact; one that differs, no match."""
    pairs: list[tuple[str | None, str | None]] = [(entry.prompt, video.prompt)]
    if entry.operation == "create":
        pairs += [
            (entry.model, video.model),
            (entry.size, video.size),
            (entry.seconds, video.seconds),
        ]
    elif entry.operation == "remix":
        pairs.append((entry.source_video_id, video.remixed_from_video_id))
    exact = True
    for ours, theirs in pairs:
        if ours is None:
            continue
        if theirs is None:
            exact = False
        elif ours != theirs:
            return "no"
    return "exact" if exact else "inexact"


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
        self._newest = newest
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
                return await self._send(entry, request, send, retrieve, owner, "first")
            if entry.fingerprint != wanted:
                raise _reused(key, entry)
            if entry.video_id is not None and entry.state not in _UNANSWERED:
                video = await retrieve(entry.video_id)  # one retrieve, no POST
                await self.observed(entry, video)
                return video
            if entry.state == "ambiguous":
                raise _still_ambiguous(entry)
            if entry.state == "intent":
                claimed = await self._claim_intent(entry, owner)
                if claimed is not None:
                    last_seen = entry.updated_at
                    return await self._reconcile(claimed, request, send, retrieve, owner, last_seen)
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

    async def _send(
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
        try:
            async with self.renewing(entry.key, owner, _INTENT):
                video = await send(request, entry.key)
        except asyncio.CancelledError:
            await self._release(entry.key, owner)
            raise
        except Exception as error:
            if attempt == "first" and refused(error):
                await self._reject(entry.key, owner, error)
                raise
            if attempt == "resend" or not isinstance(error, AsyncVideosError):
                # Unknown still: the entry stays an intent for the next call.
                await self._release(entry.key, owner)
                raise
            return await self._reconcile(entry, request, send, retrieve, owner, None, error)
        await self._record_created(entry.key, video)
        return video

    async def _reconcile(
        self,
        entry: Entry,
        request: PaidRequest | None,
        send: Send,
        retrieve: Retrieve,
        owner: str,
        last_seen: datetime | None,
        cause: BaseException | None = None,
    ) -> Video:
        """Settle an intent whose outcome is unknown, holding its lease."""
        if self.reconcile == "raise":
            return await self._give_up(entry, owner, cause)
        if request is None:
            request = await asyncio.to_thread(rebuilt, entry)
        if self.reconcile == "resend":
            if request is None:
                return await self._give_up(entry, owner, cause, _unsendable(entry))
            video = await self._send(entry, request, send, retrieve, owner, "resend")
            fresh = await retrieve(video.id)  # a replayed answer may be stale
            await self.observed(entry, fresh)
            return fresh
        return await self._adopt(entry, request, send, retrieve, owner, last_seen, cause)

    async def _adopt(
        self,
        entry: Entry,
        request: PaidRequest | None,
        send: Send,
        retrieve: Retrieve,
        owner: str,
        last_seen: datetime | None,
        cause: BaseException | None,
    ) -> Video:
        # Until clock_skew has passed since the intent's last sign of life, a
        # server still working on its POST may not list the job yet.
        settled = (last_seen or _utc_now()) + timedelta(seconds=self.clock_skew)
        for _ in range(8):  # each round ends in a decision, unless another entry wins a race
            try:
                async with self.renewing(entry.key, owner, _INTENT):
                    matches, exact = await self._candidates(entry)
                    while not matches and (delay := (settled - _utc_now()).total_seconds()) > 0:
                        await asyncio.sleep(delay)
                        matches, exact = await self._candidates(entry)
            except BaseException:
                await self._release(entry.key, owner)
                raise
            if not matches:
                if request is None:
                    return await self._give_up(entry, owner, cause, _unsendable(entry))
                # Nothing reached the server: a refusal now proves nothing was made.
                return await self._send(entry, request, send, retrieve, owner, "first")
            if not exact and len(matches) > 1:
                return await self._give_up(entry, owner, cause, candidates=matches)
            try:
                await self._record_created(entry.key, matches[0], adopted=True)
            except VideoOwnedError:
                continue  # another entry took it just now: look again
            return matches[0]
        return await self._give_up(entry, owner, cause)  # pragma: no cover - a race 8 times

    async def _candidates(self, entry: Entry) -> tuple[list[Video], bool]:
        """The server's jobs that could be ``entry``'s, oldest first, and whether
        they all match it exactly."""
        since = entry.created_at - timedelta(seconds=self.clock_skew)
        listed = [
            video
            async for video in self._newest(since)
            if video.created_at is None or video.created_at >= since
        ]
        owned = await self.store.owned([video.id for video in listed])
        matches: list[Video] = []
        exact = True
        for video in reversed(listed):
            if video.id in owned:
                continue
            how = _compared(entry, video)
            if how != "no":
                matches.append(video)
                exact = exact and how == "exact"
        return matches, exact

    async def _give_up(
        self,
        entry: Entry,
        owner: str,
        cause: BaseException | None,
        reason: str | None = None,
        candidates: list[Video] | None = None,
    ) -> Video:
        """Mark the entry ambiguous with what the listing found; raise."""
        if candidates is None:
            try:
                candidates, _ = await self._candidates(entry)
            except AsyncVideosError as error:  # the listing failed: no candidates known
                logger.warning("Listing candidates for key %s failed: %s", entry.key, error)
                candidates = []
        ids = tuple(video.id for video in candidates)
        message = reason or (
            f"The create with key {entry.key!r} may or may not have made a job "
            f"({len(ids)} candidate{'' if len(ids) == 1 else 's'} on the server)"
        )
        change = Change(
            state="ambiguous",
            candidates=ids,
            error_code="ambiguous",
            error_message=message[:1000],
            lease="release",
        )
        await self.store.update(entry.key, change, states=_INTENT)
        raise AmbiguousCreateError(
            f"{message}; settle it with videos.ledger.resolve({entry.key!r}, video_id=...)",
            key=entry.key,
            candidates=ids,
        ) from cause

    # -- writes of the steps -----------------------------------------------

    async def _record_created(self, key: str, video: Video, *, adopted: bool = False) -> Entry:
        change = attrs.evolve(status_change(video), video_id=video.id, lease="release")
        if adopted:
            change = attrs.evolve(change, error_code=None, error_message=None, candidates=())
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
            return current
        if self._on_created is not None:
            await call_back(self._on_created, entry)
        return entry

    async def _reject(self, key: str, owner: str, error: BaseException) -> None:
        code = getattr(error, "code", None)
        change = Change(
            state="rejected",
            error_code=code if isinstance(code, str) else type(error).__name__,
            error_message=str(error)[:1000],
            lease="release",
        )
        await self.store.update(key, change, states=_INTENT, owner=owner)

    async def _release(self, key: str, owner: str, states: tuple[State, ...] = _INTENT) -> None:
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

    @contextlib.asynccontextmanager
    async def renewing(
        self, key: str, owner: str, states: tuple[State, ...]
    ) -> AsyncIterator[None]:
        """Renew the lease on ``key`` while the block runs (a POST, a download)."""
        interval = self.store.lease_seconds / 3

        async def renew() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.store.update(key, Change(lease="renew"), states=states, owner=owner)
                except AsyncVideosError as error:
                    logger.warning("Could not renew the lease on %s: %s", key, error)

        task = asyncio.ensure_future(renew())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def observed(self, entry: Entry, video: Video) -> None:
        """Record the job's status if it changed from what the entry says."""
        if video.status != entry.status and entry.state == "created":
            await self.store.record(entry.key, status_change(video), states=_CREATED)

    def recording(
        self, fetch: Fetch, video_id: str, known: tuple[str, str | None] | None = None
    ) -> Fetch:
        """``fetch`` (a wait's poll), writing each status change to the job's entry.

        ``known`` is ``(key, last status)`` when the caller has it; otherwise the
        entry is looked up on the first poll (a job of no entry is not recorded).
        """
        state: list[Any] = [] if known is None else [known]

        async def polled() -> tuple[Video, float | None]:
            if not state:
                entry = await self.store.find(video_id)
                state.append(None if entry is None else (entry.key, entry.status))
            video, hint = await fetch()
            if state[0] is not None and video.status != state[0][1]:
                key = state[0][0]
                await self.store.record(key, status_change(video), states=_CREATED)
                state[0] = (key, video.status)
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
                    return await self._reconcile(
                        claimed, None, send, retrieve, owner, entry.updated_at
                    )
            elif entry.video_id is not None and entry.state != "ambiguous":
                return await retrieve(entry.video_id)
            elif entry.state == "ambiguous":
                raise _still_ambiguous(entry)
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


def _reused(key: str, entry: Entry | None = None) -> ValueError:
    what = "" if entry is None else f" ({entry.operation} of {entry.prompt[:60]!r})"
    return ValueError(
        f"idempotency_key {key!r} is already the key of another request{what}: "
        "a key names exactly one request; use a new key for a different one"
    )


def _still_ambiguous(entry: Entry) -> AmbiguousCreateError:
    return AmbiguousCreateError(
        f"The create with key {entry.key!r} is ambiguous ({len(entry.candidates)} "
        f"candidate{'' if len(entry.candidates) == 1 else 's'}); settle it with "
        f"videos.ledger.resolve({entry.key!r}, video_id=...)",
        key=entry.key,
        candidates=entry.candidates,
    )


def _unsendable(entry: Entry) -> str:
    return (
        f"The create with key {entry.key!r} may or may not have made a job, and cannot "
        "be sent again from the ledger (its input file was not given as a path, or "
        "changed since)"
    )
