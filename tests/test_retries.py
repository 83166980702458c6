"""Retries: what is retried, how often, how long the client waits, and what it logs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from asyncvideos import (
    APIConnectionError,
    APIStatusError,
    AsyncVideos,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    RetryDetails,
)
from asyncvideos._retry import (
    INITIAL_WAIT,
    MAX_WAIT,
    backoff_wait,
    retry_waits_disabled,
    retry_waits_enabled,
)
from asyncvideos.testing import FakeVideosAPI, Fault

QUOTA = {
    "error": {
        "message": "You exceeded your current quota.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}


@pytest.fixture
def video(api: FakeVideosAPI) -> str:
    return api.seed(1)[0]


class TestRetryDecisionsByStatusAndHeader:
    """Which answers are retried and which are not (the cases PSOpenAI's suite checks)."""

    async def test_404_is_not_retried(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        with pytest.raises(NotFoundError):
            await client.retrieve("video_missing", max_retries=5)
        assert len(api.requests) == 1

    async def test_quota_429_is_not_retried(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        api.inject(Fault(status=429, body=QUOTA), times=5)
        with pytest.raises(QuotaExceededError) as info:
            await client.retrieve(video, max_retries=5)
        assert info.value.retries == 0
        assert len(api.requests) == 1

    async def test_should_retry_true_on_404_is_retried(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        api.inject(Fault(status=404, headers={"x-should-retry": "true"}), times=2)
        assert (await client.retrieve(video, max_retries=3)).id == video
        assert len(api.requests) == 3

    async def test_should_retry_false_on_429_is_not(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        api.inject(Fault(status=429, headers={"x-should-retry": "false"}), times=2)
        with pytest.raises(RateLimitError):
            await client.retrieve(video, max_retries=3)
        assert len(api.requests) == 1

    async def test_retry_after_ms_waits_about_that_long(
        self, api: FakeVideosAPI, video: str
    ) -> None:
        """retry-after-ms: 200 is slept for real (waits switched back on here)."""
        api.inject(Fault(status=429, headers={"retry-after-ms": "200"}), times=1)
        retries: list[RetryDetails] = []
        async with api.client(on_retry=retries.append) as videos:
            with retry_waits_enabled():
                start = time.monotonic()
                await videos.retrieve(video)
                elapsed = time.monotonic() - start
        assert [details.wait for details in retries] == [0.2]  # the server's, exactly
        assert elapsed >= 0.2  # and slept: a timer never fires early
        assert len(api.requests) == 2

    @pytest.mark.parametrize("max_retries", [0, 1, 4])
    async def test_plain_429_is_retried_max_retries_times(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str, max_retries: int
    ) -> None:
        api.inject(Fault(status=429), times=10)
        with pytest.raises(RateLimitError) as info:
            await client.retrieve(video, max_retries=max_retries)
        assert info.value.retries == max_retries
        assert len(api.requests) == max_retries + 1

    async def test_500_is_retried(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        api.inject(Fault(status=500), times=2)
        assert (await client.retrieve(video)).id == video
        assert len(api.requests) == 3


class TestWhatIsRetried:
    """Retryable statuses, connection errors and timeouts are retried up to max_retries."""

    @pytest.mark.parametrize("status", [408, 409, 502, 503, 504])
    async def test_retryable_statuses(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str, status: int
    ) -> None:
        api.inject(Fault(status=status), times=1)
        assert (await client.retrieve(video)).id == video
        assert len(api.requests) == 2

    @pytest.mark.parametrize("status", [400, 401, 403, 422])
    async def test_client_errors_are_not(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str, status: int
    ) -> None:
        api.inject(Fault(status=status), times=1)
        with pytest.raises(APIStatusError) as info:
            await client.retrieve(video)
        assert info.value.status_code == status
        assert len(api.requests) == 1

    @pytest.mark.parametrize("fault", [Fault(drop=True), Fault(truncate=True)])
    async def test_dropped_and_cut_responses(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str, fault: Fault
    ) -> None:
        """A dropped connection or a body cut short is retried for a GET."""
        api.inject(fault, times=2)
        assert (await client.retrieve(video)).id == video
        assert len(api.requests) == 3
        assert api.requests[0].raw_path == api.requests[-1].raw_path

    async def test_dropped_connection_after_retries(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        """After its retries, a dropped connection is an APIConnectionError.

        aiohttp itself repeats an idempotent request once when the server closes
        the connection without answering (RFC 9112, section 9.3.1), so the server
        may see up to two requests per attempt.
        """
        api.inject(Fault(drop=True), times=10)
        with pytest.raises(APIConnectionError) as info:
            await client.retrieve(video)
        assert info.value.retries == 2
        assert 3 <= len(api.requests) <= 6
        assert not isinstance(info.value.__cause__, APIConnectionError)

    async def test_delete_follows_the_get_rules(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        api.inject(Fault(status=503), times=1, method="DELETE")
        deleted = await client.delete(video)
        assert deleted.id == video
        assert deleted.deleted is True
        assert [r.method for r in api.requests] == ["DELETE", "DELETE"]

    async def test_conflict_then_success(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str
    ) -> None:
        api.inject(Fault(status=409), times=3)
        with pytest.raises(ConflictError):
            await client.retrieve(video)

    async def test_client_max_retries_is_the_default(self, api: FakeVideosAPI, video: str) -> None:
        api.inject(Fault(status=500), times=10)
        async with api.client(max_retries=0) as videos:
            with pytest.raises(InternalServerError):
                await videos.retrieve(video)
        assert len(api.requests) == 1


class TestRetryWaits:
    """How long a retry waits: Retry-After, backoff, and the switch that turns waits off."""

    async def test_long_retry_after_is_not_slept_through(
        self, api: FakeVideosAPI, video: str
    ) -> None:
        """A Retry-After over 60 s raises at once, carrying the server's wait."""
        api.inject(Fault(status=429, headers={"retry-after": "600"}), times=1)
        retries: list[RetryDetails] = []
        async with api.client(on_retry=retries.append) as videos:
            with retry_waits_enabled(), pytest.raises(RateLimitError) as info:
                # Ten minutes, had it slept: the bound only keeps a broken build from hanging.
                await asyncio.wait_for(videos.retrieve(video), 60)
        assert retries == []  # no retry, so no retry wait
        assert info.value.retry_after == 600.0
        assert info.value.retries == 0
        assert len(api.requests) == 1

    async def test_server_wait_is_logged(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each retry is logged at INFO with the reason and the wait."""
        api.inject(Fault(status=503, headers={"retry-after": "3"}), times=1)
        api.inject(Fault(status=429, headers={"retry-after-ms": "1500"}), times=1)
        with caplog.at_level(logging.INFO, logger="asyncvideos"):
            await client.retrieve(video)
        messages = [r.getMessage() for r in caplog.records if r.name == "asyncvideos"]
        assert len(messages) == 2
        assert "in 3.000 s (retry 1 of 2)" in messages[0]
        assert "Error code: 503" in messages[0]
        assert "in 1.500 s (retry 2 of 2)" in messages[1]
        assert all(r.levelno == logging.INFO for r in caplog.records)
        assert api.api_key not in caplog.text

    async def test_exponential_waits_are_logged(
        self, client: AsyncVideos, api: FakeVideosAPI, video: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        api.inject(Fault(status=500), times=4)
        with caplog.at_level(logging.INFO, logger="asyncvideos"):
            await client.retrieve(video, max_retries=4)
        waits = [float(r.getMessage().split(" in ")[1].split(" s ")[0]) for r in caplog.records]
        assert len(waits) == 4
        for number, wait in enumerate(waits):
            base = min(INITIAL_WAIT * 2**number, MAX_WAIT)
            assert 0.75 * base <= wait <= base

    def test_backoff_wait_bounds(self) -> None:
        """Exponential from about 0.5 s, doubling, capped near 8 s, with jitter."""
        for number in range(10):
            wait = backoff_wait(number)
            base = min(0.5 * 2**number, 8.0)
            assert 0.75 * base <= wait <= base
        assert backoff_wait(50) <= MAX_WAIT

    def test_disabled_waits_restore(self) -> None:
        import asyncvideos._retry as retry

        assert retry._waits_enabled is False  # the suite's autouse fixture
        with retry_waits_enabled():
            assert retry._waits_enabled is True
            with retry_waits_disabled():
                assert retry._waits_enabled is False
            assert retry._waits_enabled is True
        assert retry._waits_enabled is False


class TestServerRejections:
    """A request the server rejects is raised with the details it sent, not retried."""

    async def test_bad_request_has_details(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """A 400 from the server carries the API's param and message."""
        with pytest.raises(BadRequestError) as info:
            await client.create("x", extra_body={"seconds": "5"})  # past the local check
        assert info.value.param == "seconds"
        assert len(api.requests) == 1
