"""Argument checks that run before any I/O; each error names the argument.

The one set of checks for constructor settings and per-call arguments alike.
A ``Video`` passed as an argument carries the server's id, not the caller's:
an unusable one is an ``APIResponseValidationError`` (``server_id``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

import aiohttp

from ._errors import APIResponseValidationError
from ._models import Video
from ._protocol import path_segment, resource_path

VARIANTS = ("video", "thumbnail", "spritesheet")
ORDERS = ("asc", "desc")
MAX_PROMPT = 32_000
MAX_RETRIES_LIMIT = 100
C = TypeVar("C")
_SIZE = re.compile(r"[1-9][0-9]{0,5}x[1-9][0-9]{0,5}")
# RFC 9110 token characters for a header name; a value may not hold CR, LF or NUL.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")
# Collections under /videos: as a job's id, /videos/characters/content would be
# the character route (the character "content"), not that job's content.
_NOT_JOB_IDS = frozenset({"characters"})


def video_id(value: object, name: str = "video") -> str:
    """The id of a job given as an id string or a ``Video``.

    A ``Video``'s id is the server's: one that cannot go into a URL path is an
    ``APIResponseValidationError`` (the server's fault), not a ``ValueError``.
    """
    if isinstance(value, Video):
        return server_id(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a video id (str) or a Video, got {type(value).__name__}")
    if value in _NOT_JOB_IDS:
        raise ValueError(f"{name} {value!r} names a collection under /videos, not a job")
    return value


def server_id(video: Video) -> str:
    """``video.id``, checked as every id that goes into a path is; it came from a server."""
    problem = "it names a collection under /videos" if video.id in _NOT_JOB_IDS else None
    try:
        path_segment(video.id, "id")
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    if problem is not None:
        raise APIResponseValidationError(
            f"The server gave a job an id that cannot be used in a URL path ({problem}): "
            f"{video.id[:100]!r}",
            body=dict(video.raw) or None,
        )
    return video.id


def video_path(value: object, name: str = "video", suffix: str = "") -> str:
    """``/videos/{id}{suffix}`` for a job, with the id encoded as one path segment."""
    return resource_path("videos", video_id(value, name), name, suffix)


def checked_video_id(value: object, name: str = "video") -> str:
    """A job's id, checked by the same rules as every id that goes into a path."""
    result = video_id(value, name)
    path_segment(result, name)
    return result


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
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form to send
        raise ValueError(f"{name} must be valid Unicode text (no lone surrogates)") from None
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


#: The clip lengths OpenAI's spec allows (tests/contract/videos.yaml) for its Sora
#: models. Checked only where ``model`` names one of them: behind a gateway, another
#: provider's model (Veo, Kling, Runway...) takes lengths of its own, and the server
#: is the one to say which.
CLIP_SECONDS = (4, 8, 12)
_SORA_MODEL = re.compile(r"sora(-|$)", re.IGNORECASE)


def seconds(value: object, model: object = None) -> str:
    """A clip length given as ``8`` or ``"8"``, sent as the string the API wants.

    For an OpenAI Sora ``model`` (``sora-2``, ``sora-2-pro``...), a length its spec
    does not allow is refused here rather than by the server, after a paid call's
    round trip; for any other model (or none) a positive whole number goes as given.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        number = int(value)
    elif type(value) is int and value > 0:
        number = value
    elif isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"seconds must be an int or a str of digits, got {type(value).__name__}")
    else:
        raise ValueError(f"seconds must be a positive whole number, got {value!r}")
    if isinstance(model, str) and _SORA_MODEL.match(model) and number not in CLIP_SECONDS:
        listed = ", ".join(str(n) for n in CLIP_SECONDS)
        raise ValueError(
            f"seconds must be one of {listed} for {model[:40]!r} (the lengths OpenAI's "
            f"spec allows its Sora models), got {value!r}"
        )
    return str(number)


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
    if not 0 < value < math.inf:  # also rejects NaN; None, not inf, means "no limit"
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value}")
    return float(value)


def max_retries(value: object, name: str = "max_retries") -> int:
    return integer(value, name, low=0, high=MAX_RETRIES_LIMIT)


def timeout(value: object, name: str = "timeout") -> aiohttp.ClientTimeout:
    """Turn a timeout setting into the per-attempt ``ClientTimeout``."""
    if value is None:
        return aiohttp.ClientTimeout(total=None, sock_connect=None)
    if isinstance(value, aiohttp.ClientTimeout):
        for field in ("total", "connect", "sock_read", "sock_connect"):
            limit = getattr(value, field)
            if limit is not None:
                positive_seconds(limit, f"{name}.{field}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be seconds (a number), an aiohttp.ClientTimeout or None, "
            f"got {type(value).__name__}"
        )
    seconds = positive_seconds(value, name)
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(5.0, seconds))


def str_mapping(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{name} must map str to str, got {key!r}: {type(item).__name__}")
    return dict(value)


def headers(value: object, name: str) -> dict[str, str]:
    """A str-to-str mapping that is safe to send as headers (no header injection)."""
    result = str_mapping(value, name)
    for key, item in result.items():
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"{name} has an invalid header name: {key!r}")
        if _HEADER_VALUE_FORBIDDEN.search(item):
            raise ValueError(f"{name}[{key!r}] must not contain CR, LF or NUL")
    return result


def optional_str(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    return value or None


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


def callback(value: C, name: str) -> C:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value
