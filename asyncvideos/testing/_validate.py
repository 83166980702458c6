"""Request validation for the fake, with the real API's error messages and codes.

Every check raises :class:`ApiError` naming the offending ``param``, which the router
renders as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ._recording import RecordedRequest

__all__ = [
    "ApiError",
    "body_params",
    "check_limit",
    "check_prompt",
    "check_seconds",
    "create_fields",
    "video_reference",
]

SECONDS = ("4", "8", "12")
# The extension endpoint's description allows longer segments than the enum does.
EXTENSION_SECONDS = ("4", "8", "12", "16", "20")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PROMPT_MAX = 32000
#: A page holds 1 to 100 jobs. The published spec says ``minimum: 0``, but a page
#: of none with ``has_more`` and no cursor sends a naive loop back to the start.
LIMIT_RANGE = (1, 100)
#: The spec's ``maxLength`` of ``image_url`` (a data URL may be large).
IMAGE_URL_MAX = 20_971_520
# RFC 3986: a scheme, then no spaces, controls or characters a URI never holds raw.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20\x7f<>\"{}|\\^`]+")


class ApiError(Exception):
    """An error response: HTTP status and the OpenAI error object's fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "null" if value is None else "a string"


def _invalid_type(param: str, expected: str, value: object) -> ApiError:
    message = f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)}."
    return ApiError(400, message, param=param, code="invalid_type")


def body_params(req: RecordedRequest, allowed: set[str]) -> dict[str, Any]:
    """The parameters of a JSON or multipart body; unknown ones are rejected."""
    params: Any
    if req.form is not None:
        params = req.form
    elif req.json is not None:
        params = req.json
    elif not req.body.strip():
        params = {}
    else:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON.)",
        )
    if not isinstance(params, dict):
        raise _invalid_type("body", "an object", params)
    for name in params:
        if name not in allowed:
            raise ApiError(
                400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    return params


def check_limit(text: str) -> int:
    """The ``limit`` of a listing: an integer from 1 to 100, as the real API's range."""
    low, high = LIMIT_RANGE
    if not (text.isascii() and text.isdigit()):
        raise ApiError(
            400,
            f"Invalid 'limit': expected an integer, but got '{text[:100]}' instead.",
            param="limit",
            code="invalid_type",
        )
    limit = int(text)
    if limit < low:
        raise ApiError(
            400,
            f"Invalid 'limit': integer below minimum value. Expected a value >= {low}, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > high:
        raise ApiError(
            400,
            f"Invalid 'limit': integer above maximum value. Expected a value <= {high}, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    return limit


def is_uri(value: str) -> bool:
    """Whether ``value`` is an absolute URI (the spec's ``format: uri``); an http(s)
    URL needs a host."""
    if len(value) > IMAGE_URL_MAX or not _URI.fullmatch(value):
        return False
    scheme = value.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        return True  # data:, and any other scheme
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - read for its check: a port out of range raises
    except ValueError:  # a malformed port or IPv6 literal
        return False
    return bool(parts.hostname)


def check_prompt(params: Mapping[str, Any]) -> str:
    """The required ``prompt``: a string of 1 to 32000 characters."""
    prompt = params.get("prompt")
    if prompt is None:
        raise ApiError(
            400,
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if not isinstance(prompt, str):
        raise _invalid_type("prompt", "a string", prompt)
    if not prompt:
        raise ApiError(
            400,
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="string_below_min_length",
        )
    if len(prompt) > PROMPT_MAX:
        raise ApiError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{PROMPT_MAX}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def check_seconds(
    params: Mapping[str, Any], *, required: bool = False, extension: bool = False
) -> str:
    """``seconds`` as one of the allowed strings (default "4" when optional)."""
    seconds = params.get("seconds")
    if seconds is None:
        if required:
            raise ApiError(
                400,
                "Missing required parameter: 'seconds'.",
                param="seconds",
                code="missing_required_parameter",
            )
        return "4"
    return _one_of("seconds", seconds, EXTENSION_SECONDS if extension else SECONDS)


def _check_size(params: Mapping[str, Any]) -> str:
    return _one_of("size", params.get("size", "720x1280"), SIZES)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """A string from the spec's enum, or the API's 400 for the parameter."""
    if not isinstance(value, str):
        raise _invalid_type(name, "a string", value)
    if value not in allowed:
        raise ApiError(
            400,
            f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.",
            param=name,
            code="invalid_value",
        )
    return value


def _check_model(params: Mapping[str, Any]) -> str:
    model = params.get("model", "sora-2")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    if not model:
        raise ApiError(400, "Invalid 'model': empty string.", param="model", code="invalid_value")
    return model


def _check_input_reference(params: Mapping[str, Any]) -> None:
    ref = params.get("input_reference")
    if ref is None or (isinstance(ref, Mapping) and "filename" in ref and "size" in ref):
        return  # absent, or an uploaded file part
    if isinstance(ref, str):
        # A multipart text field may carry the reference object as JSON.
        try:
            ref = json.loads(ref)
        except ValueError:
            ref = None
    given = [k for k in ("image_url", "file_id") if isinstance(ref, Mapping) and k in ref]
    if (
        not isinstance(ref, Mapping)
        or len(given) != 1
        or set(ref) != set(given)
        or not isinstance(ref[given[0]], str)
        or not ref[given[0]]
    ):
        raise ApiError(
            400,
            "Invalid 'input_reference': provide a file upload, or an object with exactly "
            "one of 'image_url' or 'file_id'.",
            param="input_reference",
            code="invalid_value",
        )
    if given == ["image_url"] and not is_uri(ref["image_url"]):
        raise ApiError(
            400,
            "Invalid 'input_reference.image_url': Expected a valid URL, but got a value "
            "with an invalid format.",
            param="input_reference.image_url",
            code="invalid_value",
        )


def create_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate create parameters and return the new job's stored fields."""
    prompt = check_prompt(params)
    seconds = check_seconds(params)
    size = _check_size(params)
    model = _check_model(params)
    _check_input_reference(params)
    return {
        "object": "video",
        "model": model,
        "prompt": prompt,
        "size": size,
        "seconds": seconds,
        "remixed_from_video_id": None,
    }


def video_reference(params: Mapping[str, Any]) -> str | None:
    """The source video of an edit or extension: its id, or None for an uploaded file."""
    video = params.get("video")
    if isinstance(video, Mapping) and "filename" in video and "size" in video:
        return None  # an uploaded file part
    if isinstance(video, str):
        # A multipart text field holding the reference object as JSON.
        try:
            video = json.loads(video)
        except ValueError:
            video = None
    if video is None and "video" not in params:
        raise ApiError(
            400,
            "Missing required parameter: 'video'.",
            param="video",
            code="missing_required_parameter",
        )
    if (
        not isinstance(video, Mapping)
        or set(video) != {"id"}
        or not isinstance(video["id"], str)
        or not video["id"]
    ):
        raise ApiError(
            400,
            'Invalid \'video\': expected a file upload or an object like {"id": "video_123"}.',
            param="video",
            code="invalid_value",
        )
    return str(video["id"])
