"""Shared fixtures: a fake API on loopback and a client on it, retries without sleeping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from asyncvideos import AsyncVideos
from asyncvideos.testing import FakeVideosAPI, no_retry_waits


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    """Retries compute and log their waits but do not sleep, so the suite stays fast."""
    with no_retry_waits():
        yield


@pytest.fixture
async def api() -> AsyncIterator[FakeVideosAPI]:
    """A fake API whose jobs finish in about 0.06 s of real time, polled every 10 ms."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as fake:
        yield fake


@pytest.fixture
async def client(api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    """A client on ``api`` with the default retry budget."""
    async with api.client() as videos:
        yield videos
