"""The masker alone: every spelling of a key that ``json.loads`` or a reader would see.

Through HTTP, ``tests/test_key_at_ingress.py`` proves that no output channel holds
the key; these pin the masker's own rules, without a network: what it finds, what
it replaces the key with, and that it leaves alone every body that holds no key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from asyncvideos._masking import NO_SECRETS, Masker, mask_secret, masker

KEY = "sk-mask-CANARY-9Zx8Yw7Vu6Ts5Rq4"
SHOWN = mask_secret(KEY)


def parsed_strings(body: bytes) -> list[str]:
    """Every string ``json.loads`` reads from ``body`` (keys included)."""
    found: list[str] = []
    pending = [json.loads(body)]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            found.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return found


def unicode_escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04X}" for char in text)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"message": f"bad key {KEY}"}).encode(),
        json.dumps({"message": f"Bearer {KEY}"}, ensure_ascii=True).encode(),
        ('{"message": "' + unicode_escaped(KEY) + '"}').encode(),
        b'{"m": "\\u0073k-mask-CANARY-9Zx8Yw7Vu6Ts5Rq4"}',
        ('{"' + unicode_escaped(KEY[:5]) + KEY[5:] + '": 1}').encode(),  # as a key of an object
        json.dumps({"message": KEY}).encode("utf-16"),
        json.dumps({"message": KEY}).encode("utf-16-be"),
        json.dumps({"message": KEY}).encode("utf-32-le"),
        ("[" + json.dumps(KEY).replace("s", "\\u0073") + "]").encode("utf-16-le"),
    ],
    ids=[
        "plain",
        "ascii-only-json",
        "every-char-escaped",
        "first-char-escaped",
        "in-an-object-key",
        "utf-16",
        "utf-16-be",
        "utf-32-le",
        "utf-16-with-escapes",
    ],
)
def test_json_never_reads_back_the_key(body: bytes) -> None:
    masked = masker((KEY,)).body(body)
    assert KEY.encode() not in masked
    strings = parsed_strings(masked)
    assert not any(KEY in text for text in strings)
    assert any(SHOWN in text for text in strings)


def test_an_escaped_backslash_is_not_the_start_of_an_escape() -> None:
    """``"\\\\u0073k-..."`` is a backslash then ``u0073k-...``: not the key, and the
    body's meaning is unchanged (escapes are made plain only as pairs)."""
    body = ('{"a": "\\\\u0073k' + KEY[2:] + '", "b": "\\u0073' + KEY[1:] + '"}').encode()
    masked = masker((KEY,)).body(body)
    assert json.loads(masked) == {"a": "\\u0073k" + KEY[2:], "b": SHOWN}


def test_a_key_with_a_slash_a_quote_and_a_backslash() -> None:
    """Keys that JSON must escape, or that PHP escapes (``\\/``), are found in every form."""
    key = 'a"/cd\\ef-0123456789xyz'
    secrets = masker((key,))
    for body in (
        json.dumps({"m": key}).encode(),
        json.dumps({"m": key}).replace("/", "\\/").encode(),
        json.dumps({"m": key}).replace("d", "\\u0064").replace("/", "\\u002f").encode(),
        ('{"m": "' + unicode_escaped(key) + '"}').encode(),
    ):
        masked = secrets.body(body)
        assert json.loads(masked) == {"m": "***"}  # the short form would need escapes
    assert secrets.text(f"x {key} y") == "x *** y"


def test_an_astral_character_escaped_as_a_surrogate_pair() -> None:
    key = "sk-\U0001f511-secret-0123456789"
    body = ('{"m": "sk-\\ud83d\\udd11' + key[4:] + '"}').encode()
    masked = masker((key,)).body(body)
    assert json.loads(masked) == {"m": mask_secret(key)}


def test_bodies_without_the_key_are_handed_on_as_they_came() -> None:
    """The same object: unescaping or transcoding for nothing changes nothing."""
    secrets = masker((KEY,))
    for body in (
        b"",
        b'{"id": "video_1", "prompt": "a \\"cat\\"\\n\\u00e9"}',
        b'{"m": "\\u0073k-mask-not-the-key"}',  # hints at the key, does not hold it
        json.dumps({"m": "text"}).encode("utf-16"),
        b"\xff\xfe\x00\xd8",  # not decodable
        b"<html>502 Bad Gateway</html>",
    ):
        assert secrets.body(body) is body
    headers = CIMultiDictProxy(CIMultiDict({"x-request-id": "req_1"}))
    assert secrets.headers(headers) is headers
    assert NO_SECRETS.body(KEY.encode()) == KEY.encode()


def test_headers_are_masked_in_names_and_values() -> None:
    headers = CIMultiDictProxy(CIMultiDict([(KEY, "1"), ("X-Echo", f"Bearer {KEY}"), ("A", "b")]))
    masked = masker((KEY,)).headers(headers)
    assert list(masked.items()) == [(SHOWN, "1"), ("X-Echo", f"Bearer {SHOWN}"), ("A", "b")]
    assert masked["x-echo"] == f"Bearer {SHOWN}"  # still case-insensitive


def test_a_secret_holding_another_is_masked_whole() -> None:
    inner = "0123456789abcdef"
    outer = f"sk-{inner}-outer"
    assert masker((inner, outer)).text(outer) == mask_secret(outer)
    assert Masker([inner, outer, ""]).secrets == (outer, inner)


def test_maskers_are_cached_per_set_of_secrets() -> None:
    assert masker((KEY,)) is masker((KEY,))
    assert masker(()) is NO_SECRETS


def test_aiohttps_pure_python_parser_errors_are_masked_too() -> None:
    """Without aiohttp's C extensions (PyPy, AIOHTTP_NO_EXTENSIONS=1) its parser keeps
    the line it could not read in attributes and in bytes args: masked as well."""
    script = textwrap.dedent(
        f"""
        import asyncio, traceback
        from asyncvideos import AsyncVideos, AsyncVideosError
        KEY = {KEY!r}
        LINES = [
            b"HTTP/9" + KEY.encode() + b" 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}",
            b"HTTP/1.1 200 OK\\r\\n" + KEY.encode() + b" x: 1\\r\\n\\r\\n",
            b"HTTP/1.1 200 OK\\r\\nX-Echo\\x01" + KEY.encode() + b": 1\\r\\n\\r\\n",
        ]

        async def main():
            for raw in LINES:
                async def answer(reader, writer, raw=raw):
                    await reader.readuntil(b"\\r\\n\\r\\n")
                    writer.write(raw)
                    await writer.drain()
                    writer.close()
                server = await asyncio.start_server(answer, "127.0.0.1", 0)
                port = server.sockets[0].getsockname()[1]
                base = f"http://127.0.0.1:{{port}}/v1"
                async with AsyncVideos(api_key=KEY, base_url=base, max_retries=0) as videos:
                    try:
                        await videos.retrieve("x")
                    except AsyncVideosError as error:
                        texts = ["".join(traceback.format_exception(error))]
                        current = error
                        while current is not None:
                            texts += [repr(current.args), repr(vars(current))]
                            current = current.__cause__ or current.__context__
                        print("leak" if any(KEY[5:20] in t for t in texts) else "masked")
                server.close()
                await server.wait_closed()

        asyncio.run(main())
        """
    )
    environment = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environment
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["masked", "masked", "masked"]
