"""Live displays on stderr: a bar per job while waiting, a byte bar while downloading.

``rich`` is imported only here, and only when a display is drawn, so JSON and
piped runs never pay for it; without the ``cli`` extra there is simply no live
display (the results are printed all the same).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from .._models import Video

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

_FINISHED_STYLES = {"completed": "green", "failed": "red"}


def console(stream: TextIO, *, force: bool) -> Console | None:
    """A rich console on ``stream``, or None when rich is not installed."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream, force_terminal=force or None, highlight=False)


class Display:
    """A display that shows nothing; the base of the live ones."""

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def job(self, video: Video) -> None:
        """A job's status or progress changed."""

    def job_error(self, video_id: str, message: str) -> None:
        """Waiting on a job failed."""

    def bytes(self, done: int, total: int | None) -> None:
        """``done`` bytes of ``total`` (None: unknown) are written."""


class _Live(Display):
    """The shared part: one ``rich.progress.Progress`` shown while the block runs."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()


class _WaitDisplay(_Live):
    def __init__(self, progress: Progress, ids: list[str]) -> None:
        super().__init__(progress)
        self.tasks: dict[str, TaskID] = {
            video_id: progress.add_task(video_id, total=100, status="waiting") for video_id in ids
        }

    def job(self, video: Video) -> None:
        task = self.tasks.get(video.id)
        if task is None:
            return
        status = video.status or "unknown"
        style = _FINISHED_STYLES.get(status)
        shown = f"[{style}]{status}[/]" if style else status
        done = status == "completed" or (video.is_finished and video.progress is None)
        completed = 100 if done else (video.progress or 0)
        self.progress.update(task, completed=completed, status=shown)

    def job_error(self, video_id: str, message: str) -> None:
        task = self.tasks.get(video_id)
        if task is not None:
            self.progress.update(task, status=f"[red]{message}[/]")


class _ByteDisplay(_Live):
    def __init__(self, progress: Progress, label: str) -> None:
        super().__init__(progress)
        self.task = progress.add_task(label, total=None)

    def bytes(self, done: int, total: int | None) -> None:
        self.progress.update(self.task, completed=done, total=total)


def wait_display(out: Console | None, ids: list[str]) -> Display:
    """A bar, a percentage and the status for each job, or nothing without a console."""
    if out is None:
        return Display()
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    return _WaitDisplay(Progress(*columns, console=out, transient=False), ids)


def download_display(out: Console | None, label: str) -> Display:
    """Bytes done and total, rate and time left, or nothing without a console."""
    if out is None:
        return Display()
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    return _ByteDisplay(Progress(*columns, console=out), label)
