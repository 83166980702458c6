"""Reading jobs tolerantly: new, missing and loosely typed fields never break parsing."""

from __future__ import annotations

import json
import pickle
import sys
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import attrs
import pytest

from asyncvideos import (
    APIResponseValidationError,
    Character,
    DeletedVideo,
    NotFoundError,
    Video,
    VideoError,
    VideoPage,
    _speedups,
)
from asyncvideos._convert import decode, structure

FULL: dict[str, Any] = {
    "id": "video_fb4e",
    "object": "video",
    "model": "sora-2",
    "status": "completed",
    "progress": 100,
    "created_at": 1_760_000_000,
    "completed_at": 1_760_000_060,
    "expires_at": None,
    "prompt": "A calico cat playing a piano on stage",
    "size": "720x1280",
    "seconds": "8",
    "remixed_from_video_id": None,
    "error": None,
}


class TestVideo:
    def test_full_object(self) -> None:
        """Every documented field is read; timestamps become aware UTC datetimes."""
        video = structure(FULL, Video)
        assert video.id == "video_fb4e"
        assert video.created_at == datetime(2025, 10, 9, 8, 53, 20, tzinfo=timezone.utc)
        assert video.completed_at is not None
        assert video.completed_at.tzinfo is timezone.utc
        assert video.expires_at is None
        assert (video.status, video.progress, video.seconds) == ("completed", 100, "8")
        assert video.is_completed
        assert video.is_finished
        assert not video.is_pending
        assert not video.is_failed

    def test_only_id_is_required(self) -> None:
        """A compatible provider may leave everything else out."""
        video = structure({"id": "v1"}, Video)
        assert video == Video(id="v1")
        assert video.status is None

    def test_unknown_fields_stay_in_raw(self) -> None:
        """Fields the model does not know are kept in ``raw``; raw is not in repr or eq."""
        data = {**FULL, "audio": True, "provider": {"name": "gateway"}}
        video = structure(data, Video)
        assert video.raw["audio"] is True
        assert video.raw["provider"] == {"name": "gateway"}
        assert "audio" not in repr(video)
        assert video == structure(FULL, Video)

    def test_unknown_status_and_model_are_kept(self) -> None:
        """New statuses and models are kept as they are, not rejected."""
        video = structure({"id": "v", "status": "cancelled", "model": "veo-9"}, Video)
        assert (video.status, video.model) == ("cancelled", "veo-9")
        assert video.is_finished  # not a waiting status, so waiters stop on it

    @pytest.mark.parametrize("status", ["queued", "in_progress", "pending", "processing"])
    def test_waiting_statuses(self, status: str) -> None:
        video = Video(id="v", status=status)
        assert video.is_pending
        assert not video.is_finished

    def test_loose_types_from_gateways(self) -> None:
        """Numbers as strings and strings as numbers are read sensibly."""
        video = structure(
            {
                "id": "v",
                "seconds": 8,
                "progress": 42.6,
                "created_at": "1760000000",
                "completed_at": "2025-10-09T08:53:20Z",
                "expires_at": 1_760_000_000.5,
            },
            Video,
        )
        assert video.seconds == "8"
        assert video.progress == 43
        assert video.created_at == datetime(2025, 10, 9, 8, 53, 20, tzinfo=timezone.utc)
        assert video.completed_at == video.created_at
        assert video.expires_at is not None

    def test_naive_iso_timestamp_is_utc(self) -> None:
        video = structure({"id": "v", "created_at": "2025-10-09T08:53:20"}, Video)
        assert video.created_at == datetime(2025, 10, 9, 8, 53, 20, tzinfo=timezone.utc)

    def test_fractional_seconds_kept_as_text(self) -> None:
        assert structure({"id": "v", "seconds": 2.5}, Video).seconds == "2.5"
        assert structure({"id": "v", "progress": "7"}, Video).progress == 7

    def test_error_object_and_bare_string(self) -> None:
        """``error`` is an object, or a bare message from a lax gateway."""
        failed = structure(
            {"id": "v", "status": "failed", "error": {"code": "moderation", "message": "no"}},
            Video,
        )
        assert failed.error == VideoError(code="moderation", message="no")
        assert failed.is_failed
        assert structure({"id": "v", "error": "boom"}, Video).error == VideoError(message="boom")
        assert structure(None, VideoError) is None

    @pytest.mark.parametrize(
        "data",
        [
            [],
            "video",
            None,
            {},
            {"id": 5},
            {"id": "v", "status": ["x"]},
            {"id": "v", "progress": "lots"},
            {"id": "v", "progress": float("nan")},
            {"id": "v", "created_at": True},
            {"id": "v", "created_at": "yesterday"},
            {"id": "v", "created_at": 10**20},
            {"id": "v", "error": 5},
        ],
    )
    def test_unreadable_is_a_typed_error(self, data: object) -> None:
        """What cannot be read raises APIResponseValidationError, never KeyError/TypeError."""
        with pytest.raises(APIResponseValidationError, match="Unexpected response shape"):
            structure(data, Video)

    @pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
    def test_failed_statuses(self, status: str) -> None:
        """Gateways end jobs as expired or cancelled: finished, failed, not completed."""
        video = structure({"id": "v", "status": status}, Video)
        assert (video.is_finished, video.is_failed, video.is_completed) == (True, True, False)

    @pytest.mark.parametrize("status", ["completed", "succeeded"])
    def test_completed_statuses(self, status: str) -> None:
        video = structure({"id": "v", "status": status}, Video)
        assert (video.is_finished, video.is_failed, video.is_completed) == (True, False, True)

    @pytest.mark.parametrize("status", ["archived", "", None])
    def test_unknown_statuses_are_neither(self, status: str | None) -> None:
        """An unknown status is kept as it is, finished but neither completed nor failed."""
        video = structure({"id": "v", "status": status}, Video)
        assert video.status == status
        assert (video.is_finished, video.is_failed, video.is_completed) == (True, False, False)

    def test_models_are_frozen_and_slotted(self) -> None:
        video = Video(id="v")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            video.status = "x"  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            video.raw = {}  # type: ignore[misc]
        assert not hasattr(video, "__dict__")

    def test_raw_is_what_was_given(self) -> None:
        """``raw`` is read through a descriptor (for jobs msgspec read, see
        test_models_speedups.py): any mapping given is kept as it is."""
        given = MappingProxyType({"x": 1})
        video = Video(id="v", raw=given)
        assert video.raw is given
        assert Video(id="v").raw == {}
        assert attrs.evolve(video, status="queued").raw is given
        assert attrs.asdict(video)["raw"] == {"x": 1}
        copied = pickle.loads(pickle.dumps(structure({"id": "v", "x": [1]}, Video)))
        assert copied.raw == {"id": "v", "x": [1]}


class TestPage:
    def test_page(self) -> None:
        page = structure(
            {
                "object": "list",
                "data": [FULL, {"id": "v2"}],
                "first_id": "video_fb4e",
                "last_id": "v2",
                "has_more": True,
            },
            VideoPage,
        )
        assert [v.id for v in page.data] == ["video_fb4e", "v2"]
        assert (page.first_id, page.last_id, page.has_more) == ("video_fb4e", "v2", True)

    def test_missing_cursors_and_has_more(self) -> None:
        """A provider that sends only ``data`` still gives a last page."""
        page = structure({"data": []}, VideoPage)
        assert page == VideoPage()

    @pytest.mark.parametrize(
        "data",
        [{"object": "list"}, {"data": {}}, {"data": [], "has_more": "yes"}, {"data": [1]}],
    )
    def test_bad_pages(self, data: object) -> None:
        with pytest.raises(APIResponseValidationError):
            structure(data, VideoPage)


class TestDeletedVideoAndCharacter:
    """DeletedVideo and Character, and the converter's datetime hook."""

    def test_deleted(self) -> None:
        assert structure(
            {"id": "v", "object": "video.deleted", "deleted": True}, DeletedVideo
        ) == DeletedVideo(id="v")
        with pytest.raises(APIResponseValidationError):
            structure({"deleted": True}, DeletedVideo)

    def test_character(self) -> None:
        char = structure({"id": "char_1", "name": "Mo", "created_at": 0, "x": 1}, Character)
        assert char.created_at == datetime(1970, 1, 1, tzinfo=timezone.utc)
        assert char.raw["x"] == 1
        assert structure({"id": None, "name": None}, Character).id is None

    def test_datetime_hook_on_the_converter(self) -> None:
        """The converter reads a bare timestamp as a UTC datetime."""
        assert structure(0, datetime) == datetime(1970, 1, 1, tzinfo=timezone.utc)


class TestToDict:
    def test_json_ready_with_iso_timestamps(self) -> None:
        """Every field, timestamps in ISO 8601 UTC, fields the model lacks kept from raw."""
        data = {**FULL, "usage": {"seconds": 8}, "expires_at": 1_760_086_400}
        result = structure(data, Video).to_dict()
        assert json.loads(json.dumps(result)) == result
        assert result == {
            **FULL,
            "usage": {"seconds": 8},
            "created_at": "2025-10-09T08:53:20Z",
            "completed_at": "2025-10-09T08:54:20Z",
            "expires_at": "2025-10-10T08:53:20Z",
        }
        assert list(result)[: len(FULL)] == list(FULL)  # the server's order

    def test_values_are_the_models(self) -> None:
        """Loose values come out as the model reads them; every known key is there."""
        data = {"id": "v", "seconds": 8, "progress": 42.6}
        data["created_at"] = "2025-10-09T10:53:20+02:00"
        result = structure(data, Video).to_dict()
        assert result["seconds"] == "8"
        assert result["progress"] == 43
        assert result["created_at"] == "2025-10-09T08:53:20Z"
        assert result["object"] == "video"
        assert result["prompt"] is None
        assert set(result) == {a.name for a in attrs.fields(Video)} - {"raw"}

    def test_error_keeps_what_the_server_added(self) -> None:
        data = {"id": "v", "error": {"code": "moderation", "message": "no", "param": "prompt"}}
        assert structure(data, Video).to_dict()["error"] == data["error"]
        lax = structure({"id": "v", "error": "boom"}, Video).to_dict()
        assert lax["error"] == {"code": None, "message": "boom"}

    def test_a_video_built_by_hand(self) -> None:
        """No raw: the model's fields; a timestamp in another zone is written in UTC."""
        moment = datetime(2025, 10, 9, 10, 53, 20, tzinfo=timezone(timedelta(hours=2)))
        video = Video(id="v", created_at=moment, error=VideoError(code="c"))
        result = video.to_dict()
        assert result["created_at"] == "2025-10-09T08:53:20Z"
        assert result["error"] == {"code": "c", "message": None}
        assert result["object"] == "video"

    def test_a_changed_video_says_what_changed(self) -> None:
        """``attrs.evolve`` keeps the old raw: the model's values win over it."""
        video = attrs.evolve(structure(FULL, Video), status="failed", error=None)
        assert video.to_dict()["status"] == "failed"


def stamp_slot(video: Video, name: str) -> Any:
    """What a timestamp's slot holds, without reading the field (which would convert it)."""
    return Video.__dict__[name].slot.__get__(video)


READERS = [False, pytest.param(True, id="speedups")] if _speedups.load() else [False]


class TestTimestampsOnFirstUse:
    """A read job keeps unix seconds; the datetime is made when the field is read."""

    @pytest.fixture(params=READERS, ids=lambda fast: "speedups" if fast else "tolerant")
    def read(self, request: pytest.FixtureRequest) -> Any:
        _speedups.use(request.param)
        yield lambda data: decode(json.dumps(data).encode(), Video)
        _speedups.use(True)

    def test_seconds_until_read_then_the_datetime_kept(self, read: Any) -> None:
        video = read(FULL)
        assert stamp_slot(video, "created_at") == 1_760_000_000
        assert stamp_slot(video, "expires_at") is None
        first = video.created_at
        assert first == datetime.fromtimestamp(1_760_000_000, timezone.utc)
        assert first.tzinfo is timezone.utc
        assert stamp_slot(video, "created_at") is first
        assert video.created_at is first  # made once
        assert video.completed_at == datetime.fromtimestamp(1_760_000_060, timezone.utc)

    def test_models_with_unread_timestamps_behave_as_read_ones(self, read: Any) -> None:
        eager = structure(FULL, Video)
        video = read(FULL)
        assert stamp_slot(video, "completed_at") == 1_760_000_060
        assert video == eager
        assert hash(video) == hash(eager)
        assert repr(video) == repr(eager)
        copied = pickle.loads(pickle.dumps(read(FULL)))
        assert copied == eager
        assert stamp_slot(copied, "created_at") == eager.created_at
        assert attrs.evolve(read(FULL), status="failed").created_at == eager.created_at
        assert attrs.asdict(read(FULL))["completed_at"] == eager.completed_at
        assert read(FULL).to_dict() == eager.to_dict()

    def test_the_ends_of_the_range_a_datetime_holds(self, read: Any) -> None:
        first, last = -62_135_596_800, 253_402_300_799
        video = read({"id": "v", "created_at": first, "expires_at": last})
        assert video.created_at == datetime(1, 1, 1, tzinfo=timezone.utc)
        assert video.expires_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
        for outside in (first - 1, last + 1):
            with pytest.raises(APIResponseValidationError, match="created_at"):
                read({"id": "v", "created_at": outside})  # refused when read, not when used

    def test_other_forms_are_converted_when_read(self, read: Any) -> None:
        video = read({"id": "v", "created_at": 1.5, "completed_at": "2025-10-09T08:53:20Z"})
        assert type(stamp_slot(video, "created_at")) is datetime
        assert type(stamp_slot(video, "completed_at")) is datetime
        assert video.completed_at == datetime(2025, 10, 9, 8, 53, 20, tzinfo=timezone.utc)

    def test_values_set_by_hand_read_back_as_given(self) -> None:
        moment = datetime(2025, 1, 1, tzinfo=timezone.utc)
        assert Video(id="v", created_at=moment).created_at is moment
        by_hand = Video(id="v", created_at=5, expires_at=True)  # type: ignore[arg-type]
        assert by_hand.created_at == 5
        assert type(by_hand.created_at) is int
        assert by_hand.expires_at is True
        assert pickle.loads(pickle.dumps(by_hand)).created_at == 5
        assert attrs.evolve(by_hand, status="x").created_at == 5
        assert Video.__dict__["created_at"].__get__(None, Video) is Video.__dict__["created_at"]


class TestDecode:
    """``decode(body, cls)``: bytes to a model, the same with or without msgspec."""

    def test_without_msgspec_there_is_no_fast_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec raises ImportError
        monkeypatch.setattr(_speedups, "_current", _speedups._UNSET)
        assert _speedups.load() is None
        assert _speedups.current() is None
        assert decode(json.dumps(FULL).encode(), Video) == structure(FULL, Video)
        page = {"data": [FULL], "has_more": False}
        assert decode(json.dumps(page).encode(), VideoPage) == structure(page, VideoPage)

    def test_errors_without_msgspec(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_speedups, "_current", None)
        with pytest.raises(APIResponseValidationError, match="Expected a JSON body"):
            decode(b"<html>", Video, headers={"content-type": "text/html"})
        with pytest.raises(APIResponseValidationError, match="Unexpected response shape"):
            decode(b'{"id": 5}', Video)
        with pytest.raises(NotFoundError):
            decode(b'{"error": {"message": "gone"}}', Video, status_code=404)
