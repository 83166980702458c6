"""The command line's webhook parts: ``webhooks listen`` and ``serve --webhook-url``.

``main()`` runs its own event loop and serves until Ctrl-C, so each test runs it
in the main thread while a watcher thread talks to it over real HTTP on loopback
(``urllib``) and then sends a real SIGINT. Signatures are computed here with
``hmac`` directly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from aiohttp import web

from asyncvideos._cli import main

KEY = b"cli-webhook-test-key-32-bytes-ok"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def signed(body: bytes, *, key: bytes = KEY, webhook_id: str = "wh_cli") -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(key, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def interrupt_when(done: Callable[[], bool]) -> threading.Thread:
    """A real SIGINT to the main thread once ``done()`` holds (or after 10 s)."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if done():
                    break
            except Exception:  # a failed step still ends the run
                break
            time.sleep(0.01)
        signal.pthread_kill(main_thread, signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


EVENT = json.dumps(
    {
        "id": "evt_cli_1",
        "object": "event",
        "created_at": 1760000000,
        "type": "video.completed",
        "data": {"id": "video_\x1b[31mred"},
    }
).encode()


class TestListen:
    def run_listen(
        self, capsys: pytest.CaptureFixture[str], *options: str
    ) -> tuple[int, str, str, list[tuple[int, str]]]:
        out: list[str] = []
        err: list[str] = []
        answers: list[tuple[int, str]] = []

        def step() -> bool:
            captured = capsys.readouterr()
            out.append(captured.out)
            err.append(captured.err)
            text = "".join(err)
            if "Listening" not in text:
                return False
            url = text.split(" on ", 1)[1].split()[0] + "any/path"
            answers.append(post(url, EVENT, signed(EVENT)))
            answers.append(post(url, EVENT, signed(EVENT, key=b"another key")))
            answers.append(post(url, b"{}", {}))
            big = b"x" * 300_000
            answers.append(post(url, big, signed(big)))
            second = EVENT.replace(b"evt_cli_1", b"evt_cli_2")
            answers.append(post(url, second, signed(second)))
            return True

        watcher = interrupt_when(step)
        code = main(["webhooks", "listen", "--port", "0", *options])
        watcher.join()
        captured = capsys.readouterr()
        return code, "".join(out) + captured.out, "".join(err) + captured.err, answers

    def test_prints_verified_events_and_rejects_the_rest(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err, answers = self.run_listen(capsys, "--secret", SECRET)
        assert code == 130
        assert answers == [
            (200, "ok\n"),
            (400, "webhook-signature does not match the body\n"),
            (400, "missing webhook-id header\n"),
            (400, "the body is too large\n"),
            (200, "ok\n"),
        ]
        first, second = (json.loads(line) for line in out.splitlines())
        assert (first["id"], second["id"]) == ("evt_cli_1", "evt_cli_2")
        assert first["created_at"] == "2025-10-09T08:53:20Z"
        rejections = [line for line in err.splitlines() if "rejected" in line]
        assert rejections == [
            "asyncvideos: rejected webhook from 127.0.0.1: "
            "webhook-signature does not match the body",
            "asyncvideos: rejected webhook from 127.0.0.1: missing webhook-id header",
            "asyncvideos: rejected webhook from 127.0.0.1: the body is too large",
        ]
        assert SECRET not in out + err
        assert SECRET[6:] not in out + err

    def test_a_table_with_control_characters_neutralised(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", SECRET)
        code, out, _, _ = self.run_listen(capsys, "--table")
        assert code == 130
        header, row, _ = out.splitlines()
        assert header.split() == ["CREATED", "TYPE", "VIDEO", "EVENT"]
        assert "\x1b" not in row
        assert "video.completed" in row
        assert "video_?[31mred" in row

    def test_no_secret_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
        assert main(["webhooks", "listen", "--port", "0"]) == 2
        assert "no webhook secret" in capsys.readouterr().err

    def test_a_secret_without_the_prefix_is_refused_unshown(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["webhooks", "listen", "--port", "0", "--secret", SECRET[6:]]) == 2
        err = capsys.readouterr().err
        assert "whsec_" in err
        assert SECRET[6:] not in err

    @pytest.mark.parametrize(
        "argv",
        [
            ["webhooks"],
            ["webhooks", "listen", "--port", "70000"],
            ["webhooks", "listen", "--port", "http"],
            ["--api-key", "sk-x", "webhooks", "listen", "--secret", SECRET],
        ],
    )
    def test_usage(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        assert main(argv) == 2


class _Capture:
    """An aiohttp app in a thread that keeps what is POSTed to it."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> str:
        async def keep(request: web.Request) -> web.Response:
            self.received.append((dict(request.headers), await request.read()))
            return web.Response()

        app = web.Application()
        app.router.add_post("/hook", keep)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

    def stop(self) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class TestServe:
    @pytest.mark.parametrize("given", [False, True])
    def test_serve_sends_signed_events(
        self, capsys: pytest.CaptureFixture[str], given: bool
    ) -> None:
        """A job created on ``serve --webhook-url`` is announced there, signed with
        the secret given, or with one made for the run and printed."""
        capture = _Capture()
        printed: list[str] = []

        def step() -> bool:
            printed.append(capsys.readouterr().out)
            text = "".join(printed)
            if "export OPENAI_BASE_URL=" not in text:
                return False
            env = dict(
                item.split("=", 1)
                for line in text.splitlines()
                if line.startswith("export ")
                for item in line.split()[1:]
            )
            if not capture.received and "created" not in env:
                request = urllib.request.Request(
                    env["OPENAI_BASE_URL"] + "/videos",
                    data=json.dumps({"prompt": "a boat"}).encode(),
                    headers={
                        "Authorization": f"Bearer {env['OPENAI_API_KEY']}",
                        "Content-Type": "application/json",
                    },
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=5):
                    printed.append("export created=1\n")
            return bool(capture.received)

        options = ["--webhook-secret", SECRET] if given else []
        watcher = interrupt_when(step)
        try:
            argv = ["serve", "--port", "0", "--jobs", "0", "--speed", "50"]
            code = main([*argv, "--webhook-url", capture.url, *options])
            watcher.join()
        finally:
            capture.stop()
        text = "".join(printed) + capsys.readouterr().out
        assert code == 130
        if given:
            assert SECRET not in text
            key = KEY
        else:
            secret = text.split("OPENAI_WEBHOOK_SECRET=", 1)[1].split()[0]
            key = base64.b64decode(secret[6:])
        headers, body = capture.received[0]
        assert json.loads(body)["type"] == "video.completed"
        payload = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        mac = base64.b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{mac}"
