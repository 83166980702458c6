"""Fault injection: what can go wrong with a request, and which requests it hits.

A :class:`Fault` describes one misbehaviour (an error status, a delay, a dropped
connection, a body cut short). A :class:`FaultPlan` decides, per incoming request,
which fault if any applies: first the faults scheduled with ``inject`` (in the order
they were injected, each for a number of matching requests), then the seeded random
rules added with ``inject_random``. A request gets at most one fault.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Fault", "FaultPlan", "error_body", "fault_body"]


def _freeze_headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value or {})


def _check_status(_inst: object, _attr: object, value: int | None) -> None:
    if value is not None and not 100 <= value <= 599:
        raise ValueError(f"status must be an HTTP status code, got {value!r}")


def _check_non_negative(_inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attr.name} must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """One way for the fake API to misbehave on a request.

    - ``status``: answer with this status instead of running the endpoint; ``body``
      defaults to an OpenAI-shaped error suited to the status (429 is a rate limit,
      5xx a server error, ...). For a POST this means the server did *not* act.
    - ``headers``: added to the response, whether it is the fault's or the real one
      (e.g. ``{"retry-after": "2"}``, alone or with a status).
    - ``body``: the fault response's body: bytes as is, str as UTF-8, a mapping as JSON.
    - ``delay``: real seconds to wait before answering; then the request proceeds
      normally (or with the rest of the fault). For client timeout tests.
    - ``drop``: close the connection without sending any response.
    - ``truncate``: run the endpoint (a POST *does* create its job), send the real status
      and headers with the full ``Content-Length``, then only the first half of the body,
      then close the connection.
    - ``drop_after_bytes``: like ``truncate``, but cut after this many body bytes.
    - ``stall_after_bytes``: send the real status and headers and this many body
      bytes, then send nothing more, holding the connection open until the client
      hangs up (or the fake closes): a server that stops mid-body.
    """

    status: int | None = attrs.field(default=None, validator=_check_status)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_headers, hash=False)
    body: bytes | str | Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    delay: float = attrs.field(default=0.0, validator=_check_non_negative)
    drop: bool = False
    truncate: bool = False
    drop_after_bytes: int | None = attrs.field(default=None, validator=_check_non_negative)
    stall_after_bytes: int | None = attrs.field(default=None, validator=_check_non_negative)

    def __attrs_post_init__(self) -> None:
        cuts = sum(
            (
                self.drop,
                self.truncate,
                self.drop_after_bytes is not None,
                self.stall_after_bytes is not None,
            )
        )
        if cuts > 1:
            raise ValueError(
                "use only one of drop, truncate, drop_after_bytes and stall_after_bytes"
            )
        if cuts and self.status is not None:
            raise ValueError("a fault with a status cannot also drop or cut the response")

    def cut_at(self, length: int) -> int | None:
        """How many body bytes to send before closing, for a body of ``length`` bytes."""
        if self.truncate:
            return length // 2
        return self.drop_after_bytes


# (type, code, message) of the default body for a fault status; what the real API sends.
_DEFAULT_ERRORS: Mapping[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to perform this request."),
    404: ("invalid_request_error", None, "Not found."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", "conflict", "The request conflicts with another request."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> bytes:
    """Serialise an OpenAI-shaped error object."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def fault_body(fault: Fault, status: int) -> tuple[bytes, str]:
    """Return ``(body, content_type)`` for a fault's response with ``status``."""
    if fault.body is None:
        default = ("server_error", None, "Server error.") if status >= 500 else None
        type_, code, message = _DEFAULT_ERRORS.get(
            status, default or ("invalid_request_error", None, "Request failed.")
        )
        return error_body(message, type_, None, code), "application/json"
    if isinstance(fault.body, bytes):
        return fault.body, "application/octet-stream"
    if isinstance(fault.body, str):
        return fault.body.encode(), "text/plain; charset=utf-8"
    return json.dumps(dict(fault.body)).encode(), "application/json"


@attrs.define
class _Filter:
    method: str | None
    path: re.Pattern[str] | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self.path is None or self.path.search(path) is not None


def _make_filter(method: str | None, path: str | None) -> _Filter:
    return _Filter(method.upper() if method else None, re.compile(path) if path else None)


@attrs.define
class _Scheduled:
    fault: Fault
    remaining: int
    where: _Filter


@attrs.define
class _RandomRule:
    rate: float
    faults: tuple[Fault, ...]
    rng: random.Random
    where: _Filter


class FaultPlan:
    """The faults waiting to hit requests; one per fake server, so fakes never interfere.

    ``FakeVideosAPI`` is a ``FaultPlan``: ``inject``, ``inject_random`` and
    ``clear_faults`` are called on the fake itself.
    """

    def __init__(self) -> None:
        self._scheduled: list[_Scheduled] = []
        self._random: list[_RandomRule] = []

    def inject(
        self, fault: Fault, *, times: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Give ``fault`` to the next ``times`` requests matching ``method`` and ``path``.

        ``method`` is an HTTP method; ``path`` a regex searched in the raw request path
        (without the query), e.g. ``r"/content$"``. Faults injected earlier apply first.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._scheduled.append(_Scheduled(fault, times, _make_filter(method, path)))

    def inject_random(
        self,
        *,
        rate: float,
        faults: Sequence[Fault],
        seed: int,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Give each matching request, with probability ``rate``, one of ``faults``.

        The draw and the choice both come from ``random.Random(seed)``, consumed only by
        matching requests, so the same sequence of requests meets the same faults.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if not faults:
            raise ValueError("faults must not be empty")
        rule = _RandomRule(rate, tuple(faults), random.Random(seed), _make_filter(method, path))
        self._random.append(rule)

    def clear_faults(self) -> None:
        """Forget every scheduled fault and random rule."""
        self._scheduled.clear()
        self._random.clear()

    def pick_fault(self, method: str, path: str) -> Fault | None:
        """Return the fault for a request (consuming it), or None; ``path`` is the raw path."""
        for entry in self._scheduled:
            if entry.where.matches(method, path):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._scheduled.remove(entry)
                return entry.fault
        for rule in self._random:
            if rule.where.matches(method, path):
                # Always draw both numbers so the stream stays aligned per request.
                hit = rule.rng.random() < rule.rate
                chosen = rule.faults[rule.rng.randrange(len(rule.faults))]
                if hit:
                    return chosen
        return None
