"""The fleets guide (docs/guide/fleets.md) matches the code: its commands run, its
table layout is the table the PostgreSQL budget store creates."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide" / "fleets.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


def test_every_benchmark_command_of_the_guide_runs() -> None:
    commands = [
        line.split("#")[0].split()
        for block in _blocks("sh")
        for line in block.splitlines()
        if line.startswith("python -m benchmarks.")
    ]
    assert commands
    for command in commands:
        # --help: the module imports and its options parse; the runs themselves take minutes.
        flags = [part for part in command[3:] if part.startswith("--")]
        out = subprocess.run(
            [sys.executable, "-m", command[2], "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for flag in flags:
            assert flag in out, (command, flag)


async def test_the_table_layout_is_the_stores(postgres_url: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    from asyncvideos.ledger._postgres_budget import PostgresBudgetStore

    (sql,) = _blocks("sql")
    documented = re.findall(
        r"^\s+(\w+)\s+(TEXT|DOUBLE PRECISION|BOOLEAN|BIGINT|TIMESTAMPTZ)", sql, re.M
    )
    async with AsyncConnectionPool(
        postgres_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    ) as pool:
        await PostgresBudgetStore(pool).create_table()
        async with pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'rate_budgets' ORDER BY ordinal_position"
            )
            columns = await cursor.fetchall()
    types = {
        "text": "TEXT",
        "double precision": "DOUBLE PRECISION",
        "boolean": "BOOLEAN",
        "bigint": "BIGINT",
        "timestamp with time zone": "TIMESTAMPTZ",
    }
    assert [(name, types[kind]) for name, kind in columns] == documented


async def test_the_fleet_example_runs(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's example, as one replica: a job paid once, its event received."""
    from asyncvideos.ledger import PostgresLedger
    from asyncvideos.testing import FakeVideosAPI

    (code,) = _blocks("python")
    secret = FakeVideosAPI.generate_webhook_secret()
    port = _free_port()
    async with FakeVideosAPI(
        speed=20.0, webhook_url=f"http://127.0.0.1:{port}/webhooks", webhook_secret=secret
    ) as api:
        monkeypatch.setenv("OPENAI_API_KEY", api.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        names: dict[str, object] = {
            "webhook_secret": secret,
            "database_url": postgres_url,
            "port": port,
        }
        body = "".join(f"    {line}\n" for line in code.splitlines())
        exec(f"async def example():\n{body}    return locals()\n", names)
        found = await asyncio.wait_for(names["example"](), 30)  # type: ignore[operator]
        assert found["video"].status == "completed"
        assert len(api.webhook_deliveries) == 1
    async with PostgresLedger(postgres_url) as ledger:
        entry = await ledger.get("order-42")
    assert entry is not None
    assert (entry.state, entry.video_id) == ("completed", found["video"].id)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
