"""The key in no text the library writes: credentials masked where server text enters.

A server, or a gateway that echoes what it was sent, may put the caller's key
into a response: a request-id header, an error message, a ``Content-Range``, a
field of a job. So every response's headers, and every body read whole as text
(JSON and error bodies), pass through the ``Masker`` of the request's
credentials as they arrive, in ``_http.py``, before anything else reads them:
no message, request id, log line, span, metric, ``on_retry`` detail, chained
cause, warning or returned model can then hold the raw key. Content bodies
(the bytes of a video) are never altered.

A key is found however the server spells it, and replaced by its masked form
(``sk-...xy``):

- as it is, in a header's value or name, or anywhere in a body (the whole
  body, after decompression, however it was split in transit);
- behind JSON escapes (``\\u0073k-...``, ``\\/``), which ``json.loads`` would
  turn back into the key: in a body that has an escape of one of the key's
  characters, those escapes are made plain first;
- in JSON sent as UTF-16 or UTF-32 (which ``json.loads`` also reads): such a
  body is read as UTF-8 when it holds a key.

Where no key is (every honest response) the body is returned as it came, and
the cost is a ``bytes.find`` per key and for a backslash (a regular-expression
scan only where there is one), and a substring test per header: a few
microseconds a response.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["NO_SECRETS", "Masker", "mask_secret", "masker"]

# One escape of a JSON string: a surrogate pair, a \uXXXX, or a short one (\n, \/,
# \\ ...). Matched left to right, so an escaped backslash is never mistaken for
# the start of the escape after it.
_ESCAPE = re.compile(
    rb"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|u([0-9a-fA-F]{4})|(.))",
    re.DOTALL,
)
_SHORT_ESCAPES = {
    b'"': '"',
    b"\\": "\\",
    b"/": "/",
    b"b": "\b",
    b"f": "\f",
    b"n": "\n",
    b"r": "\r",
    b"t": "\t",
}
_LETTER_OF = {char: letter for letter, char in _SHORT_ESCAPES.items()}


def mask_secret(secret: str) -> str:
    """Show enough of a key to recognise it, never enough to use it: ``sk-...xy``."""
    if len(secret) <= 12:
        return "***"
    return f"{secret[:3]}...{secret[-2:]}"


def _json_text(text: str) -> str:
    """``text`` as it stands inside a JSON string, escaped only where it must be."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _shown(secret: str) -> str:
    """The masked form, when it can stand in JSON as it is (else ``***``)."""
    shown = mask_secret(secret)
    return shown if _json_text(shown) == shown else "***"


def _hex_either_case(code: int) -> bytes:
    return b"".join(
        b"[" + digit.lower() + digit.upper() + b"]" if digit.isalpha() else digit
        for digit in (bytes([byte]) for byte in f"{code:04x}".encode())
    )


def _escape_hints(chars: Iterable[str]) -> re.Pattern[bytes]:
    """A pattern for a JSON escape of any of ``chars`` (a hint that one is hidden)."""
    forms = []
    for char in chars:
        code = ord(char)
        if code > 0xFFFF:  # a surrogate pair: its first half is enough of a hint
            code = 0xD800 + ((code - 0x10000) >> 10)
        forms.append(b"u" + _hex_either_case(code))
        letter = _LETTER_OF.get(char)
        if letter is not None:
            forms.append(re.escape(letter))
    return re.compile(rb"\\(?:" + b"|".join(forms) + rb")")


class Masker:
    """Masks a set of secrets (a request's credentials) in what a server sent.

    Made by ``masker()``, which caches one per set of secrets.
    """

    __slots__ = ("_chars", "_forms", "_hints", "_pairs", "secrets")

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret holding another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._pairs = tuple((secret, _shown(secret)) for secret in self.secrets)
        forms: dict[bytes, bytes] = {}
        for secret, shown in self._pairs:
            # As sent, and as JSON writes it (a quote or a backslash escaped).
            forms.setdefault(_utf8(secret), _utf8(shown))
            forms.setdefault(_utf8(_json_text(secret)), _utf8(shown))
        self._forms = tuple(forms.items())
        self._chars = frozenset("".join(self.secrets))
        self._hints = _escape_hints(sorted(self._chars)) if self.secrets else None

    def __repr__(self) -> str:
        return f"Masker({len(self.secrets)} secrets)"

    def text(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret, shown in self._pairs:
            if secret in text:
                text = text.replace(secret, shown)
        return text

    def headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """``headers`` with every secret masked in names and values: the same object
        when none holds one."""
        for secret in self.secrets:
            for name, value in headers.items():
                if secret in value or secret in name:
                    return CIMultiDictProxy(
                        CIMultiDict((self.text(n), self.text(v)) for n, v in headers.items())
                    )
        return headers

    def body(self, body: bytes) -> bytes:
        """``body`` with every secret masked, however JSON spelled it: the same
        object when none is there."""
        hints = self._hints
        if hints is None:
            return body
        # A JSON object as servers write it starts so; anything else may be UTF-16.
        text = body if body.startswith(b'{"') else _as_utf8(body)
        # Every escape starts with a backslash: most bodies have none to scan for.
        if text.find(b"\\") != -1 and hints.search(text) is not None:
            text = _ESCAPE.sub(self._plain, text)
        masked = self._replace(text)
        # A body transcoded or unescaped for nothing is handed on as it came.
        return body if masked is text else masked

    def _replace(self, data: bytes) -> bytes:
        for form, shown in self._forms:
            # find, not ``in``: ``bytes in bytes`` first tries the needle as an
            # int, and raises and clears a TypeError each time.
            if data.find(form) != -1:
                data = data.replace(form, shown)
        return data

    def _plain(self, match: re.Match[bytes]) -> bytes:
        """An escape of a character of a secret, written as JSON writes it plainly."""
        high, low, code, letter = match.groups()
        if letter is not None:
            char = _SHORT_ESCAPES.get(letter)
        elif code is not None:
            char = chr(int(code, 16))
        else:
            char = chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
        if char is None or char not in self._chars:
            return match.group()
        return _utf8(_json_text(char))


def _as_utf8(body: bytes) -> bytes:
    """A JSON body that ``json.loads`` would read as UTF-16 or UTF-32, as UTF-8
    (``body`` itself when it is not one, or cannot be decoded)."""
    encoding = json.detect_encoding(body)
    if encoding.startswith("utf-8"):
        return body
    try:
        return _utf8(body.decode(encoding, "surrogatepass"))
    except UnicodeDecodeError:
        return body  # not text json.loads can read either


NO_SECRETS = Masker(())


@functools.lru_cache(maxsize=64)
def masker(secrets: tuple[str, ...]) -> Masker:
    """The ``Masker`` for ``secrets`` (cached: a client asks for the same few)."""
    return Masker(secrets) if secrets else NO_SECRETS
