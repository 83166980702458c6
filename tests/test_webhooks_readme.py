"""The README's "Webhooks" example runs as written: a service and its test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_the_webhooks_example_passes() -> None:
    """The service under "Webhooks" makes a video with one retrieve, on the fake."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Webhooks\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(block, str(README), "exec"), namespace)  # our own README
    await namespace["test_a_video_is_made_with_one_poll"]()
