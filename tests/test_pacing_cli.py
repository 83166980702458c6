"""``asyncvideos serve --rate-limit``: the fake's limit from the command line."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from asyncvideos._cli import main
from asyncvideos._cli._args import build_parser
from asyncvideos.testing import RateLimit


@pytest.mark.parametrize(
    ("text", "limit"),
    [("300/60s", RateLimit(requests=300, per=60)), ("5/500ms", RateLimit(requests=5, per=0.5))],
)
def test_rate_limit_is_parsed(text: str, limit: RateLimit) -> None:
    args = build_parser().parse_args(["serve", "--rate-limit", text])
    assert args.rate_limit == limit


def test_no_rate_limit_by_default() -> None:
    assert build_parser().parse_args(["serve"]).rate_limit is None


@pytest.mark.parametrize("text", ["300", "300/soon", "0/1s"])
def test_bad_rate_limit_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--rate-limit", text])
    assert exited.value.code == 2
    assert "--rate-limit" in capsys.readouterr().err


def test_serve_enforces_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """Two requests per minute: the third is a 429, and every answer has the headers."""
    printed: list[str] = []
    answers: list[tuple[int, dict[str, str]]] = []

    def probe() -> bool:
        printed.append(capsys.readouterr().out)
        text = "".join(printed)
        if "export OPENAI_BASE_URL=" not in text:
            return False
        env = dict(item.split("=", 1) for item in text.split("export ", 1)[1].split())
        for _ in range(3):
            request = urllib.request.Request(
                env["OPENAI_BASE_URL"] + "/videos",
                headers={"Authorization": f"Bearer {env['OPENAI_API_KEY']}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answers.append((response.status, dict(response.headers)))
            except urllib.error.HTTPError as error:
                answers.append((error.code, dict(error.headers)))
                error.close()
        return True

    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not probe() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main_thread, signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = main(["serve", "--port", "0", "--jobs", "1", "--rate-limit", "2/60s"])
    watcher.join()
    assert code == 130
    assert "limited to 2 requests per 60 s" in "".join(printed)
    assert [status for status, _ in answers] == [200, 200, 429]
    assert [headers["x-ratelimit-remaining-requests"] for _, headers in answers] == ["1", "0", "0"]
    assert all(headers["x-ratelimit-limit-requests"] == "2" for _, headers in answers)
    assert int(answers[2][1]["retry-after-ms"]) > 29_000
