"""Live displays on stderr: a bar per job while waiting, a byte bar while downloading.

``rich`` is imported only here, and only when a display is drawn, so JSON and
piped runs never pay for it; without the ``cli`` extra there is simply no live
display (the results are printed all the same).

Server text is never read as markup here: ids and statuses are shown through
``rich.text.Text`` built from ``printable`` strings, so ``[/]`` is shown as is
and ``[link=...]`` makes no link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from .._models import Video
from ._terminal import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

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

    drawing = False  # True for a live display: other output must go through ``print``

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def job(self, video: Video) -> None:
        """A job's status or progress changed."""

    def job_error(self, video_id: str, message: str) -> None:
        """Waiting on a job failed."""

    def bytes(self, done: int, total: int | None) -> None:
        """``done`` bytes of ``total`` (None: unknown) are written."""

    def print(self, text: str) -> None:
        """Print ``text`` (already made printable) above a live display."""


class _Live(Display):
    """The shared part: one ``rich.progress.Progress`` shown while the block runs."""

    drawing = True

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def print(self, text: str) -> None:
        from rich.text import Text

        # soft_wrap: the terminal wraps a long error line; rich would cut it in pieces.
        self.progress.console.print(Text(text.rstrip("\n")), soft_wrap=True)


def _text(text: str, style: str = "") -> Text:
    from rich.text import Text

    return Text(printable(text), style=style)


class _WaitDisplay(_Live):
    def __init__(self, progress: Progress, ids: list[str]) -> None:
        super().__init__(progress)
        self.tasks: dict[str, TaskID] = {
            video_id: progress.add_task(printable(video_id), total=100, status=_text("waiting"))
            for video_id in ids
        }

    def job(self, video: Video) -> None:
        task = self.tasks.get(video.id)
        if task is None:
            return
        status = video.status or "unknown"
        shown = _text(status, _FINISHED_STYLES.get(status, ""))
        done = status == "completed" or (video.is_finished and video.progress is None)
        completed = 100 if done else (video.progress or 0)
        self.progress.update(task, completed=completed, status=shown)

    def job_error(self, video_id: str, message: str) -> None:
        task = self.tasks.get(video_id)
        if task is not None:
            self.progress.update(task, status=_text(message, "red"))


class _ByteDisplay(_Live):
    def __init__(self, progress: Progress, label: str) -> None:
        super().__init__(progress)
        self.task = progress.add_task(printable(label), total=None)

    def bytes(self, done: int, total: int | None) -> None:
        self.progress.update(self.task, completed=done, total=total)


def wait_display(out: Console | None, ids: list[str]) -> Display:
    """A bar, a percentage and the status for each job, or nothing without a console."""
    if out is None:
        return Display()
    from rich.progress import BarColumn, ProgressColumn, TaskProgressColumn, TextColumn

    class StatusColumn(ProgressColumn):
        """The job's status: a ``Text`` made by ``_text``, never markup."""

        def render(self, task: Task) -> Text:
            status: Text = task.fields["status"]
            return status

    columns: list[Any] = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        StatusColumn(),
    ]
    return _WaitDisplay(_progress(columns, out), ids)


def download_display(out: Console | None, label: str) -> Display:
    """Bytes done and total, rate and time left, or nothing without a console."""
    if out is None:
        return Display()
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    return _ByteDisplay(_progress(columns, out), label)


def _progress(columns: list[Any], out: Console) -> Progress:
    from rich.progress import Progress

    # No redirection of sys.stdout/sys.stderr: the command line routes its own
    # output (see ``_commands.live``), and a redirected stream would outlive a crash.
    return Progress(*columns, console=out, redirect_stdout=False, redirect_stderr=False)
