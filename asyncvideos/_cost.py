"""What parsing a JSON body would build, weighed from its bytes before it is parsed.

``max_response_bytes`` bounds the bytes of a body, not what parsing makes of
them: 31 MiB of ``{},`` is ten million dicts, about 800 MiB. So a large 2xx
body is weighed before any parser sees it. The bytes that open something are
counted (``bytes.count``, C speed: a few milliseconds per MiB), each is
charged the most memory the stdlib ``json`` reader (and the models built from
it) can spend on what it opens, and the text is charged for the decoded forms
``json.loads`` makes of it. A body whose weight is over the budget raises
``ResponseTooLargeError`` unparsed, on either reader, so that both readers
always agree.

The charges are upper bounds for every shape of JSON (the hostile shapes of
``benchmarks/hostile_memory.py`` are measured against them); they overcharge
ordinary jobs, which weigh 13 to 16 times their bytes, so a page of ordinary
jobs reads up to 8-10 MiB at the default budget, a body of long strings up to
``max_response_bytes``. The msgspec reader builds less than the stdlib one for
the same body. A body shorter than ``budget // MOST_PER_BYTE`` (930 KiB by
default) cannot be over the budget and is not counted at all, so ordinary
responses pay nothing.
"""

from __future__ import annotations

import re

from ._config import DEFAULT_MAX_RESPONSE_BYTES
from ._errors import ResponseTooLargeError

#: The objects parsed from one body may take this many times the client's
#: ``max_response_bytes`` (at least the default's): 128 MiB by default.
PARSE_BUDGET_FACTOR = 4

#: The charge of a ``{`` or ``[``: a small dict or list, as ``json`` makes them.
OPENER = 128
#: The charge of a ``"``, half a string: a ``str`` object's header and a slot.
QUOTE = 64
#: The charge of a ``,`` or ``:``: a list slot or dict entry, and a number.
SEPARATOR = 32
#: The most that text can cost per byte (see ``_text_cost``).
_MOST_TEXT = 13
#: No byte is charged more than this, so a shorter body is never counted.
MOST_PER_BYTE = OPENER + _MOST_TEXT

_FOUR_BYTE_LEAD = re.compile(rb"[\xf0-\xf4]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]")


def parse_budget(max_response_bytes: int) -> int:
    """The budget of a client whose bodies are bounded by ``max_response_bytes``."""
    budget: int = PARSE_BUDGET_FACTOR * max(max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES)
    return budget


DEFAULT_PARSE_BUDGET = parse_budget(DEFAULT_MAX_RESPONSE_BYTES)


def weight(body: bytes) -> int:
    """An upper bound of the memory (bytes) that parsing ``body`` builds."""
    count = body.count
    return (
        OPENER * (count(b"{") + count(b"["))
        + QUOTE * count(b'"')
        + SEPARATOR * (count(b",") + count(b":"))
        + _text_cost(body) * len(body)
    )


def _text_cost(body: bytes) -> int:
    """What each byte of text may cost: once in the document ``json.loads``
    decodes (1, 2 or 4 bytes a character: CPython's widths), and twice in the
    strings made from it (a string with escapes is built in a buffer that is
    overallocated by a quarter and widened as wider characters arrive)."""
    if body.isascii():
        document = 1
        strings = 1 if b"\\u" not in body else 4 if _SURROGATE_ESCAPE.search(body) else 2
    else:
        document = 4 if _FOUR_BYTE_LEAD.search(body) else 2
        strings = 4 if _SURROGATE_ESCAPE.search(body) else document
    return document + 2 * strings + 1


def check_weight(body: bytes, budget: int) -> None:
    """Raise ``ResponseTooLargeError`` when parsing ``body`` could build more than
    ``budget`` bytes; a body too short to get there is not looked at."""
    if len(body) * MOST_PER_BYTE <= budget:
        return
    cost = weight(body)
    if cost > budget:
        mib = 1024 * 1024
        raise ResponseTooLargeError(
            f"The response body ({len(body)} bytes) could take up to {cost // mib} MiB "
            f"once parsed, over the client's parse budget of {budget // mib} MiB "
            f"({PARSE_BUDGET_FACTOR} x max_response_bytes); it was not parsed"
        )
