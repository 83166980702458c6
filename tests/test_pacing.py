"""Pacing, the pure parts: rate-limit headers read, spacing decided, the fake's bucket.

The behaviour through real HTTP (pauses, spacing, the cap) is in
``test_pacing_http.py``.
"""

from __future__ import annotations

import math

import pytest

from asyncvideos import APIStatusError, QuotaExceededError, RateLimitError
from asyncvideos._pacing import (
    Budget,
    check_max_rate,
    parse_count,
    parse_duration,
    read_budget,
    throttle_wait,
)
from asyncvideos._retry import INITIAL_WAIT
from asyncvideos.testing import RateLimit
from asyncvideos.testing._ratelimit import Limiter, format_duration


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("1s", 1.0),
            ("6m0s", 360.0),
            ("20ms", 0.02),
            ("1h2m3.5s", 3723.5),
            ("0s", 0.0),
            ("17.1s", 17.1),
            ("1m30s", 90.0),
            ("2h", 7200.0),
            ("500us", 0.0005),
            ("250µs", 0.00025),
            ("1000000ns", 0.001),
            (".5s", 0.5),
            ("  2s  ", 2.0),
            ("1.5", 1.5),  # a bare number is seconds
            ("12", 12.0),
        ],
    )
    def test_forms(self, text: str, seconds: float) -> None:
        """The Go duration forms OpenAI sends, and plain seconds."""
        assert parse_duration(text) == pytest.approx(seconds)

    @pytest.mark.parametrize(
        "text",
        [
            None,
            "",
            "   ",
            "soon",
            "s",
            "1x",
            "1s2",
            "-1s",
            "-5",
            "1 s",
            "1e3s",
            "nan",
            "inf",
            "1e400",
            "\uff11s",  # a full-width digit
            "1s" * 40,  # longer than any real value
            "1h-2m",
            "1e3",
            "1_000",
            "1_000s",
            "+5",
            "0x10",
        ],
    )
    def test_junk_is_none(self, text: str | None) -> None:
        """Absent, negative, malformed or non-finite values are ignored, never raised."""
        assert parse_duration(text) is None


class TestParseCount:
    @pytest.mark.parametrize(("text", "count"), [("0", 0), ("59", 59), (" 7 ", 7)])
    def test_integers(self, text: str, count: int) -> None:
        assert parse_count(text) == count

    @pytest.mark.parametrize(
        "text", [None, "", "-1", "5.0", "five", "²", "1" * 19, "0x10", "1_000"]
    )
    def test_junk_is_none(self, text: str | None) -> None:
        assert parse_count(text) is None


def _headers(
    remaining: str | None = "50", reset: str | None = "1s", limit: str | None = "100"
) -> dict[str, str]:
    pairs = {
        "x-ratelimit-remaining-requests": remaining,
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-requests": limit,
    }
    return {name: value for name, value in pairs.items() if value is not None}


class TestReadBudget:
    def test_spacing_spreads_the_remaining_budget_until_the_reset(self) -> None:
        """49 left for 1 s: one request every 20 ms (the 50th would land on the reset)."""
        budget = read_budget(_headers(remaining="49", reset="1s"))
        assert budget == Budget(remaining=49, reset=1.0, limit=100)
        assert budget is not None
        assert budget.interval == pytest.approx(0.02)

    def test_spent_budget_waits_for_the_reset(self) -> None:
        budget = read_budget(_headers(remaining="0", reset="1.5s"))
        assert budget is not None
        assert budget.interval == pytest.approx(1.5)

    def test_full_budget_does_not_space(self) -> None:
        budget = read_budget(_headers(remaining="100", reset="0s"))
        assert budget is not None
        assert budget.interval == 0.0

    def test_limit_is_optional(self) -> None:
        assert read_budget(_headers(limit=None)) == Budget(50, 1.0, None)

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            _headers(remaining=None),
            _headers(reset=None),
            _headers(remaining="many"),
            _headers(reset="later"),
            _headers(limit="lots"),  # sent but junk: the rest is not trusted either
            _headers(limit="10", remaining="50"),  # more remaining than the limit
            _headers(remaining="0", reset="2m"),  # 120 s between requests: a 429 will say so
            _headers(remaining="1", reset="9999999h"),
        ],
        ids=[
            "none",
            "no-remaining",
            "no-reset",
            "junk-remaining",
            "junk-reset",
            "junk-limit",
            "remaining-over-limit",
            "too-long-a-wait",
            "absurd-reset",
        ],
    )
    def test_unusable_budgets_are_none(self, headers: dict[str, str]) -> None:
        assert read_budget(headers) is None


class TestCheckMaxRate:
    @pytest.mark.parametrize(("value", "expected"), [(None, None), (10, 10.0), (0.5, 0.5)])
    def test_accepted(self, value: float | None, expected: float | None) -> None:
        assert check_max_rate(value) == expected

    @pytest.mark.parametrize("value", ["10", True, [10]])
    def test_wrong_type(self, value: object) -> None:
        with pytest.raises(TypeError, match="max_requests_per_second"):
            check_max_rate(value)

    @pytest.mark.parametrize("value", [0, -1, 0.0, math.nan, math.inf])
    def test_out_of_range(self, value: float) -> None:
        with pytest.raises(ValueError, match="max_requests_per_second"):
            check_max_rate(value)


def _error(status: int, retry_after: float | None, cls: type[APIStatusError]) -> APIStatusError:
    return cls("limited", status_code=status, headers={}, body=None, retry_after=retry_after)


class TestThrottleWait:
    def test_server_wait_wins(self) -> None:
        assert throttle_wait(_error(429, 0.5, RateLimitError), 3) == 0.5

    def test_backoff_without_a_server_wait(self) -> None:
        """The same wait the retry module would take for that retry number."""
        wait = throttle_wait(_error(429, None, RateLimitError), 0)
        assert wait is not None
        assert 0.75 * INITIAL_WAIT <= wait <= INITIAL_WAIT
        later = throttle_wait(_error(429, None, RateLimitError), 2)
        assert later is not None
        assert later > INITIAL_WAIT

    def test_spent_quota_does_not_pause(self) -> None:
        assert throttle_wait(_error(429, 1.0, QuotaExceededError), 0) is None

    def test_wait_too_long_to_sleep_does_not_pause(self) -> None:
        """The retry module raises those at once; the client is not frozen for them."""
        assert throttle_wait(_error(429, 600.0, RateLimitError), 0) is None

    def test_other_statuses_do_not_pause(self) -> None:
        assert throttle_wait(_error(503, 1.0, APIStatusError), 0) is None


class TestRateLimitSpec:
    @pytest.mark.parametrize(
        ("text", "requests", "per"),
        [("300/60s", 300, 60.0), ("100/1s", 100, 1.0), ("5/500ms", 5, 0.5), ("300/60", 300, 60.0)],
    )
    def test_parse(self, text: str, requests: int, per: float) -> None:
        assert RateLimit.parse(text) == RateLimit(requests=requests, per=per)

    @pytest.mark.parametrize("text", ["", "300", "300/", "/60s", "x/60s", "-1/1s", "3/1s/2"])
    def test_parse_refuses(self, text: str) -> None:
        with pytest.raises(ValueError, match="300/60s"):
            RateLimit.parse(text)

    @pytest.mark.parametrize(("text", "name"), [("300/0s", "per"), ("0/1s", "requests")])
    def test_parse_checks_the_values(self, text: str, name: str) -> None:
        with pytest.raises(ValueError, match=name):
            RateLimit.parse(text)

    def test_str_is_parseable(self) -> None:
        limit = RateLimit(requests=300, per=60)
        assert str(limit) == "300/1m0s"
        assert RateLimit.parse(str(limit)) == limit

    @pytest.mark.parametrize(
        ("kwargs", "error", "name"),
        [
            ({"requests": 0, "per": 1}, ValueError, "requests"),
            ({"requests": 1.5, "per": 1}, TypeError, "requests"),
            ({"requests": True, "per": 1}, TypeError, "requests"),
            ({"requests": 1, "per": 0}, ValueError, "per"),
            ({"requests": 1, "per": math.inf}, ValueError, "per"),
            ({"requests": 1, "per": "1s"}, TypeError, "per"),
        ],
    )
    def test_bad_arguments(
        self, kwargs: dict[str, object], error: type[Exception], name: str
    ) -> None:
        with pytest.raises(error, match=name):
            RateLimit(**kwargs)  # type: ignore[arg-type]


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0.0, "0s"),
            (0.02, "20ms"),
            (0.0001, "1ms"),  # rounded up: never "0s" while something is pending
            (1.0, "1s"),
            (17.1, "17.1s"),
            (360.0, "6m0s"),
            (3723.5, "1h2m3.5s"),
        ],
    )
    def test_openai_forms(self, seconds: float, text: str) -> None:
        assert format_duration(seconds) == text
        assert parse_duration(text) == pytest.approx(max(seconds, 0.001) if seconds else 0.0)


class TestLimiter:
    def test_burst_then_429_then_refill(self) -> None:
        """A bucket of 4 per 2 s: 4 at once, the 5th waits 500 ms, then one is back."""
        now = [100.0]
        limiter = Limiter(RateLimit(requests=4, per=2), now=lambda: now[0])
        verdicts = [limiter.take() for _ in range(4)]
        assert all(v.allowed for v in verdicts)
        assert [v.headers["x-ratelimit-remaining-requests"] for v in verdicts] == [
            "3",
            "2",
            "1",
            "0",
        ]
        assert verdicts[-1].headers["x-ratelimit-reset-requests"] == "2s"
        assert verdicts[-1].headers["x-ratelimit-limit-requests"] == "4"
        assert "retry-after-ms" not in verdicts[-1].headers

        over = limiter.take()
        assert not over.allowed
        assert over.headers["retry-after-ms"] == "500"
        reply = over.reply()
        assert reply.status == 429
        assert b"rate_limit_exceeded" in reply.body
        assert reply.headers["retry-after-ms"] == "500"

        now[0] += 0.5
        assert limiter.take().allowed
        assert not limiter.take().allowed

    def test_refill_never_exceeds_the_burst(self) -> None:
        now = [0.0]
        limiter = Limiter(RateLimit(requests=2, per=1), now=lambda: now[0])
        now[0] += 3600
        assert [limiter.take().allowed for _ in range(3)] == [True, True, False]
