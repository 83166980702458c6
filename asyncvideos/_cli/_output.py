"""What the commands print on stdout: JSON lines, or a table that streams row by row.

JSON lines carry a job as the API sent it (``Video.raw``, so fields this
version does not know are kept), with ``created_at``, ``completed_at`` and
``expires_at`` rewritten as ISO 8601 UTC strings. Each line has an ``id``, so
the output of one command can be piped into another (``get -``).

The table is written by hand rather than with ``rich.table``: a table that
streams (``list --all`` prints its first page before fetching the last) must
fix its column widths on the first row, and plain text needs no extra install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from .._models import DeletedVideo, Video
from ._terminal import json_line, printable

if TYPE_CHECKING:
    from ..ledger._store import Entry

_TIMESTAMPS = ("created_at", "completed_at", "expires_at")
_STATUS_COLOURS = {"completed": "32", "failed": "31", "in_progress": "33", "queued": "36"}


def iso(moment: datetime | None) -> str | None:
    """``2025-01-02T03:04:05Z``, or None."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def video_json(video: Video) -> dict[str, Any]:
    """The job as a JSON object: the API's fields, timestamps in ISO 8601."""
    data: dict[str, Any] = dict(video.raw)
    if not data:  # a Video built by hand: the model's own fields
        data = attrs.asdict(video, filter=lambda a, _: a.name != "raw")
    data["id"] = video.id
    for name in _TIMESTAMPS:
        if name in data or getattr(video, name) is not None:
            data[name] = iso(getattr(video, name))
    return data


def readable_time(moment: datetime | None, *, year: bool = True) -> str:
    """Local time to the minute, the way a terminal user reads it."""
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M" if year else "%m-%d %H:%M")


# A job's table, widest first: the first whose fixed columns leave the prompt at least
# _PROMPT_ROOM characters on the terminal is used (so at 80 columns the id, status,
# length, creation time and a part of the prompt are shown, rather than a row cut to
# "…" after the size). Each column is (header, cell).
_LAYOUTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("ID", "id"),
        ("STATUS", "status"),
        ("PROGRESS", "progress"),
        ("MODEL", "model"),
        ("SIZE", "size"),
        ("SECONDS", "seconds"),
        ("CREATED", "created"),
        ("PROMPT", "prompt"),
    ),
    (
        ("ID", "id"),
        ("STATUS", "status"),
        ("PROGRESS", "progress"),
        ("SECONDS", "seconds"),
        ("CREATED", "created"),
        ("PROMPT", "prompt"),
    ),
    (
        ("ID", "id"),
        ("STATUS", "status"),
        ("SECS", "seconds"),
        ("CREATED", "created_short"),
        ("PROMPT", "prompt"),
    ),
)
_PROMPT_ROOM = 20
# So that a row whose job moved on ("queued", then "in_progress") stays aligned.
_MIN_WIDTHS = {"STATUS": len("in_progress")}


def _video_cells(video: Video) -> dict[str, str]:
    return {
        "id": video.id,
        "status": video.status or "",
        "progress": "" if video.progress is None else f"{video.progress}%",
        "model": video.model or "",
        "size": video.size or "",
        "seconds": video.seconds or "",
        "created": readable_time(video.created_at),
        "created_short": readable_time(video.created_at, year=False),
        "prompt": " ".join((video.prompt or "").splitlines()),
    }


def _fits(layout: tuple[tuple[str, str], ...], cells: dict[str, str], width: int) -> bool:
    fixed = sum(
        max(len(name), len(printable(cells[key])), _MIN_WIDTHS.get(name, 0)) + 2
        for name, key in layout[:-1]
    )
    return fixed + _PROMPT_ROOM <= width


@attrs.define
class _Columns:
    """A row layout fixed by the header and the first row."""

    names: tuple[str, ...]
    widths: list[int]

    def render(self, cells: tuple[str, ...], total: int | None) -> str:
        parts = [cell.ljust(width) for cell, width in zip(cells[:-1], self.widths, strict=True)]
        line = "  ".join([*parts, cells[-1]])
        if total is not None and len(line) > total:  # the last column gives way
            line = line[: max(total - 1, 0)] + "…"
        return line


class Output:
    """Prints records to ``stream``: JSON lines when ``as_json``, else a table.

    ``tty``: ``stream`` is a terminal, where a live display may be drawing (so
    output is held meanwhile, see ``hold``); default: ``terminal``.
    ``terminal``: the table is for a terminal, so rows are cut to its width
    and the status is coloured (unless ``NO_COLOR`` is set).
    """

    def __init__(
        self, stream: TextIO, *, as_json: bool, terminal: bool = False, tty: bool | None = None
    ) -> None:
        self.stream = stream
        self.as_json = as_json
        self.colour = terminal and "NO_COLOR" not in os.environ
        self._columns: _Columns | None = None
        self.tty = terminal if tty is None else tty
        self._width = shutil.get_terminal_size((120, 24)).columns if terminal else None
        self._held: list[str] | None = None
        self._layout: tuple[tuple[str, str], ...] | None = None

    def hold(self) -> None:
        """Keep what is printed from now on until ``release()`` (a live display is drawing)."""
        self._held = self._held or []

    def release(self) -> None:
        """Print what was held, and print directly again."""
        held, self._held = self._held, None
        if held:
            self._write("".join(held))

    def _write(self, text: str) -> None:
        if self._held is not None:
            self._held.append(text)
            return
        self.stream.write(text)
        self.stream.flush()

    def record(self, data: Mapping[str, Any]) -> None:
        """One JSON line."""
        self._write(json_line(data) + "\n")

    def _row(self, names: tuple[str, ...], cells: tuple[str, ...], status: int = -1) -> None:
        cells = tuple(printable(cell) for cell in cells)
        text = ""
        if self._columns is None or self._columns.names != names:
            widths = [
                max(len(n), len(c), _MIN_WIDTHS.get(n, 0))
                for n, c in zip(names[:-1], cells[:-1], strict=True)
            ]
            self._columns = _Columns(names, widths)
            text = self._columns.render(names, self._width) + "\n"
        line = self._columns.render(cells, self._width)
        if self.colour and status >= 0:
            # Colour only the status cell, after layout, so widths stay right.
            start = sum(w + 2 for w in self._columns.widths[:status])
            cell = cells[status]
            code = _STATUS_COLOURS.get(cell)
            if code and line[start : start + len(cell)] == cell:
                end = start + len(cell)
                line = f"{line[:start]}\x1b[{code}m{cell}\x1b[0m{line[end:]}"
        self._write(text + line + "\n")

    def video(self, video: Video) -> None:
        """One job."""
        if self.as_json:
            self.record(video_json(video))
            return
        cells = _video_cells(video)
        if self._layout is None:  # fixed by the first row, as the widths are
            width = self._width
            self._layout = next(
                (each for each in _LAYOUTS if width is None or _fits(each, cells, width)),
                _LAYOUTS[-1],
            )
        names = tuple(name for name, _ in self._layout)
        self._row(names, tuple(cells[key] for _, key in self._layout), status=1)

    def unfinished(self, video_id: str, last: Video | None, error: Mapping[str, str]) -> None:
        """A job whose wait did not end with it finished: its last state seen and, in
        JSON, what ended the wait as ``wait_error`` (a job never seen, such as a 404,
        has a JSON line but no table row); the error line itself is on stderr."""
        if not self.as_json:
            if last is not None:  # a row of empty cells would tell nothing
                self.video(last)
            return
        data: dict[str, Any] = {"id": video_id} if last is None else video_json(last)
        data["wait_error"] = dict(error)
        self.record(data)

    def deleted(self, deleted: DeletedVideo) -> None:
        """The answer to a deletion."""
        if self.as_json:
            self.record({"id": deleted.id, "object": deleted.object, "deleted": deleted.deleted})
            return
        self._row(("ID", "DELETED"), (deleted.id, "yes" if deleted.deleted else "no"))

    def downloaded(self, video_id: str, variant: str, path: str, size: int) -> None:
        """A file written by ``download``."""
        if self.as_json:
            self.record({"id": video_id, "variant": variant, "path": path, "bytes": size})
            return
        names = ("ID", "VARIANT", "BYTES", "PATH")
        self._row(names, (video_id, variant, str(size), path))

    def entry(self, entry: Entry) -> None:
        """One job of the ledger (``jobs``): its key, state and what is known of it."""
        if self.as_json:
            self.record(entry_json(entry))
            return
        cells = (
            entry.key,
            entry.state,
            entry.video_id or "",
            entry.status or "",
            readable_time(entry.created_at),
            entry.target or "",
            " ".join(entry.prompt.splitlines()),
        )
        names = ("KEY", "STATE", "ID", "STATUS", "CREATED", "FILE", "PROMPT")
        self._row(names, cells, status=1)


_ENTRY_TIMES = ("created_at", "updated_at", "expires_at", "downloaded_at", "lease_expires_at")


def entry_json(entry: Entry) -> dict[str, Any]:
    """A ledger entry as a JSON object, times in ISO 8601."""
    data = attrs.asdict(entry, recurse=False)
    for name in _ENTRY_TIMES:
        data[name] = iso(data[name])
    data["candidates"] = list(entry.candidates)
    data["request"] = dict(entry.request)
    return data
