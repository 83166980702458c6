"""The README's testing example runs as written, so the documentation cannot rot."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """Every Python block, those indented under a list item dedented."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    return [textwrap.dedent(block) for block in blocks]


async def test_the_fake_api_example_passes() -> None:
    """The example under "Testing your code with asyncvideos.testing" is a passing test."""
    (block,) = [b for b in python_blocks() if "async def test_my_service" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, str(README), "exec"), namespace)  # our own README
    await namespace["test_my_service_survives_a_flaky_api"]()


def test_every_python_block_parses() -> None:
    """Each Python example is valid syntax (the parser allows top-level await, as a
    notebook does; only the compiler would refuse it)."""
    blocks = python_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        ast.parse(block)
