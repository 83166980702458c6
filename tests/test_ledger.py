"""The job ledger through real HTTP: the fake API on loopback, a real SQLite file.

Every paid call goes intent, POST, created, statuses, downloaded; a known key
is never paid twice; an ambiguous create is reconciled by the policy and
never guessed at.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conditions import until

from asyncvideos import (
    AmbiguousCreateError,
    APIConnectionError,
    AsyncVideos,
    BadRequestError,
    ContentExpiredError,
    InternalServerError,
    LedgerError,
    NotFoundError,
    UnprocessableEntityError,
    Video,
    WaitFailure,
    WaitSuccess,
    WaitTimeoutError,
)
from asyncvideos.ledger import (
    Change,
    Entry,
    Intent,
    LedgerStore,
    SQLiteLedger,
    State,
)
from asyncvideos.ledger._owners import identity, new_owner, owner_is_dead
from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock, sign_webhook
from asyncvideos.webhooks import WebhookReceiver

PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


class Counting(LedgerStore):
    """A real SQLite ledger that counts the calls made to it (no behaviour changed)."""

    def __init__(self, inner: SQLiteLedger) -> None:
        super().__init__(lease_seconds=inner.lease_seconds)
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.updates: list[tuple[str, Change]] = []

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> Entry | None:
        self.calls["get"] += 1
        return await self.inner.get(key)

    async def find(self, video_id: str) -> Entry | None:
        self.calls["find"] += 1
        return await self.inner.find(video_id)

    async def select(self, **options: Any) -> list[Entry]:
        self.calls["select"] += 1
        return await self.inner.select(**options)

    async def owned(self, video_ids: Collection[str]) -> dict[str, str]:
        self.calls["owned"] += 1
        return await self.inner.owned(video_ids)

    async def purge(self, *, older_than: timedelta) -> int:
        self.calls["purge"] += 1
        return await self.inner.purge(older_than=older_than)

    async def begin(self, intent: Intent, *, owner: str) -> tuple[Entry, bool]:
        self.calls["begin"] += 1
        return await self.inner.begin(intent, owner=owner)

    async def claim(self, key: str, **options: Any) -> Entry | None:
        self.calls["claim"] += 1
        return await self.inner.claim(key, **options)

    async def update(
        self, key: str, change: Change, *, states: Collection[State], owner: str | None = None
    ) -> Entry | None:
        self.calls["update"] += 1
        self.updates.append((key, change))
        return await self.inner.update(key, change, states=states, owner=owner)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[Counting]:
    counting = Counting(SQLiteLedger(db))
    yield counting
    await counting.close()


@pytest.fixture
async def quick_store(db: Path) -> AsyncIterator[Counting]:
    """A store with a 2 s lease: a held entry is looked at again every 0.1 s."""
    counting = Counting(SQLiteLedger(db, lease_seconds=2))
    yield counting
    await counting.close()


@pytest.fixture
async def other(db: Path) -> AsyncIterator[SQLiteLedger]:
    """A second connection to the same file, as another process would have."""
    ledger = SQLiteLedger(db)
    yield ledger
    await ledger.close()


def posts(api: FakeVideosAPI) -> list[str]:
    return [r.headers.get("idempotency-key", "") for r in api.requests if r.method == "POST"]


def methods(api: FakeVideosAPI) -> list[str]:
    return [f"{r.method} {r.path}" for r in api.requests]


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def owner_of(pid: int, start: str | None = None) -> str:
    """An owner string for process ``pid`` of this host (its real start time by default)."""
    host, namespace, _, _ = identity().split("|")
    if start is None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                start = file.read().rpartition(b")")[2].split()[19].decode()
        except OSError:
            start = "1"
    return f"{host}|{namespace}|{pid}|{start}|call.1"


# -- without a ledger -------------------------------------------------------------


class TestWithoutALedger:
    def test_importing_asyncvideos_imports_no_database(self) -> None:
        code = "import sys, asyncvideos; print('sqlite3' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "False"

    async def test_no_ledger_no_handle(self, client: AsyncVideos) -> None:
        assert client.ledger is None
        with pytest.raises(ValueError, match="resume\\(\\) needs a ledger"):
            client.resume()

    async def test_a_retrieve_never_touches_the_ledger(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        """Reading jobs pays nothing for the ledger's existence: no call at all."""
        api.seed(3)
        async with api.client(ledger=store) as videos:
            before = store.total
            for video_id in api.videos:
                await videos.retrieve(video_id)
            async for _ in videos.list():
                pass
        assert store.total == before


# -- the constructor ----------------------------------------------------------------


class TestConstructor:
    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"ledger": 3}, TypeError, "ledger"),
            ({"ledger": "jobs.db"}, ValueError, "ledger URL"),
            ({"ledger": "sqlite:///x.db", "reconcile": "guess"}, ValueError, "reconcile"),
            ({"ledger": "sqlite:///x.db", "reconcile": 1}, TypeError, "reconcile"),
            ({"reconcile": "resend"}, ValueError, "need a ledger"),
            ({"on_created": print}, ValueError, "need a ledger"),
            ({"clock_skew": 5.0}, ValueError, "needs a ledger"),
            ({"ledger": "sqlite:///x.db", "on_created": 1}, TypeError, "on_created"),
            ({"ledger": "sqlite:///x.db", "clock_skew": -1}, ValueError, "clock_skew"),
            ({"ledger": "sqlite:///x.db", "clock_skew": "1"}, TypeError, "clock_skew"),
            # (Without the postgres extra a postgresql:// ledger is an ImportError:
            # tests/test_ledger_sqlite.py checks that in an interpreter without it.)
            ({"ledger": "postgresql://db/jobs?lease_seconds=x"}, ValueError, "lease_seconds"),
        ],
    )
    def test_bad_ledger_settings_fail_at_construction(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            AsyncVideos(api_key="sk-x", base_url="http://127.0.0.1:9/v1", **options)

    async def test_a_url_ledger_is_the_clients_a_given_one_is_borrowed(
        self, api: FakeVideosAPI, db: Path, store: Counting
    ) -> None:
        async with api.client(ledger=f"sqlite:///{db}") as videos:
            opened = videos.ledger
            assert isinstance(opened, SQLiteLedger)
            assert opened.path == db
        with pytest.raises(RuntimeError, match="closed"):
            await opened.get("k")
        async with api.client(ledger=store) as videos:
            assert videos.ledger is store
            await videos.create("a boat", idempotency_key="k1")
        assert await store.get("k1") is not None  # still open

    async def test_a_newer_ledger_fails_before_any_request(
        self, api: FakeVideosAPI, db: Path
    ) -> None:
        async with SQLiteLedger(db):
            pass
        with closing(sqlite3.connect(db)) as connection, connection:
            connection.execute("UPDATE schema_version SET version = 7")
        videos = api.client(ledger=f"sqlite:///{db}")
        with pytest.raises(LedgerError, match="newer"):
            await videos.__aenter__()
        await videos.close()
        with pytest.raises(LedgerError, match="newer"):
            async with api.client(ledger=f"sqlite:///{db}") as videos:
                pass
        assert api.requests == []


# -- one paid call ------------------------------------------------------------------


class TestPaidCalls:
    async def test_intent_then_created(self, api: FakeVideosAPI, store: Counting) -> None:
        """The key goes out as the Idempotency-Key; the entry holds the request's fields."""
        async with api.client(ledger=store) as videos:
            video = await videos.create(
                "a boat", model="sora-2", seconds=8, size="1280x720", idempotency_key="order-1"
            )
        entry = await store.get("order-1")
        assert entry is not None
        assert posts(api) == ["order-1"]
        assert (entry.state, entry.video_id, entry.status) == ("created", video.id, "queued")
        assert (entry.operation, entry.prompt, entry.model, entry.size, entry.seconds) == (
            "create",
            "a boat",
            "sora-2",
            "1280x720",
            "8",
        )
        assert entry.request == {
            "path": "/videos",
            "json": {"prompt": "a boat", "model": "sora-2", "seconds": "8", "size": "1280x720"},
        }
        assert (entry.owner, entry.lease_expires_at) == (None, None)
        assert (store.calls["begin"], store.calls["update"]) == (1, 1)

    async def test_the_intent_is_durable_before_the_post(
        self, api: FakeVideosAPI, store: Counting, other: SQLiteLedger
    ) -> None:
        """While the POST is in flight, another connection sees the intent, leased."""
        api.inject(Fault(delay=0.5), times=1, method="POST")
        async with api.client(ledger=store) as videos:
            task = asyncio.ensure_future(videos.create("a boat", idempotency_key="k"))
            await until(lambda: api.in_flight == 1, "the POST in flight")
            entry = await other.get("k")
            assert entry is not None
            assert entry.state == "intent"
            assert entry.owner is not None
            assert entry.owner.startswith(identity())
            await task
        done = await other.get("k")
        assert done is not None
        assert done.state == "created"

    async def test_a_long_post_keeps_its_lease(
        self, api: FakeVideosAPI, db: Path, other: SQLiteLedger
    ) -> None:
        """A POST that outlives a third of the lease renews it: nobody can claim it."""
        store = SQLiteLedger(db, lease_seconds=0.9)
        api.inject(Fault(delay=1.5), times=1, method="POST")
        async with api.client(ledger=store) as videos:
            task = asyncio.ensure_future(videos.create("a boat", idempotency_key="k"))
            await until(lambda: api.in_flight == 1, "the POST in flight")
            first = await other.get("k")
            assert first is not None
            assert first.lease_expires_at is not None
            renewed: list[Entry] = []

            async def look() -> None:
                while not renewed:
                    entry = await other.get("k")
                    assert entry is not None
                    assert entry.lease_expires_at is not None
                    if entry.lease_expires_at > first.lease_expires_at:
                        renewed.append(entry)
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(look(), 10)
            assert renewed[0].owner == first.owner
            assert await other.claim("k", owner="thief", states=("intent",)) is None
            await task
        await store.close()
        assert posts(api) == ["k"]

    async def test_no_secret_reaches_the_ledger(
        self, api: FakeVideosAPI, db: Path, tmp_path: Path
    ) -> None:
        """Neither the key nor any header is in the file, whatever the calls did."""
        image = tmp_path / "a.png"
        image.write_bytes(PNG)
        async with api.client(
            ledger=f"sqlite:///{db}", default_headers={"X-Secret-Header": "hunter2-secret"}
        ) as videos:
            video = await videos.create_and_wait("a boat", idempotency_key="k")
            await videos.create("a cat", input_reference=image, idempotency_key="f")
            await videos.download(video, tmp_path / "boat.mp4")
        stored = _ledger_bytes(tmp_path)
        assert b"a boat" in stored  # prompts are kept: the ledger is readable this way
        for secret in (api.api_key, "hunter2-secret", "X-Secret-Header", "Authorization"):
            assert secret.encode() not in stored

    async def test_a_known_key_returns_its_job_with_one_retrieve(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        async with api.client(ledger=store) as videos:
            first = await videos.create("a boat", idempotency_key="k")
            api.clear_requests()
            again = await videos.create("a boat", idempotency_key="k")
        assert again.id == first.id
        assert methods(api) == [f"GET /v1/videos/{first.id}"]

    async def test_a_key_reused_for_another_request_is_a_value_error(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        """Any difference in what defines the request, before any request is sent."""
        image = tmp_path / "a.png"
        image.write_bytes(PNG)
        async with api.client(ledger=store) as videos:
            await videos.create("a boat", idempotency_key="k")
            await videos.create("a cat", input_reference=image, idempotency_key="f")
            api.clear_requests()
            for call in (
                videos.create("a ship", idempotency_key="k"),
                videos.create("a boat", idempotency_key="k", seconds=4),
                videos.create("a boat", idempotency_key="k", model="sora-2"),
                videos.remix("video_x", "a boat", idempotency_key="k"),
                videos.create("a cat", input_reference=PNG + b"!", idempotency_key="f"),
            ):
                with pytest.raises(ValueError, match="is already the key of another request"):
                    await call
            # The same file's bytes, from another path: the same request.
            copy = tmp_path / "b.png"
            copy.write_bytes(PNG)
            await videos.create("a cat", input_reference=copy, idempotency_key="f")
        assert [r.method for r in api.requests] == ["GET"]

    def test_extra_body_is_part_of_the_request(self) -> None:
        """What a gateway is asked (extra_body) defines the request too."""
        from asyncvideos.ledger._request import PaidRequest

        plain = PaidRequest("create", "/videos", json={"prompt": "a boat"})
        extra = PaidRequest("create", "/videos", json={"prompt": "a boat", "x": 1})
        reordered = PaidRequest("create", "/videos", json={"x": 1, "prompt": "a boat"})
        assert plain.fingerprint() != extra.fingerprint() == reordered.fingerprint()

    async def test_one_key_in_one_process_is_one_post(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        """Calls racing on one key wait for the first and return its job."""
        api.inject(Fault(delay=0.2), times=1, method="POST")
        async with api.client(ledger=store) as videos:
            results = await asyncio.gather(
                *(videos.create("a boat", idempotency_key="k") for _ in range(5))
            )
            with pytest.raises(ValueError, match="another request"):
                await asyncio.gather(
                    videos.create("a boat", idempotency_key="j"),
                    videos.create("a ship", idempotency_key="j"),
                )
        assert len({video.id for video in results}) == 1
        assert posts(api).count("k") == 1

    async def test_a_ledger_made_key_when_none_is_given(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        async with api.client(ledger=store) as videos:
            video = await videos.create("a boat")
        (entry,) = await store.entries()
        assert entry.video_id == video.id
        assert posts(api) == [entry.key]

    async def test_on_created_before_any_wait(self, api: FakeVideosAPI, store: Counting) -> None:
        """The hook has the id (and the entry) before the first poll."""
        seen: list[tuple[str, str | None, list[str]]] = []

        async def hook(entry: Entry) -> None:
            seen.append((entry.key, entry.video_id, [r.method for r in api.requests]))

        async with api.client(ledger=store, on_created=hook) as videos:
            video = await videos.create_and_wait("a boat", idempotency_key="k")
            await videos.create_and_wait("a boat", idempotency_key="k")  # known: no hook
        assert seen == [("k", video.id, ["POST"])]

    async def test_remix_edit_extend_record_their_source(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        (source,) = api.seed(1)
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
        async with api.client(ledger=store) as videos:
            await videos.remix(source, "in winter", idempotency_key="r")
            await videos.edit(source, "brighter", idempotency_key="e")
            await videos.extend(source, "a bow", 4, idempotency_key="x")
            await videos.edit(clip, "warmer", idempotency_key="u")
        entries = {entry.key: entry for entry in await store.entries()}
        assert {key: (e.operation, e.source_video_id) for key, e in entries.items()} == {
            "r": ("remix", source),
            "e": ("edit", source),
            "x": ("extend", source),
            "u": ("edit", None),
        }
        assert entries["r"].request["path"] == f"/videos/{source}/remix"
        assert entries["x"].request["json"] == {
            "video": {"id": source},
            "prompt": "a bow",
            "seconds": "4",
        }
        upload = entries["u"].request
        assert upload["form"] == {"prompt": "warmer"}
        assert upload["file"]["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
        assert upload["file"]["path"] == str(clip)

    async def test_statuses_are_written_once_per_change(
        self, store: Counting, tmp_path: Path
    ) -> None:
        """create_and_wait: one write per status, not per poll."""
        clock = ManualClock()
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=1) as api,
            api.client(ledger=store) as videos,
        ):
            polls: list[tuple[str | None, int | None]] = []

            def advance(video: Video) -> None:
                polls.append((video.status, video.progress))
                clock.advance(2.0)

            video = await videos.create_and_wait("a boat", idempotency_key="k", on_progress=advance)
        assert video.status == "completed"
        assert len({status for status, _ in polls}) == 3 < len(polls)  # progress moved too
        written = [change.status for key, change in store.updates]
        assert written == ["queued", "in_progress", "completed"]
        entry = await store.get("k")
        assert entry is not None
        assert (entry.state, entry.expires_at) == ("completed", video.expires_at)

    async def test_wait_and_wait_many_record_their_jobs(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        (outsider,) = api.seed(1, status="queued")
        async with api.client(ledger=store) as videos:
            one = await videos.create("a boat", idempotency_key="a")
            two = await videos.create("a ship", idempotency_key="b")
            await videos.wait(one.id)
            results = [r async for r in videos.wait_many([two.id, outsider])]
        assert all(result.ok for result in results)
        for key in ("a", "b"):
            entry = await store.get(key)
            assert entry is not None
            assert entry.state == "completed"
        assert await store.find(outsider) is None


# -- refusals -----------------------------------------------------------------------


class TestRefusals:
    async def test_a_refused_post_frees_the_key(self, api: FakeVideosAPI, store: Counting) -> None:
        """A 400 made nothing: the entry is rejected, and the key may be sent again."""
        api.inject(Fault(status=400), times=1, method="POST")
        async with api.client(ledger=store) as videos:
            with pytest.raises(BadRequestError):
                await videos.create("a boat", size="1x1", idempotency_key="k")
            entry = await store.get("k")
            assert entry is not None
            assert (entry.state, entry.owner) == ("rejected", None)
            assert entry.error_message is not None
            video = await videos.create("a boat", idempotency_key="k")  # fixed, same key
        entry = await store.get("k")
        assert entry is not None
        assert (entry.state, entry.video_id, entry.size) == ("created", video.id, None)

    async def test_a_connection_never_opened_frees_the_key(self, store: Counting) -> None:
        import socket

        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            port = spare.getsockname()[1]
        videos = AsyncVideos(
            api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1", ledger=store, max_retries=0
        )
        async with videos:
            with pytest.raises(APIConnectionError) as caught:
                await videos.create("a boat", idempotency_key="k")
        assert caught.value.request_sent is False
        entry = await store.get("k")
        assert entry is not None
        assert entry.state == "rejected"

    @pytest.mark.parametrize("status", [409, 500])
    async def test_other_failures_are_ambiguous(
        self, api: FakeVideosAPI, store: Counting, status: int
    ) -> None:
        """A 409 (a request with this key in progress) or a 5xx is not a refusal."""
        api.inject(Fault(status=status), times=1, method="POST")
        async with api.client(ledger=store, max_retries=0) as videos:
            with pytest.raises(AmbiguousCreateError) as caught:
                await videos.create("a boat", idempotency_key="k")
        assert caught.value.key == "k"
        assert caught.value.candidates == ()
        assert caught.value.__cause__ is not None
        entry = await store.get("k")
        assert entry is not None
        assert entry.state == "ambiguous"


# -- reconciliation -----------------------------------------------------------------


class TestRaise:
    async def test_an_answer_lost_is_ambiguous_with_its_candidate(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        api.inject(Fault(truncate=True), times=1, method="POST")
        async with api.client(ledger=store) as videos:
            with pytest.raises(AmbiguousCreateError) as caught:
                await videos.create("a boat", idempotency_key="k")
            (made,) = api.videos
            assert caught.value.candidates == (made,)
            assert "resolve('k'" in str(caught.value)
            api.clear_requests()
            with pytest.raises(AmbiguousCreateError) as again:
                await videos.create("a boat", idempotency_key="k")
            assert again.value.candidates == (made,)
            assert api.requests == []  # never sent again, never listed again
            entry = await videos.ledger.resolve("k", video_id=made)  # type: ignore[union-attr]
            assert (entry.state, entry.video_id) == ("created", made)
            video = await videos.create("a boat", idempotency_key="k")
        assert video.id == made
        assert len(api.videos) == 1

    async def test_resolved_as_never_made_it_is_sent(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        api.inject(Fault(drop=True), times=1, method="POST")
        async with api.client(ledger=store, max_retries=0) as videos:
            with pytest.raises(AmbiguousCreateError) as caught:
                await videos.create("a boat", idempotency_key="k")
            assert caught.value.candidates == ()
            assert videos.ledger is not None
            await videos.ledger.resolve("k", video_id=None)
            video = await videos.create("a boat", idempotency_key="k")
        assert list(api.videos) == [video.id]


class TestResend:
    async def test_an_answer_lost_is_sent_again_with_its_key(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        """The server replays the job; the client returns it fresh, not stale."""
        api.inject(Fault(truncate=True), times=1, method="POST")
        async with api.client(ledger=store, reconcile="resend") as videos:
            video = await videos.create("a boat", idempotency_key="k")
        assert posts(api) == ["k", "k"]
        assert list(api.videos) == [video.id]
        assert methods(api)[-1] == f"GET /v1/videos/{video.id}"  # a replay may be stale
        entry = await store.get("k")
        assert entry is not None
        assert (entry.state, entry.video_id) == ("created", video.id)

    async def test_only_as_sound_as_the_servers_memory_of_keys(self, store: Counting) -> None:
        """A server that forgot the key (its idempotency_ttl passed) makes a second job:
        why the guide says resend holds within the time the server keeps keys."""
        clock = ManualClock()
        async with FakeVideosAPI(clock=clock, idempotency_ttl=60) as api:
            # A process wrote its intent, POSTed, and died before the answer.
            await store.begin(_paid_intent("a boat", "k"), owner=owner_of(dead_pid()))
            headers = {"Authorization": f"Bearer {api.api_key}", "Idempotency-Key": "k"}
            async with aiohttp.ClientSession() as http:
                url = f"{api.base_url}/videos"
                async with http.post(url, json={"prompt": "a boat"}, headers=headers) as sent:
                    assert sent.status == 200
            clock.advance(61)
            async with api.client(ledger=store, reconcile="resend") as videos:
                await videos.create("a boat", idempotency_key="k")
            assert len(api.videos) == 2

    async def test_a_failed_resend_leaves_the_intent_for_later(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        api.inject(Fault(status=500), times=2, method="POST")
        async with api.client(ledger=store, reconcile="resend", max_retries=0) as videos:
            with pytest.raises(InternalServerError):
                await videos.create("a boat", idempotency_key="k")
            entry = await store.get("k")
            assert entry is not None
            assert (entry.state, entry.owner) == ("intent", None)  # released at once
            video = await videos.create("a boat", idempotency_key="k")
        assert posts(api) == ["k", "k", "k"]
        assert list(api.videos) == [video.id]

    async def test_a_refused_resend_proves_nothing(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        """After an ambiguous first attempt, a 4xx to the resend leaves the doubt."""
        api.inject(Fault(truncate=True), times=1, method="POST")
        api.inject(Fault(status=422), times=1, method="POST")
        async with api.client(ledger=store, reconcile="resend") as videos:
            with pytest.raises(UnprocessableEntityError):  # the resend's answer
                await videos.create("a boat", idempotency_key="k")
        entry = await store.get("k")
        assert entry is not None
        assert entry.state == "intent"


class TestAdopt:
    @pytest.fixture
    async def keyless(self) -> AsyncIterator[FakeVideosAPI]:
        """A fake that ignores Idempotency-Key, as LiteLLM's proxy does."""
        async with FakeVideosAPI(speed=100.0, poll_after_ms=10, idempotency_keys=False) as fake:
            yield fake

    async def test_an_answer_lost_is_adopted_from_the_listing(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        keyless.inject(Fault(truncate=True), times=1, method="POST")
        async with keyless.client(ledger=store, reconcile="adopt") as videos:
            video = await videos.create("a boat", idempotency_key="k")
        assert list(keyless.videos) == [video.id]
        assert posts(keyless) == ["k"]
        entry = await store.get("k")
        assert entry is not None
        assert (entry.state, entry.video_id) == ("created", video.id)

    async def test_a_post_that_never_arrived_is_sent_once_settled(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        """Nothing listed: looked at again after clock_skew, then sent."""
        keyless.inject(Fault(drop=True), times=1, method="POST")
        async with keyless.client(
            ledger=store, reconcile="adopt", clock_skew=0.2, max_retries=0
        ) as videos:
            started = time.monotonic()
            video = await videos.create("a boat", idempotency_key="k")
        assert time.monotonic() - started >= 0.2
        assert list(keyless.videos) == [video.id]
        listings = [r for r in keyless.requests if r.method == "GET" and r.path == "/v1/videos"]
        assert len(listings) == 2
        assert listings[0].query["order"] == "desc"

    async def test_jobs_other_entries_own_are_never_adopted(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        """An identical request under another key keeps its job."""
        async with keyless.client(ledger=store, reconcile="adopt", clock_skew=0.1) as videos:
            theirs = await videos.create("a boat", idempotency_key="other")
            keyless.inject(Fault(drop=True), times=1, method="POST")
            ours = await videos.create("a boat", idempotency_key="k", max_retries=0)
        assert ours.id != theirs.id
        assert len(keyless.videos) == 2

    async def test_identical_matches_take_the_oldest(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        """Jobs that match every field are the same request: any is this one's."""
        keyless.inject(Fault(truncate=True), times=1, method="POST")
        older = keyless.add_videos({"prompt": "a boat", "status": "queued"})[0]["id"]
        async with keyless.client(ledger=store, reconcile="adopt") as videos:
            video = await videos.create("a boat", idempotency_key="k")
        assert video.id == older
        assert len(keyless.videos) == 2  # the other one is an orphan of no entry here

    async def test_fields_left_out_make_several_matches_ambiguous(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        """A server that omits prompts: two possible jobs are two, not a guess."""
        seeded = keyless.add_videos(
            {"prompt": None, "status": "queued"}, {"prompt": None, "status": "queued"}
        )
        keyless.inject(Fault(drop=True), times=1, method="POST")
        async with keyless.client(ledger=store, reconcile="adopt", max_retries=0) as videos:
            with pytest.raises(AmbiguousCreateError) as caught:
                await videos.create("a boat", idempotency_key="k")
        assert sorted(caught.value.candidates) == sorted(job["id"] for job in seeded)

    async def test_one_match_with_fields_left_out_is_adopted(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        (seeded,) = keyless.add_videos({"prompt": None, "status": "queued"})
        keyless.inject(Fault(drop=True), times=1, method="POST")
        async with keyless.client(ledger=store, reconcile="adopt", max_retries=0) as videos:
            video = await videos.create("a boat", idempotency_key="k")
        assert video.id == seeded["id"]

    async def test_jobs_older_than_the_window_or_different_are_not_candidates(
        self, keyless: FakeVideosAPI, store: Counting
    ) -> None:
        now = int(time.time())
        keyless.add_videos(
            {"prompt": "a boat", "status": "queued", "created_at": now - 1000},
            {"prompt": "a ship", "status": "queued"},
            {"prompt": "a boat", "size": "1280x720", "status": "queued"},
        )
        keyless.inject(Fault(drop=True), times=1, method="POST")
        async with keyless.client(
            ledger=store, reconcile="adopt", clock_skew=0.1, max_retries=0
        ) as videos:
            video = await videos.create("a boat", size="720x1280", idempotency_key="k")
        assert len(keyless.videos) == 4
        assert keyless.videos[video.id]["prompt"] == "a boat"


# -- another process holds the key --------------------------------------------------


class TestHolders:
    async def test_an_intent_of_a_dead_process_is_taken_at_once(
        self, api: FakeVideosAPI, store: Counting, other: SQLiteLedger
    ) -> None:
        """Its lease has an hour to run, but its process is gone: reconciled now."""
        slow = SQLiteLedger(other.path, lease_seconds=3600)
        async with api.client(ledger=store, reconcile="resend") as videos:
            request = await _intent_of(videos, "a boat", "k")
            await slow.begin(request, owner=owner_of(dead_pid()))
            await slow.close()
            video = await videos.create("a boat", idempotency_key="k")
        assert posts(api) == ["k"]
        assert list(api.videos) == [video.id]

    async def test_a_live_holder_is_waited_on_not_reconciled(
        self, api: FakeVideosAPI, quick_store: Counting, other: SQLiteLedger
    ) -> None:
        """Another live process is mid-POST: its answer is taken, nothing is sent."""
        store = quick_store
        sleeper = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)"
        )
        try:
            (made,) = api.seed(1, status="queued")
            async with api.client(ledger=store, reconcile="resend") as videos:
                request = await _intent_of(videos, "a boat", "k")
                await other.begin(request, owner=owner_of(sleeper.pid))
                task = asyncio.ensure_future(videos.create("a boat", idempotency_key="k"))
                await until(lambda: store.calls["get"] >= 2, "the waiter looking again")
                assert not task.done()
                change = Change(state="created", video_id=made, status="queued", lease="release")
                await other.update("k", change, states=("intent",))
                video = await task
        finally:
            sleeper.kill()
            await sleeper.wait()
        assert video.id == made
        assert posts(api) == []

    async def test_an_expired_lease_is_claimed(
        self, api: FakeVideosAPI, db: Path, other: SQLiteLedger
    ) -> None:
        """A holder on another host: only its lease's end frees the key."""
        store = SQLiteLedger(db, lease_seconds=0.3)
        async with api.client(ledger=store, reconcile="resend") as videos:
            request = await _intent_of(videos, "a boat", "k")
            await store.begin(request, owner="elsewhere|1|2|3|call.1")
            started = time.monotonic()
            await videos.create("a boat", idempotency_key="k")
        await store.close()
        assert time.monotonic() - started >= 0.2
        assert posts(api) == ["k"]

    def test_owners(self) -> None:
        mine = new_owner()
        assert mine.startswith(identity())
        assert not owner_is_dead(mine)
        assert owner_is_dead(owner_of(dead_pid()))
        assert not owner_is_dead(owner_of(1))  # alive (init, or the container's first)
        assert identity().split("|")[3]  # Linux: the start time is known
        assert owner_is_dead(owner_of(1, start="1"))  # pid 1, but not the one that started then
        assert not owner_is_dead("another-host|1|2|3|call.1")
        assert not owner_is_dead("not an owner")

    def test_a_zombie_is_dead(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        try:
            deadline = time.monotonic() + 10
            while not _zombie(child.pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert owner_is_dead(owner_of(child.pid))
        finally:
            child.wait()


def _ledger_bytes(folder: Path) -> bytes:
    """Every byte of the ledger's files (the database, its WAL)."""
    return b"".join(path.read_bytes() for path in folder.glob("jobs.db*"))


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as file:
        return file.read().rpartition(b")")[2].split()[0] == b"Z"


async def _intent_of(videos: AsyncVideos, prompt: str, key: str) -> Intent:
    """The intent the client would write for ``create(prompt, idempotency_key=key)``."""
    return _paid_intent(prompt, key)


def _paid_intent(prompt: str, key: str) -> Intent:
    from asyncvideos.ledger._request import PaidRequest

    return PaidRequest("create", "/videos", json={"prompt": prompt}).intent(key)


# -- downloads ------------------------------------------------------------------------


class TestDownloads:
    async def test_a_download_is_recorded_and_not_repeated(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        target = tmp_path / "out" / "boat.mp4"
        async with api.client(ledger=store) as videos:
            video = await videos.create_and_wait("a boat", idempotency_key="k")
            await videos.download(video, target)
            entry = await store.get("k")
            assert entry is not None
            content = api.content_bytes(video.id)
            assert target.read_bytes() == content
            assert (entry.state, entry.target, entry.variant) == (
                "downloaded",
                str(target),
                "video",
            )
            assert (entry.content_size, entry.content_sha256) == (
                len(content),
                hashlib.sha256(content).hexdigest(),
            )
            api.clear_requests()
            assert await videos.download(video, target) == target  # no FileExistsError either
            assert api.requests == []
            target.write_bytes(content[:-1] + b"!")  # damaged: fetched again
            await videos.download(video, target)
            assert target.read_bytes() == content
            target.unlink()  # gone: fetched again
            await videos.download(video, target)
        assert target.read_bytes() == content
        assert len(api.requests) == 2

    async def test_someone_elses_file_is_still_refused(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        target = tmp_path / "boat.mp4"
        target.write_bytes(b"mine")
        async with api.client(ledger=store) as videos:
            video = await videos.create_and_wait("a boat", idempotency_key="k")
            api.clear_requests()
            with pytest.raises(FileExistsError):
                await videos.download(video, target)
        assert api.requests == []
        assert target.read_bytes() == b"mine"

    async def test_a_job_of_no_entry_is_downloaded_as_without_a_ledger(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        (video_id,) = api.seed(1)
        async with api.client(ledger=store) as videos:
            await videos.download(video_id, tmp_path / "x.mp4")
        assert await store.entries() == []

    async def test_a_failed_job_is_the_servers_to_refuse(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        api.set_outcome(None, "failed")
        async with api.client(ledger=store) as videos:
            video = await videos.create_and_wait("a boat", idempotency_key="k")
            with pytest.raises(NotFoundError):
                await videos.download(video, tmp_path / "x.mp4")

    async def test_an_interrupted_download_is_finished_by_resume(
        self, api: FakeVideosAPI, store: Counting, tmp_path: Path
    ) -> None:
        """The target is durable before the first byte; the leftovers go."""
        target = tmp_path / "out" / "boat.mp4"
        async with api.client(ledger=store, max_retries=0) as videos:
            video = await videos.create_and_wait("a boat", idempotency_key="k")
            api.inject(Fault(drop_after_bytes=1000), times=1, path=r"/content$")
            with pytest.raises(APIConnectionError):
                await videos.download(video, target)
            entry = await store.get("k")
            assert entry is not None
            assert (entry.state, entry.target, entry.owner) == ("completed", str(target), None)
            (target.parent / ".boat.mp4.dead0beef.part").write_bytes(b"left by a kill")
            results = [r async for r in videos.resume()]
        assert [(r.ok, r.key) for r in results] == [(True, "k")]
        assert target.read_bytes() == api.content_bytes(video.id)
        assert sorted(p.name for p in target.parent.iterdir()) == ["boat.mp4"]

    async def test_expired_content_is_visible_and_says_so(
        self, store: Counting, tmp_path: Path
    ) -> None:
        """A job that completed two days ago: no request for its content at all."""
        clock = ManualClock(start=time.time() - 3 * 86400)
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=1) as api,
            api.client(ledger=store) as videos,
        ):
            video = await videos.create("a boat", idempotency_key="k")
            clock.advance(10)
            video = await videos.wait(video)
            api.clear_requests()
            with pytest.raises(ContentExpiredError) as caught:
                await videos.download(video, tmp_path / "boat.mp4")
            assert caught.value.video_id == video.id
            assert caught.value.expires_at == video.expires_at
            assert api.requests == []
            entry = await store.get("k")
            assert entry is not None
            assert entry.state == "expired"
            with pytest.raises(ContentExpiredError):
                await videos.download(video, tmp_path / "boat.mp4")

    async def test_a_404_past_the_expiry_means_expired(
        self, store: Counting, tmp_path: Path
    ) -> None:
        """Expiry just passed (within clock_skew): the server's 404 says the rest."""
        clock = ManualClock(start=time.time() - 86400 - 20)
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=1) as api,
            api.client(ledger=store, clock_skew=60) as videos,
        ):
            video = await videos.create("a boat", idempotency_key="k")
            clock.advance(10)
            video = await videos.wait(video)
            api.inject(Fault(status=404), times=1, path=r"/content$")
            with pytest.raises(ContentExpiredError) as caught:
                await videos.download(video, tmp_path / "boat.mp4")
        assert isinstance(caught.value.__cause__, NotFoundError)


# -- resume -----------------------------------------------------------------------------


class TestResume:
    async def test_every_unfinished_entry_is_reported_once(
        self, api: FakeVideosAPI, store: Counting, other: SQLiteLedger, tmp_path: Path
    ) -> None:
        """Created jobs are waited on and downloaded; ambiguous ones fail with their
        error; an intent is reconciled; finished ones are left alone."""
        async with api.client(ledger=store, reconcile="resend") as videos:
            pending = await videos.create("a boat", idempotency_key="pending")
            done = await videos.create_and_wait("a fox", idempotency_key="done")
            await videos.download(done, tmp_path / "done.mp4")
            api.inject(Fault(status=500), times=2, method="POST")
            with pytest.raises(InternalServerError):
                await videos.create("a ship", idempotency_key="intent", max_retries=0)
        async with api.client(ledger=store) as videos:
            api.inject(Fault(drop=True), times=1, method="POST")
            with pytest.raises(AmbiguousCreateError):
                await videos.create("a cat", idempotency_key="ambiguous", max_retries=0)
        api.clear_requests()
        seen: list[str] = []
        async with api.client(ledger=store, reconcile="resend") as videos:
            results = [
                r
                async for r in videos.resume(
                    download_dir=tmp_path / "all", on_progress=lambda v: seen.append(v.id)
                )
            ]
        by_key = {result.key: result for result in results}
        assert sorted(by_key) == ["ambiguous", "intent", "pending"]
        assert isinstance(by_key["pending"], WaitSuccess)
        assert by_key["pending"].video_id == pending.id
        failure = by_key["ambiguous"]
        assert isinstance(failure, WaitFailure)
        assert isinstance(failure.error, AmbiguousCreateError)
        assert failure.video_id == ""
        made = by_key["intent"]
        assert made.ok
        assert posts(api) == ["intent"]
        for key in ("pending", "intent"):
            entry = await store.get(key)
            assert entry is not None
            assert entry.state == "downloaded"
            assert entry.target is not None
            assert Path(entry.target).parent == tmp_path / "all"
        assert pending.id in seen

    async def test_completed_jobs_without_a_target_are_left(
        self, api: FakeVideosAPI, store: Counting
    ) -> None:
        async with api.client(ledger=store) as videos:
            await videos.create_and_wait("a boat", idempotency_key="k")
            assert [r async for r in videos.resume()] == []

    async def test_expired_content_fails_in_resume(self, store: Counting, tmp_path: Path) -> None:
        clock = ManualClock(start=time.time() - 3 * 86400)
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=1) as api,
            api.client(ledger=store) as videos,
        ):
            video = await videos.create("a boat", idempotency_key="k")
            clock.advance(10)
            await videos.wait(video)
            (result,) = [r async for r in videos.resume(download_dir=tmp_path)]
        assert isinstance(result, WaitFailure)
        assert isinstance(result.error, ContentExpiredError)
        assert result.video_id == video.id

    async def test_a_timeout_ends_the_run(self, store: Counting) -> None:
        async with (
            FakeVideosAPI(clock=ManualClock(), poll_after_ms=1) as api,
            api.client(ledger=store) as videos,
        ):
            await videos.create("a boat", idempotency_key="k")
            (result,) = [r async for r in videos.resume(wait_timeout=0.1)]
        assert isinstance(result, WaitFailure)
        assert isinstance(result.error, WaitTimeoutError)
        assert (result.key, result.video is not None) == ("k", True)

    async def test_leaving_early_cancels_the_rest(self, store: Counting) -> None:
        async with (
            FakeVideosAPI(clock=ManualClock(), poll_after_ms=1) as api,
            api.client(ledger=store) as videos,
        ):
            await videos.create("a boat", idempotency_key="a")
            await videos.create("a ship", idempotency_key="b")
            results = videos.resume()
            consumer = asyncio.ensure_future(anext(results))
            await until(lambda: len(api.requests) >= 6, "the polls")
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
            await results.aclose()
            count = len(api.requests)
            await asyncio.sleep(0.05)
            assert len(api.requests) == count

    def test_arguments(self, api: FakeVideosAPI, db: Path) -> None:
        videos = api.client(ledger=f"sqlite:///{db}")
        with pytest.raises(ValueError, match="concurrency"):
            videos.resume(concurrency=0)
        with pytest.raises(TypeError, match="download_dir"):
            videos.resume(download_dir=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="resume"):
            videos.resume(colour="red")  # type: ignore[call-arg]


# -- webhook events ---------------------------------------------------------------------


class TestWebhookEvents:
    async def test_a_verified_event_updates_the_ledger(self, store: Counting) -> None:
        secret = FakeVideosAPI.generate_webhook_secret()
        receiver = WebhookReceiver(secret)
        async with (
            FakeVideosAPI(clock=ManualClock()) as api,
            api.client(ledger=store, webhooks=receiver) as videos,
        ):
            video = await videos.create("a boat", idempotency_key="k")
            body = (
                b'{"id": "evt_1", "object": "event", "type": "video.completed", '
                b'"created_at": %d, "data": {"id": "%s"}}' % (int(time.time()), video.id.encode())
            )
            await receiver.feed(body, sign_webhook(body, secret, webhook_id="evt_1"))
            await until(
                lambda: any(change.status == "completed" for _, change in store.updates),
                "the event recorded",
            )
        entry = await store.get("k")
        assert entry is not None
        assert (entry.state, entry.status) == ("completed", "completed")
        assert [r.method for r in api.requests] == ["POST"]  # not a poll
