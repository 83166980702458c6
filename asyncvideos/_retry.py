"""What is retried and how long to wait, wired into ``backoff``.

Retries wrap one request at a time, never a generator: a listing that fails
part way raises with a cursor to resume from instead of starting over.

The rules, in order:

1. A server-requested wait (``retry-after-ms``, ``retry-after``) longer than
   60 s is not slept through: the error is raised at once with ``retry_after``.
2. ``x-should-retry: true|false`` on a response overrides the status rule.
3. A spent quota (429 with a quota code) is never retried.
4. Requests that are safe to repeat (GET, DELETE) are retried on connection
   errors, timeouts, 408, 409, 429 and 5xx.
5. A POST may create a paid job, so it is retried only where the server
   certainly did not act: a 429, or a connection that was never opened.

The wait is the server's, when it gave one, else exponential backoff with
jitter from about 0.5 s, capped near 8 s.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

import attrs
import backoff

from . import _errors as errors
from ._protocol import MAX_RETRY_AFTER, should_retry_header, status_is_retryable

logger = logging.getLogger("asyncvideos")
T = TypeVar("T")

INITIAL_WAIT = 0.5
MAX_WAIT = 8.0
_waits_enabled = True


@contextmanager
def retry_waits_disabled() -> Iterator[None]:
    """Make retries not sleep while the block runs, for fast tests.

    The waits that would have been slept are still computed and logged.
    """
    with _retry_waits(enabled=False):
        yield


@contextmanager
def retry_waits_enabled() -> Iterator[None]:
    """Sleep through retry waits again inside a block where they were disabled."""
    with _retry_waits(enabled=True):
        yield


@contextmanager
def _retry_waits(*, enabled: bool) -> Iterator[None]:
    global _waits_enabled
    previous = _waits_enabled
    _waits_enabled = enabled
    try:
        yield
    finally:
        _waits_enabled = previous


def is_retryable(error: errors.AsyncVideosError, *, idempotent: bool) -> bool:
    """Whether a failed attempt may be repeated (the module docstring's rules)."""
    if isinstance(error, errors.APIStatusError):
        if error.retry_after is not None and error.retry_after > MAX_RETRY_AFTER:
            return False
        override = should_retry_header(error.headers)
        if override is not None:
            return override
        if isinstance(error, errors.QuotaExceededError):
            return False
        if idempotent:
            return status_is_retryable(error.status_code)
        return error.status_code == 429
    if isinstance(error, errors.APIConnectionError):
        return error.retry_can_help and (idempotent or not error.request_sent)
    return False


def backoff_wait(retry_number: int) -> float:
    """Exponential wait with jitter for the n-th retry (0-based)."""
    base = min(INITIAL_WAIT * 2.0**retry_number, MAX_WAIT)
    return base * (1.0 - 0.25 * random.random())


@attrs.define(slots=True)
class _Attempts(Generic[T]):
    """The state of one request across its attempts."""

    run: Callable[[], Awaitable[T]]
    idempotent: bool
    what: str
    max_retries: int
    retries: int = 0
    #: The first attempt's retryable failure: that attempt runs outside backoff
    #: (the happy path skips its bookkeeping) and backoff's first try re-raises it.
    first_failure: _RetryableError | None = None


class _RetryableError(Exception):
    """Carries a retryable failure through backoff; never leaves this module."""

    def __init__(self, error: errors.AsyncVideosError) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = 0.0


async def _attempt(state: _Attempts[T]) -> T:
    failure = state.first_failure
    if failure is not None:
        state.first_failure = None
        raise failure
    try:
        return await state.run()
    except errors.AsyncVideosError as error:
        if is_retryable(error, idempotent=state.idempotent):
            raise _RetryableError(error) from None
        error.retries = state.retries
        raise


def _waits() -> Generator[float | None, _RetryableError, None]:
    """backoff's wait generator: each failure is sent in, its wait comes out."""
    failure = yield None
    retry_number = 0
    while True:
        server_wait = getattr(failure.error, "retry_after", None)
        failure.wait = server_wait if server_wait is not None else backoff_wait(retry_number)
        retry_number += 1
        failure = yield failure.wait if _waits_enabled else 0.0


def _log_retry(details: Any) -> None:
    state: _Attempts[Any] = details["args"][0]
    failure: _RetryableError = details["exception"]
    state.retries += 1
    logger.info(
        "Retrying %s in %.3f s (retry %d of %d) after: %s",
        state.what,
        failure.wait,
        state.retries,
        state.max_retries,
        failure.error,
    )


@functools.cache
def _retrier(max_tries: int) -> Callable[[_Attempts[Any]], Awaitable[Any]]:
    # One decorated function per retry budget, built once: the per-call state
    # travels in the argument, and backoff makes a fresh wait generator per call.
    return backoff.on_exception(
        cast("Callable[..., Generator[float, None, None]]", _waits),
        _RetryableError,
        max_tries=max_tries,
        jitter=None,
        on_backoff=_log_retry,
        logger=None,
        raise_on_giveup=True,
    )(_attempt)


async def call_with_retries(
    run: Callable[[], Awaitable[T]], *, max_retries: int, idempotent: bool, what: str
) -> T:
    """Run ``run()`` with up to ``max_retries`` retries under the module's rules."""
    # Most requests succeed at once: only a failure pays for backoff's per-call
    # setup (about 15 us, as much as the rest of the client) and for the state.
    try:
        return await run()
    except errors.AsyncVideosError as first:
        if not is_retryable(first, idempotent=idempotent):
            raise
        first_failure = _RetryableError(first)
    state = _Attempts(run, idempotent, what, max_retries, first_failure=first_failure)
    try:
        result: T = await _retrier(max_retries + 1)(state)
    except _RetryableError as failure:
        error = failure.error
        error.retries = state.retries
        raise error from error.__cause__
    return result
