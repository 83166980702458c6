"""The job ledger's less travelled paths: cancellation, races, a locked database,
requests that cannot be sent again, and the small print of the interface."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conditions import until

# quick_store is a fixture of test_ledger's, requested by name.
from test_ledger import (  # noqa: F401
    PNG,
    Counting,
    _paid_intent,
    dead_pid,
    owner_of,
    posts,
    quick_store,
)

from asyncvideos import (
    AmbiguousCreateError,
    AsyncVideosError,
    ContentExpiredError,
    LedgerError,
    WaitFailure,
)
from asyncvideos.ledger import Change, Entry, SQLiteLedger
from asyncvideos.ledger._store import UNSET
from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock, sign_webhook
from asyncvideos.webhooks import WebhookReceiver


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[Counting]:
    counting = Counting(SQLiteLedger(db))
    yield counting
    await counting.close()


class TestCancellation:
    async def test_a_cancelled_create_leaves_its_intent_free_at_once(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        """Cancelled mid-POST: the intent stays (the POST may have arrived), its
        lease is given back, and the next call reconciles it without waiting."""
        api.inject(Fault(delay=30), times=1, method="POST")
        async with api.client(ledger=store, reconcile="resend") as videos:
            task = asyncio.ensure_future(videos.create("a boat", idempotency_key="k"))
            await until(lambda: api.in_flight == 1, "the POST in flight")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            entry = await store.get("k")
            assert entry is not None
            assert (entry.state, entry.owner) == ("intent", None)
            video = await videos.create("a boat", idempotency_key="k")
        assert entry.key == "k"
        assert list(api.videos) == [video.id]

    async def test_a_write_whose_caller_is_cancelled_is_still_done(self, db: Path) -> None:
        async with SQLiteLedger(db) as store:
            task = asyncio.ensure_future(store.begin(_paid_intent("a boat", "k"), owner="a"))
            await asyncio.sleep(0)  # queued on the ledger's thread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await store.get("k") is not None


class TestRaces:
    async def test_another_answer_recorded_first_is_kept_and_said(
        self,
        api: FakeVideosAPI,
        store: Counting,
        db: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A job recorded by someone else while our POST ran: theirs is kept, ours
        (a second job for one key) is logged, never silently dropped."""
        (theirs,) = api.seed(1, status="queued")
        api.inject(Fault(delay=0.3), times=1, method="POST")
        async with api.client(ledger=store) as videos, SQLiteLedger(db) as other:
            task = asyncio.ensure_future(videos.create("a boat", idempotency_key="k"))
            await until(lambda: api.in_flight == 1, "the POST in flight")
            change = Change(state="created", video_id=theirs, lease="release")
            assert await other.update("k", change, states=("intent",)) is not None
            ours = await task
        assert ours.id != theirs
        assert "recorded nowhere" in caplog.text
        entry = await store.get("k")
        assert entry is not None
        assert entry.video_id == theirs

    async def test_a_download_held_by_another_process_is_waited_for(
        self, api: FakeVideosAPI, quick_store: Counting, db: Path, tmp_path: Path
    ) -> None:
        """Two workers, one file: the second waits and takes the first one's."""
        store = quick_store
        target = tmp_path / "boat.mp4"
        sleeper = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)"
        )
        try:
            async with api.client(ledger=store) as videos, SQLiteLedger(db) as other:
                video = await videos.create_and_wait("a boat", idempotency_key="k")
                holder = owner_of(sleeper.pid)
                held = await other.claim("k", owner=holder, states=("completed",))
                assert held is not None
                api.clear_requests()
                task = asyncio.ensure_future(videos.download(video, target))
                await until(lambda: store.calls["get"] >= 1, "the waiter looking again")
                content = api.content_bytes(video.id)
                await asyncio.to_thread(target.write_bytes, content)
                import hashlib

                done = Change(
                    state="downloaded",
                    target=str(target),
                    variant="video",
                    content_size=len(content),
                    content_sha256=hashlib.sha256(content).hexdigest(),
                    lease="release",
                )
                await other.update("k", done, states=("completed",), owner=holder)
                assert await task == target
        finally:
            sleeper.kill()
            await sleeper.wait()
        assert api.requests == []  # nothing fetched twice


class TestRequestsThatCannotBeSentAgain:
    async def test_resume_sends_an_upload_again_from_its_path(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        image = tmp_path / "first-frame.png"
        image.write_bytes(PNG)
        # The first attempt is ambiguous, the resend fails too: an intent is left.
        api.inject(Fault(status=500), times=2, method="POST")
        async with api.client(ledger=store, reconcile="resend", max_retries=0) as videos:
            with pytest.raises(AsyncVideosError):
                await videos.create("a boat", input_reference=image, idempotency_key="k")
            (result,) = [r async for r in videos.resume()]
        assert result.ok
        last = api.requests[[r.method for r in api.requests].index("POST", 2)]
        assert last.form is not None
        assert last.form["input_reference"]["size"] == len(PNG)

    @pytest.mark.parametrize("given", ["bytes", "changed"])
    async def test_an_upload_not_available_again_is_ambiguous(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path, given: str
    ) -> None:
        image = tmp_path / "first-frame.png"
        image.write_bytes(PNG)
        reference: Any = PNG if given == "bytes" else image
        api.inject(Fault(status=500), times=2, method="POST")
        async with api.client(ledger=store, reconcile="resend", max_retries=0) as videos:
            with pytest.raises(AsyncVideosError):
                await videos.create("a boat", input_reference=reference, idempotency_key="k")
            image.write_bytes(PNG + b"changed")
            (result,) = [r async for r in videos.resume()]
        assert isinstance(result, WaitFailure)
        assert isinstance(result.error, AmbiguousCreateError)
        assert "cannot be sent again" in str(result.error)

    async def test_adopt_with_nothing_found_and_nothing_to_send_is_ambiguous(
        self, store: Counting
    ) -> None:
        async with FakeVideosAPI(idempotency_keys=False) as api:
            await store.begin(_paid_intent("a boat", "k"), owner=owner_of(dead_pid()))
            change = Change(lease="keep")
            await store.update("k", change, states=("intent",))
            entry = await store.get("k")
            assert entry is not None
            # A request the ledger cannot rebuild (no path recorded, nothing sent).
            import json

            await store.inner._run(
                lambda connection, _: connection.execute(
                    "UPDATE jobs SET request = ? WHERE key = 'k'",
                    (json.dumps({"path": "/videos", "form": {}, "file": {"sha256": "x"}}),),
                ),
                write=True,
            )
            async with api.client(ledger=store, reconcile="adopt", clock_skew=0) as videos:
                (result,) = [r async for r in videos.resume()]
        assert isinstance(result, WaitFailure)
        assert isinstance(result.error, AmbiguousCreateError)

    async def test_a_remix_is_adopted_by_its_source(self, store: Counting) -> None:
        async with FakeVideosAPI(idempotency_keys=False, speed=100.0, poll_after_ms=10) as api:
            (source, other) = api.seed(2)
            async with api.client(ledger=store, reconcile="adopt") as videos:
                await videos.remix(other, "in winter", idempotency_key="theirs-unrecorded")
                api.inject(Fault(truncate=True), times=1, method="POST")
                made = await videos.remix(source, "in winter", idempotency_key="k")
        assert made.remixed_from_video_id == source
        assert len(api.videos) == 4


class TestRaiseWithAListingThatFails:
    async def test_the_entry_is_ambiguous_with_no_candidates(
        self, api: FakeVideosAPI, store: Counting, caplog: pytest.LogCaptureFixture
    ) -> None:
        api.inject(Fault(truncate=True), times=1, method="POST")
        api.inject(Fault(status=500), times=3, method="GET", path=r"^/v1/videos$")
        async with api.client(ledger=store, max_retries=0) as videos:
            with pytest.raises(AmbiguousCreateError) as caught:
                await videos.create("a boat", idempotency_key="k")
        assert caught.value.candidates == ()
        assert "Listing candidates for key k failed" in caplog.text


class TestWebhookEventsThatAreNotEnds:
    async def test_other_events_change_nothing(self, store: Counting) -> None:
        secret = FakeVideosAPI.generate_webhook_secret()
        receiver = WebhookReceiver(secret)
        async with (
            FakeVideosAPI(clock=ManualClock()) as api,
            api.client(ledger=store, webhooks=receiver) as videos,
        ):
            video = await videos.create("a boat", idempotency_key="k")
            before = len(store.updates)
            for n, (kind, data) in enumerate(
                [("video.started", f'{{"id": "{video.id}"}}'), ("video.completed", "{}")]
            ):
                body = (
                    f'{{"id": "evt_{n}", "object": "event", "type": "{kind}", '
                    f'"created_at": {int(time.time())}, "data": {data}}}'
                ).encode()
                await receiver.feed(body, sign_webhook(body, secret, webhook_id=f"evt_{n}"))
            await asyncio.sleep(0.05)
            assert len(store.updates) == before


class TestALockedDatabase:
    async def test_writes_fail_with_a_ledger_error_when_the_lock_never_comes(
        self, db: Path
    ) -> None:
        async with SQLiteLedger(db, busy_timeout=0.1) as store:
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                # The thread busy with a read, so that what comes next meets in one batch.
                busy, go = threading.Event(), threading.Event()

                def hold(connection: sqlite3.Connection, _: float | None) -> None:
                    busy.set()
                    go.wait(10)

                slow = asyncio.ensure_future(store._run(hold))
                await asyncio.to_thread(busy.wait, 10)
                writes = [store.begin(_paid_intent("a", f"k{n}"), owner="o") for n in range(2)]
                batched = asyncio.gather(*writes, store.get("k0"), return_exceptions=True)
                await asyncio.sleep(0.01)
                go.set()
                outcomes = await batched
                await slow
                assert [type(outcome) for outcome in outcomes] == [
                    LedgerError,
                    LedgerError,
                    type(None),
                ]
                with pytest.raises(LedgerError, match="locked"):
                    await store.begin(_paid_intent("a", "k9"), owner="o")
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert await store.entries() == []

    def test_opening_waits_for_a_lock_held_a_moment(self, db: Path) -> None:
        """A file being set up by another process: opening waits, then gets in."""
        code = (
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode = EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE')\n"
            "c.execute('CREATE TABLE IF NOT EXISTS x (y)'); print('held', flush=True)\n"
            "time.sleep(0.5); c.execute('COMMIT'); c.close()\n"
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"

            async def open_it() -> list[Entry]:
                async with SQLiteLedger(db, busy_timeout=10) as store:
                    return await store.entries()

            assert asyncio.run(open_it()) == []
        finally:
            holder.wait(10)
            if holder.stdout is not None:
                holder.stdout.close()


class TestSmallPrint:
    def test_unset_is_one_falsy_value(self) -> None:
        assert repr(UNSET) == "UNSET"
        assert not UNSET
        assert type(UNSET)() is UNSET
        assert Change().columns() == {}

    async def test_entries_read_back_whole(self, store: Counting) -> None:
        await store.begin(_paid_intent("a boat", "k"), owner="a")
        entry = await store.get("k")
        assert entry is not None
        assert not entry.is_finished
        assert dict(entry.request) == {"path": "/videos", "json": {"prompt": "a boat"}}
        assert len(entry.request) == 2
        assert "json" in repr(entry.request)
        assert store.inner.schema_version == 1

    async def test_resolve_checks_its_arguments(self, store: Counting) -> None:
        with pytest.raises(TypeError, match="key"):
            await store.resolve("", video_id=None)
        with pytest.raises(TypeError, match="video_id"):
            await store.resolve("k", video_id="")

    async def test_a_failed_note_is_logged_by_the_default_too(
        self, store: Counting, caplog: pytest.LogCaptureFixture
    ) -> None:
        """(Counting keeps the interface's default note(): it awaits record().)"""
        await store.begin(_paid_intent("a", "k1"), owner="a")
        await store.begin(_paid_intent("b", "k2"), owner="a")
        await store.update("k1", Change(video_id="v1"), states=("intent",))
        with caplog.at_level(logging.WARNING, logger="asyncvideos"):
            await store.note("k2", Change(video_id="v1"), states=("intent",))
        assert "could not record a status of k2" in caplog.text


class TestExpiry:
    async def test_expiry_found_while_waiting_for_another_holder(
        self, quick_store: Counting, db: Path, tmp_path: Path
    ) -> None:
        """Another process holds the download; it finds the content expired."""
        store = quick_store
        sleeper = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)"
        )
        try:
            async with (
                FakeVideosAPI(speed=100.0, poll_after_ms=10) as api,
                api.client(ledger=store) as videos,
                SQLiteLedger(db) as other,
            ):
                video = await videos.create_and_wait("a boat", idempotency_key="k")
                holder = owner_of(sleeper.pid)
                await other.claim("k", owner=holder, states=("completed",))
                task = asyncio.ensure_future(videos.download(video, tmp_path / "b.mp4"))
                await until(lambda: store.calls["get"] >= 1, "the waiter looking again")
                expired = Change(state="expired", lease="release")
                await other.update("k", expired, states=("completed",), owner=holder)
                with pytest.raises(ContentExpiredError):
                    await task
        finally:
            sleeper.kill()
            await sleeper.wait()


async def test_the_posts_helper_counts_keys(api: FakeVideosAPI, store: Counting) -> None:
    """(The helper the other tests lean on.)"""
    async with api.client(ledger=store) as videos:
        await videos.create("a boat", idempotency_key="k")
    assert posts(api) == ["k"]
