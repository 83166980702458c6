"""Argument checks that run before any I/O; each error names the argument."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from ._models import Video
from ._protocol import path_segment

VARIANTS = ("video", "thumbnail", "spritesheet")
ORDERS = ("asc", "desc")
MAX_PROMPT = 32_000
_SIZE = re.compile(r"[1-9][0-9]{0,5}x[1-9][0-9]{0,5}")


def video_id(value: object, name: str = "video") -> str:
    """The id of a job given as an id string or a ``Video``."""
    if isinstance(value, Video):
        return value.id
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a video id (str) or a Video, got {type(value).__name__}")
    return value


def video_path(value: object, name: str = "video") -> str:
    """``/videos/{id}`` for a job, with the id encoded as one path segment."""
    return "/videos/" + path_segment(video_id(value, name), name)


def integer(value: object, name: str, *, low: int, high: int | None = None) -> int:
    if type(value) is not int:  # bool is an int to Python, not to this API
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def limit(value: object) -> int:
    return integer(value, "limit", low=1, high=100)


def choice(value: object, name: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {allowed}, got {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def optional_id(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def text(value: object, name: str, *, max_length: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{name} must be at most {max_length} characters, got {len(value)}")
    return value


def prompt(value: object) -> str:
    return text(value, "prompt", max_length=MAX_PROMPT)


def seconds(value: object) -> str:
    """A clip length given as ``8`` or ``"8"``; sent as the string the API wants."""
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return str(int(value))
    if type(value) is int and value > 0:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"seconds must be an int or a str of digits, got {type(value).__name__}")
    raise ValueError(f"seconds must be a positive whole number, got {value!r}")


def size(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"size must be a str such as '1280x720', got {type(value).__name__}")
    if not _SIZE.fullmatch(value):
        raise ValueError(f"size must be WIDTHxHEIGHT, such as '1280x720', got {value!r}")
    return value


def model(value: object) -> str:
    return text(value, "model", max_length=256)


def positive_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value}")
    return float(value)


def optional_seconds(value: object, name: str) -> float | None:
    return None if value is None else positive_seconds(value, name)


def statuses(value: object, name: str = "waiting_statuses") -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a collection of status strings")
    result = frozenset(value)
    if not result or not all(isinstance(item, str) and item for item in result):
        raise ValueError(f"{name} must hold at least one non-empty status string")
    return result


def boolean(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def callback(value: object, name: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
