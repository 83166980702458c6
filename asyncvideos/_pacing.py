"""One rate budget per client: when the next request may go. Does no I/O.

A ``Pacer`` is shared by every request of one client, so by every task using it.
It decides *when* a request is sent, never *whether* (that is ``_retry``'s job):

- From the ``x-ratelimit-*-requests`` headers it spaces requests so that the
  remaining budget lasts until the reset: ``reset / (remaining + 1)`` apart.
  With a token bucket (OpenAI's kind) this settles with the bucket about half
  full, which leaves room for requests already in flight; with a fixed window
  it spends the window's budget exactly.
- A 429 that is not a spent quota pauses the whole client until the server's
  ``retry-after(-ms)`` (or the backoff wait) has passed. Requests in flight are
  not touched; the task that met the 429 goes first when the pause ends, so its
  retry wait and the pause overlap instead of adding up.
- Without budget headers, the rate that got through between two 429s (a
  little under it) becomes the spacing, probed upward as time passes.
- ``max_requests_per_second`` is a hard floor under the spacing.

Nothing is delayed while the server sends neither limits nor 429s: the client
then only reads ``engaged`` (False) before each request. Waiters queue in one
FIFO that a single timer releases, one per interval, so a thousand pollers cost
one wake-up per request, not one per waiter.

A wait is bounded by the caller's deadline: a waiter whose deadline comes before
its turn leaves the queue then (as a cancelled one does), so waiters never
stretch each other's deadlines, and the client raises (see ``before_request``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import weakref
from collections import OrderedDict
from collections.abc import Mapping

import attrs

from . import _errors as errors
from . import _retry
from ._protocol import status_error
from ._retry import MAX_RETRY_AFTER

logger = logging.getLogger("asyncvideos")

LIMIT_HEADER = "x-ratelimit-limit-requests"
REMAINING_HEADER = "x-ratelimit-remaining-requests"
RESET_HEADER = "x-ratelimit-reset-requests"

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6}
_UNITS["ns"] = 1e-9
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(?:h|ms|m|s|us|µs|μs|ns)"
_DURATION = re.compile(rf"(?:{_NUMBER}{_UNIT})+", re.ASCII)
_PART = re.compile(rf"({_NUMBER})({_UNIT})", re.ASCII)
_BARE_NUMBER = re.compile(_NUMBER, re.ASCII)
#: Without budget headers, the estimated spacing halves over this many seconds
#: without a 429 (about +7% rate per second), and is dropped below _NEGLIGIBLE.
_HALF_LIFE = 10.0
_NEGLIGIBLE = 1e-4
_MIN_WINDOW = 0.5
_FIRST_GUESS = 0.1
_BACK_OFF = 1.5
#: Send a little under the rate that got through, so a bucket can refill.
_MARGIN = 1.1
#: Longer header values are junk, not something to run a regex over.
_MAX_HEADER_CHARS = 64


def parse_duration(text: str | None) -> float | None:
    """Seconds from a Go-style duration (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``).

    A plain number is taken as seconds. Absent, negative, malformed or
    non-finite values are None.
    """
    if text is None or len(text) > _MAX_HEADER_CHARS:
        return None
    text = text.strip()
    # Only digits, dots and units: float() alone would also take "1e3", "1_000", "nan".
    if _BARE_NUMBER.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def parse_count(text: str | None) -> int | None:
    """A non-negative integer header value; None when absent or malformed."""
    if text is None or len(text) > 18:
        return None
    text = text.strip()
    # isascii: str.isdigit() also accepts digits like "²" that int() refuses.
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)


@attrs.frozen(slots=True)
class Budget:
    """The request budget a response announced: ``remaining`` until ``reset`` seconds."""

    remaining: int
    reset: float
    limit: int | None = None

    @property
    def interval(self) -> float:
        """Seconds between request starts so the remaining budget lasts until the reset."""
        return self.reset / (self.remaining + 1)


def read_budget(headers: Mapping[str, str]) -> Budget | None:
    """The budget in a response's ``x-ratelimit-*-requests`` headers, if they make sense.

    ``remaining`` and ``reset`` are needed; ``limit`` is optional but, when sent,
    must be at least ``remaining``. A budget asking for more than 60 s between
    requests (a day's quota, or junk) is ignored: the server's 429s will say so.
    """
    remaining = parse_count(headers.get(REMAINING_HEADER))
    reset = parse_duration(headers.get(RESET_HEADER))
    if remaining is None or reset is None:
        return None
    raw_limit = headers.get(LIMIT_HEADER)
    limit = parse_count(raw_limit)
    if raw_limit is not None and (limit is None or limit < remaining):
        return None
    budget = Budget(remaining, reset, limit)
    return budget if budget.interval <= MAX_RETRY_AFTER else None


def check_max_rate(value: object) -> float | None:
    """Check ``max_requests_per_second``: None or a positive, finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"max_requests_per_second must be a number or None, got {type(value).__name__}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"max_requests_per_second must be a positive number, got {value!r}")
    return float(value)


def throttle_wait(error: errors.APIStatusError, streak: int) -> float | None:
    """How long a 429 pauses the client: the server's wait, else the backoff wait.

    None for a 429 that no wait can help (a spent quota) or whose wait is too
    long to sleep through (the retry module raises it at once).
    """
    if error.status_code != 429 or isinstance(error, errors.QuotaExceededError):
        return None
    if error.retry_after is None:
        return _retry.backoff_wait(streak)
    return error.retry_after if error.retry_after <= MAX_RETRY_AFTER else None


def _give_up(waiter: asyncio.Future[bool]) -> None:
    """A waiter's deadline came before its turn."""
    if not waiter.done():
        waiter.set_result(False)


class Pacer:
    """When each request of one client may go. See the module docstring."""

    def __init__(
        self, *, max_requests_per_second: float | None = None, adaptive: bool = True
    ) -> None:
        self._floor = 0.0 if max_requests_per_second is None else 1.0 / max_requests_per_second
        self._adaptive = adaptive
        #: Whether ``before_request`` may wait: read by the client before each request.
        self.engaged = self._floor > 0
        self._learned = 0.0  # the spacing the last budget asked for ...
        self._learned_until = 0.0  # ... valid until its reset
        self._pause_until = 0.0
        self._last = -math.inf  # when the last request went
        self._streak = 0  # 429s since the last success, for the backoff wait
        # Without budget headers: the rate that got through between 429s, as a
        # spacing set at ``_estimated_at`` and halving every ``_HALF_LIFE`` s.
        self._answered = 0
        self._mark: tuple[float, int] | None = None
        self._estimated = 0.0
        self._estimated_at = 0.0
        # An ordered set: FIFO, and a waiter that gives up leaves it at once.
        self._waiters: OrderedDict[asyncio.Future[bool], None] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._first: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()

    def interval(self, now: float) -> float:
        """The spacing between request starts in force at ``now``."""
        if now < self._learned_until:
            return max(self._floor, self._learned)
        if self._estimated:
            # Probe for more as time passes without a 429: the next one re-measures.
            estimated: float = self._estimated * 0.5 ** ((now - self._estimated_at) / _HALF_LIFE)
            if estimated >= _NEGLIGIBLE:
                return max(self._floor, estimated)
            self._estimated = 0.0
        return self._floor

    @property
    def paused_until(self) -> float:
        """The loop time the current 429 pause lasts until (in the past when none)."""
        return self._pause_until

    def _turn(self, now: float) -> float:
        """The earliest time the next request may go."""
        return max(self._last + self.interval(now), self._pause_until)

    async def before_request(self, deadline: float | None = None) -> bool:
        """Wait for this request's turn; False when the loop time ``deadline`` comes first.

        The caller's deadline bounds the wait, so a request never waits past its
        own timeout and waiters do not compound: each leaves the queue at its
        deadline (or when cancelled), keeping its place for nobody. The client
        then raises ``APITimeoutError`` with ``request_sent`` False rather than a
        ``RateLimitError``: it is the caller's timeout that ran out, and the
        server answered nothing (a ``RateLimitError`` would claim a 429 with its
        ``status_code``, ``request_id`` and body that never came, and would be
        caught by code meant for the server's answers); nothing was sent, so
        even a POST may be sent again.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        task = asyncio.current_task()
        first = task is not None and task in self._first
        if first:
            self._first.discard(task)  # type: ignore[arg-type]
        if not self._waiters and now >= self._turn(now):
            self._last = now
            if not self.interval(now) and now >= self._pause_until:
                self.engaged = False  # nothing limits requests any more
            return True
        if deadline is not None and deadline <= now:
            return False
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters[waiter] = None
        if first:
            self._waiters.move_to_end(waiter, last=False)
        self._schedule(loop)
        expiry = None if deadline is None else loop.call_at(deadline, _give_up, waiter)
        try:
            return await waiter
        finally:
            if expiry is not None:
                expiry.cancel()
            self._waiters.pop(waiter, None)  # timed out or cancelled: out of the queue

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the timer for the next release, or move it earlier if it is late."""
        if not self._waiters:
            return
        when = self._turn(loop.time())
        if self._timer is not None:
            if self._timer.when() <= when:
                return  # early is fine: _release sets it again
            self._timer.cancel()
        self._timer = loop.call_at(when, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        if now >= self._turn(now):
            while self._waiters:
                waiter, _ = self._waiters.popitem(last=False)
                if not waiter.done():  # cancelled, its task not yet back to leave
                    waiter.set_result(True)
                    self._last = now
                    break
        self._schedule(loop)

    def after_response(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        """Learn from a response: its budget headers, and a 429's wait (``body`` tells a
        spent quota)."""
        if not self._adaptive:
            return
        self._answered += 1
        budget = read_budget(headers) if REMAINING_HEADER in headers else None
        if budget is not None:
            self._learn(budget)
        if status == 429:
            self._throttled(status_error(status, headers, body), estimate=budget is None)
        elif status < 400:
            self._streak = 0

    def _learn(self, budget: Budget) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._learned = budget.interval
        self._learned_until = now + budget.reset
        if self._learned > 0 and not self.engaged:
            # The requests so far went unpaced, untimed: count from this answer.
            self._last = max(self._last, now)
            self.engaged = True
        self._schedule(loop)  # a shorter spacing may release the next waiter sooner

    def _throttled(self, error: errors.APIStatusError, *, estimate: bool) -> None:
        wait = throttle_wait(error, self._streak)
        if wait is None:
            return
        self._streak += 1
        # The retry module owns this switch: a pause is a retry wait for every task.
        if not _retry._waits_enabled:
            return
        now = asyncio.get_running_loop().time()
        task = asyncio.current_task()
        if task is not None:  # pragma: no branch - responses are read in a task
            self._first.add(task)
        until = now + wait
        if until <= self._pause_until:
            return
        if self._pause_until <= now:
            # A new pause, not a request in flight meeting the same limit.
            if estimate:
                self._estimate(now, wait)
            # Once per pause, not once per task that meets a 429 during it.
            cause = "the server's retry-after" if error.retry_after is not None else "backoff"
            logger.info(
                "Rate limited (HTTP 429): pausing every request of this client for %.3f s (%s)",
                wait,
                cause,
            )
        self._pause_until = until
        self.engaged = True

    def _estimate(self, now: float, wait: float) -> None:
        """Space requests at the rate that got through since the previous 429.

        For servers that send no budget: once 429s come in a row, the requests
        answered between them are about what the server allows. Measured over at
        least ``_MIN_WINDOW`` s, so a burst right after a pause does not count alone.
        Until the first measure, the server's wait is the guess (a refilling
        bucket asks to wait for about one request's worth), at most
        ``_FIRST_GUESS`` s, and each new pause before the measure slows it down.
        """
        self.engaged = True
        current = self.interval(now)
        self._estimated_at = now
        if self._mark is None:
            self._mark = (now, self._answered)
            self._estimated = min(wait, _FIRST_GUESS)
            return
        since, answered = self._mark
        if now - since < _MIN_WINDOW:
            self._estimated = max(current, min(_BACK_OFF * max(current, wait), _FIRST_GUESS))
            return
        self._mark = (now, self._answered)
        # Less the 429 just answered; at least one, so a spacing is always finite.
        got_through = max(self._answered - answered - 1, 1)
        self._estimated = min(_MARGIN * (now - since) / got_through, MAX_RETRY_AFTER)
