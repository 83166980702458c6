"""The benchmark harness runs end to end at tiny sizes, so it cannot rot.

Nothing here looks at a timing: benchmarks are never timed tests. It checks
that every scenario runs every available client against the load server
(``openai`` only where it is installed) and yields well-formed numbers, and
that the report renders a verdict for each target.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import clients, run, scenarios  # noqa: E402

HAS_OPENAI = importlib.util.find_spec("openai") is not None


@pytest.fixture(scope="module")
def smoke() -> run.Run:
    return run.run_all(scenarios.SMOKE)


def test_available_clients_follow_what_is_installed() -> None:
    names = clients.available_clients()
    assert names[:2] == ("floor", "asyncvideos")
    assert ("openai" in names) is HAS_OPENAI


def test_every_scenario_runs_every_client(smoke: run.Run) -> None:
    assert set(smoke.results) == set(scenarios.SCENARIOS)
    expected = set(clients.available_clients())
    for name, scenario in scenarios.SCENARIOS.items():
        by_client = smoke.results[name]
        assert expected <= set(by_client), name
        for client, metrics in by_client.items():
            for metric in scenario.metrics:
                values = metrics[metric.key]
                assert len(values) == scenario.reps(scenarios.SMOKE), (name, client)
                assert all(math.isfinite(v) and v >= 0 for v in values), (name, client, values)


def test_wait_many_counts_the_polls_the_schedule_needs(smoke: run.Run) -> None:
    # The floor honours the header by hand: its count pins the server's schedule.
    requests = smoke.results["wait_many"]["floor"]["requests"]
    assert requests == [scenarios.SMOKE.wait_jobs * scenarios.DONE_AT]


def test_report_has_a_verdict_for_each_target(smoke: run.Run) -> None:
    text = run.report(smoke, "python -m benchmarks --smoke")
    verdicts = [line for line in text.splitlines() if line.endswith(("PASS |", "MISS |"))]
    assert len(verdicts) == len(run.targets(scenarios.SMOKE)) - (0 if HAS_OPENAI else 2)
    for name in scenarios.SCENARIOS:
        assert f"### {name}:" in text


def test_report_keeps_notes_below_the_marker(smoke: run.Run, tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    output.write_text(f"old table\n{run.NOTES_MARKER}\nhand-written notes\n")
    run.write_report(run.report(smoke, "cmd"), output)
    text = output.read_text()
    assert "old table" not in text
    assert text.endswith(f"{run.NOTES_MARKER}\nhand-written notes\n")
