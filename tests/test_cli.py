"""The ``asyncvideos`` command line, run in-process through ``main()`` against a real
``FakeVideosAPI`` on loopback.

``main()`` runs its own event loop (``asyncio.run``), so these are plain sync tests
and the fake serves from a background thread with its own loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import runpy
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

import asyncvideos
from asyncvideos import DeletedVideo, Video
from asyncvideos._cli import _progress, main
from asyncvideos._cli._output import Output, video_json
from asyncvideos.testing import FakeVideosAPI, Fault

T = TypeVar("T")
KEY = "sk-cli-test-secret-0123456789"


class ThreadedFake:
    """A ``FakeVideosAPI`` serving from its own loop in a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api: FakeVideosAPI = self.call(lambda: FakeVideosAPI(**options))
        self._run(self.api.start())

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function()`` on the fake's loop (its state is not thread-safe)."""

        async def run() -> T:
            return function()

        result: T = self._run(run())
        return result

    def stop(self) -> None:
        self._run(self.api.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedFake]:
    """A fake with jobs that finish in ~0.06 s, and the environment pointing at it."""
    server = ThreadedFake(api_key=KEY, speed=100.0, poll_after_ms=10)
    for name in ("OPENAI_ORG_ID", "OPENAI_ORGANIZATION", "OPENAI_PROJECT_ID", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.api.base_url)
    yield server
    server.stop()


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """``run(*argv, stdin=None)``: main()'s exit code, stdout and stderr."""

    def invoke(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


class TestUsage:
    def test_help_exits_0(self, run: Any) -> None:
        """--help prints the commands and exits 0."""
        code, out, _ = run("--help")
        assert code == 0
        for command in ("get", "list", "create", "wait", "download", "serve", "demo"):
            assert command in out

    def test_usage_errors_exit_2(self, run: Any) -> None:
        """No command, an unknown option and a bad number are usage errors."""
        assert run()[0] == 2
        assert run("list", "--bogus")[0] == 2
        code, _, err = run("list", "--limit", "many")
        assert code == 2
        assert "invalid int value" in err
        assert run("wait", "x", "--timeout", "0")[0] == 2
        assert run("demo", "--jobs", "0")[0] == 2
        assert run("--timeout", "soon", "list")[0] == 2
        assert run("list", "--max-retries", "-1")[0] == 2
        assert run("list", "--max-retries", "two")[0] == 2

    def test_missing_key_exits_2(self, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a key anywhere, one line says how to give one."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        code, out, err = run("list")
        assert (code, out) == (2, "")
        assert "--api-key" in err
        assert "OPENAI_API_KEY" in err
        assert "Traceback" not in err

    def test_library_value_error_exits_2(self, run: Any, fake: ThreadedFake) -> None:
        """Arguments the library rejects before any request are usage errors."""
        code, _, err = run("list", "--limit", "1000")
        assert code == 2
        assert "limit" in err
        assert fake.call(lambda: len(fake.api.requests)) == 0

    def test_python_dash_m(self, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """``python -m asyncvideos`` runs main()."""
        monkeypatch.setattr(sys, "argv", ["asyncvideos", "--version"])
        with pytest.raises(SystemExit) as exit:
            runpy.run_path(
                str(Path(asyncvideos.__file__).with_name("__main__.py")), run_name="__main__"
            )
        assert exit.value.code == 0
        assert "asyncvideos" in capsys.readouterr().out


class TestList:
    def test_json_lines_by_default_when_piped(self, run: Any, fake: ThreadedFake) -> None:
        """Not a terminal: one JSON object per job, ISO 8601 timestamps, library defaults."""
        ids = fake.call(lambda: fake.api.seed(25))
        code, out, err = run("list")
        assert (code, err) == (0, "")
        jobs = lines(out)
        assert [job["id"] for job in jobs] == ids[:20]  # 20, oldest first
        created = jobs[0]["created_at"]
        assert created.endswith("Z")
        assert datetime.fromisoformat(created.replace("Z", "+00:00")).tzinfo is not None
        assert jobs[0]["status"] == "completed"

    def test_options(self, run: Any, fake: ThreadedFake) -> None:
        """--limit, --order and --after reach the API."""
        ids = fake.call(lambda: fake.api.seed(10))
        out = run("list", "--limit", "3", "--order", "desc")[1]
        assert [job["id"] for job in lines(out)] == ids[::-1][:3]
        out = run("list", "--after", ids[5], "--json")[1]
        assert [job["id"] for job in lines(out)] == ids[6:]

    def test_table(self, run: Any, fake: ThreadedFake) -> None:
        """--table: a header, one row per job, readable local times, no JSON."""
        fake.call(lambda: fake.api.add_videos({"id": "video_a", "created_at": 1_700_000_000}))
        code, out, _ = run("list", "--table")
        assert code == 0
        header, row = out.splitlines()
        assert header.split()[:3] == ["ID", "STATUS", "PROGRESS"]
        assert row.split()[:3] == ["video_a", "completed", "100%"]
        shown = datetime.fromtimestamp(1_700_000_000).strftime("%Y-%m-%d %H:%M")
        assert shown in row

    def test_all_streams_before_the_last_page(
        self, fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--all prints the first jobs while later pages are still to be fetched."""
        ids = fake.call(lambda: fake.api.seed(35))
        seen_at_first_write: list[int] = []

        class Recording(io.StringIO):
            def write(self, text: str) -> int:
                if not seen_at_first_write:
                    seen_at_first_write.append(fake.call(lambda: len(fake.api.requests)))
                return super().write(text)

        stream = Recording()
        monkeypatch.setattr(sys, "stdout", stream)
        assert main(["list", "--all", "--limit", "10"]) == 0
        assert [job["id"] for job in lines(stream.getvalue())] == ids
        assert seen_at_first_write == [1]
        assert fake.call(lambda: len(fake.api.requests)) == 4


class TestGet:
    def test_several_ids_in_order(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(3))
        code, out, _ = run("get", ids[2], ids[0])
        assert code == 0
        assert [job["id"] for job in lines(out)] == [ids[2], ids[0]]

    def test_pipeline_list_all_into_get(self, run: Any, fake: ThreadedFake) -> None:
        """``list --all --json | get -``: every job, in order."""
        ids = fake.call(lambda: fake.api.seed(40))
        listed = run("list", "--all", "--json")[1]
        code, out, _ = run("get", "-", stdin=listed)
        assert code == 0
        assert [job["id"] for job in lines(out)] == ids
        assert lines(out) == lines(listed)

    def test_stdin_plain_ids_and_blank_lines(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(2))
        code, out, _ = run("get", ids[1], "-", stdin=f"\n{ids[0]}\n  \n")
        assert code == 0
        assert [job["id"] for job in lines(out)] == [ids[1], ids[0]]

    def test_bad_stdin_is_a_usage_error(self, run: Any, fake: ThreadedFake) -> None:
        assert run("get", "-", stdin="{not json\n")[0] == 2
        code, _, err = run("get", "-", stdin='{"name": "x"}\n')
        assert code == 2
        assert "line 1" in err
        assert run("get", "-", "-", stdin="")[0] == 2

    def test_not_found_exits_1_after_the_others(self, run: Any, fake: ThreadedFake) -> None:
        """A 404 is one stderr line (message, status, request id); the rest still print."""
        ids = fake.call(lambda: fake.api.seed(2))
        code, out, err = run("get", ids[0], "video_missing", ids[1])
        assert code == 1
        assert [job["id"] for job in lines(out)] == [ids[0], ids[1]]
        (line,) = err.splitlines()
        assert line.startswith("asyncvideos: error: video_missing: ")
        assert "HTTP 404" in line
        assert "request id req_" in line
        assert "Traceback" not in err

    def test_many_ids_keep_their_order(self, run: Any, fake: ThreadedFake) -> None:
        """More ids than requests in flight still come out in the order given."""
        ids = fake.call(lambda: fake.api.seed(40))
        wanted = ["video_missing", *ids[::-1]]
        code, out, err = run("get", *wanted)
        assert code == 1
        assert [job["id"] for job in lines(out)] == wanted[1:]
        assert err.count("\n") == 1


class TestCreateRemix:
    def test_create_sends_the_options(self, run: Any, fake: ThreadedFake, tmp_path: Path) -> None:
        image = tmp_path / "first.png"
        image.write_bytes(b"\x89PNG fake image")
        code, out, _ = run(
            "create",
            "a fox",
            "--model",
            "sora-2-pro",
            "--seconds",
            "8",
            "--size",
            "1280x720",
            "--input-reference",
            str(image),
        )
        assert code == 0
        (job,) = lines(out)
        assert job["status"] == "queued"
        (request,) = fake.call(lambda: list(fake.api.requests))
        assert request.form["prompt"] == "a fox"
        assert request.form["model"] == "sora-2-pro"
        assert request.form["seconds"] == "8"
        assert request.form["size"] == "1280x720"
        assert request.form["input_reference"]["filename"] == "first.png"

    def test_create_wait(self, run: Any, fake: ThreadedFake) -> None:
        code, out, _ = run("create", "a fox", "--wait", "--table")
        assert code == 0
        assert "completed" in out.splitlines()[1]

    def test_failed_job_exits_1(self, run: Any, fake: ThreadedFake) -> None:
        fake.call(
            lambda: fake.api.set_outcome(
                None, "failed", error={"code": "moderation", "message": "no"}
            )
        )
        code, out, err = run("create", "a fox", "--wait")
        assert code == 1
        assert lines(out)[0]["status"] == "failed"
        assert "failed: moderation: no" in err

    def test_wait_timeout_exits_1(self, run: Any, fake: ThreadedFake) -> None:
        """The paid job's id is on stdout (its last state, and why the wait ended),
        whatever happens to the wait; stderr says how to wait for it again."""
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
        code, out, err = run("create", "a fox", "--wait", "--wait-timeout", "0.05")
        assert code == 1
        (line,) = lines(out)
        assert line["id"] in fake.call(lambda: list(fake.api.videos))
        assert line["status"] in ("queued", "in_progress")
        assert line["wait_error"]["type"] == "WaitTimeoutError"
        assert f"Video job {line['id']} did not finish within 0.05 s" in err
        assert err.endswith(f"wait for it again with: asyncvideos wait {line['id']}\n")

    def test_a_failing_poll_still_prints_the_job(self, run: Any, fake: ThreadedFake) -> None:
        """A wait that ends in an error (the polls fail) prints the created job too."""
        fake.call(lambda: fake.api.inject(Fault(status=500), method="GET", times=10))
        code, out, err = run("create", "a fox", "--wait", "--max-retries", "0")
        assert code == 1
        (line,) = lines(out)
        assert line["status"] == "queued"  # the state create() returned
        assert line["wait_error"]["type"] == "InternalServerError"
        assert "HTTP 500" in err
        assert err.endswith(f"wait for it again with: asyncvideos wait {line['id']}\n")

    def test_remix(self, run: Any, fake: ThreadedFake) -> None:
        (source,) = fake.call(lambda: fake.api.seed(1))
        code, out, _ = run("remix", source, "now in winter", "--wait")
        assert code == 0
        (job,) = lines(out)
        assert job["remixed_from_video_id"] == source
        assert job["status"] == "completed"


class TestDelete:
    def test_delete_ids_and_stdin(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(3))
        code, out, _ = run("delete", ids[0], "-", stdin=json.dumps({"id": ids[1]}) + "\n")
        assert code == 0
        assert lines(out) == [
            {"id": ids[0], "object": "video.deleted", "deleted": True},
            {"id": ids[1], "object": "video.deleted", "deleted": True},
        ]
        assert fake.call(lambda: sorted(fake.api.videos)) == [ids[2]]

    def test_table(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(1))
        out = run("delete", ids[0], "--table")[1]
        assert out.splitlines()[1].split() == [ids[0], "yes"]


class TestWait:
    def test_waits_on_all_together(self, run: Any, fake: ThreadedFake) -> None:
        ids = [run("create", f"job {n}")[1] for n in range(3)]
        ids = [lines(out)[0]["id"] for out in ids]
        code, out, _ = run("wait", *ids)
        assert code == 0
        finished = lines(out)
        assert sorted(job["id"] for job in finished) == sorted(ids)
        assert {job["status"] for job in finished} == {"completed"}

    def test_live_display(self, run: Any, fake: ThreadedFake) -> None:
        """--progress draws a bar per job on stderr (forced, since stderr is no terminal)."""
        video_id = lines(run("create", "a fox")[1])[0]["id"]
        code, _, err = run("wait", video_id, "--progress")
        assert code == 0
        assert video_id in err
        assert "completed" in err
        assert "100%" in err

    def test_live_display_shows_errors(self, run: Any, fake: ThreadedFake) -> None:
        code, _, err = run("wait", "video_gone", "--progress", "--max-retries", "0")
        assert code == 1
        assert "NotFoundError" in err

    def test_without_rich(
        self, run: Any, fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the cli extra there is no live display, and no ImportError."""
        monkeypatch.setitem(sys.modules, "rich.console", None)
        video_id = lines(run("create", "a fox")[1])[0]["id"]
        code, out, err = run("wait", video_id, "--progress")
        assert (code, err) == (0, "")
        assert lines(out)[0]["status"] == "completed"

    def test_errors_and_timeout(self, run: Any, fake: ThreadedFake) -> None:
        """A missing job and an unfinished one are each reported; the others still print."""
        (done,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
        slow = lines(run("create", "slow")[1])[0]["id"]
        code, out, err = run("wait", done, "video_gone", slow, "--wait-timeout", "0.2")
        assert code == 1
        printed = {job["id"]: job for job in lines(out)}
        assert list(printed) == [done, "video_gone", slow]  # every job, in completion order
        assert "wait_error" not in printed[done]
        assert printed["video_gone"]["wait_error"]["type"] == "NotFoundError"
        assert printed[slow]["status"] == "in_progress"  # its last state seen
        assert printed[slow]["wait_error"] == {
            "type": "WaitTimeoutError",
            "message": f"Video job {slow} did not finish within 0.2 s",
        }
        assert "video_gone" in err
        assert "HTTP 404" in err
        # The id once, where the message names it already; then how to wait again.
        assert f"error: Video job {slow} did not finish within 0.2 s\n" in err
        assert err.endswith(f"wait for it again with: asyncvideos wait {slow}\n")

    def test_ids_from_stdin(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(2))
        code, out, _ = run("wait", "-", stdin="\n".join(ids))
        assert code == 0
        assert sorted(job["id"] for job in lines(out)) == sorted(ids)


class TestDownload:
    def test_default_path_and_bytes(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        code, out, _ = run("download", video_id)
        assert code == 0
        expected = fake.call(lambda: fake.api.content_bytes(video_id))
        assert (tmp_path / f"{video_id}.mp4").read_bytes() == expected
        assert lines(out) == [
            {"id": video_id, "variant": "video", "path": f"{video_id}.mp4", "bytes": len(expected)}
        ]

    @pytest.mark.parametrize(
        ("variant", "suffix"), [("thumbnail", ".webp"), ("spritesheet", ".jpg")]
    )
    def test_variants(
        self,
        run: Any,
        fake: ThreadedFake,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        variant: str,
        suffix: str,
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        assert run("download", video_id, "--variant", variant)[0] == 0
        expected = fake.call(lambda: fake.api.content_bytes(video_id, variant))
        assert (tmp_path / f"{video_id}{suffix}").read_bytes() == expected

    def test_resumes_after_a_cut_with_a_progress_bar(
        self, run: Any, fake: ThreadedFake, tmp_path: Path
    ) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.inject(Fault(drop_after_bytes=100_000), path=r"/content$"))
        target = tmp_path / "out" / "clip.mp4"
        code, out, err = run("download", video_id, "-o", str(target), "--progress", "--table")
        assert code == 0
        assert target.read_bytes() == fake.call(lambda: fake.api.content_bytes(video_id))
        ranges = fake.call(lambda: [r.header("range") for r in fake.api.requests])
        assert ranges == [None, "bytes=100000-"]
        assert "kB" in err  # the byte counter of the bar
        assert str(target) in out

    def test_existing_file(self, run: Any, fake: ThreadedFake, tmp_path: Path) -> None:
        """An existing file is a usage error unless --overwrite."""
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"old")
        code, _, err = run("download", video_id, "-o", str(target))
        assert code == 2
        assert "overwrite" in err
        assert target.read_bytes() == b"old"
        assert run("download", video_id, "-o", str(target), "--overwrite")[0] == 0
        assert target.read_bytes() != b"old"

    def test_wait_then_download(self, run: Any, fake: ThreadedFake, tmp_path: Path) -> None:
        video_id = lines(run("create", "a fox")[1])[0]["id"]
        code, _, _ = run("download", video_id, "--wait", "-o", str(tmp_path / "a.mp4"))
        assert code == 0
        assert (tmp_path / "a.mp4").stat().st_size > 0

    def test_wait_for_a_failed_job(self, run: Any, fake: ThreadedFake, tmp_path: Path) -> None:
        fake.call(lambda: fake.api.set_outcome(None, "failed"))
        video_id = lines(run("create", "a fox")[1])[0]["id"]
        code, _, err = run("download", video_id, "--wait", "-o", str(tmp_path / "a.mp4"))
        assert code == 1
        assert "nothing to download" in err
        assert list(tmp_path.iterdir()) == []

    def test_unfinished_job_is_an_api_error(
        self, run: Any, fake: ThreadedFake, tmp_path: Path
    ) -> None:
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
        video_id = lines(run("create", "a fox")[1])[0]["id"]
        code, _, err = run("download", video_id, "-o", str(tmp_path / "a.mp4"))
        assert code == 1
        assert "HTTP 404" in err
        assert list(tmp_path.iterdir()) == []

    def test_ctrl_c_leaves_nothing_behind(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl-C mid-download: exit 130, no file and no partial file."""
        (video_id,) = fake.call(lambda: fake.api.seed(1))

        def interrupt(self: object, done: int, total: int | None) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(_progress.Display, "bytes", interrupt)
        code, out, err = run("download", video_id, "-o", str(tmp_path / "a.mp4"))
        assert code == 130
        assert out == ""
        assert err == "asyncvideos: interrupted\n"
        assert list(tmp_path.iterdir()) == []


def _interrupt_main_when(condition: Callable[[], bool]) -> threading.Thread:
    """Send a real SIGINT to the main thread once ``condition()`` holds (as Ctrl-C does)."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main_thread, signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


class TestInterrupt:
    def test_sigint_while_waiting_exits_130(self, run: Any, fake: ThreadedFake) -> None:
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
        video_id = lines(run("create", "a slow fox")[1])[0]["id"]
        polls = lambda: fake.call(lambda: len(fake.api.requests)) >= 3  # noqa: E731
        watcher = _interrupt_main_when(polls)
        code, out, err = run("wait", video_id)
        watcher.join()
        assert code == 130
        (line,) = lines(out)  # the job still gets its line, with its last state
        assert (line["id"], line["status"]) == (video_id, "in_progress")
        assert line["wait_error"]["type"] == "Interrupted"
        assert err.startswith("asyncvideos: interrupted\n")
        assert err.endswith(f"wait for it again with: asyncvideos wait {video_id}\n")

    def test_sigint_during_create_wait_says_the_job_keeps_running(
        self, run: Any, fake: ThreadedFake
    ) -> None:
        """Ctrl-C while ``create --wait`` waits: the new job's id is on stdout, and stderr
        says it keeps running and how to wait for it again."""
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
        polls = lambda: fake.call(lambda: len(fake.api.requests)) >= 3  # noqa: E731
        watcher = _interrupt_main_when(polls)
        code, out, err = run("create", "a slow fox", "--wait")
        watcher.join()
        assert code == 130
        (line,) = lines(out)
        (created,) = fake.call(lambda: list(fake.api.videos))
        assert line["id"] == created
        assert line["wait_error"]["type"] == "Interrupted"
        assert err == (
            "asyncvideos: interrupted\n"
            f"asyncvideos: {created} keeps running on the server; "
            f"wait for it again with: asyncvideos wait {created}\n"
        )


class TestGlobalOptions:
    @pytest.mark.parametrize("where", ["before", "after"])
    def test_before_or_after_the_command(
        self, run: Any, fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch, where: str
    ) -> None:
        """Key, URL, organization and project given either side of the command win over env."""
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-from-env")
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        options = [
            "--api-key",
            KEY,
            "--base-url",
            fake.api.base_url,
            "--organization",
            "org-1",
            "--project",
            "proj-1",
            "--timeout",
            "5",
            "--max-retries",
            "0",
            "--table",
        ]
        argv = [*options, "get", video_id] if where == "before" else ["get", video_id, *options]
        code, out, _ = run(*argv)
        assert code == 0
        assert out.startswith("ID ")
        (request,) = fake.call(lambda: list(fake.api.requests))
        assert request.header("openai-organization") == "org-1"
        assert request.header("openai-project") == "proj-1"

    def test_after_overrides_before(self, run: Any, fake: ThreadedFake) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.inject(Fault(status=500), times=1))
        assert run("--max-retries", "0", "get", video_id, "--max-retries", "1")[0] == 0
        fake.call(lambda: fake.api.inject(Fault(status=500), times=1))
        code, _, err = run("--max-retries", "1", "get", video_id, "--max-retries", "0")
        assert code == 1
        assert "HTTP 500" in err
        fake.call(lambda: fake.api.inject(Fault(status=500), times=3))
        code, _, err = run("get", video_id, "--max-retries", "2")
        assert code == 1
        assert "after 2 retries)" in err

    def test_connection_error_exits_1(self, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        code, _, err = run(
            "--base-url", f"http://127.0.0.1:{port}/v1", "list", "--max-retries", "0"
        )
        assert code == 1
        (line,) = err.splitlines()
        assert line.startswith("asyncvideos: error: ")


class TestSecrets:
    def test_key_never_printed(self, run: Any, fake: ThreadedFake) -> None:
        """Not in output, errors or --debug logs (retries, tracebacks), whatever happens."""
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.inject(Fault(status=500), times=1))
        code, out, err = run("get", video_id, "--debug", "--table")
        assert code == 0
        assert "Retrying GET" in err  # the debug log is on
        assert KEY not in out + err
        wrong = "sk-wrong-but-secret-9876543210"
        code, out, err = run("--api-key", wrong, "list", "--debug")
        assert code == 1
        assert "HTTP 401" in err
        assert "Traceback" in err  # --debug shows it, redacted
        assert wrong not in out + err
        assert KEY not in out + err

    def test_a_key_in_a_message_is_masked(
        self, run: Any, fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Even a server that echoes the key cannot get it printed."""
        fake.call(
            lambda: fake.api.inject(
                Fault(status=400, body={"error": {"message": f"bad key {KEY}"}})
            )
        )
        code, _, err = run("list")
        assert code == 1
        assert KEY not in err
        assert "bad key sk-...89" in err  # masked by the library before the CLI sees it


class TestServe:
    def test_serves_until_ctrl_c(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """It prints the URL and the fake's key, answers requests, and stops on Ctrl-C."""
        monkeypatch.setenv("OPENAI_API_KEY", KEY)  # never the one it prints
        printed: list[str] = []
        answers: list[Any] = []

        def ready() -> bool:
            printed.append(capsys.readouterr().out)
            text = "".join(printed)
            if "export OPENAI_BASE_URL=" not in text:
                return False
            exports = text.split("export ", 1)[1].split()
            env = dict(item.split("=", 1) for item in exports)
            request = urllib.request.Request(
                env["OPENAI_BASE_URL"] + "/videos?limit=100",
                headers={"Authorization": f"Bearer {env['OPENAI_API_KEY']}"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                answers.append(json.load(response))
            return True

        watcher = _interrupt_main_when(ready)
        code = main(["serve", "--port", "0", "--jobs", "7", "--speed", "10"])
        watcher.join()
        assert code == 130
        assert len(answers[0]["data"]) == 7
        assert KEY not in "".join(printed)

    def test_port_in_use_exits_1(self, run: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            code, _, err = run("serve", "--port", str(sock.getsockname()[1]))
        assert code == 1
        assert err.startswith("asyncvideos: error: ")


class TestDemo:
    def test_text(self, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """It completes, reports each step, and keeps the video where asked."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        code, out, err = run("demo", "--output", str(tmp_path), "--jobs", "3", "--speed", "20")
        assert (code, err) == (0, "")
        assert "Summary: 3 jobs created" in out
        assert "bytes match" in out
        (video,) = tmp_path.iterdir()
        assert f"The video is at {video}" in out

    def test_json_summary_shows_faults_handled(self, run: Any, tmp_path: Path) -> None:
        code, out, err = run(
            "demo",
            "--output",
            str(tmp_path),
            "--jobs",
            "2",
            "--speed",
            "20",
            "--json",
            "--progress",
            "--debug",
        )
        assert code == 0
        (summary,) = lines(out)
        assert summary["jobs_created"] == 2
        assert summary["jobs_listed"] == 302
        assert summary["retries"] >= 4
        assert summary["resumed_downloads"] == 1
        assert summary["bytes_downloaded"] == Path(summary["path"]).stat().st_size
        assert "completed" in err  # the live display


class TestOutput:
    def test_a_video_built_by_hand(self) -> None:
        """Without ``raw``, the model's own fields are used."""
        moment = datetime.fromisoformat("2025-01-02T03:04:05+00:00")
        data = video_json(Video(id="video_x", status="queued", created_at=moment))
        assert data["id"] == "video_x"
        assert data["created_at"] == "2025-01-02T03:04:05Z"
        assert data["completed_at"] is None
        assert "raw" not in data

    def test_colour_and_no_color(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("NO_COLOR", raising=False)
        stream = io.StringIO()
        Output(stream, as_json=False, terminal=True).video(Video(id="v", status="failed"))
        assert "\x1b[31mfailed\x1b[0m" in stream.getvalue()
        monkeypatch.setenv("NO_COLOR", "1")
        stream = io.StringIO()
        Output(stream, as_json=False, terminal=True).video(Video(id="v", status="failed"))
        assert "\x1b[" not in stream.getvalue()

    def test_long_rows_are_cut(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal the last column gives way; piped, rows are whole."""
        monkeypatch.setenv("COLUMNS", "60")
        monkeypatch.setenv("NO_COLOR", "1")
        stream = io.StringIO()
        Output(stream, as_json=False, terminal=True).video(
            Video(id="v", status="completed", prompt="x" * 200)
        )
        assert all(len(line) <= 60 for line in stream.getvalue().splitlines())
        assert stream.getvalue().splitlines()[1].endswith("…")

    def test_broken_pipe_is_quiet(
        self, fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reader that goes away (``| head``) ends the command quietly."""
        fake.call(lambda: fake.api.seed(3))

        class Closed(io.StringIO):
            def write(self, text: str) -> int:
                raise BrokenPipeError

        monkeypatch.setattr(sys, "stdout", Closed())
        assert main(["list"]) == 0
        ids = fake.call(lambda: fake.api.seed(30))
        assert main(["get", *ids]) == 0  # the requests still in flight are cancelled

    def test_unusual_rows(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unknown status is not coloured; missing timestamps stay missing in JSON."""
        monkeypatch.delenv("NO_COLOR", raising=False)
        stream = io.StringIO()
        out = Output(stream, as_json=False, terminal=True)
        out.video(Video(id="v", status="paused"))
        out.deleted(DeletedVideo(id="v"))
        assert "\x1b[" not in stream.getvalue()
        assert video_json(Video(id="v", raw={"id": "v"})) == {"id": "v"}

    def test_display_ignores_unknown_jobs(self) -> None:
        stream = io.StringIO()
        with _progress.wait_display(_progress.console(stream, force=True), ["a"]) as display:
            display.job(Video(id="b", status="completed"))
            display.job_error("b", "NotFoundError")
            display.job(Video(id="a", status="failed"))
        assert "NotFoundError" not in stream.getvalue()
        assert "failed" in stream.getvalue()
