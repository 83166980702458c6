"""The webhooks-vs-polling benchmark runs end to end at a tiny size, so it cannot rot.

No timing is checked (benchmarks are never timed tests): only that both modes
finish every job and report well-formed numbers, and that with webhooks the
wait sends one retrieve per job.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The benchmark's own runs take a few seconds: CI runs them with -m slow.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import webhooks_vs_polling as bench  # noqa: E402


async def test_both_modes_run_and_report() -> None:
    results = [await bench.run_once(mode, jobs=20, lead=0.3, spread=0.2) for mode in bench.MODES]
    polling, hooks = results
    assert (polling.mode, hooks.mode) == ("polling", "webhooks")
    assert len(polling.delays) == len(hooks.delays) == 20
    assert hooks.requests == 20
    assert hooks.events == 20
    assert polling.events == 0
    assert polling.requests >= 20
    report = bench.table(results) + "\n" + bench.verdict(results)
    assert "| webhooks | 20 | 1.00 |" in report
    assert "goal ≤ 10%" in report
    assert "goal < 50 ms" in report


def test_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--jobs", "5", "--lead", "0.2", "--spread", "0.1", "--mode", "webhooks"]
    argv += ["--no-warm-up", "--fake", "inline"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "| webhooks | 5 | 1.00 |" in out
    assert "polling" not in out.split("\n\n", 1)[0]
