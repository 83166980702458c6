"""``asyncvideos jobs``, ``asyncvideos resume`` and ``--ledger`` on the commands that create."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

# The CLI tests' fixtures: a threaded fake and main() in-process.
from test_cli import KEY, ThreadedFake, fake, lines, run  # noqa: F401

from asyncvideos.ledger import SQLiteLedger
from asyncvideos.testing import Fault


def entries(db: Path) -> list[Any]:
    async def read() -> list[Any]:
        async with SQLiteLedger(db) as store:
            return await store.entries()

    return asyncio.run(read())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


class TestLedgerOption:
    def test_create_records_the_job(self, fake: ThreadedFake, run: Any, db: Path) -> None:
        code, out, _ = run("create", "a paper boat", "--wait", "--ledger", f"sqlite:///{db}")
        assert code == 0
        (job,) = lines(out)
        (entry,) = entries(db)
        assert (entry.video_id, entry.state, entry.prompt) == (
            job["id"],
            "completed",
            "a paper boat",
        )

    def test_the_environment_names_the_ledger(
        self, fake: ThreadedFake, run: Any, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ASYNCVIDEOS_LEDGER", f"sqlite:///{db}")
        source = fake.call(lambda: fake.api.seed(1))[0]
        assert run("remix", source, "in winter")[0] == 0
        (entry,) = entries(db)
        assert (entry.operation, entry.source_video_id) == ("remix", source)

    def test_without_a_ledger_nothing_is_recorded(
        self, fake: ThreadedFake, run: Any, db: Path
    ) -> None:
        assert run("create", "a paper boat")[0] == 0
        assert not db.exists()

    def test_a_bad_ledger_url_is_a_usage_error(self, fake: ThreadedFake, run: Any) -> None:
        code, _, err = run("create", "a boat", "--ledger", "mysql://x/y")
        assert code == 2
        assert "mysql" in err
        assert fake.call(lambda: list(fake.api.requests)) == []


class TestJobs:
    def test_lists_entries_as_json_lines(self, fake: ThreadedFake, run: Any, db: Path) -> None:
        ledger = f"sqlite:///{db}"
        run("create", "a paper boat", "--wait", "--ledger", ledger)
        run("create", "a fox", "--ledger", ledger)
        code, out, _ = run("jobs", "--ledger", ledger)
        assert code == 0
        listed = lines(out)
        assert [job["prompt"] for job in listed] == ["a paper boat", "a fox"]
        assert [job["state"] for job in listed] == ["completed", "created"]
        assert listed[0]["created_at"].endswith("Z")
        code, out, _ = run("jobs", "--ledger", ledger, "--state", "created", "--state", "failed")
        assert [job["prompt"] for job in lines(out)] == ["a fox"]
        code, out, _ = run("jobs", "--ledger", ledger, "--since", "1h")
        assert len(lines(out)) == 2
        code, out, _ = run("jobs", "--ledger", ledger, "--since", "2999-01-01T00:00")
        assert out == ""

    def test_needs_no_key(self, run: Any, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        assert run("jobs", "--ledger", f"sqlite:///{db}") == (0, "", "")

    def test_a_table_shows_server_text_inert(self, fake: ThreadedFake, run: Any, db: Path) -> None:
        """A prompt with escape sequences is printed as escapes, not acted on."""
        ledger = f"sqlite:///{db}"
        run("create", "a boat\x1b]0;owned\x07 at sea", "--ledger", ledger)
        code, out, _ = run("jobs", "--ledger", ledger, "--table")
        assert code == 0
        header, row = out.splitlines()
        assert header.split()[:4] == ["KEY", "STATE", "ID", "STATUS"]
        assert "\x1b" not in out
        assert "\\x1b]0;owned\\x07" in row
        json_out = run("jobs", "--ledger", ledger)[1]
        assert "\x1b" not in json_out
        assert json.loads(json_out)["prompt"] == "a boat\x1b]0;owned\x07 at sea"

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["jobs"], "no ledger"),
            (["jobs", "--ledger", "sqlite:///x.db", "--state", "done"], "invalid choice"),
            (["jobs", "--ledger", "sqlite:///x.db", "--since", "soon"], "an age"),
            (["--base-url", "http://x/v1", "jobs", "--ledger", "sqlite:///x.db"], "does not take"),
        ],
    )
    def test_usage_errors(self, run: Any, argv: list[str], words: str) -> None:
        code, _, err = run(*argv)
        assert code == 2
        assert words in err


class TestResume:
    def test_finishes_what_a_run_left(
        self, fake: ThreadedFake, run: Any, db: Path, tmp_path: Path
    ) -> None:
        """A create whose answer was lost is resent with its key, waited on, downloaded."""
        ledger = f"sqlite:///{db}"
        fake.call(lambda: fake.api.inject(Fault(status=500), times=1, method="POST"))
        code, _, err = run("create", "a paper boat", "--ledger", ledger, "--max-retries", "0")
        assert code == 1
        assert "ambiguous" in err or "may or may not" in err
        (entry,) = entries(db)
        assert entry.state == "ambiguous"
        code, _, err = run("resume", "--ledger", ledger)
        assert code == 1  # an ambiguous entry is reported, not guessed at
        assert entry.key in err
        run("create", "a fox", "--ledger", ledger)
        folder = tmp_path / "videos"
        code, out, err = run("resume", "--ledger", ledger, "--download-dir", str(folder))
        (job,) = lines(out)
        assert job["status"] == "completed"
        assert (folder / f"{job['id']}.mp4").read_bytes() == fake.call(
            lambda: fake.api.content_bytes(job["id"])
        )

    def test_reconcile_resend(self, fake: ThreadedFake, run: Any, db: Path) -> None:
        ledger = f"sqlite:///{db}"
        fake.call(lambda: fake.api.inject(Fault(status=500), times=1, method="POST"))
        run("create", "a paper boat", "--ledger", ledger, "--max-retries", "0")
        (entry,) = entries(db)
        assert fake.call(lambda: len(fake.api.videos)) == 0

        # The ambiguous entry is settled by a person: nothing was made.
        async def free() -> None:
            async with SQLiteLedger(db) as store:
                await store.resolve(entry.key, video_id=None)

        asyncio.run(free())
        assert entries(db)[0].state == "rejected"
        assert run("resume", "--ledger", ledger, "--reconcile", "resend") == (0, "", "")

    def test_a_failed_job_and_a_timeout_are_reported(
        self, fake: ThreadedFake, run: Any, db: Path
    ) -> None:
        ledger = f"sqlite:///{db}"
        fake.call(lambda: fake.api.set_outcome(None, "failed"))
        run("create", "a storm", "--ledger", ledger)
        code, out, err = run("resume", "--ledger", ledger)
        assert code == 1
        assert lines(out)[0]["status"] == "failed"
        assert "ended as failed" in err
        fake.call(lambda: fake.api.set_outcome(None, "completed", duration=3600))
        run("create", "a long one", "--ledger", ledger)
        code, _, err = run("resume", "--ledger", ledger, "--wait-timeout", "0.2")
        assert code == 1
        assert "did not finish within 0.2 s" in err

    def test_needs_a_ledger(self, fake: ThreadedFake, run: Any) -> None:
        code, _, err = run("resume")
        assert code == 2
        assert "no ledger" in err
