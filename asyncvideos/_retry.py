"""What is retried and how long to wait: one decision function and one loop.

Retries wrap one request at a time, never a generator: a listing that fails
part way raises with a cursor to resume from instead of starting over.

``retry_decision`` states the policy, in order:

1. A server-requested wait (``retry-after-ms``, ``retry-after``) longer than
   60 s is not slept through: the error is raised at once with ``retry_after``.
2. ``x-should-retry: true|false`` on a response (or LiteLLM's forwarded
   ``llm_provider-x-should-retry``) overrides the status rule.
3. A spent quota (429 with a quota code) is never retried.
4. Requests that are safe to repeat (GET, DELETE) are retried on connection
   errors, timeouts, 408, 409, 429 and 5xx.
5. A POST may create a paid job, so it is retried only where the server
   certainly did not act: a 429, or a connection that was never opened.

The wait is the server's, when it gave one, else exponential backoff (from
``backoff``'s wait generator) from 0.5 s, capped at 8 s, with jitter; never
under 0.1 s, so a server cannot force a burst of instant retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeAlias, TypeVar

import attrs
import backoff

from . import _errors as errors
from ._protocol import gateway_header

logger = logging.getLogger("asyncvideos")
T = TypeVar("T")

#: Longest server-requested wait that is honoured by sleeping; beyond it the
#: error is raised at once with ``retry_after`` set, so the caller decides.
MAX_RETRY_AFTER = 60.0
INITIAL_WAIT = 0.5
MAX_WAIT = 8.0
MIN_WAIT = 0.1
_waits_enabled = True


@attrs.frozen(slots=True)
class RetryDetails:
    """What ``on_retry`` is told before each retry's wait.

    ``retry`` counts from 1; ``wait`` is the pause in seconds before it (the
    server's, or backoff's); ``error`` is the failure being retried.
    """

    method: str
    path: str
    retry: int
    max_retries: int
    wait: float
    error: errors.AsyncVideosError


OnRetry: TypeAlias = Callable[[RetryDetails], object]
"""``on_retry(details)``: a sync callable given a ``RetryDetails`` before each
retry's wait (for metrics or logs of your own); its result is ignored."""


@contextmanager
def retry_waits_disabled() -> Iterator[None]:
    """Make retries not sleep while the block runs, for fast tests.

    The waits that would have been slept are still computed, logged and given
    to ``on_retry``.
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


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false`` overrides the status rule; None when absent."""
    value = gateway_header(headers, "x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def status_is_retryable(status: int) -> bool:
    """The status rule for requests that are safe to repeat (GET, DELETE)."""
    return status in (408, 409, 429) or status >= 500


def retry_decision(error: errors.AsyncVideosError, *, idempotent: bool) -> bool | float:
    """False: do not retry; True: retry after a backoff wait; a float: retry after
    that many seconds, as the server asked (the module docstring's rules)."""
    if isinstance(error, errors.APIStatusError):
        server_wait = error.retry_after
        if server_wait is not None and server_wait > MAX_RETRY_AFTER:
            return False
        override = should_retry_header(error.headers)
        if override is None:
            if isinstance(error, (errors.QuotaExceededError, errors.RedirectError)):
                return False
            retryable = (
                status_is_retryable(error.status_code) if idempotent else error.status_code == 429
            )
        else:
            retryable = override
        if not retryable:
            return False
        return True if server_wait is None else max(server_wait, MIN_WAIT)
    if isinstance(error, errors.APIConnectionError):
        return error.retry_can_help and (idempotent or not error.request_sent)
    return False


def backoff_wait(retry_number: int) -> float:
    """Exponential wait with jitter for the n-th retry (0-based)."""
    waits = _exponential()
    for _ in range(retry_number):
        next(waits)
    return _jittered(next(waits))


def _exponential() -> Iterator[float]:
    waits = backoff.expo(factor=INITIAL_WAIT, max_value=MAX_WAIT)
    next(waits)  # backoff's generators are primed with one next() before use
    return waits


def _jittered(base: float) -> float:
    return max(base * (1.0 - 0.25 * random.random()), MIN_WAIT)


async def call_with_retries(
    run: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    idempotent: bool,
    method: str,
    path: str,
    on_retry: OnRetry | None = None,
    failed: errors.AsyncVideosError | None = None,
) -> T:
    """Run ``run()`` with up to ``max_retries`` retries under ``retry_decision``;
    ``failed`` is the error of a first attempt the caller has already run.

    The error that ends the loop carries ``retries``, the number taken.
    """
    if failed is None:
        # Most requests succeed at once: the happy path builds nothing.
        try:
            return await run()
        except errors.AsyncVideosError as first:
            failed = first
    error = failed
    waits: Iterator[float] | None = None
    retries = 0
    while retries < max_retries:
        decision = retry_decision(error, idempotent=idempotent)
        if decision is False:
            break
        if decision is True:
            waits = waits or _exponential()
            wait = _jittered(next(waits))
        else:
            wait = float(decision)
        retries += 1
        details = RetryDetails(method, path, retries, max_retries, wait, error)
        _announce(details)
        if on_retry is not None:
            on_retry(details)
        if _waits_enabled:
            await asyncio.sleep(wait)
        try:
            return await run()
        except errors.AsyncVideosError as again:
            error = again
    error.retries = retries
    raise error


def _announce(details: RetryDetails) -> None:
    error = details.error
    logger.info(
        "Retrying %s %s in %.3f s (retry %d of %d) after: %s",
        details.method,
        details.path,
        details.wait,
        details.retry,
        details.max_retries,
        error,
        extra={
            "method": details.method,
            "path": details.path,
            "status": getattr(error, "status_code", None),
            "request_id": getattr(error, "request_id", None),
            "retries": details.retry,
            "wait": details.wait,
        },
    )
