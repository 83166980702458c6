"""The OpenTelemetry SDK's in-memory readers, shared by every test module that reads spans.

The SDK's providers are global and can be set once per process, so they are set
here, on first use, for every module alike; the exporter records only while a
test asks for it, so the rest of the suite is unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Switchable(InMemorySpanExporter):
    """Keeps spans only while ``recording``."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.recording:
            return super().export(spans)
        return SpanExportResult.SUCCESS


EXPORTER = Switchable()
READER = InMemoryMetricReader()
_installed = False


@contextmanager
def recording() -> Iterator[Switchable]:
    """The exporter, recording spans while the block runs (providers set on first use)."""
    global _installed
    if not _installed:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
        _installed = True
    EXPORTER.clear()
    EXPORTER.recording = True
    try:
        yield EXPORTER
    finally:
        EXPORTER.recording = False
        EXPORTER.clear()


def spans_named(exporter: Switchable, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def metric_points(name: str) -> list[Any]:
    data = READER.get_metrics_data()
    points: list[Any] = []
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points
