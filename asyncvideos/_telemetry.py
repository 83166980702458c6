"""OpenTelemetry spans and metrics, when ``opentelemetry-api`` is installed.

Nothing here is imported by ``import asyncvideos``; a client loads it once,
at construction, and keeps ``None`` when the ``otel`` extra is missing, so a
request without OpenTelemetry pays one ``is None`` check. Spans and metrics go
through the global tracer and meter providers (name ``asyncvideos``).

The convention (no OpenTelemetry one covers video generation yet):

- one span per public call, ``videos.<method>``; one ``videos.list_page`` per
  page a listing fetches; ``videos.open_content`` per opening of a content
  body; ``videos.wait`` around a wait, with its polls as ``videos.retrieve``
  children.
- attributes ``asyncvideos.video.id``, ``http.request.method``,
  ``server.address``, ``server.port``, ``http.response.status_code``,
  ``asyncvideos.request_id``, ``asyncvideos.retries``, ``error.type``; for a
  wait ``asyncvideos.polls`` and ``asyncvideos.video.status``; for a download
  ``asyncvideos.download.bytes`` and ``asyncvideos.download.resumes``.
- metrics ``asyncvideos.request.duration`` (s, by ``http.request.method`` and
  ``asyncvideos.status_class``), ``asyncvideos.retries`` (by
  ``asyncvideos.retry.reason``), ``asyncvideos.wait.duration`` (s, by
  ``asyncvideos.video.status``).

No attribute holds a key or a URL's query string.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from ._errors import VideoFailedError
from ._version import __version__

_UNSET: Any = object()
_loaded: Telemetry | None = _UNSET


def load_telemetry() -> Telemetry | None:
    """The process's ``Telemetry``, or None when ``opentelemetry-api`` is not installed."""
    global _loaded
    if _loaded is _UNSET:
        try:
            _loaded = Telemetry()
        except ImportError:
            _loaded = None
    return _loaded


def status_class(status: int | None) -> str:
    return "error" if status is None else f"{status // 100}xx"


class Telemetry:
    """The tracer and the three instruments of the convention in the module docstring."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import Status, StatusCode

        self._error_status = Status(StatusCode.ERROR)
        self._trace = trace
        self._metrics = metrics
        # Until the application sets a provider, both are proxies: spans and
        # measurements would go nowhere, so the client skips them (see ``live``).
        meters = metrics.get_meter_provider()
        self._proxy_meters = meters if "Proxy" in type(meters).__name__ else None
        self.is_live = False
        self._tracer = trace.get_tracer("asyncvideos", __version__)
        meter = metrics.get_meter("asyncvideos", __version__)
        self.request_duration = meter.create_histogram(
            "asyncvideos.request.duration",
            unit="s",
            description="Duration of each HTTP request the client sends",
        )
        self.retries = meter.create_counter(
            "asyncvideos.retries", unit="{retry}", description="Retries taken, by reason"
        )
        self.wait_duration = meter.create_histogram(
            "asyncvideos.wait.duration",
            unit="s",
            description="Time from the start of a wait to the job's final status",
        )

    def live(self) -> Telemetry | None:
        """This, once the application has set a tracer or meter provider; else None.

        A provider can be set only once, so a live ``Telemetry`` stays live.
        """
        if not self.is_live:
            traced = not isinstance(
                self._trace.get_tracer_provider(), self._trace.ProxyTracerProvider
            )
            proxy = self._proxy_meters
            measured = proxy is None or self._metrics.get_meter_provider() is not proxy
            if not (traced or measured):
                return None
            self.is_live = True
        return self

    @contextmanager
    def span(self, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
        """A current span named ``name``; an exception sets ERROR and is recorded.

        Cancellation and generator exits are not errors of the call.
        """
        with self._tracer.start_as_current_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except Exception as exc:
                span.set_status(self._error_status)
                span.set_attribute("error.type", type(exc).__name__)
                span.record_exception(exc)
                raise

    @contextmanager
    def waiting(self, video_id: str) -> Iterator[WaitRecord]:
        """A ``videos.wait`` span and a wait-duration measurement around one job's wait.

        The caller counts polls and the last status seen on the record it is given.
        """
        record = WaitRecord()
        started = time.monotonic()
        outcome = "error"
        try:
            with self.span("videos.wait", {"asyncvideos.video.id": video_id}) as span:
                try:
                    yield record
                    outcome = record.status or "unknown"
                except (TimeoutError, asyncio.TimeoutError):  # distinct before Python 3.11
                    outcome = "timeout"
                    raise
                except VideoFailedError as error:
                    outcome = error.video.status or "failed"
                    raise
                finally:
                    span.set_attribute("asyncvideos.polls", record.polls)
                    if record.status is not None:
                        span.set_attribute("asyncvideos.video.status", record.status)
        finally:
            labels = {"asyncvideos.video.status": outcome}
            self.wait_duration.record(time.monotonic() - started, labels)


@attrs.define(slots=True)
class WaitRecord:
    """What a wait saw: how many polls it sent and the last status."""

    polls: int = 0
    status: str | None = None
