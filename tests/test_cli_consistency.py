"""Commands that work alike: ``download`` takes ids as ``get`` does, ``retrieve`` is
``get``, ``serve`` shows what a client sends, the table keeps its useful columns on
an 80-column terminal, and the demo counts bytes in one unit.

Run in-process through ``main()`` against ``FakeVideosAPI`` on loopback (see
``test_cli``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from test_cli import (  # the CLI fixtures, shared rather than copied
    ThreadedFake,
    _interrupt_main_when,
    fake,  # noqa: F401
    lines,
    run,  # noqa: F401
)

from asyncvideos import APIConnectionError, InternalServerError, Video
from asyncvideos._cli import main
from asyncvideos._cli._output import Output
from asyncvideos.testing import FakeVideosAPI, Fault


class TestDownloadMany:
    """``download ID...`` and ``download -``, like ``get``, ``wait`` and ``delete``."""

    def test_several_ids(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        ids = fake.call(lambda: fake.api.seed(2))
        code, out, err = run("download", *ids)
        assert (code, err) == (0, "")
        assert [line["path"] for line in lines(out)] == [f"{i}.mp4" for i in ids]
        for video_id in ids:
            expected = fake.call(lambda video_id=video_id: fake.api.content_bytes(video_id))
            assert (tmp_path / f"{video_id}.mp4").read_bytes() == expected

    def test_ids_from_stdin_and_a_failure_in_between(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An id that fails (unknown, or its file exists) is reported; the rest go on."""
        monkeypatch.chdir(tmp_path)
        ids = fake.call(lambda: fake.api.seed(3))
        (tmp_path / f"{ids[1]}.mp4").write_bytes(b"mine")
        stdin = f'{ids[0]}\nvideo_gone\n{{"id": "{ids[1]}"}}\n{ids[2]}\n'
        code, out, err = run("download", "-", stdin=stdin)
        assert code == 1
        assert [line["id"] for line in lines(out)] == [ids[0], ids[2]]
        assert (tmp_path / f"{ids[1]}.mp4").read_bytes() == b"mine"
        reported = err.splitlines()
        assert len(reported) == 2
        assert reported[0].startswith("asyncvideos: error: stdin line 2: video_gone: ")
        assert "HTTP 404" in reported[0]
        assert reported[1].startswith(f"asyncvideos: error: stdin line 3: {ids[1]}: ")
        assert "--overwrite" in reported[1]

    def test_an_existing_file_is_refused_before_any_request(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        ids = fake.call(lambda: fake.api.seed(2))
        (tmp_path / f"{ids[1]}.mp4").write_bytes(b"mine")
        code, out, err = run("download", *ids)
        assert (code, out) == (2, "")
        assert "--overwrite" in err
        assert fake.call(lambda: len(fake.api.requests)) == 0

    def test_output_names_one_file(self, run: Any, fake: ThreadedFake, tmp_path: Path) -> None:
        for ids in (["video_a", "video_b"], ["-"]):
            code, _, err = run("download", *ids, "-o", str(tmp_path / "x.mp4"))
            assert code == 2
            assert "-o/--output names one file" in err
        assert fake.call(lambda: len(fake.api.requests)) == 0

    def test_wait_on_several_then_download(
        self, run: Any, fake: ThreadedFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``--wait`` waits on every job together, then downloads the completed ones; a
        failed job gets its line and an error, and nothing is written for it."""
        monkeypatch.chdir(tmp_path)
        good = lines(run("create", "a fox")[1])[0]["id"]
        fake.call(lambda: fake.api.set_outcome(None, "failed"))
        bad = lines(run("create", "a storm")[1])[0]["id"]
        code, out, err = run("download", good, bad, "--wait")
        assert code == 1
        printed = {line["id"]: line for line in lines(out)}
        assert printed[good]["path"] == f"{good}.mp4"
        assert printed[bad]["status"] == "failed"
        assert f"{bad} ended as failed; there is nothing to download" in err
        assert sorted(path.name for path in tmp_path.iterdir()) == [f"{good}.mp4"]


def test_retrieve_is_get(run: Any, fake: ThreadedFake) -> None:
    """``retrieve``, the library's name, is the same command as ``get``."""
    ids = fake.call(lambda: fake.api.seed(2))
    assert run("retrieve", *ids) == run("get", *ids)
    code, out, _ = run("retrieve", "-", stdin="\n".join(ids))
    assert (code, [line["id"] for line in lines(out)]) == (0, ids)
    assert "retrieve" in run("--help")[1]


class TestServeLog:
    """``serve`` logs each request on stderr; ``--debug`` adds headers and bodies."""

    def serve(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        """Run ``serve`` until a create and a faulted retrieve are answered; Ctrl-C."""
        printed: list[str] = []
        errors: list[str] = []

        def after_two_requests() -> bool:
            captured = capsys.readouterr()
            printed.append(captured.out)
            errors.append(captured.err)
            text = "".join(printed)
            if "export OPENAI_BASE_URL=" not in text:
                return False
            env = dict(item.split("=", 1) for item in text.split("export ", 1)[1].split())
            auth = {"Authorization": f"Bearer {env['OPENAI_API_KEY']}"}
            create = urllib.request.Request(
                env["OPENAI_BASE_URL"] + "/videos",
                data=b'{"prompt": "a paper boat", "seconds": "4"}',
                headers={**auth, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(create, timeout=5) as response:
                assert response.status == 200
            gone = urllib.request.Request(env["OPENAI_BASE_URL"] + "/videos/video_x", headers=auth)
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(gone, timeout=5)
            return True

        watcher = _interrupt_main_when(after_two_requests)
        code = main(["serve", "--port", "0", "--jobs", "0", *argv])
        watcher.join()
        captured = capsys.readouterr()
        return code, "".join(printed) + captured.out, "".join(errors) + captured.err

    def test_one_line_per_request(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = self.serve(capsys)
        assert code == 130
        assert "Requests are logged on stderr (--debug adds headers and bodies)" in out
        logged = [line for line in err.splitlines() if " -> " in line]
        assert len(logged) == 2
        assert re.fullmatch(r"\d\d:\d\d:\d\d POST /v1/videos -> 200 in [\d.]+ ms", logged[0])
        assert re.fullmatch(r"\d\d:\d\d:\d\d GET /v1/videos/video_x -> 404 in [\d.]+ ms", logged[1])
        assert "headers:" not in err

    def test_debug_shows_headers_masked_and_bodies(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = self.serve(capsys, "--debug")
        assert code == 130
        assert "logged on stderr with headers and bodies" in out
        assert '"authorization": "Bearer sk-...ef"' in err  # the key, masked
        assert "sk-fake-0123456789abcdef" not in err
        assert '  body: {"prompt": "a paper boat", "seconds": "4"}' in err

    def test_debug_is_taken_before_the_command_too(self, run: Any) -> None:
        """``asyncvideos --debug serve`` is not refused as another global option is."""
        code, _, err = run("--debug", "serve", "--port", "-1")
        assert code == 2
        assert "does not take --debug" not in err


async def test_the_fake_logs_its_faults(caplog: pytest.LogCaptureFixture) -> None:
    """The fake's log names the fault a request met, and a dropped connection."""
    caplog.set_level(logging.DEBUG, logger="asyncvideos.testing")
    async with FakeVideosAPI() as api, api.client(max_retries=0) as videos:
        (video_id,) = api.seed(1)
        api.inject(Fault(status=503, headers={"retry-after-ms": "1"}), times=1)
        with pytest.raises(InternalServerError):
            await videos.retrieve(video_id)
        api.inject(Fault(drop=True), times=1)
        with contextlib.suppress(APIConnectionError):  # aiohttp may repeat it on its own
            await videos.retrieve(video_id)
        await videos.retrieve(video_id, extra_query={"q": "1"})
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncvideos.testing"]
    # Not a line at INFO: a test capturing the client's retries sees none of them.
    assert {r.levelname for r in caplog.records if r.name.startswith("asyncvideos.t")} == {"DEBUG"}
    assert re.fullmatch(
        rf"GET /v1/videos/{video_id} -> 503 in [\d.]+ ms "
        r"\(fault: status=503, headers=\{'retry-after-ms': '1'\}\)",
        messages[0],
    ), messages
    assert messages[1].startswith(f"GET /v1/videos/{video_id} -> dropped in ")
    assert messages[1].endswith("(fault: drop=True)")
    assert messages[-1].startswith(f"GET /v1/videos/{video_id}?q=1 -> 200 in ")


class TestTableAt80Columns:
    """The columns a user reads are never cut to "…"; what gives way is chosen."""

    def table(self, monkeypatch: pytest.MonkeyPatch, columns: int, *jobs: Video) -> list[str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setenv("NO_COLOR", "1")
        stream = io.StringIO()
        out = Output(stream, as_json=False, terminal=True)
        for job in jobs:
            out.video(job)
        return stream.getvalue().splitlines()

    def job(self, status: str = "completed") -> Video:
        return Video(
            id="video_3405095c8a5006c1ec188efbd080e66e",
            status=status,
            progress=100 if status == "completed" else 45,
            model="sora-2-pro",
            size="1792x1024",
            seconds="12",
            created_at=datetime(2025, 10, 9, 8, 53, tzinfo=timezone.utc),
            prompt="A paper boat drifting down a rain-soaked street at dusk",
        )

    def test_80_columns_keep_seconds_created_and_some_prompt(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        header, *rows = self.table(monkeypatch, 80, self.job(), self.job("in_progress"))
        assert header.split() == ["ID", "STATUS", "SECS", "CREATED", "PROMPT"]
        created = self.job().created_at
        assert created is not None
        short = created.astimezone().strftime("%m-%d %H:%M")
        for row in rows:
            assert len(row) <= 80
            assert f"  12    {short}  A paper" in row
            assert row.endswith("…")
        # The status column has room for every status, so rows stay aligned.
        assert rows[0].index("12 ") == rows[1].index("12 ")

    def test_wider_terminals_get_more_columns(self, monkeypatch: pytest.MonkeyPatch) -> None:
        (header, _) = self.table(monkeypatch, 120, self.job())
        assert header.split() == ["ID", "STATUS", "PROGRESS", "SECONDS", "CREATED", "PROMPT"]
        (header, row) = self.table(monkeypatch, 200, self.job())
        assert "MODEL" in header.split()
        assert row.endswith("rain-soaked street at dusk")  # whole


def test_the_demo_counts_bytes_in_one_unit(run: Any, tmp_path: Path) -> None:
    """The summary's sizes are decimal megabytes, like the live byte counter (rich's)."""
    code, out, err = run(
        "demo", "--output", str(tmp_path), "--jobs", "1", "--speed", "20", "--progress"
    )
    assert code == 0
    assert "8.4 MB" in out
    assert "MiB" not in out + err
    assert "MB" in err  # the live display's counter


@pytest.mark.parametrize("jobs", [2, 6])
def test_the_jobs_still_running_are_named_for_the_next_wait(
    run: Any, fake: ThreadedFake, jobs: int
) -> None:
    """After a wait that timed out, stderr says which jobs keep running and how to wait
    for them again (a long list points at the JSON lines instead)."""
    fake.call(lambda: fake.api.set_outcome(None, "completed", duration=10_000))
    ids = [lines(run("create", f"take {n}")[1])[0]["id"] for n in range(jobs)]
    code, out, err = run("wait", *ids, "--wait-timeout", "0.1")
    assert code == 1
    assert sorted(line["id"] for line in lines(out)) == sorted(ids)
    note = err.splitlines()[-1]
    assert note.startswith(f"asyncvideos: {jobs} jobs keep running on the server; ")
    if jobs <= 5:
        assert all(video_id in note.split("asyncvideos wait ")[1].split() for video_id in ids)
    else:
        assert note.endswith("(the JSON lines with wait_error)")
