"""The command line on a real terminal, and against a server that sends hostile text.

Terminal tests run the CLI in a subprocess on a pseudo-terminal and render the raw
bytes with ``pyte`` (a terminal emulator), so they check what a person would see:
every row and error line on the final screen, the window title untouched.
The hostile server is an ``aiohttp.web`` app on loopback whose jobs carry escape
sequences and rich markup in every field.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyte
import pytest
from aiohttp import web
from test_cli import KEY, ThreadedFake, lines

from asyncvideos import Video
from asyncvideos._cli import main
from asyncvideos._cli._terminal import json_line, printable
from asyncvideos.testing import ManualClock

TITLE = "\x1b]0;pwned title\x07"
CLEAR = "\x1b[2J"
CLIPBOARD = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
CSI_C1 = "\x9b31m"
MARKUP_CLOSE = "[/]"
LINK = "[link=http://x]y[/link]"
HOSTILE = (TITLE, CLEAR, CLIPBOARD, CSI_C1, MARKUP_CLOSE, LINK)
# What must never reach a terminal raw: the sequences above, and rich's hyperlink (OSC 8).
RAW = ("\x1b]0;", "\x1b[2J", "\x1b]52;", "\x9b", "\x1b]8;", "\x07")


def hostile_job(video_id: str, status: str) -> dict[str, Any]:
    """A job whose every text field is an attack on the terminal."""
    return {
        "id": video_id,
        "object": "video",
        "status": status,
        "progress": 50 if status == MARKUP_CLOSE else 0,
        "created_at": 1_760_000_000,
        "model": f"sora{TITLE}",
        "size": f"720x1280{CLEAR}",
        "seconds": f"4{CSI_C1}",
        "prompt": f"a fox {CLIPBOARD} {LINK} {MARKUP_CLOSE}",
        "error": None
        if status != "failed"
        else {"code": f"bad{TITLE}", "message": f"no {CLEAR}{LINK}{MARKUP_CLOSE}{CSI_C1}"},
    }


class HostileServer:
    """An aiohttp app in a thread serving hostile jobs and errors.

    Every id is a job: ``video_failed`` has failed, any other has the status ``[/]``
    (an unknown status, so finished); ``video_gone`` is a 404 whose message,
    code and request id carry escape sequences and markup.
    """

    def __init__(self) -> None:
        self.polls: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        app = web.Application()
        app.router.add_get("/v1/videos", self.listing)
        app.router.add_get("/v1/videos/{id}", self.retrieve)
        self.runner = web.AppRunner(app, access_log=None)
        self._run(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self._run(site.start())
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def listing(self, request: web.Request) -> web.Response:
        job = hostile_job(f"video_{LINK}", "completed")
        return web.json_response({"object": "list", "data": [job], "has_more": False})

    async def retrieve(self, request: web.Request) -> web.Response:
        video_id = request.match_info["id"]
        if video_id == "video_gone":
            body = {"error": {"message": f"gone {TITLE}{CLIPBOARD}{LINK}", "code": MARKUP_CLOSE}}
            return web.json_response(body, status=404, headers={"x-request-id": f"req{CSI_C1}"})
        self.polls[video_id] = self.polls.get(video_id, 0) + 1
        status = "failed" if video_id == "video_failed" else MARKUP_CLOSE
        headers = {"openai-poll-after-ms": "10"}
        return web.json_response(hostile_job(video_id, status), headers=headers)

    def stop(self) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    server = HostileServer()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    yield server
    server.stop()


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str, str]]:
    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def assert_inert(text: str) -> None:
    for sequence in RAW:
        assert sequence not in text, f"{sequence!r} reached the terminal"


class TestPrintable:
    def test_controls_are_shown_not_acted_on(self) -> None:
        assert printable(TITLE) == "\\x1b]0;pwned title\\x07"
        assert printable(CSI_C1) == "\\x9b31m"
        assert printable("a\tb\nc\u202ed") == "a\\x09b\\x0ac\\u202ed"
        assert printable(LINK) == LINK  # markup is left to the display, which never parses it
        for text in HOSTILE:
            assert_inert(printable(text))

    def test_json_lines_stay_exact(self) -> None:
        """Every hostile value survives a JSON round trip; the line holds no raw control."""
        data = hostile_job("video_x", "failed")
        line = json_line(data)
        assert json.loads(line) == data
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)
        assert "\u2028" not in json_line({"p": "a\u2028b"})
        lone = {"p": "a\ud800b"}  # a lone surrogate, which no terminal encoding can write
        assert json.loads(json_line(lone)) == lone
        json_line(lone).encode()
        assert printable("a\ud800b") == "a\\ud800b"


class TestHostileServer:
    def test_table_cells_are_inert(self, run: Any, hostile: HostileServer) -> None:
        code, out, err = run("list", "--table")
        assert (code, err) == (0, "")
        assert_inert(out)
        assert "video_[link=http://x]y[/link]" in out
        assert printable(TITLE) in out

    def test_json_lines_are_exact(self, run: Any, hostile: HostileServer) -> None:
        """Piped JSON keeps the server's values, byte for byte once parsed."""
        code, out, _ = run("list", "--json")
        assert code == 0
        assert_inert(out)
        (job,) = lines(out)
        expected = hostile_job(f"video_{LINK}", "completed")
        assert job["model"] == expected["model"]
        assert job["prompt"] == expected["prompt"]
        assert job["seconds"] == expected["seconds"]

    def test_wait_with_a_markup_status_does_not_crash(
        self, run: Any, hostile: HostileServer
    ) -> None:
        """A status of ``[/]`` is shown as is; the failed job's error line is inert."""
        code, out, err = run("wait", "video_a", "video_failed", "--progress", "--table")
        assert code == 1
        assert "MarkupError" not in err
        assert "Traceback" not in err
        assert MARKUP_CLOSE in err  # the live display showed the status, literally
        assert_inert(out + err)
        (line,) = [line for line in err.splitlines() if "asyncvideos: error:" in line]
        assert printable(CLEAR) in line
        assert LINK in line

    def test_error_lines_are_inert(self, run: Any, hostile: HostileServer) -> None:
        """A 404's message, code and request id are printed inert, on one line."""
        code, _, err = run("get", "video_gone", "--max-retries", "0")
        assert code == 1
        assert_inert(err)
        (line,) = err.splitlines()
        assert printable(CLIPBOARD) in line
        assert "request id req\\x9b31m" in line


class TestNoTraceback:
    def test_an_unforeseen_exception_is_one_line(
        self, run: Any, hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Any exception ends as ``asyncvideos: error: ...``, exit 1, the key masked."""
        from asyncvideos._cli import _output

        def broken(self: object, video: object) -> None:
            raise RuntimeError(f"boom {KEY} {TITLE}")

        monkeypatch.setattr(_output.Output, "video", broken)
        code, _, err = run("list")
        assert code == 1
        assert err == "asyncvideos: error: RuntimeError: boom *** \\x1b]0;pwned title\\x07\n"
        assert_inert(err)
        code, _, err = run("list", "--debug")
        assert code == 1
        assert "Traceback" in err  # --debug shows it: inert, the key masked
        assert_inert(err)
        assert KEY not in err
        monkeypatch.setattr(_output.Output, "video", lambda *a: (_ for _ in ()).throw(KeyError()))
        code, _, err = run("list")
        assert (code, err) == (1, "asyncvideos: error: KeyError()\n")


class TestLiveRouting:
    def test_rows_wait_for_the_display_and_errors_go_through_it(self) -> None:
        """While a display draws, table rows for a terminal are held; error lines are
        printed above the bars, never into them."""
        import argparse

        from asyncvideos._cli import _progress
        from asyncvideos._cli._commands import Context
        from asyncvideos._cli._output import Output
        from asyncvideos._cli._terminal import Redacted

        stdout, stderr = io.StringIO(), io.StringIO()
        console = _progress.console(stderr, force=True)
        ctx = Context(
            args=argparse.Namespace(),
            out=Output(stdout, as_json=False, terminal=True),
            err=Redacted(stderr, [KEY]),
            console=console,
        )
        with ctx.live(_progress.wait_display(console, ["video_a"])) as display:
            ctx.out.video(Video(id="video_a", status="completed"))
            assert stdout.getvalue() == ""  # held while the bars draw
            ctx.report(f"video_b: gone {KEY} {TITLE}")
            display.job(Video(id="video_a", status="completed"))
        assert ctx.err.divert is None
        assert stdout.getvalue().splitlines()[1].startswith("video_a")
        (line,) = [line for line in stderr.getvalue().splitlines() if "video_b" in line]
        assert line.endswith("asyncvideos: error: video_b: gone *** \\x1b]0;pwned title\\x07")
        # Without a live display nothing is held.
        ctx.out.video(Video(id="video_c", status="queued"))
        assert stdout.getvalue().splitlines()[-1].startswith("video_c")


# -- on a pseudo-terminal -------------------------------------------------------------


def run_in_terminal(
    argv: list[str], env: dict[str, str], *, columns: int = 120, rows: int = 60
) -> tuple[int, Any]:
    """Run the CLI on a pty of ``columns`` x ``rows``; the exit code and the final screen."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    child_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    child_env.update(env, TERM="xterm-256color")
    child_env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncvideos", *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=child_env,
        close_fds=True,
    )
    os.close(slave)
    received = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                process.kill()
                pytest.fail(f"no output for 30 s; so far: {bytes(received)!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        code = process.wait(10)
    finally:
        os.close(master)
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(bytes(received))
    return code, screen


def screen_lines(screen: Any) -> list[str]:
    return [line.rstrip() for line in screen.display]


@pytest.fixture
def fake() -> Iterator[ThreadedFake]:
    """A fake on a manual clock: jobs move only while ``advancing`` runs."""
    server = ThreadedFake(api_key=KEY, clock=ManualClock(), queue_seconds=0, poll_after_ms=20)
    yield server
    server.stop()


@contextlib.contextmanager
def advancing(fake: ThreadedFake) -> Iterator[None]:
    """From the first request on, 10 s of job time every 0.1 s, until the block ends.

    So jobs run while the command watches them, however long it took to start.
    """
    clock = fake.api.clock
    assert isinstance(clock, ManualClock)
    done = threading.Event()

    def drive() -> None:
        while not done.is_set() and not fake.call(lambda: len(fake.api.requests)):
            time.sleep(0.01)
        while not done.wait(0.1):
            fake.call(lambda: clock.advance(10))

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(10)


class TestOnATerminal:
    def env(self, base_url: str) -> dict[str, str]:
        return {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base_url}

    def test_wait_shows_every_row_and_error(self, fake: ThreadedFake) -> None:
        """Several jobs and an unknown id: the whole table and the error line stay on screen."""

        def make() -> list[str]:
            ids = [job["id"] for job in fake.api.add_videos(*({"status": "queued"},) * 4)]
            for n, video_id in enumerate(ids):  # each finished at its own time
                fake.api.set_outcome(video_id, "completed", duration=10 + 20 * n)
            return ids

        ids = fake.call(make)
        argv = ["wait", *ids, "video_gone", "--max-retries", "0"]
        with advancing(fake):
            code, screen = run_in_terminal(argv, self.env(fake.api.base_url))
        shown = screen_lines(screen)
        text = "\n".join(shown)
        assert code == 1, text
        errors = [line for line in shown if line.startswith("asyncvideos: error: ")]
        assert len(errors) == 1, text
        assert "'video_gone' not found" in errors[0]  # the id once: the message names it
        assert "HTTP 404" in errors[0]
        (header,) = [n for n, line in enumerate(shown) if line.startswith("ID ")]
        rows = shown[header + 1 : header + 1 + len(ids)]
        assert sorted(row.split()[0] for row in rows) == sorted(ids), text
        assert all(row.split()[1] == "completed" for row in rows), text
        for video_id in ids:  # and each bar, finished
            (bar,) = [line for line in shown[:header] if line.startswith(video_id)]
            assert "100%" in bar
            assert bar.rstrip().endswith("completed")

    def test_json_lines_on_a_terminal_wait_too(self, fake: ThreadedFake) -> None:
        """``--json`` on a terminal: the lines come after the bars, whole."""

        def make() -> list[str]:
            ids = [job["id"] for job in fake.api.add_videos(*({"status": "queued"},) * 2)]
            for n, video_id in enumerate(ids):
                fake.api.set_outcome(video_id, "completed", duration=10 + 30 * n)
            return ids

        ids = fake.call(make)
        with advancing(fake):
            code, screen = run_in_terminal(
                ["wait", *ids, "--json"], self.env(fake.api.base_url), columns=400
            )
        shown = screen_lines(screen)
        assert code == 0, shown
        jobs = [json.loads(line) for line in shown if line.startswith("{")]
        assert sorted(job["id"] for job in jobs) == sorted(ids)

    def test_one_job_alone(self, fake: ThreadedFake) -> None:
        """The error line of a lone job starts its own line, not glued to the bar."""
        code, screen = run_in_terminal(
            ["wait", "video_gone", "--max-retries", "0"], self.env(fake.api.base_url)
        )
        shown = screen_lines(screen)
        assert code == 1
        assert any(
            line.startswith("asyncvideos: error: Video with id 'video_gone'") for line in shown
        ), shown
        assert not any("%asyncvideos" in line.replace(" ", "") for line in shown), shown

    def test_create_wait_table_after_the_bar(self, fake: ThreadedFake) -> None:
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=30))
        with advancing(fake):
            code, screen = run_in_terminal(
                ["create", "a fox", "--wait"], self.env(fake.api.base_url)
            )
        shown = screen_lines(screen)
        assert code == 0, shown
        (header,) = [n for n, line in enumerate(shown) if line.startswith("ID ")]
        assert shown[header + 1].split()[1] == "completed", shown

    def test_hostile_text_leaves_the_title_and_screen_alone(self, hostile: HostileServer) -> None:
        """Escape sequences in every field: the window keeps its title, nothing is erased."""
        env = self.env(hostile.base_url)
        code, screen = run_in_terminal(["list"], env)
        assert code == 0
        assert screen.title == ""
        shown = "\n".join(screen_lines(screen))
        assert shown.startswith("ID ")
        assert "[link=http://x]y[/link]" in shown
        argv = ["wait", "video_a", "video_failed", "video_gone"]
        code, screen = run_in_terminal(argv, env, columns=200)
        assert code == 1
        assert screen.title == ""
        shown = "\n".join(screen_lines(screen))
        assert "video_gone: gone \\x1b]0;pwned title\\x07" in shown
        assert "video_failed failed: bad\\x1b]0;pwned title\\x07" in shown
        assert "\nvideo_a  [/]  " in shown  # the table row, with the status as sent
