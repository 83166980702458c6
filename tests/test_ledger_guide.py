"""The Python examples of ``docs/guide/ledger.md`` run as written, against the fake."""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from asyncvideos import AmbiguousCreateError, AsyncVideos
from asyncvideos.testing import FakeVideosAPI, Fault

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "ledger.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)


def block(containing: str) -> str:
    """The one short example holding ``containing`` (the worked example left out)."""
    (found,) = [b for b in blocks() if containing in b and "async def main" not in b]
    return found


async def run(source: str, namespace: dict[str, Any]) -> None:
    """Run a block that may ``await`` at its top level, as a notebook does."""
    code = compile(source, str(GUIDE), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # our own documentation
    if result is not None:
        await result


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[FakeVideosAPI]:
    """The fake, named by the environment; the working folder a fresh one."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.chdir(tmp_path)
        yield fake


async def test_the_first_example_pays_once(api: FakeVideosAPI, tmp_path: Path) -> None:
    source = block('reconcile="resend"')
    for _ in range(2):  # run twice: one job
        await run(source, {})
    assert len(api.videos) == 1
    (video_id,) = api.videos
    assert (tmp_path / "videos" / "order-1017.mp4").read_bytes() == api.content_bytes(video_id)
    assert (tmp_path / "jobs.db").is_file()


async def test_settling_an_ambiguous_create(
    api: FakeVideosAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    api.inject(Fault(truncate=True), times=1, method="POST")  # the job is made, its answer cut
    async with AsyncVideos(ledger="sqlite:///jobs.db") as videos:
        namespace = {"videos": videos, "AmbiguousCreateError": AmbiguousCreateError}
        await run(block("except AmbiguousCreateError"), namespace)
        entry = await videos.ledger.get("order-1017")  # type: ignore[union-attr]
    (made,) = api.videos
    assert entry is not None
    assert (entry.state, entry.video_id) == ("created", made)
    assert capsys.readouterr().out.startswith("order-1017")


async def test_resume(
    api: FakeVideosAPI, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with AsyncVideos(ledger="sqlite:///jobs.db") as videos:
        made = await videos.create("a paper boat", idempotency_key="order-1017")
        await run(block("videos.resume("), {"videos": videos})
    assert capsys.readouterr().out.split() == ["order-1017", made.id, "ok"]
    assert (tmp_path / "videos" / f"{made.id}.mp4").is_file()


def test_every_python_block_is_run_by_a_test() -> None:
    assert len(blocks()) == 4  # three above, and examples/durable_jobs.py (test_examples)


async def test_the_table_is_as_documented(tmp_path: Path) -> None:
    """The guide's table layout names the columns of the real ``jobs`` table, in order."""
    import sqlite3

    from asyncvideos.ledger import SQLiteLedger

    (layout,) = re.findall(r"```sql\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
    body = layout.split("CREATE TABLE jobs (", 1)[1].rsplit(");", 1)[0]
    body = re.sub(r"--[^\n]*", "", body)
    documented = [part.split()[0] for part in body.replace("\n", " ").split(",") if part.strip()]
    async with SQLiteLedger(tmp_path / "jobs.db"):
        pass
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        real = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
        versions = list(db.execute("SELECT version FROM schema_version"))
    db.close()
    assert documented == real
    assert len(versions) == 1
