"""The key is in no text the library writes, whatever a server echoes back.

A hostile ``aiohttp.web`` app (one for the module, in a thread of its own so that
the command line can be run against it too) echoes the request's credential at
each place where server text enters the client: a request-id header on an error
and on a success, a 5xx body under retries, a LiteLLM-prefixed header, a header
name, JSON escapes that hide the key from a byte search (``\\u0073k-``, ``\\/``),
a body split across reads, a gzip body, UTF-16 JSON, a 2xx field that fails to
convert, a job status that a wait reports, a resumed download's
``Content-Range``, a redirect's ``Location``, a malformed status line, and the
earlier key of a rotating ``api_key`` callable.

Each echo point runs once per auth scheme (``Authorization: Bearer`` and
``api-key``); then every output channel it reaches is its own check: the error
and its chained causes and traceback, the returned value, every log record at
DEBUG (asyncvideos, aiohttp, root; ``extra`` fields included), every
``RetryDetails`` given to ``on_retry``, OpenTelemetry spans and metrics,
warnings, and the command line's stdout and stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import logging
import threading
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

pytest.importorskip("opentelemetry.sdk")

from aiohttp import web
from telemetry_readers import READER, recording

from asyncvideos import AsyncVideos, AsyncVideosError, RawResponse, Video
from asyncvideos._cli import main
from asyncvideos._retry import RetryDetails

BEARER_KEY = "sk-ingress-BEARER-7f3Kq9ZpX2mW4vR8tY"
AZURE_KEY = "az-ingress-AZURE-Qm8Zt4Lp0Wx7Nc3Vb6"
ROTATED_KEY = "sk-ingress-ROTATED-h5Jd2Ks9Pq4Lw7Zx1"
SLASH_KEY = "sk-ingress/SLASH/Rt6Yu8Io0Pa2Sd4Fg"
CANARIES = (BEARER_KEY, AZURE_KEY, ROTATED_KEY, SLASH_KEY)
SCHEMES = {"bearer": BEARER_KEY, "api-key": AZURE_KEY}
#: Any 12 characters in a row of a key, in any case, are a leak; the masked form
#: (``sk-...tY``) shows 5.
_WINDOW = 12
_FRAGMENTS = frozenset(
    key.lower()[start : start + _WINDOW]
    for key in CANARIES
    for start in range(len(key) - _WINDOW + 1)
)


def leaks(text: str) -> bool:
    lowered = text.lower()
    return any(fragment in lowered for fragment in _FRAGMENTS)


def job(video_id: str, **fields: object) -> dict[str, object]:
    return {
        "id": video_id,
        "object": "video",
        "created_at": 1760000000,
        "status": "completed",
        "model": "sora-2",
        "progress": 100,
        "seconds": "4",
        "size": "720x1280",
        **fields,
    }


# -- the hostile app ----------------------------------------------------------------


def credential(request: web.Request) -> str:
    """The request's credential header, as sent: ``Bearer <key>`` or the bare key."""
    return request.headers.get("Authorization") or request.headers.get("api-key", "")


def token(request: web.Request) -> str:
    return credential(request).removeprefix("Bearer ")


def escaped(text: str) -> str:
    """``text`` with every other character as a JSON ``\\uXXXX`` escape (upper-case hex
    for some), which a byte search for the key cannot see through."""
    out = []
    for index, char in enumerate(text):
        if index % 2:
            out.append(char)
        else:
            code = f"{ord(char):04x}"
            out.append("\\u" + (code.upper() if index % 4 else code))
    return "".join(out)


def raw_json(text: str, status: int, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


class HostileApp:
    """Every echo point's routes, served from a thread with its own event loop."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}
        self.restart_due: set[str] = set()
        self.origin = ""
        self.raw_port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._raw: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    async def _start(self) -> None:
        app = web.Application()
        get = app.router.add_get
        get("/v1/videos/request_id_on_error", self.request_id_on_error)
        get("/v1/videos/request_id_on_success", self.request_id_on_success)
        get("/v1/videos/retried_5xx", self.retried_5xx)
        get("/v1/videos/litellm_header", self.litellm_header)
        get("/v1/videos/header_name", self.header_name)
        get("/v1/videos/json_escapes", self.json_escapes)
        get("/v1/videos/json_slash_escapes", self.json_slash_escapes)
        get("/v1/videos/split_2xx", self.split_2xx)
        get("/v1/videos/split_5xx", self.split_5xx)
        get("/v1/videos/utf16_5xx", self.utf16_5xx)
        get("/v1/videos/gzip_5xx", self.gzip_5xx)
        get("/v1/videos/utf16_2xx", self.utf16_2xx)
        get("/v1/videos/field_2xx", self.field_2xx)
        get("/v1/videos/job_status", self.job_status)
        get("/v1/videos/rotating_key", self.rotating_key)
        get("/v1/videos/location", self.location)
        get("/v1/videos/content_range/content", self.content_range)
        get("/v1/videos/content_range_stream/content", self.content_range)
        get("/v1/videos/location_content/content", self.location_content)
        get("/blob/{token}", self.blob)
        get("/v1/videos/echo_content/content", self.echo_content)
        get("/v1/videos/echo_headers", self.echo_headers)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._raw = await asyncio.start_server(self.status_line, "127.0.0.1", 0)
        self.raw_port = self._raw.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._raw is not None:
            self._raw.close()
            await self._raw.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- echo points --------------------------------------------------------

    async def request_id_on_error(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "No such video", "code": "video_not_found"}},
            status=404,
            headers={"x-request-id": credential(request)},
        )

    async def request_id_on_success(self, request: web.Request) -> web.Response:
        return web.json_response(
            job("request_id_on_success"), headers={"request-id": credential(request)}
        )

    async def retried_5xx(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "error": {
                    "message": f"Upstream refused {credential(request)}",
                    "param": token(request),
                }
            },
            status=503,
        )

    async def litellm_header(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"detail": "upstream failed"},
            status=502,
            headers={
                "llm_provider-x-request-id": credential(request),
                "llm_provider-x-should-retry": "true",
            },
        )

    async def header_name(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "upstream failed"}},
            status=500,
            headers={token(request): "1", "X-Echo": credential(request)},
        )

    async def json_escapes(self, request: web.Request) -> web.Response:
        message, param = escaped(credential(request)), escaped(token(request))
        body = f'{{"error": {{"message": "Invalid key {message}", "param": "{param}"}}}}'
        return raw_json(body, 500)

    async def json_slash_escapes(self, request: web.Request) -> web.Response:
        # As PHP's json_encode writes every "/": "\/".
        body = json.dumps({"error": {"message": f"Invalid key {credential(request)}"}})
        return raw_json(body.replace("/", "\\/"), 500)

    async def split_2xx(self, request: web.Request) -> web.StreamResponse:
        """A 2xx body without a length, the key straddling a 256 KiB read piece and
        two writes of the server."""
        echo = credential(request)
        head = '{"id": "split_2xx", "pad": "'
        pad = "x" * (256 * 1024 - len(head) - len('", "created_at": "') - len(echo) // 2)
        text = f'{head}{pad}", "created_at": "{echo}"}}'
        return await self._two_writes(request, 200, text.encode(), text.index(echo) + 20)

    async def split_5xx(self, request: web.Request) -> web.StreamResponse:
        echo = credential(request)
        text = json.dumps({"error": {"message": f"Invalid key {echo}"}})
        return await self._two_writes(request, 500, text.encode(), text.index(echo) + 20)

    async def _two_writes(
        self, request: web.Request, status: int, body: bytes, cut: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(body[:cut])
        await asyncio.sleep(0.01)  # two reads on the client's side, as often as not
        await response.write(body[cut:])
        await response.write_eof()
        return response

    async def utf16_5xx(self, request: web.Request) -> web.Response:
        body = json.dumps({"error": {"message": f"Invalid key {credential(request)}"}})
        return web.Response(
            status=500, body=body.encode("utf-16"), headers={"Content-Type": "application/json"}
        )

    async def gzip_5xx(self, request: web.Request) -> web.Response:
        """The key inside a compressed body: found once the client has inflated it."""
        body = json.dumps({"error": {"message": f"Invalid key {credential(request)}"}})
        return web.Response(
            status=500,
            body=gzip.compress(body.encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async def utf16_2xx(self, request: web.Request) -> web.Response:
        body = json.dumps(job("utf16_2xx", prompt=f"echo {credential(request)}"))
        return web.Response(
            body=body.encode("utf-16"), headers={"Content-Type": "application/json"}
        )

    async def field_2xx(self, request: web.Request) -> web.Response:
        return web.json_response(job("field_2xx", created_at=credential(request)))

    async def job_status(self, request: web.Request) -> web.Response:
        return web.json_response(job("job_status", status=token(request)))

    async def rotating_key(self, request: web.Request) -> web.Response:
        """Echoes every key this route has been sent (since the last reset)."""
        seen = self.seen.setdefault("rotating_key", [])
        seen.append(credential(request))
        return web.json_response(
            {"error": {"message": "keys tried: " + ", ".join(seen)}}, status=500
        )

    async def location(self, request: web.Request) -> web.Response:
        # Another origin whose host name is the key (yarl lowers its case).
        target = f"http://{token(request)}.invalid:1/steal?key={token(request)}"
        return web.Response(status=302, headers={"Location": target})

    async def location_content(self, request: web.Request) -> web.Response:
        # A content redirect to a path that holds the key.
        return web.Response(status=302, headers={"Location": f"/blob/{token(request)}"})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        """A content body that drops half way: the error names the URL it came from."""
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(b"\0" * 1024)
        assert request.transport is not None
        request.transport.close()
        return response

    async def content_range(self, request: web.Request) -> web.StreamResponse:
        """A body that drops half way; its resume is a 206 whose Content-Range echoes
        the key; the download then starts over and gets the whole body."""
        body = bytes(range(256)) * 64
        headers = {"Content-Type": "video/mp4", "Accept-Ranges": "bytes", "ETag": '"v1"'}
        name = request.path + credential(request)
        if "Range" in request.headers:
            self.restart_due.add(name)
            headers["Content-Range"] = credential(request)
            return web.Response(status=206, body=body[100:], headers=headers)
        if name in self.restart_due:
            self.restart_due.discard(name)
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    async def echo_content(self, request: web.Request) -> web.Response:
        """Content that happens to hold the credential's bytes: content, not text."""
        echo = credential(request).encode()
        body = b"\0\1" * 5000 + echo + b"\xff" * 3000 + escaped(echo.decode()).encode()
        return web.Response(body=body, headers={"Content-Type": "video/mp4"})

    async def echo_headers(self, request: web.Request) -> web.Response:
        """Every header that names a credential, echoed in the error message."""
        sent = [
            value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "api-key")
        ]
        return web.json_response({"error": {"message": " ".join(sent)}}, status=400)

    async def status_line(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A malformed status line that quotes the credential (aiohttp's parser errors
        keep the line they could not read)."""
        head = await reader.readuntil(b"\r\n\r\n")
        echo = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() in (b"authorization", b"api-key"):
                echo = value.strip()
        writer.write(b"HTTP/9" + echo + b" 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()


# -- running an echo point -----------------------------------------------------------


@attrs.define
class Capture:
    """Everything one run of an echo point wrote or handed out."""

    errors: list[BaseException] = attrs.field(factory=list)
    results: list[object] = attrs.field(factory=list)
    records: list[logging.LogRecord] = attrs.field(factory=list)
    retries: list[RetryDetails] = attrs.field(factory=list)
    spans: list[str] = attrs.field(factory=list)
    metrics: str = ""  # the metric points this run added or changed
    warnings: list[str] = attrs.field(factory=list)
    cli: str = ""


@attrs.frozen
class Run:
    """What a scenario is given: the client, a folder for files, and a way to make
    another client with the same key and scheme (for another server)."""

    videos: AsyncVideos
    folder: Path
    client: Callable[[str], AsyncVideos]


Scenario = Callable[[Run], Awaitable[object]]


@attrs.frozen
class EchoPoint:
    scenario: Scenario
    channels: tuple[str, ...]
    cli: tuple[str, ...] = ()
    key: str | None = None  # a key of its own, instead of the scheme's


def retrieve(point: str) -> Scenario:
    async def run(run: Run) -> object:
        return await run.videos.retrieve(point)

    return run


async def _raw_retrieve(run: Run) -> object:
    return await run.videos.with_raw_response.retrieve("request_id_on_success")


async def _wait(run: Run) -> object:
    return await run.videos.wait("job_status", wait_timeout=10)


def download(point: str) -> Scenario:
    async def run(run: Run) -> object:
        return await run.videos.download(point, run.folder / f"{point}.mp4", overwrite=True)

    return run


def stream(point: str) -> Scenario:
    async def run(run: Run) -> object:
        return b"".join([chunk async for chunk in run.videos.iter_content(point)])

    return run


async def _malformed(run: Run) -> object:
    async with run.client(f"http://127.0.0.1:{APP.raw_port}/v1") as other:
        return await other.retrieve("status_line")


ERRORS = ("error", "logs", "spans", "metrics", "warnings")
RETRIED = (*ERRORS, "on_retry")
SUCCESS = ("result", "logs", "spans", "metrics", "warnings")
ECHO_POINTS: dict[str, EchoPoint] = {
    "request_id_on_error": EchoPoint(
        retrieve("request_id_on_error"), (*ERRORS, "cli"), ("get", "request_id_on_error")
    ),
    "request_id_on_success": EchoPoint(
        _raw_retrieve, (*SUCCESS, "cli"), ("get", "request_id_on_success")
    ),
    "retried_5xx": EchoPoint(retrieve("retried_5xx"), (*RETRIED, "cli"), ("get", "retried_5xx")),
    "litellm_header": EchoPoint(
        retrieve("litellm_header"), (*RETRIED, "cli"), ("get", "litellm_header")
    ),
    "header_name": EchoPoint(retrieve("header_name"), (*RETRIED, "cli"), ("get", "header_name")),
    "json_escapes": EchoPoint(retrieve("json_escapes"), (*RETRIED, "cli"), ("get", "json_escapes")),
    "json_slash_escapes": EchoPoint(
        retrieve("json_slash_escapes"),
        (*RETRIED, "cli"),
        ("get", "json_slash_escapes"),
        key=SLASH_KEY,
    ),
    "split_2xx": EchoPoint(retrieve("split_2xx"), (*ERRORS, "cli"), ("get", "split_2xx")),
    "split_5xx": EchoPoint(retrieve("split_5xx"), (*RETRIED, "cli"), ("get", "split_5xx")),
    "utf16_5xx": EchoPoint(retrieve("utf16_5xx"), (*RETRIED, "cli"), ("get", "utf16_5xx")),
    "gzip_5xx": EchoPoint(retrieve("gzip_5xx"), (*RETRIED, "cli"), ("get", "gzip_5xx")),
    "utf16_2xx": EchoPoint(retrieve("utf16_2xx"), (*SUCCESS, "cli"), ("get", "utf16_2xx")),
    "field_2xx": EchoPoint(retrieve("field_2xx"), (*ERRORS, "cli"), ("get", "field_2xx")),
    "job_status": EchoPoint(_wait, (*SUCCESS, "cli"), ("wait", "job_status")),
    "rotating_key": EchoPoint(retrieve("rotating_key"), RETRIED),
    "location": EchoPoint(retrieve("location"), (*ERRORS, "cli"), ("get", "location")),
    "location_content": EchoPoint(stream("location_content"), ERRORS),
    "content_range": EchoPoint(
        download("content_range"), (*SUCCESS, "cli"), ("download", "content_range")
    ),
    "content_range_stream": EchoPoint(stream("content_range_stream"), ERRORS),
    "status_line": EchoPoint(_malformed, ERRORS),
}

APP = HostileApp()


@pytest.fixture(scope="module", autouse=True)
def hostile_app() -> Iterator[HostileApp]:
    APP.start()
    try:
        yield APP
    finally:
        APP.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


class _Records(logging.Handler):
    def __init__(self, server_thread: int | None) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._server_thread = server_thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._server_thread:  # the hostile app's own logs are not ours
            self.records.append(record)


_LOGGERS = ("", "asyncvideos", "aiohttp", "aiohttp.client", "aiohttp.internal", "backoff")


@contextlib.contextmanager
def all_logs_at_debug(into: Capture) -> Iterator[None]:
    handler = _Records(APP.thread_id)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        into.records = handler.records


def _key_provider(first: str) -> Callable[[], Awaitable[str]]:
    """A rotating key: ``first``, then another, then ``first`` again..."""
    keys = [first, ROTATED_KEY]
    calls = 0

    async def provide() -> str:
        nonlocal calls
        calls += 1
        return keys[(calls - 1) % 2]

    return provide


def _run(point: str, scheme: str, folder: Path) -> Capture:
    echo = ECHO_POINTS[point]
    key = echo.key or SCHEMES[scheme]
    capture = Capture()
    APP.seen.clear()

    def on_retry(details: RetryDetails) -> None:
        capture.retries.append(details)

    api_key: Any = _key_provider(key) if point == "rotating_key" else key

    def client(base_url: str) -> AsyncVideos:
        return AsyncVideos(
            api_key=api_key,
            base_url=base_url,
            auth_scheme=scheme,  # type: ignore[arg-type]
            max_retries=2,
            on_retry=on_retry,
        )

    async def scenario() -> None:
        async with client(APP.origin + "/v1") as videos:
            try:
                capture.results.append(await echo.scenario(Run(videos, folder, client)))
            except AsyncVideosError as error:
                capture.errors.append(error)

    before = metric_points()
    with (
        recording() as exporter,
        warnings.catch_warnings(record=True) as caught,
        all_logs_at_debug(capture),
    ):
        warnings.simplefilter("always")
        asyncio.run(scenario())
        capture.spans = [span.to_json() for span in exporter.get_finished_spans()]
    changed = set(metric_points().items()) - set(before.items())
    capture.metrics = "\n".join(f"{name} {point}" for name, point in sorted(changed))
    capture.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    if echo.cli and scheme == "bearer":  # the command line has no api-key scheme
        capture.cli = _run_cli(key, echo.cli, folder)
    return capture


def metric_points() -> dict[str, str]:
    """Every metric data point, by name and attributes: what a run added or changed
    is what it wrote (the reader's points are cumulative over the process)."""
    points: dict[str, str] = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = json.dumps(dict(point.attributes or {}), sort_keys=True)
                    # A count or a sum: a point's times change at every collection.
                    points[f"{metric.name} {labels}"] = str(
                        getattr(point, "count", None) or point.value
                    )
    return points


def _run_cli(key: str, command: tuple[str, ...], folder: Path) -> str:
    argv = ["--api-key", key, "--base-url", APP.origin + "/v1", "--max-retries", "2"]
    argv += ["--debug", "--json", *command]
    if command[0] == "download":
        argv += ["-o", str(folder / "cli.mp4"), "--overwrite"]
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ResourceWarning)
        main(argv)
    return f"stdout:\n{out.getvalue()}\nstderr:\n{err.getvalue()}"


_CAPTURES: dict[tuple[str, str], Capture] = {}


def captured(point: str, scheme: str, folder: Path) -> Capture:
    """Each echo point is run once per scheme; its channels are checked one by one."""
    if (point, scheme) not in _CAPTURES:
        _CAPTURES[point, scheme] = _run(point, scheme, folder)
    return _CAPTURES[point, scheme]


# -- the channels ------------------------------------------------------------------


def error_texts(error: BaseException) -> Iterator[str]:
    """Everything an error shows: str, repr, args, attributes (message, body, headers,
    request_id...), each chained cause and context, and the formatted traceback."""
    yield "".join(traceback.format_exception(type(error), error, error.__traceback__))
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield repr(vars(current))
        for name in ("message", "body", "headers", "request_id"):
            yield repr(getattr(current, name, None))
        current = current.__cause__ or current.__context__


def result_texts(result: object) -> Iterator[str]:
    yield repr(result)
    if isinstance(result, RawResponse):
        yield repr(dict(result.headers))
        yield repr(result.request_id)
        result = result.parse()
    if isinstance(result, Video):
        yield json.dumps(result.raw)
        yield repr(result.status)


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield repr(record.args)
    yield repr(vars(record))  # the ``extra`` fields too
    if record.exc_info and record.exc_info[1] is not None:
        yield from error_texts(record.exc_info[1])


def retry_texts(details: RetryDetails) -> Iterator[str]:
    yield repr(details)
    yield from error_texts(details.error)


CHANNELS: dict[str, Callable[[Capture], list[str]]] = {
    "error": lambda c: [text for error in c.errors for text in error_texts(error)],
    "result": lambda c: [text for result in c.results for text in result_texts(result)],
    "logs": lambda c: [text for record in c.records for text in record_texts(record)],
    "on_retry": lambda c: [text for details in c.retries for text in retry_texts(details)],
    "spans": lambda c: c.spans,
    "metrics": lambda c: [c.metrics] if c.metrics else [],
    "cli": lambda c: [c.cli] if c.cli else [],
}
#: Channels that may rightly stay empty (nothing warns); any other must have written.
_MAY_BE_EMPTY = frozenset({"warnings"})
CHANNELS["warnings"] = lambda c: c.warnings

CHECKS = [
    pytest.param(point, channel, scheme, id=f"{point}-{channel}-{scheme}")
    for point, echo in ECHO_POINTS.items()
    for channel in echo.channels
    for scheme in SCHEMES
    if not (channel == "cli" and scheme != "bearer")
]


@pytest.mark.parametrize(("point", "channel", "scheme"), CHECKS)
def test_the_key_is_in_no_channel(point: str, channel: str, scheme: str, folder: Path) -> None:
    """What this echo point's server sent reaches this channel with the key masked."""
    capture = captured(point, scheme, folder)
    texts = CHANNELS[channel](capture)
    if channel not in _MAY_BE_EMPTY:
        assert texts, f"{point} wrote nothing to {channel}: the check would prove nothing"
    for text in texts:
        assert not leaks(text), text[:3000]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_content_bodies_are_handed_over_as_they_came(scheme: str, folder: Path) -> None:
    """The guarantee is about text: a video's bytes that hold the key are not altered,
    whole in memory, streamed, or written to a file."""
    key = SCHEMES[scheme]
    echo = f"Bearer {key}" if scheme == "bearer" else key

    async def fetch() -> tuple[bytes, bytes, bytes]:
        async with AsyncVideos(
            api_key=key,
            base_url=APP.origin + "/v1",
            auth_scheme=scheme,  # type: ignore[arg-type]
        ) as videos:
            whole = await videos.download_content("echo_content")
            streamed = b"".join([chunk async for chunk in videos.iter_content("echo_content")])
            path = await videos.download("echo_content", folder / "echo.mp4", overwrite=True)
            return whole, streamed, path.read_bytes()

    expected = b"\0\1" * 5000 + echo.encode() + b"\xff" * 3000 + escaped(echo).encode()
    assert asyncio.run(fetch()) == (expected, expected, expected)


def test_credentials_given_as_headers_are_masked_too() -> None:
    """A credential the caller sends in ``default_headers`` or ``extra_headers``
    (a second key for a gateway) is masked like the key itself."""
    gateway_key = "gw-ingress-EXTRA-Zq7Xw3Ev9Rt1Yu5Io"
    default_key = "gw-ingress-DEFAULT-Lk2Jh6Gf0Ds4Ap8"

    async def call() -> AsyncVideosError:
        async with AsyncVideos(
            api_key=BEARER_KEY,
            base_url=APP.origin + "/v1",
            default_headers={"Api-Key": default_key},
            max_retries=0,
        ) as videos:
            with pytest.raises(AsyncVideosError) as caught:
                await videos.retrieve(
                    "echo_headers", extra_headers={"authorization": f"Basic {gateway_key}"}
                )
            return caught.value

    error = asyncio.run(call())
    assert "Basic gw-...Io" in error.message
    assert "gw-...p8" in error.message
    for text in error_texts(error):
        assert gateway_key not in text
        assert default_key not in text


def test_the_detector_catches_each_key_and_its_fragments() -> None:
    for key in CANARIES:
        assert leaks(f"Authorization: Bearer {key}")
        assert leaks(key[3:20].upper())
        assert leaks(key.lower()[-_WINDOW:])
    assert not leaks("sk-...tY az-...b6 sk-...x1 ***")
