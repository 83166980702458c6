"""Every code block of the README and of the documentation site runs as written.

The blocks that start processes (shell commands, pytest runs, programs that change
the whole process) take seconds each: they run with the slow tests (``pytest -m
slow``, which CI runs), the others in the default run.

A page's blocks run in order, as a reader would try them, against a ``FakeVideosAPI``
on loopback that the environment points at (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``),
in a temporary folder:

- a ``python`` block that calls ``asyncio.run(...)`` is a program: it runs as a
  script, in a thread with its own event loop;
- any other ``python`` block runs in the page's namespace (top-level ``await`` allowed,
  as in ``python -m asyncio``), where ``videos`` is an ``AsyncVideos`` on the fake and
  ``api`` the fake itself; the functions it defines named ``test_*`` are then called;
- a ``sh`` block runs in ``bash -euo pipefail`` with the ``asyncvideos`` command on
  ``PATH``;
- a block after ``<!-- test: pytest -->`` is a test module, run by pytest in a
  subprocess (``-W error``) with the page's ``<!-- test: pyproject -->`` block as its
  ``pyproject.toml`` and its ``<!-- test: conftest -->`` block as ``conftest.py``;
- a block after ``<!-- test: subprocess -->`` is a program that changes the whole
  process (global tracer providers, logging): it runs in a Python of its own;
- a block after ``<!-- test: setup -->`` shows what the test does itself (install,
  start a server): each ``asyncvideos ...`` line of it is parsed by the command's own
  parser, each ``pip install`` names only extras that exist;
- a block after ``<!-- test: same-as PATH -->`` must equal that file of the repository
  (its comments aside);
- a block after ``<!-- test: by PATH::TEST -->`` is run by that test of the
  repository, which needs a set-up of its own (a ledger, a fault): the test must exist;
- ``text`` blocks are output, not code.

Any other block fails the test, so that no example is left unchecked.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from asyncvideos import AsyncVideos
from asyncvideos._cli._args import parse
from asyncvideos.testing import FakeVideosAPI, sign_webhook

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    ROOT / "docs" / "index.md",
    *sorted((ROOT / "docs" / "guide").glob("*.md")),
    *sorted((ROOT / "docs" / "explanation").glob("*.md")),
]
_FENCE = re.compile(
    r"(?:<!-- test: (?P<how>[^>]+?) -->\n)?"  # how to run the block, when not by its language
    r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)
_PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
_EXTRAS = set(
    re.findall(
        r"^([\w-]+) = \[",
        _PYPROJECT.split("[project.optional-dependencies]")[1].split("\n[")[0],
        re.M,
    )
)


@attrs.frozen
class Block:
    page: Path
    line: int
    lang: str
    how: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start("indent")) + 1
        code = textwrap.dedent(
            "\n".join(row[len(match["indent"]) :] for row in match["body"].splitlines())
        )
        found.append(Block(page, line, match["lang"], (match["how"] or "").strip(), code))
    return found


@pytest.fixture
async def guide_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeVideosAPI]:
    """The fake a reader's environment points at; jobs finish in about 0.06 s."""
    secret = FakeVideosAPI.generate_webhook_secret()
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10, webhook_secret=secret) as api:
        api.seed(3)  # a few finished jobs, as on an account in use
        for name in (
            "OPENAI_ORG_ID",
            "OPENAI_ORGANIZATION",
            "OPENAI_PROJECT_ID",
            "OPENAI_API_BASE",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", api.api_key)
        monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", secret)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-for-the-guide-0123")
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("NO_COLOR", "1")
        monkeypatch.chdir(tmp_path)
        yield api


class Page:
    """One page's run: its namespace, and what its pytest blocks need."""

    def __init__(self, api: FakeVideosAPI, videos: AsyncVideos, folder: Path) -> None:
        self.api = api
        self.folder = folder
        self.namespace: dict[str, Any] = {
            "__name__": "guide",
            "api": api,
            "videos": videos,
            "sign_webhook": sign_webhook,
        }
        self.pytest_files: dict[str, str] = {}

    async def run(self, block: Block) -> None:
        how = block.how.split()
        if how and how[0] == "same-as":
            same_as(block, ROOT / how[1])
        elif how and how[0] == "by":
            delegated_to(block, how[1])
        elif how == ["setup"]:
            setup(block)
        elif how == ["pyproject"]:
            self.pytest_files["pyproject.toml"] = block.code
        elif how == ["conftest"]:
            self.pytest_files["conftest.py"] = block.code
        elif how == ["pytest"]:
            await self.pytest(block)
        elif how == ["subprocess"]:
            await subprocess_script(block)
        elif how:
            pytest.fail(f"{block.where}: unknown test marker {block.how!r}")
        elif block.lang == "python":
            await self.python(block)
        elif block.lang == "sh":
            await shell(block)
        elif block.lang != "text":
            pytest.fail(f"{block.where}: a {block.lang or 'plain'} block that no test runs")

    async def python(self, block: Block) -> None:
        source = "\n" * (block.line) + block.code  # tracebacks point at the page's lines
        if "asyncio.run(" in block.code:
            code = compile(source, str(block.page), "exec")
            script: dict[str, Any] = {"__name__": "__main__"}
            await asyncio.wait_for(asyncio.to_thread(exec, code, script), 60)
            return
        before = set(self.namespace)
        code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, self.namespace)  # our own documentation
        if asyncio.iscoroutine(result):
            await asyncio.wait_for(result, 60)
        for name in sorted(set(self.namespace) - before):
            if name.startswith("test_") and callable(self.namespace[name]):
                outcome = self.namespace[name]()
                if asyncio.iscoroutine(outcome):
                    await asyncio.wait_for(outcome, 60)

    async def pytest(self, block: Block) -> None:
        folder = self.folder / f"pytest_{block.line}"
        folder.mkdir()
        for name, text in self.pytest_files.items():
            (folder / name).write_text(text)
        (folder / "test_guide_block.py").write_text(block.code)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            cwd=folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        text = output.decode()
        assert process.returncode == 0, f"{block.where}:\n{text}"
        assert "warning" not in text.lower(), f"{block.where}:\n{text}"


async def subprocess_script(block: Block) -> None:
    """A program that changes the process (global providers, logging): run on its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        block.code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, f"{block.where}:\n{out.decode()}\n{err.decode()}"


def same_as(block: Block, path: Path) -> None:
    def significant(text: str) -> list[str]:
        lines = (line.split(" #", 1)[0].rstrip() for line in text.splitlines())
        return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]

    expected = significant(path.read_text(encoding="utf-8"))
    assert significant(block.code) == expected[: len(significant(block.code))], block.where


def setup(block: Block) -> None:
    """Commands the test does itself: checked as far as they can be without running."""
    for line in block.code.splitlines():
        for command in re.split(r"&&|;|&$", line):
            _setup_command(block, command.strip())


def _setup_command(block: Block, command: str) -> None:
    words = shlex.split(command, comments=True)
    while words and re.fullmatch(r"\w+=.*", words[0]):  # VAR=value before the command
        words.pop(0)
    if words[:3] == ["python", "-m", "pip"]:
        words = ["pip", *words[3:]]
    if not words or words[0] in ("export", ".", "cd") or words[:3] == ["python", "-m", "venv"]:
        return
    if words[0] == "asyncvideos":
        try:
            parse(words[1:])
        except SystemExit as exit:  # --help and --version exit 0; a usage error 2
            code = exit.code
        else:
            code = 0
        assert code == 0, f"{block.where}: {command}"
    elif Path(words[0]).name == "pip" and words[1:2] == ["install"]:
        for word in words[2:]:
            for extra in re.findall(r"\[([\w,-]+)\]", word):
                assert set(extra.split(",")) <= _EXTRAS, f"{block.where}: {command}"
        if "-r" in words:
            assert (ROOT / words[words.index("-r") + 1]).is_file(), f"{block.where}: {command}"
    elif words[:3] == ["python", "-m", "coverage"] and words[3:4] in (["run"], ["report"]):
        return  # the test command, which .ci/run runs (tests/test_readme.py checks)
    elif words[:3] == ["python", "-m", "pytest"]:
        assert all((ROOT / w).exists() for w in words[3:] if not w.startswith("-")), command
    else:
        pytest.fail(f"{block.where}: a set-up command the test does not know: {command}")


async def shell(block: Block) -> None:
    if re.search(r"\bjq\b", block.code) and shutil.which("jq") is None:
        pytest.skip(f"{block.where} uses jq, which is not installed (.ci/run installs it)")
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        block.code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, f"{block.where}:\n{out.decode()}\n{err.decode()}"


def delegated_to(block: Block, test: str) -> None:
    """A block that ``test`` (``tests/test_x.py::test_name``) runs: it must exist."""
    path, _, name = test.partition("::")
    module = ROOT / path
    assert module.is_file(), f"{block.where}: no {path}"
    source = module.read_text(encoding="utf-8")
    assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.M), (
        f"{block.where}: {path} has no test {name}"
    )


def test_every_page_is_collected() -> None:
    """The README and each page of the site's guide and explanations are run below."""
    guide = [page for page in PAGES if page.parent.name == "guide"]
    assert len(guide) >= 6
    assert all(blocks(page) for page in guide)


def starts_processes(block: Block) -> bool:
    """Shell commands, pytest runs and programs of their own: seconds each."""
    return (block.lang == "sh" and not block.how) or block.how in ("pytest", "subprocess")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
async def test_every_example_runs(guide_api: FakeVideosAPI, tmp_path: Path, page: Path) -> None:
    """The page's blocks that run in this process (the others: the slow test below)."""
    async with guide_api.client() as videos:
        run = Page(guide_api, videos, tmp_path)
        for block in blocks(page):
            if not starts_processes(block):
                await run.run(block)


PROCESS_PAGES = [page for page in PAGES if any(starts_processes(b) for b in blocks(page))]


@pytest.mark.slow
@pytest.mark.parametrize("page", PROCESS_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
async def test_every_command_and_test_run_runs(
    guide_api: FakeVideosAPI, tmp_path: Path, page: Path
) -> None:
    """The page's shell blocks, pytest runs and programs that change the process: a
    few seconds each, so with the slow tests (``pytest -m slow``, which CI runs)."""
    async with guide_api.client() as videos:
        run = Page(guide_api, videos, tmp_path)
        for block in blocks(page):
            if starts_processes(block) or block.how in ("pyproject", "conftest"):
                await run.run(block)
