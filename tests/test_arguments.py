"""Bad arguments to any public method raise ``ValueError``/``TypeError`` naming them, before I/O.

One table covers every public method of ``AsyncVideos`` and the constructor. Each
method has a set of good arguments (``GOOD``); a case replaces one of them with a
bad value, and the call must raise the expected error, with the argument's name in
the message, at the call (generator methods too, not at the first ``anext``), with
no request sent and no file written.

The per-call options (``timeout``, ``max_retries``, ``extra_headers``,
``extra_query``, ``idempotency_key``) have one list of bad values each, tried on
every method that takes them. The table is checked against the methods by
introspection: a new public method, or a new parameter of one, that is not in the
table fails ``test_every_public_method_and_parameter_is_in_the_table``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, get_type_hints

import aiohttp
import pytest
import pytest_asyncio

import asyncvideos
from asyncvideos import AsyncVideos, AsyncVideosError, Video
from asyncvideos.testing import FakeVideosAPI

MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
SOURCE = "video_source"  # a completed job seeded in the fake, so the good calls succeed

# Every async test here shares the module's event loop with the module's fake.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


class InTmp:
    """A value made at run time in the test's temporary folder (a path or an open file)."""

    def __init__(self, make: Callable[[Path], Any], label: str) -> None:
        self.make = make
        self.label = label

    def __repr__(self) -> str:
        return self.label


def _short(
    values: list[tuple[Any, type[Exception], str]],
) -> list[tuple[Any, type[Exception], str]]:
    """The first ValueError case and the first TypeError case in ``values``, where present."""
    firsts = (
        next((case for case in values if case[1] is kind), None) for kind in (ValueError, TypeError)
    )
    return [case for case in firsts if case is not None]


def _closed_file(folder: Path) -> Any:
    with (folder / "closed.png").open("wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
    return file


def _text_file(folder: Path) -> Any:
    (folder / "text.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return (folder / "text.png").open("r", encoding="latin-1")


# -- good arguments: one call per public method that the fake answers -------------------

GOOD: dict[str, dict[str, Any]] = {
    "retrieve": {"video": SOURCE},
    "list": {},
    "list_page": {},
    "pages": {},
    "create": {"prompt": "a paper boat"},
    "remix": {"video": SOURCE, "prompt": "in winter"},
    "edit": {"video": SOURCE, "prompt": "brighter"},
    "extend": {"video": SOURCE, "prompt": "a bow", "seconds": 4},
    "create_character": {"name": "Mochi", "video": MP4},
    "retrieve_character": {"character_id": "char_missing"},
    "delete": {"video": SOURCE},
    "download_content": {"video": SOURCE, "variant": "thumbnail"},
    "iter_content": {"video": SOURCE, "variant": "thumbnail"},
    "open_content": {"video": SOURCE, "variant": "thumbnail"},
    "download": {"video": SOURCE, "path": InTmp(lambda p: p / "out" / "clip.mp4", "out.mp4")},
    "wait": {"video": SOURCE},
    "create_and_wait": {"prompt": "a paper boat", "wait_timeout": 30},
    "wait_many": {"videos": [SOURCE]},
    "resume": {"download_dir": InTmp(lambda p: p / "resumed", "a folder to make")},
}

# Public members that take no argument: nothing to check.
NO_ARGUMENTS = {"close", "closed", "base_url", "with_raw_response", "ledger"}

# -- bad values of the per-call options, tried on every method that takes each ----------

OPTIONS: dict[str, list[tuple[Any, type[Exception], str]]] = {
    "timeout": [
        (0, ValueError, "timeout"),
        (-1, ValueError, "timeout"),
        (float("nan"), ValueError, "timeout"),
        (float("inf"), ValueError, "timeout"),
        ("10", TypeError, "timeout"),
        (True, TypeError, "timeout"),
    ],
    "max_retries": [
        (-1, ValueError, "max_retries"),
        (101, ValueError, "max_retries"),
        (1.5, TypeError, "max_retries"),
        (True, TypeError, "max_retries"),
        ("2", TypeError, "max_retries"),
    ],
    "extra_headers": [
        ({"X-A": 1}, TypeError, "extra_headers"),
        ({1: "a"}, TypeError, "extra_headers"),
        (["X-A"], TypeError, "extra_headers"),
        ({"X-A": "a\r\nX-Injected: 1"}, ValueError, "extra_headers"),
        ({"Bad Name:": "a"}, ValueError, "extra_headers"),
    ],
    "extra_query": [
        ({"a": None}, TypeError, "extra_query"),
        ({"a": 1}, TypeError, "extra_query"),
        (5, TypeError, "extra_query"),
    ],
    "extra_body": [
        (5, TypeError, "extra_body"),
        ({"": 1}, TypeError, "extra_body"),
        ({1: "a"}, TypeError, "extra_body"),
        ({"a": object()}, TypeError, "extra_body"),
    ],
    "idempotency_key": [
        ("", ValueError, "idempotency_key"),
        ("   ", ValueError, "idempotency_key"),
        (5, TypeError, "idempotency_key"),
    ],
}
# A request timeout may also be an aiohttp.ClientTimeout, whose parts are checked.
REQUEST_TIMEOUTS = [(aiohttp.ClientTimeout(total=0), ValueError, "timeout.total")]

# The ids a job argument refuses, wherever a job is named.
BAD_IDS: list[tuple[Any, type[Exception], str]] = [
    (5, TypeError, ""),
    (None, TypeError, ""),
    (object(), TypeError, ""),
    ("", ValueError, ""),
    ("  ", ValueError, ""),
    (".", ValueError, ""),
    ("..", ValueError, ""),
    ("a\nb", ValueError, ""),
    ("a\r\nb", ValueError, ""),
    ("a\x00b", ValueError, ""),
    ("a\ud800", ValueError, ""),
]
BAD_PROMPTS: list[tuple[Any, type[Exception], str]] = [
    ("", ValueError, ""),
    (None, TypeError, ""),
    (5, TypeError, ""),
    ("x" * 32_001, ValueError, ""),
]
BAD_SECONDS: list[tuple[Any, type[Exception], str]] = [
    (0, ValueError, ""),
    (-1, ValueError, ""),
    (True, TypeError, ""),
    ("4.5", ValueError, ""),
    ("", ValueError, ""),
    ("\N{SUPERSCRIPT TWO}", ValueError, ""),  # str.isdigit() says yes, int() says no
    (4.0, TypeError, ""),
]
BAD_WAIT_TIMEOUTS: list[tuple[Any, type[Exception], str]] = [
    (0, ValueError, ""),
    (-1, ValueError, ""),
    (float("inf"), ValueError, ""),
    (float("nan"), ValueError, ""),
    ("5", TypeError, ""),
    (True, TypeError, ""),
]
BAD_POLL_INTERVALS: list[tuple[Any, type[Exception], str]] = [
    (0, ValueError, ""),
    (-1, ValueError, ""),
    ("1", TypeError, ""),
]
BAD_WAITING_STATUSES: list[tuple[Any, type[Exception], str]] = [
    ("queued", TypeError, ""),
    (5, TypeError, ""),
    ([], ValueError, ""),
    (["queued", ""], ValueError, ""),
    ([1], ValueError, ""),
]
BAD_CALLBACKS: list[tuple[Any, type[Exception], str]] = [
    (5, TypeError, ""),
    ("print", TypeError, ""),
]
BAD_BOOLS: list[tuple[Any, type[Exception], str]] = [
    ("yes", TypeError, ""),
    (1, TypeError, ""),
    (None, TypeError, ""),
]
BAD_CHUNK_SIZES: list[tuple[Any, type[Exception], str]] = [
    (0, ValueError, ""),
    (-1, ValueError, ""),
    ("1", TypeError, ""),
    (1.5, TypeError, ""),
]
BAD_VARIANTS: list[tuple[Any, type[Exception], str]] = [
    ("hd", ValueError, ""),
    ("gif", ValueError, ""),
    (None, TypeError, ""),
]
BAD_FILES: list[tuple[Any, type[Exception], str]] = [
    (b"", ValueError, ""),
    (InTmp(lambda p: io.BytesIO(b""), "empty BytesIO"), ValueError, ""),
    (InTmp(lambda p: io.StringIO("text"), "a StringIO"), TypeError, ""),
    (42, TypeError, ""),
    (3.5, TypeError, ""),
    (Path("no/such/file.png"), ValueError, ""),
    (InTmp(lambda p: p / "missing.png", "missing.png"), ValueError, ""),
    (InTmp(lambda p: p, "a folder"), ValueError, ""),
    (InTmp(_closed_file, "a closed file"), ValueError, ""),
    (InTmp(_text_file, "a text-mode file"), TypeError, ""),
]
# Where a str is a file name (not a job id).
BAD_FILE_NAMES: list[tuple[Any, type[Exception], str]] = [
    *BAD_FILES,
    ("no/such/file.png", ValueError, ""),
]
BAD_REFERENCES: list[tuple[Any, type[Exception], str]] = [
    *BAD_FILE_NAMES,
    ({"url": "x"}, ValueError, ""),
    ({"image_url": "https://a/b.png", "file_id": "f"}, ValueError, ""),
    ({"image_url": 5}, ValueError, ""),
    ({"file_id": " "}, ValueError, ""),
]

# Method-specific parameters: {method: {parameter: bad values}}; "" in the words
# means "the parameter's own name".
WAIT_OPTIONS: dict[str, list[tuple[Any, type[Exception], str]]] = {
    "wait_timeout": BAD_WAIT_TIMEOUTS,
    "poll_interval": BAD_POLL_INTERVALS,
    "on_progress": BAD_CALLBACKS,
    "waiting_statuses": BAD_WAITING_STATUSES,
    "request_timeout": [*OPTIONS["timeout"], *REQUEST_TIMEOUTS],
}
LISTING: dict[str, list[tuple[Any, type[Exception], str]]] = {
    "limit": [
        (0, ValueError, ""),
        (101, ValueError, ""),
        (True, TypeError, ""),
        ("5", TypeError, ""),
    ],
    "order": [("sideways", ValueError, ""), ("newest", ValueError, ""), (None, TypeError, "")],
    "after": [("", ValueError, ""), (5, TypeError, "")],
}
CREATING: dict[str, list[tuple[Any, type[Exception], str]]] = {
    "prompt": BAD_PROMPTS,
    "model": [("", ValueError, ""), (5, TypeError, "")],
    "seconds": BAD_SECONDS,
    "size": [("big", ValueError, ""), (1280, TypeError, "")],
    "input_reference": BAD_REFERENCES,
}
IDS = _short(BAD_IDS)
BAD: dict[str, dict[str, list[tuple[Any, type[Exception], str]]]] = {
    "retrieve": {"video": BAD_IDS},
    "list": {
        **LISTING,
        "all": BAD_BOOLS,
        "prefetch": [(2, ValueError, ""), (-1, ValueError, ""), (True, TypeError, "")],
    },
    "list_page": {name: _short(values) for name, values in LISTING.items()},
    "pages": {
        **{name: _short(values) for name, values in LISTING.items()},
        "prefetch": [(2, ValueError, ""), (-1, ValueError, ""), (True, TypeError, "")],
    },
    "create": CREATING,
    "remix": {"video": IDS, "prompt": _short(BAD_PROMPTS)},
    "edit": {"video": [*IDS, *_short(BAD_FILES)], "prompt": _short(BAD_PROMPTS)},
    "extend": {
        "video": [*IDS, *_short(BAD_FILES)],
        "prompt": _short(BAD_PROMPTS),
        "seconds": BAD_SECONDS,
    },
    "create_character": {
        "name": [("", ValueError, ""), ("n" * 81, ValueError, ""), (5, TypeError, "")],
        "video": BAD_FILE_NAMES,
    },
    "retrieve_character": {"character_id": IDS},
    "delete": {"video": IDS},
    "download_content": {"video": IDS, "variant": BAD_VARIANTS},
    "iter_content": {"video": IDS, "variant": BAD_VARIANTS, "chunk_size": BAD_CHUNK_SIZES},
    "open_content": {
        "video": IDS,
        "variant": _short(BAD_VARIANTS),
        "chunk_size": _short(BAD_CHUNK_SIZES),
    },
    "download": {
        "video": IDS,
        "variant": BAD_VARIANTS,
        "path": [
            (5, TypeError, ""),
            ("", ValueError, ""),
            ("  ", ValueError, ""),
            (InTmp(lambda p: p, "a folder"), ValueError, ""),
            (InTmp(lambda p: p / "exists.mp4", "an existing file"), FileExistsError, "overwrite"),
        ],
        "overwrite": BAD_BOOLS,
        "on_progress": BAD_CALLBACKS,
        "chunk_size": BAD_CHUNK_SIZES,
    },
    "wait": {"video": IDS, "raise_on_failure": BAD_BOOLS, **WAIT_OPTIONS},
    "create_and_wait": {
        **{name: _short(values) for name, values in CREATING.items()},
        "raise_on_failure": _short(BAD_BOOLS),
        **{name: _short(values) for name, values in WAIT_OPTIONS.items()},
    },
    "wait_many": {
        "videos": [
            (SOURCE, TypeError, ""),
            (Video(id=SOURCE), TypeError, ""),
            (5, TypeError, ""),
            ([5], TypeError, ""),
            ([""], ValueError, ""),
            ([SOURCE, ".."], ValueError, "videos[]"),
        ],
        "concurrency": [(0, ValueError, ""), (True, TypeError, ""), (2.0, TypeError, "")],
        **{name: _short(values) for name, values in WAIT_OPTIONS.items()},
    },
    "resume": {
        "concurrency": [(0, ValueError, ""), (True, TypeError, "")],
        "download_dir": [(5, TypeError, ""), ("", TypeError, "")],
        **{name: _short(values) for name, values in WAIT_OPTIONS.items()},
    },
}


def _parameters(method: str) -> dict[str, inspect.Parameter]:
    """The arguments a public method takes, with ``**options: Unpack[X]`` spelled out."""
    signature = inspect.signature(getattr(AsyncVideos, method))
    found: dict[str, inspect.Parameter] = {}
    for name, parameter in signature.parameters.items():
        if name == "self":
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            # The annotation is a string (postponed): "Unpack[RequestOptions]".
            match = re.fullmatch(r"Unpack\[(\w+)\]", str(parameter.annotation))
            assert match, f"{method}(**{name}) is not an Unpack[TypedDict]"
            for option in get_type_hints(getattr(asyncvideos, match.group(1))):
                found[option] = parameter
        else:
            found[name] = parameter
    return found


# Every bad value of a shared check is tried on one method; on the others, one value
# of each kind shows that the method runs the check at all.
FULL = {"retrieve", "create"}
# The waits' old name for wait_timeout: it warns before its check (see test_wait.py).
DEPRECATED = {(method, "timeout") for method in ("wait", "create_and_wait", "wait_many", "resume")}


def _cases() -> list[Any]:
    cases = []
    for method, good in GOOD.items():
        parameters = _parameters(method)
        table = {
            **{
                name: values if method in FULL else _short(values)
                for name, values in OPTIONS.items()
                if name in parameters and (method, name) not in DEPRECATED
            },
            **BAD.get(method, {}),
        }
        for parameter, values in table.items():
            for index, (value, error, words) in enumerate(values):
                cases.append(
                    pytest.param(
                        method,
                        {**good, parameter: value},
                        error,
                        words or parameter,
                        id=f"{method}-{parameter}-{index}",
                    )
                )
    return cases


CASES = _cases()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def table_api() -> AsyncIterator[FakeVideosAPI]:
    """One fake for the module, with a completed job to name in the good calls."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as fake:
        fake.add_videos({"id": SOURCE, "status": "completed"})
        yield fake


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def table_client(table_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with table_api.client(max_retries=0) as videos:
        yield videos


def _resolve(arguments: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {
        name: value.make(folder) if isinstance(value, InTmp) else value
        for name, value in arguments.items()
    }


async def _call(videos: AsyncVideos, method: str, arguments: dict[str, Any]) -> Any:
    """Call the method; await a coroutine; take one item of a generator's output."""
    result = getattr(videos, method)(**arguments)
    if inspect.isawaitable(result):
        return await result
    if hasattr(result, "__aenter__"):
        async with result as opened:
            return [chunk async for chunk in opened]
    assert isinstance(result, AsyncIterator), result
    try:
        return await result.__anext__()
    except StopAsyncIteration:
        return None
    finally:
        await result.aclose()  # type: ignore[attr-defined]


async def _invoke(videos: AsyncVideos, method: str, arguments: dict[str, Any]) -> None:
    """Call the method and await a coroutine; a generator is closed, never iterated, so a
    generator method must check its arguments when called."""
    result = getattr(videos, method)(**arguments)
    if inspect.isawaitable(result):
        await result
    elif hasattr(result, "__aenter__"):  # open_content: checked by the time it is entered
        async with result:
            pass
    else:
        await result.aclose()


def _files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


@in_module_loop
@pytest.mark.parametrize(("method", "arguments", "error", "words"), CASES)
async def test_a_bad_argument_raises_naming_it_before_any_request(
    table_api: FakeVideosAPI,
    table_client: AsyncVideos,
    tmp_path: Path,
    method: str,
    arguments: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    """The call itself raises (a generator too), naming the argument; nothing is sent."""
    (tmp_path / "exists.mp4").write_bytes(b"old")
    table_api.clear_requests()
    resolved = _resolve(arguments, tmp_path)
    try:
        with pytest.raises(error) as caught:
            await _invoke(table_client, method, resolved)
    finally:
        for value in resolved.values():
            if isinstance(value, io.TextIOBase) and not value.closed:
                value.close()
    assert words in str(caught.value)
    assert table_api.requests == []
    assert (tmp_path / "exists.mp4").read_bytes() == b"old"
    # No folder, temporary file or download target was made.
    assert _files(tmp_path) <= {"exists.mp4", "closed.png", "text.png"}


@in_module_loop
@pytest.mark.parametrize("method", sorted(GOOD))
async def test_the_good_arguments_are_accepted(
    table_api: FakeVideosAPI, tmp_path: Path, method: str
) -> None:
    """Each method's good arguments make a request, so each bad case fails for its one value."""
    if SOURCE not in table_api.videos:  # delete's good call removed it
        table_api.add_videos({"id": SOURCE, "status": "completed"})
    # resume() needs a ledger with something in it to wait for.
    ledger = {"ledger": f"sqlite:///{tmp_path}/jobs.db"} if method == "resume" else {}
    if ledger:
        async with table_api.client(max_retries=0, **ledger) as videos:
            await videos.create("a paper boat")
    table_api.clear_requests()
    async with table_api.client(max_retries=0, **ledger) as videos:
        # A ValueError or TypeError fails the test; an API error (a 404 for a character
        # that does not exist) is an answer, so the arguments were accepted.
        with contextlib.suppress(AsyncVideosError):
            await _call(videos, method, _resolve(GOOD[method], tmp_path))
    assert table_api.requests, f"{method} sent nothing with its good arguments"


def test_every_public_method_and_parameter_is_in_the_table() -> None:
    """A new public method, or a new parameter, must get its bad cases here."""
    public = {
        name for name in dir(AsyncVideos) if not name.startswith("_") and name not in NO_ARGUMENTS
    }
    assert public == set(GOOD), (
        f"add to GOOD and BAD: {sorted(public - set(GOOD))}; "
        f"not public: {sorted(set(GOOD) - public)}"
    )
    missing = [
        f"{method}({parameter}=)"
        for method in sorted(GOOD)
        for parameter in _parameters(method)
        if parameter not in OPTIONS and parameter not in BAD.get(method, {})
    ]
    assert missing == [], f"parameters with no bad case: {missing}"
    # Every table entry names a real parameter, so a rename cannot hide a case.
    for method, table in BAD.items():
        assert set(table) <= set(_parameters(method)), (method, set(table))
    for method in NO_ARGUMENTS:
        member = inspect.getattr_static(AsyncVideos, method)
        if inspect.isfunction(member):
            assert list(inspect.signature(member).parameters) == ["self"], method


# -- the constructor ------------------------------------------------------------------

BAD_CONSTRUCTORS = [
    pytest.param({"base_url": "/v1"}, ValueError, "base_url", id="base_url-relative"),
    pytest.param({"base_url": "api.openai.com/v1"}, ValueError, "base_url", id="base_url-bare"),
    pytest.param({"base_url": "ftp://example.com/v1"}, ValueError, "base_url", id="base_url-ftp"),
    pytest.param({"base_url": "https:///v1"}, ValueError, "base_url", id="base_url-no-host"),
    pytest.param({"base_url": "http://x/v1?a=1"}, ValueError, "base_url", id="base_url-query"),
    pytest.param({"base_url": 5}, TypeError, "base_url", id="base_url-int"),
    pytest.param({"max_retries": -1}, ValueError, "max_retries", id="max_retries-negative"),
    pytest.param({"max_retries": 101}, ValueError, "max_retries", id="max_retries-101"),
    pytest.param({"max_retries": 2.0}, TypeError, "max_retries", id="max_retries-float"),
    pytest.param({"max_retries": True}, TypeError, "max_retries", id="max_retries-bool"),
    pytest.param({"timeout": -1.5}, ValueError, "timeout", id="timeout-negative"),
    pytest.param({"timeout": 0}, ValueError, "timeout", id="timeout-zero"),
    pytest.param({"timeout": float("nan")}, ValueError, "timeout", id="timeout-nan"),
    pytest.param({"timeout": "slow"}, TypeError, "timeout", id="timeout-str"),
    pytest.param(
        {"timeout": aiohttp.ClientTimeout(total=0)},
        ValueError,
        "timeout.total",
        id="timeout-client-timeout",
    ),
    pytest.param({"api_key": ""}, ValueError, "api_key", id="api_key-empty"),
    pytest.param({"api_key": 123}, TypeError, "api_key", id="api_key-int"),
    pytest.param({"auth_scheme": "basic"}, ValueError, "auth_scheme", id="auth_scheme"),
    pytest.param({"organization": 1}, TypeError, "organization", id="organization-int"),
    pytest.param({"project": 1}, TypeError, "project", id="project-int"),
    pytest.param({"session": object()}, TypeError, "session", id="session-object"),
    pytest.param({"max_connections": 0}, ValueError, "max_connections", id="max_connections"),
    pytest.param(
        {"default_headers": {"X": "a\nb"}}, ValueError, "default_headers", id="default_headers-lf"
    ),
    pytest.param({"default_headers": {"a": 1}}, TypeError, "default_headers", id="default_headers"),
    pytest.param({"default_query": {"a": None}}, TypeError, "default_query", id="default_query"),
    pytest.param({"default_query": ["a"]}, TypeError, "default_query", id="default_query-list"),
    pytest.param(
        {"max_response_bytes": 0}, ValueError, "max_response_bytes", id="max_response_bytes-0"
    ),
    pytest.param(
        {"max_response_bytes": "1"}, TypeError, "max_response_bytes", id="max_response_bytes-str"
    ),
    pytest.param({"on_retry": 5}, TypeError, "on_retry", id="on_retry-int"),
    pytest.param(
        {"max_requests_per_second": 0},
        ValueError,
        "max_requests_per_second",
        id="max_requests_per_second-0",
    ),
    pytest.param(
        {"max_requests_per_second": "1"},
        TypeError,
        "max_requests_per_second",
        id="max_requests_per_second-str",
    ),
    pytest.param({"pacing": "fast"}, TypeError, "pacing", id="pacing-str"),
    pytest.param(
        {"webhook_fallback_interval": 0},
        ValueError,
        "webhook_fallback_interval",
        id="webhook_fallback_interval-0",
    ),
    pytest.param(
        {"webhook_fallback_interval": "1"},
        TypeError,
        "webhook_fallback_interval",
        id="webhook_fallback_interval-str",
    ),
    pytest.param({"webhooks": 5}, TypeError, "webhooks", id="webhooks-int"),
    pytest.param({"max_empty_pages": -1}, ValueError, "max_empty_pages", id="max_empty_pages-neg"),
    pytest.param({"max_empty_pages": "5"}, TypeError, "max_empty_pages", id="max_empty_pages-str"),
    pytest.param(
        {"max_empty_pages": True}, TypeError, "max_empty_pages", id="max_empty_pages-bool"
    ),
    pytest.param(
        {"max_download_bytes": 0}, ValueError, "max_download_bytes", id="max_download_bytes-0"
    ),
    pytest.param(
        {"max_download_bytes": 1.5}, TypeError, "max_download_bytes", id="max_download_bytes-float"
    ),
    pytest.param(
        {"max_download_bytes": True}, TypeError, "max_download_bytes", id="max_download_bytes-bool"
    ),
    pytest.param({"ledger": 5}, TypeError, "ledger", id="ledger-int"),
    pytest.param({"ledger": "jobs.db"}, ValueError, "ledger", id="ledger-no-scheme"),
    pytest.param(
        {"ledger": "sqlite:///j.db", "reconcile": "guess"}, ValueError, "reconcile", id="reconcile"
    ),
    pytest.param({"reconcile": "adopt"}, ValueError, "ledger", id="reconcile-no-ledger"),
    pytest.param(
        {"ledger": "sqlite:///j.db", "on_created": 5}, TypeError, "on_created", id="on_created"
    ),
    pytest.param(
        {"ledger": "sqlite:///j.db", "clock_skew": -1}, ValueError, "clock_skew", id="clock_skew"
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "names"), BAD_CONSTRUCTORS)
def test_a_bad_constructor_argument_raises_naming_it(
    kwargs: dict[str, Any], error: type[BaseException], names: str
) -> None:
    """Each bad constructor argument raises at construction, naming it."""
    arguments: dict[str, Any] = {"api_key": "sk-test-123456789", "base_url": "http://127.0.0.1/v1"}
    arguments.update(kwargs)
    with pytest.raises(error) as caught:
        AsyncVideos(**arguments)
    assert names in str(caught.value)


def test_every_constructor_argument_is_in_the_table() -> None:
    """A new constructor argument must get its bad cases here."""
    covered = {name for case in BAD_CONSTRUCTORS for name in case.values[0]}
    accepted = set(inspect.signature(AsyncVideos).parameters)
    assert accepted == covered, sorted(accepted ^ covered)


def test_no_key_anywhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without api_key= and with OPENAI_API_KEY unset, construction fails naming both."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key") as caught:
        AsyncVideos(base_url="http://127.0.0.1/v1")
    assert "OPENAI_API_KEY" in str(caught.value)


@in_module_loop
async def test_an_api_key_callable_returning_junk_fails_before_sending(
    table_api: FakeVideosAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """A key provider that returns a non-string raises TypeError; nothing is sent."""
    caplog.set_level(logging.DEBUG)
    table_api.clear_requests()
    async with AsyncVideos(api_key=lambda: None, base_url=table_api.base_url) as videos:  # type: ignore[arg-type, return-value]
        with pytest.raises(TypeError, match="api_key"):
            await videos.retrieve("vid")
    assert table_api.requests == []
