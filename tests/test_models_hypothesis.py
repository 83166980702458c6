"""Property tests: whatever JSON the spec allows is read, and read faithfully.

The strategies are built from ``components/schemas`` of the vendored spec by a
small interpreter of the JSON Schema keywords the spec uses, so a change of the
spec changes what is generated. On top of what the spec allows, the documents
get unknown keys, lose optional keys, and carry unknown ``status``/``model``
strings, as compatible gateways send. Every one must be read without error,
keeping its values; and whatever cannot be read raises
``APIResponseValidationError``, never a bare KeyError or TypeError.
"""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncvideos import (
    APIResponseValidationError,
    Character,
    DeletedVideo,
    Video,
    VideoError,
    VideoPage,
    _convert,
)
from asyncvideos._convert import structure

SPEC = Path(__file__).resolve().parent / "contract" / "videos.yaml"
SCHEMAS: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]
# The instants a datetime can hold, one day short of each end: ``format: unixtime``
# means a point in time, so a stamp outside them is not one (and raises, see below).
FIRST_INSTANT = int(datetime(1, 1, 2, tzinfo=timezone.utc).timestamp())
LAST_INSTANT = int(datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp())
TIMESTAMPS = ("created_at", "completed_at", "expires_at")

# As many examples as the profile says (tests/conftest.py).
quick = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def from_schema(schema: dict[str, Any], *, extra_keys: bool = True) -> st.SearchStrategy[Any]:
    """Documents ``schema`` allows (the keywords the spec uses), plus unknown keys."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(SCHEMAS[name], extra_keys=extra_keys)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(branch, extra_keys=extra_keys) for branch in schema[key]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        if schema.get("format") == "unixtime":
            return st.integers(FIRST_INSTANT, LAST_INSTANT)
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "string":
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=min(schema.get("maxLength", 12), low + 12))
    if kind == "array":
        return st.lists(from_schema(schema["items"], extra_keys=extra_keys), max_size=3)
    if kind == "object":
        return _objects(schema, extra_keys=extra_keys)
    raise AssertionError(f"the spec uses a schema this interpreter does not know: {schema}")


def _objects(schema: dict[str, Any], *, extra_keys: bool) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {name: from_schema(sub, extra_keys=extra_keys) for name, sub in properties.items()}
    document = st.fixed_dictionaries(
        {name: fields[name] for name in properties if name in required},
        optional={name: fields[name] for name in properties if name not in required},
    )
    if not extra_keys:
        return document
    unknown = st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda key: key not in properties),
        json_values,
        max_size=2,
    )
    return st.builds(lambda known, more: {**more, **known}, document, unknown)


def loosened(
    name: str, *, keep: tuple[str, ...] = ("id",), overrides: dict[str, Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Spec documents of ``name``, some keys replaced, and any keys but ``keep`` dropped."""
    schema = SCHEMAS[name]
    # Built once: a strategy made inside the draw would be validated on every draw.
    documents = from_schema(schema)
    replaced = {key: st.none() | strategy for key, strategy in (overrides or {}).items()}
    droppable = sorted(key for key in schema.get("properties", {}) if key not in keep)
    dropped = st.lists(st.sampled_from(droppable), unique=True)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        document = dict(draw(documents))
        for key, strategy in replaced.items():
            value = draw(strategy)
            if value is not None:
                document[key] = value
        for key in draw(dropped):
            document.pop(key, None)
        return document

    return build()


# Any status or model a gateway may send, beside the spec's.
VIDEO_OVERRIDES = {"status": st.text(max_size=20), "model": st.text(max_size=20)}
videos = loosened("VideoResource", overrides=VIDEO_OVERRIDES)


def _stamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    assert value.tzinfo is timezone.utc
    return value.timestamp()


def assert_video_read(video: Video, data: dict[str, Any]) -> None:
    assert video.raw is data
    assert video.id == data["id"]
    for name in ("model", "status", "progress", "prompt", "size", "seconds"):
        assert getattr(video, name) == data.get(name)
    assert video.remixed_from_video_id == data.get("remixed_from_video_id")
    assert video.object == (data.get("object") or "video")
    for name in TIMESTAMPS:
        assert _stamp(getattr(video, name)) == data.get(name)
    error = data.get("error")
    assert video.error == (None if error is None else VideoError(error["code"], error["message"]))


# -- what the spec allows is read, and read faithfully --------------------------------


@quick
@given(from_schema(SCHEMAS["VideoResource"], extra_keys=False))
def test_spec_videos_are_read(data: dict[str, Any]) -> None:
    assert_video_read(structure(data, Video), data)


@quick
@given(videos)
def test_loosened_videos_are_read(data: dict[str, Any]) -> None:
    assert_video_read(structure(data, Video), data)


@quick
@given(
    loosened(
        "VideoListResource",
        keep=("data",),
        overrides={"data": st.lists(videos, max_size=3)},
    )
)
def test_pages_are_read(data: dict[str, Any]) -> None:
    page = structure(data, VideoPage)
    assert len(page.data) == len(data["data"])
    for video, item in zip(page.data, data["data"], strict=True):
        assert_video_read(video, item)
    assert page.first_id == data.get("first_id")
    assert page.last_id == data.get("last_id")
    assert page.has_more is data.get("has_more", False)


@quick
@given(loosened("DeletedVideoResource"))
def test_deletions_are_read(data: dict[str, Any]) -> None:
    deleted = structure(data, DeletedVideo)
    assert deleted.id == data["id"]
    assert deleted.deleted is data.get("deleted", True)
    assert deleted.object == data.get("object", "video.deleted")


@quick
@given(loosened("VideoCharacterResource", keep=()))
def test_characters_are_read(data: dict[str, Any]) -> None:
    character = structure(data, Character)
    assert character.raw is data
    assert character.id == data.get("id")
    assert character.name == data.get("name")
    assert _stamp(character.created_at) == data.get("created_at")


# -- what cannot be read raises the typed error ---------------------------------------

not_objects = json_values.filter(lambda value: not isinstance(value, dict))
without_string_id = st.builds(
    lambda document, bad_id, drop: (
        {k: v for k, v in document.items() if k != "id"} if drop else {**document, "id": bad_id}
    ),
    st.one_of(videos, loosened("DeletedVideoResource")),
    json_values.filter(lambda value: not isinstance(value, str)),
    st.booleans(),
)


@quick
@given(not_objects)
def test_non_objects_raise_the_typed_error(data: Any) -> None:
    for cls in (Video, VideoPage, DeletedVideo, Character):
        with pytest.raises(APIResponseValidationError):
            structure(data, cls)


@quick
@given(without_string_id)
def test_objects_without_a_string_id_raise_the_typed_error(data: dict[str, Any]) -> None:
    for cls in (Video, DeletedVideo):
        with pytest.raises(APIResponseValidationError):
            structure(data, cls)


@quick
@given(
    videos,
    st.integers(min_value=0, max_value=3),
    st.one_of(not_objects, without_string_id),
)
def test_a_page_with_an_unreadable_item_raises_the_typed_error(
    good: dict[str, Any], index: int, bad: Any
) -> None:
    items = [good] * 3
    items.insert(index, bad)
    with pytest.raises(APIResponseValidationError):
        structure({"object": "list", "data": items, "has_more": False}, VideoPage)


@quick
@given(
    videos,
    st.sampled_from(TIMESTAMPS),
    st.one_of(
        st.integers(max_value=FIRST_INSTANT - 2 * 86_400),
        st.integers(min_value=LAST_INSTANT + 2 * 86_400),
    ),
)
def test_a_timestamp_no_datetime_can_hold_raises_the_typed_error(
    data: dict[str, Any], key: str, stamp: int
) -> None:
    with pytest.raises(APIResponseValidationError):
        structure({**data, key: stamp}, Video)


# -- the common shape's one-pass reader and the field-by-field reader agree ----------

VIDEO_KEYS = tuple(SCHEMAS["VideoResource"]["properties"])


def _read_both(data: dict[str, Any]) -> tuple[Video | Exception, Video | Exception]:
    results: list[Video | Exception] = []
    for read in (_convert.structure_video, _convert._read_video):
        try:
            results.append(read(data))
        except Exception as exc:
            results.append(exc)
    return results[0], results[1]


def _slots(video: Video) -> tuple[Any, ...]:
    """What a Video holds in its slots, under the descriptors that read them."""
    return tuple(
        getattr(Video.__dict__[field.name], "slot", Video.__dict__[field.name]).__get__(video)
        for field in attrs.fields(Video)
    )


def assert_same_reading(data: dict[str, Any]) -> None:
    one_pass, by_field = _read_both(data)
    if isinstance(by_field, Exception):
        assert type(one_pass) is type(by_field)
        assert str(one_pass) == str(by_field)
        return
    assert type(one_pass) is Video
    assert type(by_field) is Video
    assert _slots(one_pass) == _slots(by_field)
    assert one_pass.raw is by_field.raw is data
    assert one_pass == by_field
    assert hash(one_pass) == hash(by_field)
    assert repr(one_pass) == repr(by_field)
    assert pickle.loads(pickle.dumps(one_pass)) == by_field
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        one_pass.status = "tampered"  # type: ignore[misc]


@quick
@given(st.one_of(from_schema(SCHEMAS["VideoResource"], extra_keys=True), videos))
def test_both_video_readers_read_alike(data: dict[str, Any]) -> None:
    assert_same_reading(data)


@quick
@given(
    from_schema(SCHEMAS["VideoResource"], extra_keys=False),
    st.sampled_from(VIDEO_KEYS),
    json_values,
)
def test_both_video_readers_read_an_odd_value_alike(
    data: dict[str, Any], key: str, value: Any
) -> None:
    assert_same_reading({**data, key: value})


def test_a_job_as_openai_sends_it_is_read_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every field of the spec's job, most of them null.
    job = {
        **dict.fromkeys(VIDEO_KEYS),
        "id": "video_1",
        "object": "video",
        "status": "completed",
        "progress": 100,
        "created_at": 1_760_000_000,
        "seconds": "8",
    }
    expected = _convert._read_video(job)

    def not_this_way(value: object) -> Video:
        raise AssertionError(f"read field by field: {value!r}")

    monkeypatch.setattr(_convert, "_read_video", not_this_way)
    assert _convert.structure_video(job) == expected
    for odd in ({**job, "progress": "100"}, {**job, "error": "boom"}, {"id": "video_1"}):
        with pytest.raises(AssertionError, match="field by field"):
            _convert.structure_video(odd)
