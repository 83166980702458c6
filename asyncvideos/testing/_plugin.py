"""pytest plugin (entry point ``pytest11``): fixtures for tests of code that uses asyncvideos.

- ``fake_videos_api``: a started :class:`~asyncvideos.testing.FakeVideosAPI`, closed
  after the test. By default its jobs run on the real clock: 1 s ``queued``, then
  5 s ``in_progress``, so a ``wait()`` in your test takes about 6 s. Override
  ``fake_videos_api_options`` to change that.
- ``fake_videos_api_options``: the keyword arguments ``fake_videos_api`` is built
  with (default: none). Override it in a conftest or a test module, e.g. to drive
  jobs by hand with ``manual_clock``::

      @pytest.fixture
      def fake_videos_api_options(manual_clock):
          return {"clock": manual_clock}

  or ``{"speed": 100.0, "poll_after_ms": 10}`` for jobs that finish in about 60 ms
  (a ``wait()`` polls a hint that short every 0.1 s, unless given a shorter
  ``poll_interval``).
- ``manual_clock``: a :class:`~asyncvideos.testing.ManualClock`; jobs move only when
  the test calls ``manual_clock.advance(seconds)``.
- ``videos_client``: an ``AsyncVideos`` from ``fake_videos_api.client()``, closed after
  the test.

The async fixtures are function-scoped and need pytest-asyncio; without it they fail
with a clear message when used, and the plugin never breaks a run that does not use
them. Tests written as ``async def`` also need pytest-asyncio's
``asyncio_mode = "auto"`` (or ``@pytest.mark.asyncio`` on each test).

A fixture defined in your conftest with the name ``fake_videos_api`` overrides this
one entirely, and ``videos_client`` then uses yours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from ._clock import ManualClock

if TYPE_CHECKING:
    from asyncvideos import AsyncVideos

    from ._server import FakeVideosAPI

_F = TypeVar("_F", bound=Callable[..., Any])

try:
    import pytest_asyncio

    _HAVE_PYTEST_ASYNCIO = True
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    _HAVE_PYTEST_ASYNCIO = False

_MISSING = (
    "the asyncvideos fixtures need pytest-asyncio: pip install pytest-asyncio "
    "(and set asyncio_mode = 'auto' or mark your tests with @pytest.mark.asyncio)"
)


def _async_fixture(func: _F) -> _F:
    """``pytest_asyncio.fixture`` when available; otherwise a fixture that fails on use."""
    if _HAVE_PYTEST_ASYNCIO:
        return cast(_F, pytest_asyncio.fixture(func))

    def unavailable() -> None:  # pragma: no cover - exercised only without pytest-asyncio
        pytest.fail(_MISSING, pytrace=False)

    unavailable.__name__ = func.__name__
    unavailable.__doc__ = func.__doc__
    return cast(_F, pytest.fixture(name=func.__name__)(unavailable))


@pytest.fixture
def manual_clock() -> ManualClock:
    """A ManualClock: jobs on a fake that uses it move only when the test advances it."""
    return ManualClock()


@pytest.fixture
def fake_videos_api_options() -> dict[str, Any]:
    """Keyword arguments for ``fake_videos_api`` (none: 1 s queued + 5 s running, real time).

    Override this fixture to pass ``clock=``, ``speed=``, sizes, faults' defaults...
    """
    return {}


@_async_fixture
async def fake_videos_api(
    fake_videos_api_options: dict[str, Any],
) -> AsyncIterator[FakeVideosAPI]:
    """A started FakeVideosAPI built with ``fake_videos_api_options``, closed after the test."""
    from ._server import FakeVideosAPI

    async with FakeVideosAPI(**fake_videos_api_options) as api:
        yield api


@_async_fixture
async def videos_client(fake_videos_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    """An AsyncVideos client talking to ``fake_videos_api``, closed after the test."""
    async with fake_videos_api.client() as client:
        yield client
