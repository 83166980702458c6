"""Waiting on jobs: ``wait()``, ``create_and_wait()`` and ``wait_many()``.

Job progression is driven either by the fake's sped-up real clock (the ``api`` fixture:
a job finishes in about 0.06 s) or by a ``ManualClock`` that only moves when a test
says so; poll counts are read from the fake's request log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from conditions import tasks_started_since, until

from asyncvideos import (
    AsyncVideos,
    AsyncVideosError,
    InternalServerError,
    NotFoundError,
    Video,
    VideoFailedError,
    WaitResult,
    WaitTimeoutError,
)
from asyncvideos._retry import retry_waits_enabled
from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock

FAILURE = {"code": "moderation_blocked", "message": "Blocked by moderation."}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def frozen_api(clock: ManualClock) -> AsyncIterator[FakeVideosAPI]:
    """A fake on a manual clock: jobs stay where they are until the test moves time."""
    async with FakeVideosAPI(clock=clock, poll_after_ms=10) as fake:
        yield fake


@pytest.fixture
async def frozen_client(frozen_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with frozen_api.client() as videos:
        yield videos


@pytest.fixture
async def silent_api(clock: ManualClock) -> AsyncIterator[FakeVideosAPI]:
    """A frozen fake that sends no ``openai-poll-after-ms`` hint."""
    async with FakeVideosAPI(clock=clock, poll_after_ms=None) as fake:
        yield fake


@pytest.fixture
async def silent_client(silent_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with silent_api.client() as videos:
        yield videos


def queued(api: FakeVideosAPI, n: int) -> list[str]:
    """Add ``n`` jobs created now, so on a manual clock they stay queued."""
    return [video["id"] for video in api.add_videos(*({"status": "queued"} for _ in range(n)))]


def polls(api: FakeVideosAPI) -> int:
    """How many GET requests (polls) the fake received."""
    return sum(req.method == "GET" for req in api.requests)


class TestVideoStatus:
    """The status properties of ``Video``."""

    @pytest.mark.parametrize(
        ("status", "pending", "completed", "failed"),
        [
            ("queued", True, False, False),
            ("in_progress", True, False, False),
            ("pending", True, False, False),
            ("preprocessing", True, False, False),
            ("running", True, False, False),
            ("processing", True, False, False),
            ("completed", False, True, False),
            ("failed", False, False, True),
            ("succeeded", False, True, False),
            ("expired", False, False, True),
            ("cancelled", False, False, True),
            ("archived", False, False, False),
        ],
    )
    def test_status_properties(
        self, status: str, pending: bool, completed: bool, failed: bool
    ) -> None:
        """is_pending is the waiting statuses; is_finished everything else."""
        video = Video(id="video_1", status=status)
        assert video.is_pending is pending
        assert video.is_finished is not pending
        assert video.is_completed is completed
        assert video.is_failed is failed


class TestWait:
    """``wait()``: poll one job until it leaves the waiting statuses."""

    @pytest.mark.parametrize("hint", [0, 10])
    async def test_a_short_hint_is_not_a_busy_loop(self, clock: ManualClock, hint: int) -> None:
        """openai-poll-after-ms under 100 is raised to the 0.1 s floor of retry waits."""
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=hint) as fake,
            fake.client() as videos,
        ):
            created = await videos.create("p")
            with pytest.raises(WaitTimeoutError):
                await videos.wait(created, wait_timeout=0.35)
        # At 0.1, 0.2 and 0.3 s (the first poll is 0.1 s after the create's answer).
        assert 2 <= polls(fake) <= 4

    async def test_a_shorter_poll_interval_lowers_the_floor(self, clock: ManualClock) -> None:
        """The caller's poll_interval is the caller's choice: under a 0 ms hint, it rules."""
        async with FakeVideosAPI(clock=clock, poll_after_ms=0) as fake, fake.client() as videos:
            created = await videos.create("p")
            with pytest.raises(WaitTimeoutError):
                await videos.wait(created, poll_interval=0.02, wait_timeout=0.6)
        # The 0.1 s floor would allow at most 7 polls in 0.6 s; at 20 ms, about 30.
        assert polls(fake) >= 9

    async def test_returns_the_completed_job(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """A created job is polled until completed, and the final state is returned."""
        created = await client.create("p")
        final = await client.wait(created.id, wait_timeout=10)
        assert final.id == created.id
        assert final.status == "completed"
        assert final.progress == 100
        assert final.is_completed
        assert final.is_finished
        assert polls(api) >= 2
        assert all(req.path == f"/v1/videos/{created.id}" for req in api.requests[1:])

    async def test_failed_job_is_returned(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """Without raise_on_failure, a failed job is a normal return with its error."""
        api.set_outcome(None, "failed", error=FAILURE)
        final = await client.wait(await client.create("p"), wait_timeout=10)
        assert final.is_failed
        assert final.error is not None
        assert (final.error.code, final.error.message) == (FAILURE["code"], FAILURE["message"])

    async def test_raise_on_failure(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """With raise_on_failure, a failed job raises VideoFailedError with the job and error."""
        api.set_outcome(None, "failed", error=FAILURE)
        created = await client.create("p")
        with pytest.raises(VideoFailedError, match="moderation_blocked") as info:
            await client.wait(created, raise_on_failure=True, wait_timeout=10)
        assert isinstance(info.value, AsyncVideosError)
        assert info.value.video.id == created.id
        assert info.value.video.status == "failed"
        assert info.value.error is not None
        assert info.value.error.code == FAILURE["code"]

    async def test_raise_on_failure_lets_completed_jobs_through(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """raise_on_failure only concerns failed jobs."""
        final = await client.wait(await client.create("p"), raise_on_failure=True, wait_timeout=10)
        assert final.is_completed

    async def test_finished_video_needs_no_request(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A Video that is already final is returned as is (or raised, if failed)."""
        done = Video(id="video_1", status="completed")
        assert await client.wait(done) is done
        failed = Video(id="video_2", status="failed")
        with pytest.raises(VideoFailedError):
            await client.wait(failed, raise_on_failure=True)
        assert api.requests == []

    async def test_pending_video_is_polled(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """A Video still waiting is polled by its id."""
        created = await client.create("p")
        assert created.is_pending
        assert (await client.wait(created, wait_timeout=10)).is_completed

    async def test_poll_hint_wins_over_poll_interval(self, clock: ManualClock) -> None:
        """openai-poll-after-ms decides the interval even when poll_interval is shorter."""
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=200) as api,
            api.client() as client,
        ):
            (video_id,) = api.seed(1, status="queued")
            with pytest.raises(WaitTimeoutError):
                await client.wait(video_id, poll_interval=0.01, wait_timeout=0.5)
            # At 0, 0.2 and 0.4 s; poll_interval would have made about 50.
            assert 2 <= polls(api) <= 3

    async def test_poll_hint_is_read_on_every_poll(
        self, silent_api: FakeVideosAPI, silent_client: AsyncVideos
    ) -> None:
        """Each answer's own hint sets the next wait: three hinted answers, four quick polls."""
        (video_id,) = silent_api.seed(1, status="queued")
        hint = Fault(headers={"openai-poll-after-ms": "100"})
        silent_api.inject(hint, times=3, method="GET")
        with pytest.raises(WaitTimeoutError):
            # The fourth answer has no hint, so the 30 s poll_interval applies to it.
            await silent_client.wait(video_id, poll_interval=30, wait_timeout=0.7)
        assert polls(silent_api) == 4

    async def test_poll_interval_applies_without_a_hint(
        self, silent_api: FakeVideosAPI, silent_client: AsyncVideos
    ) -> None:
        """Without a hint, poll_interval sets the pace."""
        (video_id,) = silent_api.seed(1, status="queued")
        with pytest.raises(WaitTimeoutError):
            await silent_client.wait(video_id, poll_interval=0.1, wait_timeout=0.45)
        assert 3 <= polls(silent_api) <= 5

    async def test_default_interval_is_one_second(
        self, silent_api: FakeVideosAPI, silent_client: AsyncVideos
    ) -> None:
        """With neither hint nor poll_interval, the next poll is a second away."""
        (video_id,) = silent_api.seed(1, status="queued")
        with pytest.raises(WaitTimeoutError):
            await silent_client.wait(video_id, wait_timeout=0.3)
        assert polls(silent_api) == 1

    async def test_timeout_carries_the_last_job_seen(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """The wait as a whole times out with WaitTimeoutError, a TimeoutError holding the job."""
        (video_id,) = frozen_api.seed(1, status="in_progress")
        with pytest.raises(WaitTimeoutError) as info:
            await frozen_client.wait(video_id, wait_timeout=0.1)
        error = info.value
        assert isinstance(error, TimeoutError)
        assert isinstance(error, AsyncVideosError)
        assert error.video_id == video_id
        assert error.video is not None
        assert error.video.id == video_id
        assert error.video.status == "in_progress"
        assert "in_progress" in str(error)

    async def test_timeout_before_any_answer(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """A wait that ends before the first answer has no job to report."""
        (video_id,) = frozen_api.seed(1, status="queued")
        frozen_api.inject(Fault(delay=2.0), method="GET")
        with pytest.raises(WaitTimeoutError) as info:
            await frozen_client.wait(video_id, wait_timeout=0.1)
        assert info.value.video is None
        assert "unknown" in str(info.value)

    async def test_on_progress_is_called_on_each_change_only(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos, clock: ManualClock
    ) -> None:
        """Six polls see four distinct (status, progress) states: four calls."""
        created = await frozen_client.create("p")  # queued for 1 s, then 5 s in progress
        frozen_api.clear_requests()
        # Once poll n has been answered, move the fake's clock by steps[n] seconds.
        steps = {2: 1.0, 4: 2.5, 5: 10.0}

        async def drive_clock() -> None:
            handled = 0
            while True:
                await asyncio.sleep(0.001)
                while handled < len(frozen_api.requests):
                    handled += 1
                    clock.advance(steps.get(handled, 0.0))

        seen: list[Video] = []
        driver = asyncio.create_task(drive_clock())
        try:
            final = await frozen_client.wait(
                created.id, on_progress=seen.append, poll_interval=0.01, wait_timeout=5
            )
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        assert polls(frozen_api) == 6
        assert [(v.status, v.progress) for v in seen] == [
            ("queued", 0),
            ("in_progress", 0),
            ("in_progress", 49),
            ("completed", 100),
        ]
        assert seen[-1] == final

    async def test_on_progress_skips_the_state_already_known(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """Given a Video, its state is reported once and polls showing it again are not;
        given an id, the first poll's state is reported once."""
        created = await frozen_client.create("p")
        from_video: list[Video] = []
        from_id: list[Video] = []

        async def on_progress(video: Video) -> None:
            await asyncio.sleep(0)
            from_id.append(video)

        fast = {"poll_interval": 0.01, "wait_timeout": 0.1}
        with pytest.raises(WaitTimeoutError):
            await frozen_client.wait(created, on_progress=from_video.append, **fast)
        with pytest.raises(WaitTimeoutError):
            await frozen_client.wait(created.id, on_progress=on_progress, **fast)
        assert polls(frozen_api) >= 4
        assert [v.status for v in from_video] == ["queued"]
        assert from_video[0] is created
        assert [v.status for v in from_id] == ["queued"]

    async def test_poll_errors_go_through_the_retry_policy(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A 500 on a poll is retried like any GET; the wait carries on."""
        created = await client.create("p")
        api.inject(Fault(status=500), times=2, method="GET")
        assert (await client.wait(created, wait_timeout=10)).is_completed
        assert [req.method for req in api.requests[:4]] == ["POST", "GET", "GET", "GET"]

    async def test_poll_error_beyond_retries_is_raised(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """With max_retries=0 the first poll error ends the wait."""
        created = await client.create("p")
        api.inject(Fault(status=500), method="GET")
        with pytest.raises(InternalServerError) as info:
            await client.wait(created, max_retries=0, wait_timeout=10)
        assert info.value.retries == 0
        assert polls(api) == 1

    async def test_unknown_job_raises_not_found(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A 404 is not retried: NotFoundError after one poll."""
        with pytest.raises(NotFoundError):
            await client.wait("video_missing", wait_timeout=10)
        assert polls(api) == 1

    async def test_waiting_statuses_are_configurable(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """A job stops being waited on when its status leaves waiting_statuses."""
        (video_id,) = frozen_api.seed(1, status="in_progress")
        video = await frozen_client.wait(video_id, waiting_statuses={"queued"}, wait_timeout=5)
        assert video.status == "in_progress"
        assert polls(frozen_api) == 1

    async def test_per_call_options_reach_every_poll(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """extra_headers and extra_query are sent with each poll."""
        created = await client.create("p")
        await client.wait(
            created,
            wait_timeout=10,
            request_timeout=5,
            max_retries=1,
            extra_headers={"X-Trace": "w"},
            extra_query={"trace": "1"},
        )
        gets = [req for req in api.requests if req.method == "GET"]
        assert gets
        assert all(req.header("x-trace") == "w" for req in gets)
        assert all(req.query == {"trace": "1"} for req in gets)


class TestCreateAndWait:
    """``create_and_wait()``: create, then wait."""

    async def test_creates_then_waits(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """One POST, then polls of the new job, ending with the completed job."""
        final = await client.create_and_wait(
            "p", seconds=8, size="1280x720", idempotency_key="k-7", wait_timeout=10
        )
        assert final.is_completed
        assert (final.seconds, final.size) == ("8", "1280x720")
        first, *rest = api.requests
        assert (first.method, first.header("idempotency-key")) == ("POST", "k-7")
        assert first.json == {"prompt": "p", "seconds": "8", "size": "1280x720"}
        assert rest
        assert all(req.path == f"/v1/videos/{final.id}" for req in rest)

    async def test_progress_and_failure(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """on_progress sees the job; raise_on_failure raises for a failed one."""
        api.set_outcome(None, "failed")
        seen: list[Video] = []
        with pytest.raises(VideoFailedError) as info:
            await client.create_and_wait(
                "p", on_progress=seen.append, raise_on_failure=True, wait_timeout=10
            )
        assert seen[-1] == info.value.video

    async def test_timeout_bounds_the_wait(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """timeout bounds the wait; the job was created once."""
        with pytest.raises(WaitTimeoutError) as info:
            await frozen_client.create_and_wait("p", wait_timeout=0.1, poll_interval=0.02)
        assert info.value.video is not None
        assert list(frozen_api.videos) == [info.value.video.id]


async def collect(results: AsyncIterator[WaitResult]) -> list[WaitResult]:
    return [result async for result in results]


class TestWaitMany:
    """``wait_many()``: many jobs at once, reported in completion order."""

    async def test_a_job_waiting_out_a_retry_does_not_hold_its_slot(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """The concurrency gate is held per attempt: while one job sleeps through a
        Retry-After, another job's poll goes ahead."""
        api.add_videos({"id": "video_slowpoke"}, {"id": "video_quick"})
        # A 503, not a 429: a 429 pauses the whole client (see test_pacing_http.py).
        api.inject(Fault(status=503, headers={"retry-after-ms": "500"}), times=1, path="slowpoke")
        with retry_waits_enabled():
            results = client.wait_many(["video_slowpoke", "video_quick"], concurrency=1)
            first = await anext(results)
            second = await anext(results)
            await results.aclose()
        # Had the slot been held through the 0.5 s wait, the quick job's poll would have
        # come after the slowpoke's retry, and its result second.
        assert (first.video_id, second.video_id) == ("video_quick", "video_slowpoke")
        assert [r.path.rsplit("/", 1)[1] for r in api.requests] == [
            "video_slowpoke",
            "video_quick",
            "video_slowpoke",
        ]
        assert second.ok

    async def test_finished_videos_are_reported_without_a_poll(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A Video already in a final status needs no request; an id or a bare Video does."""
        (done,) = api.seed(1)
        finished = await client.retrieve(done)
        api.clear_requests()
        results = await collect(client.wait_many([finished, Video(id=done), done]))
        assert [r.video_id for r in results] == [done] * 3
        assert results[0].video is finished
        assert polls(api) == 2

    async def test_results_come_in_completion_order(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """Jobs are reported as they finish, not in the order given."""
        for video_id, duration in [("video_slow", 40.0), ("video_fast", 0.5), ("video_mid", 15)]:
            api.set_outcome(video_id, "completed", duration=duration)
            api.add_videos({"id": video_id, "status": "queued"})
        results = await collect(
            client.wait_many(["video_slow", Video(id="video_fast"), "video_mid"], wait_timeout=10)
        )
        assert [r.video_id for r in results] == ["video_fast", "video_mid", "video_slow"]
        assert all(r.ok and r.error is None for r in results)
        assert all(r.video is not None and r.video.is_completed for r in results)

    async def test_five_hundred_jobs_with_mixed_outcomes(self) -> None:
        """Every job is reported once with its final status; an unknown id with NotFoundError."""
        async with (
            FakeVideosAPI(speed=1000.0, poll_after_ms=10) as api,
            api.client() as client,
        ):
            completed = api.seed(150)
            failed = api.seed(50, status="failed")
            running: list[str] = []
            expected = dict.fromkeys(completed, "completed")
            expected.update(dict.fromkeys(failed, "failed"))
            for n in range(299):
                video_id = f"video_run{n:03d}"
                outcome = "failed" if n % 5 == 0 else "completed"
                api.set_outcome(video_id, outcome, duration=1.0 + n % 7)
                running.append(video_id)
                expected[video_id] = outcome
            api.add_videos(*({"id": video_id, "status": "queued"} for video_id in running))
            ids = [*running, *completed, "video_unknown", *failed]
            assert len(ids) == 500

            results = await collect(client.wait_many(ids, concurrency=16, wait_timeout=30))

        assert sorted(r.video_id for r in results) == sorted(ids)
        by_id = {r.video_id: r for r in results}
        missing = by_id.pop("video_unknown")
        assert not missing.ok
        assert isinstance(missing.error, NotFoundError)
        assert missing.video is None
        assert {video_id: r.video.status for video_id, r in by_id.items() if r.video} == expected
        assert all(r.ok for r in by_id.values())

    @pytest.mark.parametrize("concurrency", [1, 4])
    async def test_concurrency_caps_requests_in_flight(
        self, api: FakeVideosAPI, client: AsyncVideos, concurrency: int
    ) -> None:
        """No more than `concurrency` polls are at the server at once, and that many are."""
        ids = api.seed(2 * concurrency)
        # Each poll is held 0.3 s: long enough for `concurrency` of them to be at the
        # server together however busy the machine (a 20 ms hold was not, under load).
        api.inject(Fault(delay=0.3), times=100, method="GET")
        results = await collect(client.wait_many(ids, concurrency=concurrency, wait_timeout=10))
        assert len(results) == 2 * concurrency
        assert api.max_in_flight == concurrency

    async def test_one_failure_does_not_stop_the_others(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """A 404 and a poll that runs out of retries are reported; the rest still finish."""
        good = frozen_api.seed(3)
        frozen_api.inject(Fault(status=500), times=3, method="GET", path="video_broken")
        frozen_api.add_videos({"id": "video_broken", "status": "completed"})
        results = await collect(
            frozen_client.wait_many(
                ["video_missing", "video_broken", *good], max_retries=2, wait_timeout=10
            )
        )
        by_id = {r.video_id: r for r in results}
        assert len(results) == 5
        assert isinstance(by_id["video_missing"].error, NotFoundError)
        assert isinstance(by_id["video_broken"].error, InternalServerError)
        assert by_id["video_broken"].error.retries == 2
        assert all(by_id[video_id].ok for video_id in good)

    async def test_timeout_reports_each_unfinished_job(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """When the run's timeout passes, each unfinished job gets a WaitTimeoutError."""
        (done,) = frozen_api.seed(1)
        stuck = queued(frozen_api, 3)
        results = await collect(frozen_client.wait_many([*stuck, done], wait_timeout=0.2))
        assert results[0].video_id == done
        assert results[0].ok
        assert sorted(r.video_id for r in results[1:]) == sorted(stuck)
        for result in results[1:]:
            assert isinstance(result.error, WaitTimeoutError)
            assert result.error.video_id == result.video_id
            assert result.video is not None
            assert result.video.status == "queued"
            assert result.error.video == result.video

    async def test_breaking_out_cancels_the_polls(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """After a break, the remaining polls stop and their connections are released."""
        (done,) = frozen_api.seed(1)
        stuck = queued(frozen_api, 10)
        before = asyncio.all_tasks()
        async for result in frozen_client.wait_many([*stuck, done]):
            assert result.video_id == done
            break
        # The generator's cleanup runs on the loop: then no poller is left to poll.
        await until(lambda: not tasks_started_since(before), "the pollers ending")
        assert frozen_api.in_flight == 0

    async def test_closing_early_cancels_the_polls_at_once(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """With aclosing(), the polls are cancelled when the block exits."""
        (done,) = frozen_api.seed(1)
        stuck = queued(frozen_api, 10)
        before = asyncio.all_tasks()
        async with contextlib.aclosing(frozen_client.wait_many([done, *stuck])) as results:
            async for _ in results:
                break
        # At once: no poller is left when the block exits.
        assert tasks_started_since(before) == set()
        assert frozen_api.in_flight == 0

    async def test_on_progress_sees_every_job(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """on_progress is called with each job's changes, ending with its final state."""
        created = [await client.create("p") for _ in range(3)]
        last: dict[str, Video] = {}
        results = await collect(
            client.wait_many(created, on_progress=lambda v: last.update({v.id: v}), wait_timeout=10)
        )
        assert {r.video_id: r.video for r in results} == last

    async def test_on_progress_error_is_that_jobs_error(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        """An exception raised by on_progress is reported as that job's error; the
        other jobs go on, and no poll is left running."""
        ids = queued(frozen_api, 5)

        def broken(video: Video) -> None:
            if video.id == ids[2]:
                raise RuntimeError("bug in the callback")

        results = frozen_client.wait_many(ids, on_progress=broken, poll_interval=0.01)
        first = await anext(results)
        assert (first.video_id, first.ok) == (ids[2], False)
        assert isinstance(first.error, RuntimeError)
        assert first.video is not None
        assert first.video.status == "queued"
        await results.aclose()
        sent = len(frozen_api.requests)
        await asyncio.sleep(0.05)
        assert len(frozen_api.requests) == sent

    async def test_no_jobs_yields_nothing(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """An empty list is an empty run, without requests."""
        assert await collect(client.wait_many([])) == []
        assert api.requests == []

    async def test_poll_errors_are_retried(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """A transient poll failure is retried, not reported."""
        ids = api.seed(4)
        api.inject(Fault(status=503), times=2, method="GET")
        results = await collect(client.wait_many(ids, wait_timeout=10))
        assert all(r.ok for r in results)
        assert len(api.requests) == 6


class TestWaitTimeoutName:
    """``wait_timeout=`` bounds a whole wait; ``timeout=``, its old name, still works but
    warns, since on every other method ``timeout=`` bounds one request."""

    async def test_the_old_name_warns_and_still_bounds_the_wait(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        (video_id,) = queued(frozen_api, 1)
        with (
            pytest.warns(DeprecationWarning, match=r"wait\(timeout=\.\.\.\).*wait_timeout=") as w,
            pytest.raises(WaitTimeoutError, match=r"within 0\.05 s"),
        ):
            await frozen_client.wait(video_id, timeout=0.05)
        assert w[0].filename == __file__  # the warning names the caller's line

    async def test_every_wait_warns(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        (video_id,) = queued(frozen_api, 1)
        with pytest.warns(DeprecationWarning, match=r"wait_many\(timeout="):
            results = frozen_client.wait_many([video_id], timeout=0.05)
        assert isinstance((await anext(results)).error, WaitTimeoutError)
        await results.aclose()
        with (
            pytest.warns(DeprecationWarning, match=r"create_and_wait\(timeout="),
            pytest.raises(WaitTimeoutError),
        ):
            await frozen_client.create_and_wait("p", timeout=0.05)

    async def test_both_names_are_refused(
        self, frozen_api: FakeVideosAPI, frozen_client: AsyncVideos
    ) -> None:
        with pytest.raises(TypeError, match="wait_timeout= or its old name timeout=, not both"):
            await frozen_client.wait("video_x", wait_timeout=1, timeout=1)
        assert frozen_api.requests == []
