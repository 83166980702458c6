"""The command line for a newcomer: option names that mean one thing, safe file names,
signals that clean up, batches that survive a bad line, hints for a wrong base URL.

Run in-process through ``main()`` against ``FakeVideosAPI`` on loopback (see
``test_cli``), and in a subprocess where a real signal is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_cli import (  # the CLI fixtures, shared rather than copied
    KEY,
    ThreadedFake,
    _interrupt_main_when,
    fake,  # noqa: F401
    lines,
    run,  # noqa: F401
)

from asyncvideos import Video, VideoError, VideoFailedError
from asyncvideos._cli import main
from asyncvideos._cli._commands import file_name
from asyncvideos.testing import FakeVideosAPI, Fault


def requests_of(fake: ThreadedFake) -> list[Any]:
    return fake.call(lambda: list(fake.api.requests))


class TestTimeouts:
    """``--timeout`` bounds each request, anywhere; ``--wait-timeout`` the whole wait."""

    def test_timeout_after_wait_is_per_request(self, run: Any, fake: ThreadedFake) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.inject(Fault(delay=0.5), method="GET"))
        code, _, err = run("wait", video_id, "--timeout", "0.05", "--max-retries", "0")
        assert code == 1
        assert "timed out" in err.lower()
        assert "did not finish" not in err

    @pytest.mark.parametrize("command", ["wait", "create", "remix", "download"])
    def test_wait_timeout_bounds_the_whole_wait(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, command: str
    ) -> None:
        (source,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
        slow = lines(run("create", "slow")[1])[0]["id"]
        argv = {
            "wait": ["wait", slow],
            "create": ["create", "a fox", "--wait"],
            "remix": ["remix", source, "in winter", "--wait"],
            "download": ["download", slow, "--wait", "-o", str(tmp_path / "a.mp4")],
        }[command]
        # The jobs take 10,000 s: that the command ended at all is the wait timeout's doing.
        code, _, err = run(*argv, "--wait-timeout", "0.2")
        assert code == 1
        assert "did not finish within 0.2 s" in err
        assert not (tmp_path / "a.mp4").exists()

    def test_wait_timeout_needs_wait(self, run: Any, fake: ThreadedFake) -> None:
        code, _, err = run("create", "a fox", "--wait-timeout", "5")
        assert code == 2
        assert "--wait-timeout needs --wait" in err
        assert requests_of(fake) == []

    def test_request_timeout_is_gone(self, run: Any) -> None:
        """One name per meaning: the old alias is a usage error, not a silent synonym."""
        assert run("list", "--request-timeout", "5")[0] == 2


class TestServeOptions:
    def test_help_lists_only_its_own_options(self, run: Any) -> None:
        code, out, _ = run("serve", "--help")
        assert code == 0
        for option in ("--host", "--port", "--jobs", "--speed", "--api-key"):
            assert option in out
        for option in ("--base-url", "--timeout", "--json", "--header", "--max-retries"):
            assert option not in out

    def test_key_is_given_one_way(self, run: Any) -> None:
        """``--key`` is an error naming ``--api-key``; client options are refused."""
        code, _, err = run("serve", "--key", "sk-x")
        assert code == 2
        assert "--api-key" in err
        for argv in (
            ["--base-url", "http://x/v1", "serve"],
            ["--api-key", "sk-x", "serve"],
            ["--json", "serve"],
            ["--header", "a:b", "serve"],
            ["--base-url", "http://x/v1", "demo"],
        ):
            code, _, err = run(*argv)
            assert code == 2, argv
            assert f"{argv[-1]} does not take {argv[0]}" in err
        assert run("demo", "--timeout", "5")[0] == 2

    def test_serves_with_the_key_given(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``serve --api-key KEY`` prints that key and the fake requires it."""
        mine = "sk-mine-0123456789abcdef"
        printed: list[str] = []
        answers: list[int] = []

        def ready() -> bool:
            printed.append(capsys.readouterr().out)
            text = "".join(printed)
            if "export OPENAI_BASE_URL=" not in text:
                return False
            env = dict(item.split("=", 1) for item in text.split("export ", 1)[1].split())
            for key in (env["OPENAI_API_KEY"], "sk-fake-0123456789abcdef"):
                request = urllib.request.Request(
                    env["OPENAI_BASE_URL"] + "/videos",
                    headers={"Authorization": f"Bearer {key}"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        answers.append(response.status)
                except urllib.error.HTTPError as error:
                    answers.append(error.code)
            return True

        watcher = _interrupt_main_when(ready)
        code = main(["serve", "--port", "0", "--jobs", "1", "--api-key", mine])
        watcher.join()
        assert code == 130
        assert f"OPENAI_API_KEY={mine}" in "".join(printed)
        assert answers == [200, 401]


class TestSpeed:
    async def test_speed_scales_durations_not_timestamps(self) -> None:
        """At speed 20 a 6 s job takes 0.3 s, and its timestamps are the real moments."""
        async with (
            FakeVideosAPI(speed=20.0, poll_after_ms=10) as api,
            api.client() as videos,
        ):
            before = time.time()
            video = await videos.create_and_wait("a fox")
            after = time.time()
        assert after - before < 3
        assert video.created_at is not None
        assert video.completed_at is not None
        assert before - 1 <= video.created_at.timestamp() <= after
        assert video.completed_at.timestamp() <= after
        assert (video.completed_at - video.created_at).total_seconds() <= 1

    async def test_the_clock_stays_on_time(self) -> None:
        async with FakeVideosAPI(speed=50.0) as api:
            started = time.time()
            await asyncio.sleep(0.2)  # 10 s at speed 50: the old clock ran that far ahead
            assert abs(api.clock.now() - time.time()) < 0.1
            (job,) = api.add_videos({})
            assert int(started) <= job["created_at"] <= time.time()


class TestDownloadPaths:
    @pytest.mark.parametrize(
        ("video_id", "expected"),
        [
            ("video_1", "video_1.mp4"),
            ("../../x", "_._.._x.mp4"),
            ("/abs/x", "_abs_x.mp4"),
            ("..", "_..mp4"),
            ("a\\b:c\x1b[2J", "a_b_c_[2J.mp4"),
            (".hidden", "_hidden.mp4"),
        ],
    )
    def test_file_name_is_plain(self, video_id: str, expected: str) -> None:
        name = file_name(video_id, ".mp4")
        assert name == expected
        assert Path(name).name == name

    @pytest.mark.parametrize("video_id", ["../../x", "/abs/x"])
    def test_a_hostile_id_stays_in_the_current_folder(
        self,
        run: Any,
        fake: ThreadedFake,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        video_id: str,
    ) -> None:
        here = tmp_path / "a" / "b"
        here.mkdir(parents=True)
        monkeypatch.chdir(here)
        fake.call(lambda: fake.api.add_videos({"id": video_id}))
        code, out, err = run("download", video_id)
        assert (code, err) == (0, "")
        (written,) = here.iterdir()
        assert written.name == file_name(video_id, ".mp4")
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == [written]
        assert lines(out)[0]["path"] == written.name

    def test_existing_file_names_overwrite_before_any_bar(
        self, run: Any, fake: ThreadedFake, tmp_path: Path
    ) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"old")
        code, out, err = run("download", video_id, "-o", str(target), "--progress")
        assert (code, out) == (2, "")
        assert (
            err == f"asyncvideos: error: {str(target)!r} exists; pass --overwrite to replace it\n"
        )
        assert requests_of(fake) == []
        assert target.read_bytes() == b"old"

    def test_a_file_that_appears_meanwhile_names_overwrite(
        self, run: Any, fake: ThreadedFake, tmp_path: Path
    ) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.inject(Fault(delay=0.5), path=r"/content$"))
        target = tmp_path / "clip.mp4"

        def create_it() -> None:
            while not any(r.path.endswith("/content") for r in requests_of(fake)):
                time.sleep(0.01)
            target.write_bytes(b"theirs")

        thread = threading.Thread(target=create_it, daemon=True)
        thread.start()
        code, _, err = run("download", video_id, "-o", str(target))
        thread.join(10)
        assert code == 2
        assert "appeared during the download; pass --overwrite" in err
        assert target.read_bytes() == b"theirs"
        assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def _default_hangups() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


class TestSignals:
    """SIGTERM and SIGHUP mid-download leave no partial file, as Ctrl-C does."""

    def start_download(self, fake: ThreadedFake, folder: Path, **popen: Any) -> Any:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fault = Fault(stall_after_bytes=100_000)
        fake.call(lambda: fake.api.inject(fault, path=r"/content$"))
        env = dict(os.environ, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=fake.api.base_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "asyncvideos", "download", video_id, "-o", "clip.mp4"],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        deadline = time.monotonic() + 30
        while not any(p.suffix == ".part" and p.stat().st_size for p in folder.iterdir()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.02)
        return process

    @pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
    def test_signal_cleans_up(
        self, fake: ThreadedFake, tmp_path: Path, name: str, code: int
    ) -> None:
        # The default action in the child, whatever this process inherited: under
        # `nohup` SIGHUP arrives ignored, and an ignored one rightly stays ignored.
        process = self.start_download(fake, tmp_path, preexec_fn=_default_hangups)
        process.send_signal(getattr(signal, name))
        out, err = process.communicate(timeout=30)
        assert process.returncode == code
        assert out == ""
        assert err == f"asyncvideos: {name}: stopped\n"
        assert list(tmp_path.iterdir()) == []

    def test_an_ignored_sighup_stays_ignored(self, fake: ThreadedFake, tmp_path: Path) -> None:
        """Under ``nohup`` a hangup must not stop the download."""

        def ignore_hangups() -> None:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

        process = self.start_download(fake, tmp_path, preexec_fn=ignore_hangups)
        process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        assert process.returncode == 143
        assert list(tmp_path.iterdir()) == []


class TestSignalsInProcess:
    """The same, in this process: the handlers are put back after the command."""

    def test_sigterm_mid_download(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        fake.call(lambda: fake.api.inject(Fault(stall_after_bytes=100_000), path=r"/content$"))
        before = signal.getsignal(signal.SIGTERM)
        main_thread = threading.main_thread().ident
        assert main_thread is not None

        def terminate_when_partial() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if any(p.suffix == ".part" and p.stat().st_size for p in tmp_path.iterdir()):
                    break
                time.sleep(0.01)
            signal.pthread_kill(main_thread, signal.SIGTERM)

        watcher = threading.Thread(target=terminate_when_partial, daemon=True)
        watcher.start()
        code, out, err = run("download", video_id, "-o", str(tmp_path / "a.mp4"))
        watcher.join()
        assert (code, out, err) == (143, "", "asyncvideos: SIGTERM: stopped\n")
        assert list(tmp_path.iterdir()) == []
        assert signal.getsignal(signal.SIGTERM) == before

    def test_ignored_sighup_is_left_alone(self, run: Any, fake: ThreadedFake) -> None:
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            assert run("list")[0] == 0
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        finally:
            signal.signal(signal.SIGHUP, previous)

    def test_cancelled_without_a_signal(
        self, run: Any, fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A command cancelled from within (a bug) still ends as one line, exit 1."""
        from asyncvideos._cli import _commands

        async def cancelled(ctx: Any, client: Any) -> int:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(1)
            return 0

        monkeypatch.setitem(_commands.COMMANDS, "list", cancelled)
        assert run("list") == (1, "", "asyncvideos: error: cancelled\n")


class TestStdinBatches:
    @pytest.mark.parametrize("command", ["get", "delete"])
    def test_a_bad_line_is_reported_and_the_rest_go_on(
        self, run: Any, fake: ThreadedFake, command: str
    ) -> None:
        ids = fake.call(lambda: fake.api.seed(2))
        code, out, err = run(command, "-", stdin=f"{ids[0]}\n..\n{ids[1]}\n")
        assert code == 1
        assert [job["id"] for job in lines(out)] == ids
        assert err == "asyncvideos: error: stdin line 2: ..: video must not be '..'\n"

    def test_wait_too(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(2))
        code, out, err = run("wait", "-", stdin=f"{ids[0]}\n..\n{ids[1]}\n")
        assert code == 1
        assert sorted(job["id"] for job in lines(out)) == sorted(ids)
        assert err == "asyncvideos: error: stdin line 2: ..: video must not be '..'\n"

    def test_a_bad_argument_too(self, run: Any, fake: ThreadedFake) -> None:
        ids = fake.call(lambda: fake.api.seed(1))
        code, out, err = run("get", ".", ids[0])
        assert code == 1
        assert [job["id"] for job in lines(out)] == ids
        assert err.startswith("asyncvideos: error: .: video must not be")


class TestDemo:
    def test_temporary_folder_removed_unless_keep(
        self, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        code, out, _ = run("demo", "--jobs", "1", "--speed", "20", "--json")
        assert code == 0
        assert lines(out)[0]["path"] is None
        assert list(tmp_path.iterdir()) == []
        code, out, _ = run("demo", "--jobs", "1", "--speed", "20")
        assert code == 0
        assert "--keep" in out
        assert list(tmp_path.iterdir()) == []
        code, out, _ = run("demo", "--jobs", "1", "--speed", "20", "--keep")
        assert code == 0
        (folder,) = tmp_path.iterdir()
        (video,) = folder.iterdir()
        assert f"The video is at {video}" in out


class TestBaseUrlHint:
    @pytest.mark.parametrize("argv", [["list"], ["create", "a fox"]])
    def test_missing_v1(self, run: Any, fake: ThreadedFake, argv: list[str]) -> None:
        root = fake.api.base_url.removesuffix("/v1")
        code, _, err = run("--base-url", root, *argv)
        assert code == 1
        (line,) = err.splitlines()
        assert "HTTP 404" in line
        assert line.endswith(f"; the base URL {root} may lack /v1")

    def test_no_hint_when_v1_is_there(self, run: Any, fake: ThreadedFake) -> None:
        fake.call(lambda: fake.api.inject(Fault(status=404)))
        code, _, err = run("list")
        assert code == 1
        assert "HTTP 404" in err
        assert "/v1" not in err

    def test_no_hint_after_a_first_page(self, run: Any) -> None:
        """A server at a root without /v1 that lists a page, then 404s: no hint."""

        async def videos(request: web.Request) -> web.Response:
            if "after" in request.query:
                return web.json_response({"error": {"message": "gone"}}, status=404)
            job = {"id": "video_1", "object": "video", "status": "completed"}
            page = {"data": [job], "has_more": True, "last_id": "video_1"}
            return web.json_response(page)

        with serving(videos) as root:
            code, out, err = run("--base-url", root, "--api-key", KEY, "list", "--all")
        assert code == 1
        assert [job["id"] for job in lines(out)] == ["video_1"]
        assert "HTTP 404" in err
        assert "may lack" not in err


@contextlib.contextmanager
def serving(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Iterator[str]:
    """``GET /videos`` answered by ``handler`` on loopback, in a thread; yields the root URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)

    app = web.Application()
    app.router.add_get("/videos", handler)
    runner = web.AppRunner(app, access_log=None)
    call(runner.setup())
    call(web.TCPSite(runner, "127.0.0.1", 0).start())
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        call(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class TestHeadersAndQuery:
    def test_sent_with_every_request(self, run: Any, fake: ThreadedFake, tmp_path: Path) -> None:
        (video_id,) = fake.call(lambda: fake.api.seed(1))
        argv = [
            "--header",
            "custom-llm-provider: hosted_vllm",
            "--query",
            "api-version=2025-04-01",
            "download",
            video_id,
            "--wait",
            "-o",
            str(tmp_path / "a.mp4"),
            "--header",
            "X-Trace:1",
            "--query",
            "b=x=y",
        ]
        assert run(*argv)[0] == 0
        sent = requests_of(fake)
        assert [r.path.rsplit("/", 1)[-1] for r in sent] == [video_id, "content"]
        for request in sent:
            assert request.header("custom-llm-provider") == "hosted_vllm"
            assert request.header("x-trace") == "1"
            assert request.query["api-version"] == "2025-04-01"
            assert request.query["b"] == "x=y"

    def test_credentials_are_masked_in_debug(self, run: Any, fake: ThreadedFake) -> None:
        secret, token = "gw-secret-value-123", "tok-value-456"
        code, _, err = run(
            "--header",
            f"X-Gateway-Key: {secret}",
            "--header",
            "custom-llm-provider: hosted_vllm",
            "--query",
            f"access_token={token}",
            "list",
            "--debug",
        )
        assert code == 0
        assert "header custom-llm-provider: hosted_vllm" in err
        assert "header X-Gateway-Key: ***" in err
        assert "query parameter access_token: ***" in err
        assert secret not in err
        assert token not in err
        (request,) = requests_of(fake)
        assert request.header("x-gateway-key") == secret

    def test_a_credential_echoed_in_an_error_is_masked(self, run: Any, fake: ThreadedFake) -> None:
        secret = "gw-secret-value-789"
        body = {"error": {"message": f"bad gateway key {secret}"}}
        fake.call(lambda: fake.api.inject(Fault(status=400, body=body)))
        code, _, err = run("--header", f"Authorization-Gateway: {secret}", "list")
        assert code == 1
        assert secret not in err
        assert "bad gateway key ***" in err

    @pytest.mark.parametrize(
        "argv", [["--header", "no-colon", "list"], ["--header", ":v", "list"], ["--query", "x"]]
    )
    def test_bad_forms_are_usage_errors(self, run: Any, argv: list[str]) -> None:
        code, _, err = run(*argv)
        assert code == 2
        assert "expected NAME" in err


class TestFailedJob:
    def test_the_library_message_is_used(self, run: Any, fake: ThreadedFake) -> None:
        error = {"code": "moderation", "message": "no"}
        fake.call(lambda: fake.api.set_outcome(None, "failed", error=error))
        code, out, err = run("create", "a fox", "--wait")
        assert code == 1
        video_id = lines(out)[0]["id"]
        video = Video(id=video_id, status="failed", error=VideoError(**error))
        assert err == f"asyncvideos: error: {VideoFailedError(video)}\n"


def test_json_lines_unchanged_for_plain_jobs(run: Any, fake: ThreadedFake) -> None:
    """Plain text comes out as before: the JSON line is ``json.dumps`` of the job."""
    ids = fake.call(lambda: fake.api.seed(1))
    out = run("get", ids[0])[1]
    (line,) = out.splitlines()
    assert line == json.dumps(json.loads(line), ensure_ascii=False)
