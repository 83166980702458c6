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


def readable_time(moment: datetime | None) -> str:
    """Local time to the minute, the way a terminal user reads it."""
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M")


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
            widths = [max(len(n), len(c)) for n, c in zip(names[:-1], cells[:-1], strict=True)]
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
        progress = "" if video.progress is None else f"{video.progress}%"
        cells = (
            video.id,
            video.status or "",
            progress,
            video.model or "",
            video.size or "",
            video.seconds or "",
            readable_time(video.created_at),
            " ".join((video.prompt or "").splitlines()),
        )
        names = ("ID", "STATUS", "PROGRESS", "MODEL", "SIZE", "SECONDS", "CREATED", "PROMPT")
        self._row(names, cells, status=1)

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
