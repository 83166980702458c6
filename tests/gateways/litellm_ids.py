"""LiteLLM's video ids: ``video_`` + base64 of ``litellm:key:value;key:value;...``."""

from __future__ import annotations

import base64
import binascii

PREFIX = "video_"


def decode_litellm_id(video_id: str) -> dict[str, str]:
    """The fields LiteLLM packs into an id (provider, model, upstream id, deployment).

    Raises ``ValueError`` for an id that is not one of LiteLLM's.
    """
    if not video_id.startswith(PREFIX):
        raise ValueError(f"not a video id: {video_id!r}")
    payload = video_id[len(PREFIX) :]
    try:
        text = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError(f"not a LiteLLM id: {video_id!r}") from error
    if not text.startswith("litellm:"):
        raise ValueError(f"not a LiteLLM id: {video_id!r}")
    fields = {}
    for pair in text[len("litellm:") :].split(";"):
        key, _, value = pair.partition(":")
        fields[key] = value
    return fields


def upstream_id(video_id: str) -> str:
    """The id the upstream API gave the job that LiteLLM's ``video_id`` wraps."""
    return decode_litellm_id(video_id)["video_id"]
