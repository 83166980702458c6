"""OpenTelemetry spans and metrics, and structured logs, through the SDK's in-memory readers.

The SDK's providers are global and can be set once per process: ``tests/telemetry_readers.py``
sets them on first use, for every module that reads spans, with an exporter that
records only while a test asks for it, so the rest of the suite is unaffected.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.trace import StatusCode
from telemetry_readers import Switchable as _Switchable
from telemetry_readers import metric_points, recording, spans_named

from asyncvideos import NotFoundError, VideoFailedError
from asyncvideos.testing import FakeVideosAPI, Fault

KEY = "sk-telemetry-CANARY-0123456789"


@pytest.fixture
def exporter() -> Iterator[_Switchable]:
    with recording() as exporter:
        yield exporter


@pytest.fixture
async def fake() -> Any:
    async with FakeVideosAPI(api_key=KEY, speed=100.0, poll_after_ms=10) as api:
        yield api


class TestSpans:
    async def test_a_call_has_one_span_with_its_attributes(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        video_id = fake.seed(1)[0]
        async with fake.client() as videos:
            await videos.retrieve(video_id)
        (span,) = spans_named(exporter, "videos.retrieve")
        attributes = dict(span.attributes or {})
        assert attributes["asyncvideos.video.id"] == video_id
        assert attributes["http.request.method"] == "GET"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == fake.port
        assert attributes["http.response.status_code"] == 200
        assert attributes["asyncvideos.retries"] == 0
        assert str(attributes["asyncvideos.request_id"]).startswith("req_")
        assert span.status.status_code is StatusCode.UNSET

    async def test_each_listed_page_has_its_own_span(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        fake.seed(25)
        async with fake.client() as videos:
            listing = videos.list(all=True, limit=10)
            first = await anext(listing)
            # No span is held open across the caller's loop.
            assert trace.get_current_span().get_span_context().is_valid is False
            rest = [video async for video in listing]
        assert len(rest) + 1 == 25
        assert first.id
        assert len(spans_named(exporter, "videos.list_page")) == 3

    async def test_errors_set_the_status_and_are_recorded(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        fake.inject(Fault(status=500), times=1)
        async with fake.client() as videos:
            with pytest.raises(NotFoundError):
                await videos.retrieve("video_missing", max_retries=2)
        (span,) = spans_named(exporter, "videos.retrieve")
        assert span.status.status_code is StatusCode.ERROR
        attributes = dict(span.attributes or {})
        assert attributes["error.type"] == "NotFoundError"
        assert attributes["http.response.status_code"] == 404
        assert attributes["asyncvideos.retries"] == 1
        assert [event.name for event in span.events] == ["exception"]

    async def test_a_wait_has_polls_and_final_status(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        async with fake.client() as videos:
            video = await videos.create_and_wait("a cat", wait_timeout=30)
        (wait,) = spans_named(exporter, "videos.wait")
        (outer,) = spans_named(exporter, "videos.create_and_wait")
        (create,) = spans_named(exporter, "videos.create")
        polls = spans_named(exporter, "videos.retrieve")
        attributes = dict(wait.attributes or {})
        assert attributes["asyncvideos.polls"] == len(polls) > 0
        assert attributes["asyncvideos.video.status"] == video.status == "completed"
        assert attributes["asyncvideos.video.id"] == video.id
        assert wait.parent is not None
        assert wait.parent.span_id == outer.context.span_id
        assert create.parent is not None
        assert create.parent.span_id == outer.context.span_id
        assert all(p.parent is not None and p.parent.span_id == wait.context.span_id for p in polls)
        points = metric_points("asyncvideos.wait.duration")
        assert any(dict(p.attributes)["asyncvideos.video.status"] == "completed" for p in points)

    async def test_a_failed_wait_is_an_error_span(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        video_id = fake.seed(1, status="queued")[0]
        fake.set_outcome(video_id, "failed", error={"code": "x", "message": "no"})
        async with fake.client() as videos:
            with pytest.raises(VideoFailedError):
                await videos.wait(video_id, raise_on_failure=True, wait_timeout=30)
        (wait,) = spans_named(exporter, "videos.wait")
        assert wait.status.status_code is StatusCode.ERROR
        assert dict(wait.attributes or {})["asyncvideos.video.status"] == "failed"

    async def test_http_spans_of_the_aiohttp_instrumentation_nest_under_ours(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        video_id = fake.seed(1)[0]
        instrumentor = AioHttpClientInstrumentor()
        instrumentor.instrument()
        try:
            async with fake.client() as videos:
                await videos.retrieve(video_id)
        finally:
            instrumentor.uninstrument()
        (ours,) = spans_named(exporter, "videos.retrieve")
        http = [s for s in exporter.get_finished_spans() if s.name.startswith("GET")]
        assert len(http) == 1
        assert http[0].parent is not None
        assert http[0].parent.span_id == ours.context.span_id


class TestMetrics:
    async def test_request_durations_and_retries_are_counted(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        video_id = fake.seed(1)[0]
        fake.inject(Fault(status=503), times=2)
        async with fake.client() as videos:
            await videos.retrieve(video_id, max_retries=3)
        durations = {
            (p.attributes["http.request.method"], p.attributes["asyncvideos.status_class"]): p
            for p in metric_points("asyncvideos.request.duration")
        }
        assert durations[("GET", "5xx")].count >= 2
        assert durations[("GET", "2xx")].count >= 1
        retries = {
            p.attributes["asyncvideos.retry.reason"]: p.value
            for p in metric_points("asyncvideos.retries")
        }
        assert retries["InternalServerError"] >= 2


class TestNoKey:
    async def test_the_key_is_in_no_span_event_or_log_record(
        self,
        exporter: _Switchable,
        fake: FakeVideosAPI,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        fake.inject(Fault(status=401, body={"error": {"message": f"bad key {KEY}"}}))
        async with fake.client(max_retries=1) as videos:
            with pytest.raises(Exception, match="bad key"):
                await videos.retrieve("video_x")
            await videos.list_page()
        texts = []
        for span in exporter.get_finished_spans():
            texts.append(span.to_json())
        for record in caplog.records:
            texts.append(record.getMessage())
            texts.append(repr(record.__dict__))
        assert texts
        assert not any(KEY in text for text in texts)


class TestStructuredLogs:
    async def test_one_debug_line_per_request_with_fields(
        self, fake: FakeVideosAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="asyncvideos")
        video_id = fake.seed(1)[0]
        fake.inject(Fault(status=500))
        async with fake.client() as videos:
            await videos.retrieve(video_id)
        records = [r for r in caplog.records if r.name == "asyncvideos"]
        retry, done = records
        assert retry.levelno == logging.INFO
        assert retry.__dict__["status"] == 500
        assert done.levelno == logging.DEBUG
        fields = {name: done.__dict__[name] for name in ("method", "path", "status", "retries")}
        assert fields == {
            "method": "GET",
            "path": f"/videos/{video_id}",
            "status": 200,
            "retries": 1,
        }
        assert done.__dict__["request_id"].startswith("req_")
        assert done.__dict__["elapsed"] >= 0


class TestWithoutTheExtra:
    def test_import_loads_no_opentelemetry(self) -> None:
        script = textwrap.dedent(
            """
            import sys
            import asyncvideos
            loaded = [name for name in sys.modules if name.startswith("opentelemetry")]
            assert not loaded, loaded
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    def test_a_client_works_when_opentelemetry_is_missing(self) -> None:
        script = textwrap.dedent(
            """
            import asyncio, sys
            sys.modules["opentelemetry"] = None  # as if the extra were not installed
            from asyncvideos import _telemetry
            from asyncvideos.testing import FakeVideosAPI

            async def main():
                async with FakeVideosAPI() as fake:
                    video_id = fake.seed(1)[0]
                    async with fake.client() as videos:
                        assert (await videos.retrieve(video_id)).id == video_id
                        assert videos._telemetry is None

            asyncio.run(main())
            assert _telemetry._loaded is None
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


class TestDownloadSpan:
    async def test_a_download_has_bytes_and_resumes(
        self, exporter: _Switchable, fake: FakeVideosAPI, tmp_path: Any
    ) -> None:
        video_id = fake.seed(1)[0]
        fake.inject(Fault(drop_after_bytes=1000), path=r"/content$")
        async with fake.client() as videos:
            target = await videos.download(video_id, tmp_path / "v.mp4")
        (span,) = spans_named(exporter, "videos.download")
        attributes = dict(span.attributes or {})
        assert attributes["asyncvideos.download.bytes"] == target.stat().st_size
        assert attributes["asyncvideos.download.resumes"] == 1
        opens = spans_named(exporter, "videos.open_content")
        assert len(opens) == 2
        assert all(o.parent is not None and o.parent.span_id == span.context.span_id for o in opens)


class TestWaitManySpans:
    async def test_each_job_has_its_wait_span(
        self, exporter: _Switchable, fake: FakeVideosAPI
    ) -> None:
        ids = fake.seed(3, status="queued")
        async with fake.client() as videos:
            results = [result async for result in videos.wait_many([*ids, "video_gone"])]
        assert len(results) == 4
        waits = spans_named(exporter, "videos.wait")
        by_id = {dict(s.attributes or {})["asyncvideos.video.id"]: s for s in waits}
        assert set(by_id) == {*ids, "video_gone"}
        for video_id in ids:
            attributes = dict(by_id[video_id].attributes or {})
            assert attributes["asyncvideos.video.status"] == "completed"
            assert attributes["asyncvideos.polls"] >= 1
        assert by_id["video_gone"].status.status_code is StatusCode.ERROR
