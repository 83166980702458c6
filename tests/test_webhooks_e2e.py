"""Webhooks end to end, through real HTTP on loopback.

``FakeVideosAPI(webhook_url=...)`` POSTs signed events as its jobs finish to a
``WebhookReceiver`` served by ``aiohttp.web``; an ``AsyncVideos(webhooks=receiver)``
waits on those jobs. The requests the client sends are counted from
``FakeVideosAPI.requests``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_webhooks import serving

from asyncvideos import AsyncVideos, Video, VideoFailedError, WaitTimeoutError
from asyncvideos.testing import FakeVideosAPI, ManualClock, WebhookFaults, sign_webhook
from asyncvideos.webhooks import WebhookReceiver

SECRET_FOR_FAKE = FakeVideosAPI.generate_webhook_secret()


class Setup:
    """A receiver on loopback, a fake that sends it events, and a client using both."""

    receiver: WebhookReceiver
    url: str
    api: FakeVideosAPI
    client: AsyncVideos


@asynccontextmanager
async def webhooked(
    *,
    faults: WebhookFaults | None = None,
    fallback: float = 60.0,
    receiver_options: dict[str, Any] | None = None,
    **fake_options: Any,
) -> AsyncIterator[Setup]:
    setup = Setup()
    secret = FakeVideosAPI.generate_webhook_secret()
    setup.receiver = WebhookReceiver(secret, **(receiver_options or {}))
    async with AsyncExitStack() as stack:
        setup.url = await stack.enter_async_context(serving(setup.receiver))
        setup.api = await stack.enter_async_context(
            FakeVideosAPI(
                webhook_url=setup.url,
                webhook_secret=secret,
                webhook_faults=faults,
                **{"speed": 10.0, "poll_after_ms": 10, **fake_options},
            )
        )
        setup.client = await stack.enter_async_context(
            setup.api.client(webhooks=setup.receiver, webhook_fallback_interval=fallback)
        )
        yield setup


def retrieves(api: FakeVideosAPI) -> Counter[str]:
    """GET /videos/{id} requests, by id."""
    return Counter(
        r.path.rsplit("/", 1)[1]
        for r in api.requests
        if r.method == "GET" and r.path.startswith("/v1/videos/video_")
    )


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class TestWaitMany:
    """``wait_many`` over many jobs, with events lost, repeated or out of order."""

    async def test_two_hundred_jobs_need_one_retrieve_each(self) -> None:
        """The fake's poll hint (10 ms) is ignored: each job is fetched once, after
        its event, and reported once as completed."""
        async with webhooked() as s:
            videos = await asyncio.gather(*(s.client.create("p") for _ in range(200)))
            s.api.clear_requests()
            results = [r async for r in s.client.wait_many(videos, wait_timeout=20)]
        assert sorted(r.video_id for r in results) == sorted(v.id for v in videos)
        assert all(r.ok and r.video.status == "completed" for r in results)
        counts = retrieves(s.api)
        assert len(s.api.requests) == sum(counts.values()) <= 210
        assert set(counts) == {v.id for v in videos}
        assert len(s.api.webhook_deliveries) == 200

    async def test_ids_are_fetched_once_then_once_after_the_event(self) -> None:
        """Given ids (state unknown), each job is fetched at the start, then after
        its event: two requests, whatever the server's hint."""
        async with webhooked(queue_seconds=2, run_seconds=3) as s:
            videos = await asyncio.gather(*(s.client.create("p") for _ in range(20)))
            s.api.clear_requests()
            ids = [v.id for v in videos]
            results = [r async for r in s.client.wait_many(ids, wait_timeout=20)]
        assert all(r.ok for r in results)
        assert set(retrieves(s.api).values()) == {2}

    async def test_every_event_dropped_still_finishes_by_fallback_polling(self) -> None:
        async with webhooked(faults=WebhookFaults(drop=1.0), fallback=0.2) as s:
            videos = await asyncio.gather(*(s.client.create("p") for _ in range(30)))
            s.api.clear_requests()
            started = time.monotonic()
            results = [r async for r in s.client.wait_many(videos, wait_timeout=20)]
            elapsed = time.monotonic() - started
        assert len(results) == 30
        assert all(r.ok and r.video.status == "completed" for r in results)
        assert {d.fault for d in s.api.webhook_deliveries} == {"dropped"}
        assert all(d.status is None for d in s.api.webhook_deliveries)
        # Jobs take 0.6 s; polls every 0.2 s (not the server's 10 ms): about 4 each.
        per_job = retrieves(s.api)
        assert max(per_job.values()) <= 6
        assert elapsed < 3

    async def test_duplicates_and_reordering_lose_nothing_and_repeat_nothing(self) -> None:
        faults = WebhookFaults(duplicate=1.0, reorder=0.5, seed=3)
        async with webhooked(faults=faults) as s:
            videos = await asyncio.gather(*(s.client.create("p") for _ in range(100)))
            for index, video in enumerate(videos):  # they finish in this order, 5 ms apart
                s.api.set_outcome(video.id, "completed", duration=5 + index * 0.05)
            s.api.clear_requests()
            seen = [r async for r in s.client.wait_many(videos, wait_timeout=20)]
            await until(lambda: len(s.api.webhook_deliveries) == 200)
        assert sorted(r.video_id for r in seen) == sorted(v.id for v in videos)
        assert all(r.ok and r.video.status == "completed" for r in seen)
        deliveries = s.api.webhook_deliveries
        faults_met = Counter(d.fault for d in deliveries)
        assert faults_met["duplicate"] == 100
        assert faults_met["reordered"] > 20
        assert {d.status for d in deliveries} == {200}  # a duplicate is acknowledged
        # Reordered: some event went out after one for a job that finished later.
        rank = {video.id: index for index, video in enumerate(videos)}
        order = [rank[d.video_id] for d in deliveries if d.fault != "duplicate"]
        assert sorted(order) == list(range(100))
        assert any(a > b for a, b in itertools.pairwise(order))
        assert sum(retrieves(s.api).values()) <= 110

    async def test_an_async_iterable_of_jobs_created_as_it_runs(self) -> None:
        """Jobs fed through a queue while the wait runs are each reported once."""
        async with webhooked() as s:
            queue: asyncio.Queue[Video | None] = asyncio.Queue()

            async def arriving() -> AsyncIterator[Video]:
                while (video := await queue.get()) is not None:
                    yield video

            async def produce() -> list[str]:
                ids = []
                for _ in range(10):
                    video = await s.client.create("p")
                    ids.append(video.id)
                    await queue.put(video)
                    await asyncio.sleep(0.02)
                await queue.put(None)
                return ids

            producer = asyncio.ensure_future(produce())
            results = [r async for r in s.client.wait_many(arriving(), wait_timeout=20)]
            ids = await producer
        assert sorted(r.video_id for r in results) == sorted(ids)
        assert all(r.ok for r in results)
        assert set(retrieves(s.api).values()) == {1}


class TestWait:
    """``wait`` and ``create_and_wait`` finish on the event."""

    async def test_create_and_wait_returns_on_the_event(self) -> None:
        async with webhooked() as s:
            started = time.monotonic()
            video = await s.client.create_and_wait("p", wait_timeout=10)
            elapsed = time.monotonic() - started
        assert video.status == "completed"
        assert sum(retrieves(s.api).values()) == 1
        assert elapsed < 2  # the job takes 0.6 s; the fallback is 60 s

    async def test_an_event_before_the_wait_is_remembered(self) -> None:
        """A job that finished (and whose event came) before the wait began ends
        the wait at once, with one retrieve."""
        clock = ManualClock()
        async with webhooked(clock=clock, speed=1.0) as s:
            video = await s.client.create("p")
            clock.advance(10)
            await until(lambda: s.api.webhook_deliveries)
            s.api.clear_requests()
            started = time.monotonic()
            final = await s.client.wait(video, wait_timeout=10)
        assert final.status == "completed"
        assert time.monotonic() - started < 1
        assert sum(retrieves(s.api).values()) == 1

    async def test_a_failed_event_raises_video_failed_error(self) -> None:
        async with webhooked() as s:
            s.api.set_outcome(None, "failed", error={"code": "moderation", "message": "no"})
            with pytest.raises(VideoFailedError, match="moderation"):
                await s.client.create_and_wait("p", raise_on_failure=True, wait_timeout=10)
            assert sum(retrieves(s.api).values()) == 1
            assert s.api.webhook_deliveries[0].type == "video.failed"

    async def test_a_badly_signed_event_never_reaches_a_waiter(self) -> None:
        """The event is answered 400 and wakes nobody: the wait, with a long
        fallback, sends no request and times out."""
        async with webhooked(faults=WebhookFaults(bad_signature=1.0)) as s:
            with pytest.raises(WaitTimeoutError):
                await s.client.create_and_wait("p", wait_timeout=1.5)
            deliveries = s.api.webhook_deliveries
        assert [(d.fault, d.status) for d in deliveries] == [("bad_signature", 400)]
        assert retrieves(s.api) == Counter()

    async def test_delayed_events_end_the_wait_when_they_arrive(self) -> None:
        async with webhooked(faults=WebhookFaults(delay=0.4)) as s:
            started = time.time()
            video = await s.client.create("p")
            final = await s.client.wait(video, wait_timeout=10)
            elapsed = time.time() - started
        assert final.status == "completed"
        (delivery,) = s.api.webhook_deliveries
        assert delivery.fault == "delayed"
        assert delivery.sent_at is not None
        # The job takes 0.6 s, then its event waits 0.4 s.
        assert delivery.sent_at - started >= 0.95
        assert elapsed >= 0.95
        assert sum(retrieves(s.api).values()) == 1

    async def test_poll_interval_sets_the_fallback(self) -> None:
        """With events lost, a call's poll_interval is the fallback, not the
        client's webhook_fallback_interval and not the server's 10 ms hint."""
        async with webhooked(faults=WebhookFaults(drop=1.0), fallback=60) as s:
            video = await s.client.create("p")
            final = await s.client.wait(video, poll_interval=0.25, wait_timeout=10)
        assert final.status == "completed"
        assert 2 <= sum(retrieves(s.api).values()) <= 4  # 0.6 s of job, every 0.25 s

    async def test_an_early_event_for_a_running_job_polls_until_it_is_done(self) -> None:
        """An event that the server does not agree with yet (it says in_progress)
        switches the wait to the server's schedule until the job is final."""
        clock = ManualClock()
        async with webhooked(clock=clock, speed=1.0) as s:
            video = await s.client.create("p")
            clock.advance(3)  # in progress
            body = json.dumps(
                {
                    "id": "evt_early",
                    "object": "event",
                    "created_at": 1,
                    "type": "video.completed",
                    "data": {"id": video.id},
                }
            ).encode()
            headers = sign_webhook(body, s.api.webhook_secret or "", webhook_id="evt_early")
            waiter = asyncio.ensure_future(s.client.wait(video, wait_timeout=10))
            async with (
                aiohttp.ClientSession() as session,
                session.post(s.url, data=body, headers=headers) as reply,
            ):
                assert reply.status == 200
            await until(lambda: sum(retrieves(s.api).values()) >= 3)
            assert not waiter.done()
            clock.advance(10)
            final = await asyncio.wait_for(waiter, 2)
        assert final.status == "completed"

    async def test_events_for_jobs_nobody_waits_on_are_harmless(self) -> None:
        """Events for jobs no one waits on are acknowledged and remembered within
        bounds; a wait on another job is not disturbed."""
        async with webhooked(receiver_options={"remember_events": 5}) as s:
            await asyncio.gather(*(s.client.create("p") for _ in range(12)))
            await until(lambda: len(s.api.webhook_deliveries) == 12, timeout=10)
            assert {d.status for d in s.api.webhook_deliveries} == {200}
            assert len(s.receiver._recent) == 5
            video = await s.client.create_and_wait("p", wait_timeout=10)
        assert video.status == "completed"

    async def test_fallback_is_used_when_the_receiver_is_down(self) -> None:
        """The sender retries, then gives up; the wait polls at the fallback."""
        receiver = WebhookReceiver(FakeVideosAPI.generate_webhook_secret())
        async with (
            FakeVideosAPI(
                speed=10.0, poll_after_ms=10, webhook_url="http://127.0.0.1:9/webhooks"
            ) as api,
            api.client(webhooks=receiver, webhook_fallback_interval=0.2) as client,
        ):
            video = await client.create_and_wait("p", wait_timeout=10)
            await until(lambda: api.webhook_deliveries, timeout=5)
        assert video.status == "completed"
        assert api.webhook_deliveries[0].status is None


class TestFake:
    """The fake's sender, as users test their own webhook path with it."""

    async def test_two_waits_on_one_job_both_finish(self) -> None:
        async with webhooked() as s:
            video = await s.client.create("p")
            first, second = await asyncio.gather(
                s.client.wait(video, wait_timeout=10), s.client.wait(video, wait_timeout=10)
            )
        assert first.status == second.status == "completed"
        assert s.receiver._watches == {}

    async def test_no_url_no_events(self) -> None:
        """With only a secret, jobs that finish before a URL is set send nothing."""
        async with FakeVideosAPI(speed=100.0, webhook_secret=SECRET_FOR_FAKE) as api:
            assert api.webhook_url is None
            async with api.client() as client:
                await client.create_and_wait("p", wait_timeout=10)
            await asyncio.sleep(0.05)
            assert api.webhook_deliveries == []
            with pytest.raises(ValueError, match="http"):
                api.webhook_url = "file:///tmp/x"

    async def test_close_drops_events_still_waiting(self) -> None:
        """Delayed events are cancelled when the fake closes: nothing is left running."""
        async with webhooked(faults=WebhookFaults(delay=30)) as s:
            await s.client.create_and_wait("p", poll_interval=0.05, wait_timeout=10)
        assert s.api.webhook_deliveries == []

    async def test_webhook_url_needs_webhooks(self) -> None:
        async with FakeVideosAPI() as api:
            assert api.webhook_url is None
            with pytest.raises(RuntimeError, match="webhook_secret"):
                api.webhook_url = "http://127.0.0.1:9/"

    async def test_the_events_are_signed_standard_webhooks(self) -> None:
        """Captured on a plain aiohttp app and checked here with hmac directly."""
        import base64
        import hashlib
        import hmac

        captured: list[tuple[dict[str, str], bytes]] = []

        async def capture(request: web.Request) -> web.Response:
            captured.append((dict(request.headers), await request.read()))
            return web.Response()

        app = web.Application()
        app.router.add_post("/hook", capture)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        try:
            async with FakeVideosAPI(speed=20.0, webhook_url=url) as api:
                secret = api.webhook_secret
                assert secret is not None
                assert secret.startswith("whsec_")
                async with api.client() as client:
                    video = await client.create("p")
                await until(lambda: captured)
        finally:
            await runner.cleanup()
        headers, body = captured[0]
        event = json.loads(body)
        assert event["type"] == "video.completed"
        assert event["data"] == {"id": video.id}
        assert event["object"] == "event"
        assert headers["webhook-id"] == event["id"]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
        key = base64.b64decode(secret[6:])
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{expected}"

    async def test_no_event_for_seeded_final_or_deleted_jobs(self) -> None:
        clock = ManualClock()
        async with webhooked(clock=clock, speed=1.0) as s:
            s.api.seed(3)  # completed already: they did not finish here
            video = await s.client.create("p")
            gone = await s.client.create("p")
            s.api.remove_video(gone.id)
            s.api.set_outcome(video.id, "completed", duration=20)  # moves its end
            clock.advance(10)
            await asyncio.sleep(0.1)
            assert s.api.webhook_deliveries == []
            clock.advance(20)
            await until(lambda: s.api.webhook_deliveries)
            await asyncio.sleep(0.1)
        assert [d.video_id for d in s.api.webhook_deliveries] == [video.id]

    def test_generated_secrets_differ_and_work(self) -> None:
        first, second = (FakeVideosAPI.generate_webhook_secret() for _ in range(2))
        assert first != second
        WebhookReceiver(first)

    @pytest.mark.parametrize(
        ("options", "words"),
        [
            ({"webhook_url": "ftp://x"}, "http"),
            ({"webhook_url": "http://x", "webhook_secret": "nope"}, "whsec_"),
            ({"webhook_url": "http://x", "webhook_secret": "whsec_!!"}, "base64"),
            ({"webhook_url": "http://x", "webhook_secret": "whsec_"}, "empty"),
        ],
    )
    def test_bad_webhook_options(self, options: dict[str, Any], words: str) -> None:
        with pytest.raises(ValueError, match=words):
            FakeVideosAPI(**options)

    @pytest.mark.parametrize(
        "faults",
        [{"drop": 2}, {"duplicate": -0.1}, {"reorder": True}, {"delay": -1}],
    )
    def test_bad_faults(self, faults: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"0 to 1|delay"):
            WebhookFaults(**faults)

    async def test_set_webhook_faults_needs_webhooks(self) -> None:
        async with FakeVideosAPI() as api:
            assert api.webhook_deliveries == []
            with pytest.raises(RuntimeError, match="webhook_url"):
                api.set_webhook_faults(WebhookFaults(drop=1))

    async def test_set_webhook_faults_applies_from_now(self) -> None:
        async with webhooked() as s:
            s.api.set_webhook_faults(WebhookFaults(drop=1.0))
            await s.client.create("p")
            await until(lambda: s.api.webhook_deliveries)
        assert s.api.webhook_deliveries[0].fault == "dropped"
