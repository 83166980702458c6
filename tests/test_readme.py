"""The README a newcomer reads first: short, its set-up commands the ones CI runs,
its links to files of the repository relative and pointing at files that exist.

Its code blocks run in ``tests/test_guide.py``, with every page of the guide.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_reads_in_minutes() -> None:
    assert len(README.encode()) <= 20_000


def _steps(command: str) -> list[list[str]]:
    """A command line's steps, without the virtual environment's creation, its
    activation, and pip's or pytest's quiet flags (CI's own)."""
    steps = []
    for step in command.split("&&"):
        words = [w for w in shlex.split(step) if w not in ("--quiet", "-q")]
        if words[:3] == ["python", "-m", "venv"] or words[:1] == ["."]:
            continue
        if words[:1] == ["pip"]:
            words = ["python", "-m", *words]
        steps.append(words)
    return steps


def test_set_up_is_two_commands_that_ci_runs() -> None:
    """Exactly two commands, and .ci/run runs each of their steps, in a fresh venv."""
    commands = re.findall(r"```sh\n(.*?)```", section("Set up"), re.DOTALL)
    assert [len(c.strip().splitlines()) for c in commands] == [1, 1]
    ci_steps = []
    for line in CI.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # a line of a multi-line shell construct
            continue
        ci_steps.append([w for w in words if w not in ("--quiet", "-q")])
    for command in commands:
        for step in _steps(command.strip()):
            assert step in ci_steps, f".ci/run does not run {shlex.join(step)!r}"
    assert "python -m venv .venv-ci" in CI.replace('"$PYTHON"', "python")


def test_links_to_the_repository_are_relative_and_exist() -> None:
    assert "github.com/asyncvideos/asyncvideos/blob/" not in README
    assert "github.com/asyncvideos/asyncvideos/tree/" not in README
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert len(local) >= 10
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []
