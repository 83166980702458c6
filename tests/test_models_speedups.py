"""The msgspec reader (``asyncvideos[speedups]``) gives exactly what the tolerant one gives.

Both readers run in this one process (``_speedups.use``), over generated job
objects and pages that mix what the spec allows with what gateways and
hostile servers send: float and string timestamps, ISO strings with offsets
or none, empty strings, a ``raw`` key, NaN and infinities, huge integers,
lone surrogates, duplicate keys. For each body, either both return models
with the same fields (the same reprs, so the same time zones) and the same
``raw``, or both raise the same ``APIResponseValidationError``.
"""

from __future__ import annotations

import copy
import inspect
import json
import pickle
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncvideos import (
    APIResponseValidationError,
    Character,
    DeletedVideo,
    NotFoundError,
    Video,
    VideoPage,
    _speedups,
)
from asyncvideos._convert import decode, structure

msgspec = pytest.importorskip("msgspec")

# As many examples as the profile says (tests/conftest.py: 100, or 1,000 in CI's pass).
many = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIRST = int(datetime(1, 1, 2, tzinfo=timezone.utc).timestamp())
LAST = int(datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["", "\ud800", "x\udfff", "\U0001f600", "\x00"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
# Values msgspec reads without complaint, some of them differently from the
# tolerant reader (an ISO time with an offset, a numeric string, an empty
# ``object``): these are what the per-item check must catch.
TIMESTAMP_EDGES = st.sampled_from(
    [
        "2025-10-09T08:53:20Z",
        "2025-10-09T08:53:20+02:00",
        "2025-10-09T08:53:20",
        "2025-10-09T08:53:20.5-05:30",
        "1760000000",
        "1760000000.25",
        1_760_000_000.5,
        1_760_000_000.0000005,
        0.1,
        -1,
        0,
    ]
)
timestamps = st.one_of(
    TIMESTAMP_EDGES,
    st.integers(FIRST, LAST),
    st.floats(FIRST, LAST),
    st.integers(0, 2_000_000_000).map(str),
    st.floats(0, 2e9).map(repr),
    st.integers(-(2**70), 2**70),
    scalars,
)
texts = st.one_of(
    st.none(), st.text(max_size=12), st.sampled_from(["", "\ud800", "\U0001f600"]), scalars
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "object": st.one_of(st.just(""), st.just("video"), texts),
    "model": texts,
    "status": st.one_of(st.sampled_from(["cancelled", "succeeded"]), texts),
    "progress": st.one_of(
        st.sampled_from([42.6, 50.0, "7", " 7", "1e2", 2.5, 1e20, 2**64, True, ""]),
        st.integers(-(2**70), 2**70),
        scalars,
    ),
    "created_at": timestamps,
    "completed_at": timestamps,
    "expires_at": timestamps,
    "prompt": texts,
    "size": texts,
    "seconds": st.one_of(st.integers(0, 20), st.floats(0, 20), texts),
    "remixed_from_video_id": texts,
    "error": st.one_of(
        st.fixed_dictionaries({}, optional={"code": texts, "message": texts, "param": json_values}),
        st.text(max_size=8),
        scalars,
    ),
    "raw": st.one_of(st.dictionaries(st.text(max_size=4), json_values), json_values),
    "usage": json_values,
}
plain_text = st.none() | st.text(max_size=12)
plain_stamp = st.none() | st.integers(FIRST, LAST)
#: Jobs as the spec describes them, which msgspec reads, before any change.
PLAIN: dict[str, st.SearchStrategy[Any]] = {
    "object": st.just("video"),
    "model": plain_text,
    "status": st.sampled_from(["queued", "in_progress", "completed", "failed"]),
    "progress": st.none() | st.integers(0, 100),
    "created_at": plain_stamp,
    "completed_at": plain_stamp,
    "expires_at": plain_stamp,
    "prompt": plain_text,
    "size": plain_text,
    "seconds": plain_text,
    "remixed_from_video_id": plain_text,
    "error": st.none()
    | st.fixed_dictionaries({}, optional={"code": plain_text, "message": plain_text}),
}
# One or two fields changed, the timestamps (three of them) as often as the rest.
changes = st.lists(
    st.sampled_from(sorted(FIELDS)) | st.sampled_from(["created_at", "expires_at"]),
    min_size=1,
    max_size=2,
).flatmap(lambda keys: st.fixed_dictionaries({key: FIELDS[key] for key in keys}))
jobs = st.builds(
    lambda job_id, plain, changed, extra: {
        **extra,
        **plain,
        **changed,
        **({} if job_id is None else {"id": job_id}),
    },
    # Mostly readable, so that most bodies reach the msgspec path's checks.
    st.one_of(st.just("video_1"), st.text(min_size=1, max_size=10), st.just("v"), scalars),
    st.fixed_dictionaries({}, optional=PLAIN),
    st.one_of(st.just({}), changes, changes),
    st.one_of(st.just({}), st.dictionaries(st.text(max_size=4), json_values, max_size=2)),
)
pages = st.fixed_dictionaries(
    {"data": st.lists(jobs, max_size=4)},
    optional={
        "object": st.just("list"),
        "first_id": texts,
        "last_id": texts,
        "has_more": st.one_of(st.booleans(), scalars),
    },
) | st.fixed_dictionaries({}, optional={"data": json_values, "has_more": scalars})
#: Pages as the spec describes them, with extras of any JSON (non-ASCII text, big
#: and odd numbers, nesting, an id at the length bound): most take msgspec's path,
#: where each job keeps its bytes and ``raw`` is made from them when first read.
extras = st.dictionaries(
    st.text(max_size=6).filter(lambda key: key not in PLAIN and key != "id"),
    json_values,
    max_size=3,
)
spec_jobs = st.builds(
    lambda job_id, plain, extra: {**extra, **plain, "id": job_id},
    st.one_of(st.text(min_size=1, max_size=10), st.just("v" * 4096), st.just("v" * 4097)),
    st.fixed_dictionaries({}, optional=PLAIN),
    extras,
)
spec_pages = st.fixed_dictionaries(
    {"data": st.lists(spec_jobs, max_size=4)},
    optional={
        "object": st.just("list"),
        "first_id": plain_text,
        "last_id": plain_text,
        "has_more": st.booleans(),
    },
)


def _twice(draw: st.DrawFn, value: Any, ascii_only: bool) -> str:
    """``value`` as JSON text, an object of it sometimes with a key sent twice: a
    duplicate first, so that the object's own value is the last one."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        duplicate = json.dumps(draw(json_values), ensure_ascii=ascii_only)
        text = "{" + json.dumps(key, ensure_ascii=ascii_only) + ": " + duplicate + ", " + text[1:]
    return text


@st.composite
def bodies(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """A document as a server might encode it: escaped or raw UTF-8 (where a lone
    surrogate makes invalid bytes), sometimes with a key sent twice, in the
    document or in a page's jobs (each of which keeps its own bytes as ``raw``)."""
    document = draw(documents)
    ascii_only = draw(st.booleans())
    items = document.get("data") if isinstance(document, dict) else None
    if isinstance(items, list) and draw(st.booleans()):
        rest = {key: value for key, value in document.items() if key != "data"}
        head = json.dumps(rest, ensure_ascii=ascii_only)[:-1] + (", " if rest else "")
        jobs = ", ".join(_twice(draw, item, ascii_only) for item in items)
        text = head + '"data": [' + jobs + "]}"
    else:
        text = _twice(draw, document, ascii_only)
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture(autouse=True)
def _restore_default() -> Iterator[None]:
    yield
    _speedups.use(True)


def outcome(body: bytes, cls: type[Any], *, fast: bool) -> tuple[str, ...]:
    """What reading ``body`` gives on one path, in a form that compares exactly."""
    _speedups.use(fast)
    assert (_speedups.current() is not None) is fast
    try:
        model = decode(body, cls, status_code=200)
    except APIResponseValidationError as exc:
        return ("error", str(exc), repr(exc.body))
    if isinstance(model, VideoPage):
        items = [(repr(v), repr(v.raw), repr(v.error)) for v in model.data]
        return ("page", repr(model), repr(items))
    return ("model", repr(model), repr(getattr(model, "raw", None)))


@many
@given(bodies(jobs))
def test_jobs_read_identically_with_and_without_msgspec(body: bytes) -> None:
    assert outcome(body, Video, fast=True) == outcome(body, Video, fast=False)


@many
@given(bodies(pages))
def test_pages_read_identically_with_and_without_msgspec(body: bytes) -> None:
    assert outcome(body, VideoPage, fast=True) == outcome(body, VideoPage, fast=False)


@many
@given(bodies(spec_pages | spec_jobs))
def test_jobs_read_once_have_the_raw_json_loads_gives(body: bytes) -> None:
    """Jobs read by msgspec keep their bytes: ``raw`` made from them is ``json.loads``'."""
    for cls in (Video, VideoPage):
        assert outcome(body, cls, fast=True) == outcome(body, cls, fast=False)


@settings(max_examples=100, deadline=None)
@given(bodies(jobs))
def test_other_models_read_identically_with_and_without_msgspec(body: bytes) -> None:
    for cls in (DeletedVideo, Character):
        assert outcome(body, cls, fast=True) == outcome(body, cls, fast=False)


JOB = {
    "id": "video_1",
    "object": "video",
    "model": "sora-2",
    "status": "completed",
    "progress": 100,
    "created_at": 1_760_000_000,
    "completed_at": 1_760_000_090,
    "expires_at": None,
    "prompt": "a cat",
    "size": "1280x720",
    "seconds": "8",
    "remixed_from_video_id": None,
    "error": None,
    "usage": {"seconds": 8},
}


def fast_read(document: object, cls: type[Any]) -> Any:
    """What the msgspec path alone makes of ``document``: None where it defers."""
    fast = _speedups.load()
    assert fast is not None
    body = json.dumps(document).encode()
    return fast.read(body, cls)


class TestFastPath:
    def test_a_plain_job_and_page_are_read_by_msgspec(self) -> None:
        """The property tests above compare something: the common case takes the fast path."""
        video = fast_read(JOB, Video)
        assert video == structure(JOB, Video)
        assert video.raw == JOB
        assert video.created_at.tzinfo is timezone.utc
        page = fast_read(
            {"object": "list", "data": [JOB, {"id": "v2"}], "has_more": True}, VideoPage
        )
        assert [v.raw for v in page.data] == [JOB, {"id": "v2"}]
        assert page.has_more is True

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("created_at", "2025-10-09T08:53:20+02:00"),  # offset: the tolerant reader makes UTC
            ("created_at", "2025-10-09T08:53:20"),  # naive: read as UTC
            ("completed_at", "1760000000"),
            ("expires_at", 1_760_000_000.5),
            ("progress", 42.6),
            ("progress", "7"),
            ("object", ""),
            ("seconds", 8),
            ("error", "boom"),
            ("raw", 1),
            ("created_at", 10**20),
        ],
    )
    def test_what_msgspec_reads_differently_is_left_to_the_tolerant_reader(
        self, key: str, value: object
    ) -> None:
        assert fast_read({**JOB, key: value}, Video) is None
        assert fast_read({"data": [{**JOB, key: value}]}, VideoPage) is None

    @pytest.mark.parametrize(
        "page",
        [{"data": [], "has_more": "true"}, {"has_more": False}, [], {"data": {}}],
    )
    def test_pages_the_tolerant_reader_rejects_are_left_to_it(self, page: object) -> None:
        assert fast_read(page, VideoPage) is None

    def test_other_models_are_left_to_the_tolerant_reader(self) -> None:
        assert fast_read({"id": "v", "deleted": True}, DeletedVideo) is None
        assert fast_read([JOB], Video) is None

    @pytest.mark.parametrize(
        "body",
        [
            b'{"id":"v","x":NaN}',
            b'{"id":"v","x":1e400}',
            b'{"id":"\\ud800"}',
            b'\xef\xbb\xbf{"id":"v"}',
        ],
    )
    def test_what_msgspec_cannot_parse_is_parsed_by_json_loads(self, body: bytes) -> None:
        _speedups.use(True)
        fast = _speedups.current()
        assert fast is not None
        with pytest.raises(msgspec.DecodeError):
            fast.loads(body)
        assert decode(body, Video).raw == json.loads(body)

    def test_nesting_near_the_recursion_limit_reads_the_same(self) -> None:
        """Where json.loads gives up on a deep body, msgspec has given up first."""
        limit = sys.getrecursionlimit()
        for depth in range(limit - 120, limit + 5):
            body = ('{"id":"v","x":' + "[" * depth + "]" * depth + "}").encode()
            assert outcome(body, Video, fast=True) == outcome(body, Video, fast=False), depth

    def test_a_body_that_is_not_json_raises_the_same_error_on_both_paths(self) -> None:
        for fast in (True, False):
            _speedups.use(fast)
            with pytest.raises(APIResponseValidationError, match="Expected a JSON body"):
                decode(b"<html>", Video, status_code=200, headers={"content-type": "text/html"})

    def test_an_error_status_raises_its_typed_error_on_both_paths(self) -> None:
        body = json.dumps({"error": {"message": "no such job", "code": "not_found"}}).encode()
        for fast in (True, False):
            _speedups.use(fast)
            with pytest.raises(NotFoundError, match="no such job"):
                decode(body, Video, status_code=404)


def slot(video: Video) -> Any:
    """What ``video.raw``'s slot holds, without reading ``raw`` (which would parse it)."""
    return Video.__dict__["raw"].slot.__get__(video)


def page_of(*items: object) -> bytes:
    return json.dumps({"object": "list", "data": list(items), "has_more": False}).encode()


class TestRawOnFirstUse:
    """A job msgspec read keeps its bytes; ``raw`` is made from them when first read."""

    def test_a_page_is_parsed_into_models_only(self) -> None:
        _speedups.use(True)
        page = decode(page_of(JOB, {"id": "v2", "extra": [1, {"a": None}]}), VideoPage)
        assert [type(slot(video)) for video in page.data] == [msgspec.Raw, msgspec.Raw]
        assert all(type(video) is Video for video in page.data)
        raw = page.data[1].raw
        assert type(raw) is dict
        assert raw == {"id": "v2", "extra": [1, {"a": None}]}
        assert page.data[1].raw is raw  # made once, then kept
        assert slot(page.data[1]) is raw
        assert type(slot(decode(json.dumps(JOB).encode(), Video))) is msgspec.Raw

    def test_a_job_kept_from_a_page_keeps_only_its_own_bytes(self) -> None:
        _speedups.use(True)
        body = page_of(JOB, {"id": "v2"})
        kept = decode(body, VideoPage).data[1]
        assert bytes(slot(kept)) == b'{"id": "v2"}'

    def test_models_stay_frozen_hashable_picklable_and_equal(self) -> None:
        body = page_of(JOB, {"id": "v2", "x": {"y": [1.5, "\u00e9"]}})
        _speedups.use(False)
        tolerant = decode(body, VideoPage)
        _speedups.use(True)
        fast = decode(body, VideoPage)
        assert fast == tolerant
        assert hash(fast) == hash(tolerant)
        assert {fast.data[0], tolerant.data[0]} == {tolerant.data[0]}
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            fast.data[0].raw = {}  # type: ignore[misc]
        for video in decode(body, VideoPage).data:  # raw not read yet
            copied = pickle.loads(pickle.dumps(video))
            assert copied == video
            assert type(slot(copied)) is dict
            assert copied.raw == video.raw
        fresh = decode(body, VideoPage).data[1]
        assert copy.copy(fresh).raw == tolerant.data[1].raw
        fresh = decode(body, VideoPage).data[1]
        assert attrs.evolve(fresh, status="failed").raw == tolerant.data[1].raw
        fresh = decode(body, VideoPage).data[1]
        assert attrs.asdict(fresh)["raw"] == tolerant.data[1].raw
        assert fresh.to_dict() == tolerant.data[1].to_dict()

    @pytest.mark.parametrize(
        ("extra", "expected"),
        [
            (b"1e400", float("inf")),  # msgspec refuses it: json.loads reads it
            (b'"\xed\xa0\x80"', "\ud800"),  # a surrogate in UTF-8, as json.loads reads it
            ('"caf\u00e9 \U0001f600"'.encode(), "caf\u00e9 \U0001f600"),
        ],
    )
    def test_raw_is_what_json_loads_gives(self, extra: bytes, expected: object) -> None:
        body = b'{"data": [{"id": "v", "x": ' + extra + b'}], "has_more": false}'
        _speedups.use(True)
        (video,) = decode(body, VideoPage).data
        assert type(slot(video)) is msgspec.Raw
        assert video.raw == {"id": "v", "x": expected} == json.loads(body)["data"][0]

    def test_a_body_that_is_not_utf8_is_refused_on_both_paths(self) -> None:
        """msgspec skips an unknown field without decoding it: the body is checked."""
        body = b'{"data": [{"id": "v", "x": "\xff"}], "has_more": false}'
        assert outcome(body, VideoPage, fast=True) == outcome(body, VideoPage, fast=False)
        assert outcome(body, VideoPage, fast=True)[0] == "error"
        large = b'{"id": "v", "pad": "' + "é".encode() * 600_000 + b'\xc0"}'
        assert outcome(large, Video, fast=True) == outcome(large, Video, fast=False)
        assert outcome(large, Video, fast=True)[0] == "error"

    def test_raw_read_far_deeper_in_the_stack_than_its_job(self) -> None:
        """Nested as deep as reading allowed, read with less stack to spare."""
        _speedups.use(True)
        depth = sys.getrecursionlimit() - len(inspect.stack()) - 60
        nested = "[" * depth + "]" * depth
        body = ('{"id": "v", "x": ' + nested + "}").encode()
        video = decode(body, Video)
        assert type(slot(video)) is msgspec.Raw

        def deeper(frames: int) -> Any:
            return video.raw if frames == 0 else deeper(frames - 1)

        raw = deeper(300)
        assert raw == json.loads(body)


def test_the_decoders_are_loaded_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_speedups, "_current", _speedups._UNSET)
    assert isinstance(_speedups.current(), _speedups.Speedups)
    assert _speedups.current() is _speedups.current()


@pytest.mark.parametrize("version", ["0.18.6", "0.9", "", "1.0.0rc1", "unknown"])
def test_a_msgspec_older_than_0_19_is_not_used(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """Before 0.19 msgspec misread some integers above 64 bits."""
    monkeypatch.setattr(msgspec, "__version__", version)
    expected = version == "1.0.0rc1"  # 1.0 reads as new enough
    assert (_speedups.load() is not None) is expected


def test_the_installed_msgspec_is_used() -> None:
    assert _speedups.load() is not None
