"""pytest plugin (entry point ``pytest11``): the ``fake_videos_api`` and ``videos_client`` fixtures.

- ``fake_videos_api``: a started :class:`~asyncvideos.testing.FakeVideosAPI` with default
  options, closed after the test.
- ``videos_client``: an ``AsyncVideos`` from ``fake_videos_api.client()``, closed after
  the test.

Both are function-scoped async fixtures and need pytest-asyncio; without it they fail
with a clear message when used, and the plugin never breaks a run that does not use them.

To pass options (a ``ManualClock``, sizes, ...), build your own fixture, e.g.::

    @pytest_asyncio.fixture
    async def fake_videos_api():
        async with FakeVideosAPI(clock=ManualClock(), run_seconds=10) as api:
            yield api

A fixture defined in your conftest with the same name overrides this one, and
``videos_client`` then uses yours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

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


@_async_fixture
async def fake_videos_api() -> AsyncIterator[FakeVideosAPI]:
    """A started FakeVideosAPI with default options, closed after the test."""
    from ._server import FakeVideosAPI

    async with FakeVideosAPI() as api:
        yield api


@_async_fixture
async def videos_client(fake_videos_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    """An AsyncVideos client talking to ``fake_videos_api``, closed after the test."""
    async with fake_videos_api.client() as client:
        yield client
