"""Making text safe to print: server text is inert on a terminal, secrets are masked.

Everything the command line prints that came from a server (ids, statuses,
prompts, error messages) may hold escape sequences that retitle the window,
clear the screen, write the clipboard (OSC 52) or fake output. ``printable``
replaces each C0 and C1 control character, and the Unicode format characters
that reorder text on screen, by a visible ``\\xNN``/``\\uNNNN``, so nothing a
server sends can act on the terminal. Nothing here is ever read as rich markup:
the live displays build ``rich.text.Text`` from plain strings.

``json_line`` keeps JSON lines exact (the same values once parsed) while
writing the same characters as ``\\u`` escapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

# Besides C0, DEL and C1: the bidirectional controls and line/paragraph separators,
# which move text on screen without bytes that look like escapes ("Trojan Source").
_FORMAT = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# Lone surrogates: no terminal encoding can write them (the whole write would fail).
_SURROGATES = "\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT}{_SURROGATES}]")
# What a message may keep: newlines (one message may span lines) and tabs.
_UNSAFE_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_FORMAT}{_SURROGATES}]")
# Characters json.dumps(ensure_ascii=False) leaves raw that a terminal may act on.
_UNSAFE_IN_JSON = re.compile(f"[\x7f-\x9f{_FORMAT}{_SURROGATES}]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line with every control character shown as an escape, never acted on."""
    return _UNSAFE.sub(_shown, text)


def printable_lines(text: str) -> str:
    """As ``printable``, but newlines and tabs are kept (for messages and tracebacks)."""
    return _UNSAFE_IN_TEXT.sub(_shown, text)


def json_line(data: Mapping[str, Any]) -> str:
    """``data`` as one line of JSON, exact, with no raw character a terminal acts on."""
    text = json.dumps(data, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Redacted:
    """A text stream (stderr) that writes through to another: secrets masked, text inert.

    ``divert``, when set, receives the cleaned text instead of the stream (a live
    display prints it above its bars).
    """

    def __init__(self, stream: TextIO, secrets: Iterable[str | None] = ()) -> None:
        self._stream = stream
        self.divert: Callable[[str], None] | None = None
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def clean(self, text: str) -> str:
        """``text`` as it may be printed: secrets masked, control characters shown."""
        return printable_lines(self.redact(text))

    def write(self, text: str) -> int:
        text = self.clean(text)
        if self.divert is not None:
            self.divert(text)
            return len(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()
