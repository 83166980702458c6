"""The fake's request rate limit: a token bucket, answered the way OpenAI answers.

``RateLimit(requests=N, per=seconds)`` allows bursts of up to N requests and N per
``per`` seconds on average (the bucket refills continuously). Every response carries
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests`` and
``x-ratelimit-reset-requests`` (the time until the bucket is full again, as ``6m0s``
or ``20ms``); a request over the limit is answered 429 with ``retry-after-ms`` (when
the next request will be accepted) and an OpenAI-shaped ``rate_limit_exceeded`` body.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import attrs

from asyncvideos._pacing import parse_duration

from ._faults import error_body
from ._routes import Reply

__all__ = ["Limiter", "RateLimit", "Verdict", "format_duration"]

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")


def _positive_int(_inst: object, attr: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attr.name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{attr.name} must be at least 1, got {value!r}")


def _positive_seconds(_inst: object, attr: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attr.name} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attr.name} must be a positive number of seconds, got {value!r}")


@attrs.frozen(kw_only=True)
class RateLimit:
    """At most ``requests`` requests per ``per`` seconds (a burst of ``requests`` at most).

    ``headers=False`` leaves out the ``x-ratelimit-*`` headers (the 429's
    ``retry-after-ms`` stays): a gateway that enforces a limit without telling it.
    """

    requests: int = attrs.field(validator=_positive_int)
    per: float = attrs.field(validator=_positive_seconds)
    headers: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read ``"300/60s"``, ``"100/1s"``, ``"5/500ms"`` or ``"300/60"`` (seconds)."""
        match = _SPEC.fullmatch(text)
        per = parse_duration(match.group(2)) if match else None
        if match is None or per is None:
            raise ValueError(f"a rate limit is REQUESTS/DURATION like 300/60s, not {text!r}")
        return cls(requests=int(match.group(1)), per=per)

    def __str__(self) -> str:
        return f"{self.requests}/{format_duration(self.per)}"


def format_duration(seconds: float) -> str:
    """Seconds in OpenAI's reset form: ``20ms`` under a second, else ``6m0s``, ``1h2m3.5s``."""
    if seconds < 1:
        ms = math.ceil(seconds * 1000)
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{round(secs, 3):g}s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


@attrs.frozen
class Verdict:
    """Whether one request is within the limit, and the headers its response carries."""

    allowed: bool
    headers: dict[str, str]

    def reply(self) -> Reply:
        """The 429 for a request over the limit."""
        wait = self.headers.get("retry-after-ms", "1000")
        body = error_body(
            f"Rate limit reached for requests. Please try again in {wait}ms.",
            "requests",
            None,
            "rate_limit_exceeded",
        )
        return Reply(429, body, {"Content-Type": "application/json", **self.headers})


class Limiter:
    """The token bucket behind one fake's ``RateLimit``; ``now`` is injectable for tests."""

    def __init__(self, limit: RateLimit, now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._now = now
        self._rate = limit.requests / limit.per
        self._tokens = float(limit.requests)
        self._at = now()

    def take(self) -> Verdict:
        """Spend one request of the budget if there is one."""
        now = self._now()
        capacity = self.limit.requests
        self._tokens = min(capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        allowed = self._tokens >= 1
        if allowed:
            self._tokens -= 1
        headers: dict[str, str] = {}
        if self.limit.headers:
            headers["x-ratelimit-limit-requests"] = str(capacity)
            headers["x-ratelimit-remaining-requests"] = str(math.floor(self._tokens))
            reset = format_duration((capacity - self._tokens) / self._rate)
            headers["x-ratelimit-reset-requests"] = reset
        if not allowed:
            wait_ms = math.ceil((1 - self._tokens) / self._rate * 1000)
            headers["retry-after-ms"] = str(max(wait_ms, 1))
        return Verdict(allowed, headers)
