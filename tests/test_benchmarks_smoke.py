"""The benchmark harness runs end to end at tiny sizes, so it cannot rot.

Nothing here looks at a timing: benchmarks are never timed tests. It checks
that every scenario runs every available client against the load server
(``openai`` and the msgspec clients only where those are installed) and
yields well-formed numbers, that the client order rotates, and that the
report renders a verdict for each target whose clients ran.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import clients, run, scenarios  # noqa: E402

HAS_OPENAI = importlib.util.find_spec("openai") is not None
HAS_MSGSPEC = importlib.util.find_spec("msgspec") is not None


@pytest.fixture(scope="module")
def smoke() -> run.Run:
    return run.run_all(scenarios.SMOKE)


def test_available_clients_follow_what_is_installed() -> None:
    names = clients.available_clients()
    assert {"floor", "asyncvideos"} <= set(names)
    assert ("openai" in names) is HAS_OPENAI
    assert ("floor-typed" in names) is HAS_MSGSPEC
    assert ("asyncvideos+speedups" in names) is HAS_MSGSPEC


def test_the_client_order_rotates() -> None:
    names = ["a", "b", "c"]
    firsts = [run.rotated(names, rep)[0] for rep in range(3)]
    assert firsts == names
    assert sorted(run.rotated(names, 4)) == names


@pytest.mark.slow  # runs every scenario once (about 15 s): CI runs it with -m slow
def test_every_scenario_runs_every_client(smoke: run.Run) -> None:
    assert set(smoke.results) == set(scenarios.SCENARIOS)
    for name, scenario in scenarios.SCENARIOS.items():
        by_client = smoke.results[name]
        expected = {
            client
            for client in clients.available_clients()
            if scenario.clients is None or client in scenario.clients
        }
        assert expected <= set(by_client), name
        for client, metrics in by_client.items():
            for metric in scenario.metrics:
                values = metrics[metric.key]
                assert len(values) == scenario.reps(scenarios.SMOKE), (name, client)
                assert all(math.isfinite(v) and v >= 0 for v in values), (name, client, values)


@pytest.mark.slow  # runs every scenario once (about 15 s): CI runs it with -m slow
def test_wait_many_counts_the_polls_the_schedule_needs(smoke: run.Run) -> None:
    # The floor honours the header by hand: its count pins the server's schedule.
    requests = smoke.results["wait_many"]["floor"]["requests"]
    assert requests == [scenarios.SMOKE.wait_jobs * scenarios.DONE_AT]


def test_the_clients_without_extras_run_without_msgspec() -> None:
    """The ``asyncvideos`` client measures the library without its speedups."""
    probe = (
        "import sys, json; from benchmarks import clients; clients.without_speedups(); "
        "import asyncvideos._speedups as s; print(json.dumps(s.current() is None))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "true"


@pytest.mark.slow  # runs every scenario once (about 15 s): CI runs it with -m slow
def test_report_has_a_verdict_for_each_target(smoke: run.Run) -> None:
    text = run.report(smoke, "python -m benchmarks --smoke")
    verdicts = [line for line in text.splitlines() if line.endswith(("PASS |", "MISS |"))]
    available = set(clients.available_clients())
    expected = [t for t in run.targets(scenarios.SMOKE) if set(t.clients) <= available]
    assert len(verdicts) == len(expected)
    for name in scenarios.SCENARIOS:
        assert f"### {name}:" in text


def test_import_time_is_read_from_importtime() -> None:
    """The import figure is the package's cumulative -X importtime, not process start-up."""
    cost = scenarios.import_cost_ms("json")
    assert 0 < cost < 10_000


def test_other_benchmark_modules_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in scenarios.SCENARIOS:
        assert f"{name}:" in listed


@pytest.mark.slow  # runs every scenario once (about 15 s): CI runs it with -m slow
def test_report_keeps_notes_below_the_marker(smoke: run.Run, tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    output.write_text(f"old table\n{run.NOTES_MARKER}\nhand-written notes\n")
    run.write_report(run.report(smoke, "cmd"), output)
    text = output.read_text()
    assert "old table" not in text
    assert text.endswith(f"{run.NOTES_MARKER}\nhand-written notes\n")


@pytest.mark.slow  # real processes and a PostgreSQL server (about 40 s): CI runs -m slow
@pytest.mark.usefixtures("postgres_server")  # skips (or fails in CI) without PostgreSQL
@pytest.mark.parametrize(
    ("module", "argv", "rows"),
    [
        (
            "benchmarks.fleet_webhooks",
            ["--replicas", "2", "--jobs", "10", "--lead", "1", "--spread", "1", "--fallback", "3"],
            2,
        ),
        (
            "benchmarks.fleet_rate",
            ["--limits", "100", "--processes", "2", "--jobs", "10", "--headers", "yes"],
            2,
        ),
    ],
)
def test_the_fleet_benchmarks_run_and_print_a_table(
    module: str, argv: list[str], rows: int
) -> None:
    """Several processes, the fake, PostgreSQL: the table has a row per run, every
    job finished (no figure is checked: benchmarks are not timed tests)."""
    out = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + rows, out
    if module.endswith("webhooks"):
        assert all("| yes |" in line for line in table[1:]), out  # every job once
    else:
        assert all("| 0/10 |" in line for line in table[1:]), out  # no job failed
