"""The pytest plugin's fixtures, as a user's test suite sees them.

This module overrides ``fake_videos_api_options`` the way the plugin's docstring
and the README say, so ``fake_videos_api`` here runs on ``manual_clock``.
"""

from __future__ import annotations

from typing import Any

import pytest

from asyncvideos import AsyncVideos
from asyncvideos.testing import FakeVideosAPI, ManualClock, RealClock
from asyncvideos.testing._plugin import fake_videos_api_options as default_options


@pytest.fixture
def fake_videos_api_options(manual_clock: ManualClock) -> dict[str, Any]:
    return {"clock": manual_clock}


async def test_the_fixture_runs_on_the_clock_the_options_give(
    fake_videos_api: FakeVideosAPI, videos_client: AsyncVideos, manual_clock: ManualClock
) -> None:
    """Jobs move only when manual_clock advances: 1 s queued, then 5 s in progress."""
    assert fake_videos_api.clock is manual_clock
    video = await videos_client.create("a paper boat")
    assert (await videos_client.retrieve(video)).status == "queued"
    manual_clock.advance(1.0)
    assert (await videos_client.retrieve(video)).status == "in_progress"
    manual_clock.advance(5.0)
    finished = await videos_client.wait(video, wait_timeout=5)
    assert finished.status == "completed"


def test_by_default_the_fixture_uses_the_real_clock() -> None:
    """Without an override, no options: FakeVideosAPI's defaults, the real clock."""
    options = default_options.__wrapped__()  # type: ignore[attr-defined]
    assert options == {}
    fake = FakeVideosAPI(**options)
    assert isinstance(fake.clock, RealClock)
    assert fake.clock.speed == 1.0


def test_manual_clock_fixture_is_a_fresh_manual_clock(manual_clock: ManualClock) -> None:
    start = manual_clock.now()
    assert manual_clock.advance(2.5) == start + 2.5
