"""The ``asyncvideos`` command, run as a subprocess, through the LiteLLM proxy."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from litellm_support import MASTER_KEY, Gateway, require_litellm, upstream_id

from asyncvideos.testing import FakeVideosAPI

require_litellm()
pytestmark = pytest.mark.asyncio(loop_scope="session")


async def run_cli(gateway: Gateway, *args: str) -> tuple[int, str, str]:
    """Run ``python -m asyncvideos ARGS`` against the proxy; (exit code, stdout, stderr).

    Asynchronously, so the in-process upstream keeps answering while it runs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update({"OPENAI_BASE_URL": gateway.base_url, "OPENAI_API_KEY": MASTER_KEY})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncvideos",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


class TestCommands:
    async def test_create_get_remix_wait_download(
        self, gateway: Gateway, upstream: FakeVideosAPI, tmp_path: Path
    ) -> None:
        """create --wait, get, remix --wait, wait and download work through the proxy;
        the file is the upstream's bytes."""
        code, out, err = await run_cli(
            gateway, "create", "a paper boat", "--model", "sora-2", "--wait", "--json"
        )
        assert code == 0, err
        created = json.loads(out.splitlines()[-1])
        assert created["status"] == "completed"
        video_id = created["id"]
        assert upstream.videos[upstream_id(video_id)]["status"] == "completed"

        code, out, err = await run_cli(gateway, "get", video_id, "--json")
        assert code == 0, err
        [line] = out.splitlines()
        assert json.loads(line)["id"] == video_id

        code, out, err = await run_cli(
            gateway, "remix", video_id, "now in winter", "--wait", "--json"
        )
        assert code == 0, err
        remixed = json.loads(out.splitlines()[-1])
        assert remixed["status"] == "completed"
        assert upstream.videos[upstream_id(remixed["id"])]["remixed_from_video_id"] == (
            upstream_id(video_id)
        )

        code, out, err = await run_cli(gateway, "wait", video_id, remixed["id"], "--json")
        assert code == 0, err
        assert {json.loads(line)["id"] for line in out.splitlines()} == {video_id, remixed["id"]}

        target = tmp_path / "boat.mp4"
        code, out, err = await run_cli(gateway, "download", video_id, "-o", str(target))
        assert code == 0, err
        assert target.read_bytes() == upstream.content_bytes(upstream_id(video_id), "video")

    async def test_list_fails_without_provider_hint(self, gateway: Gateway) -> None:
        """Without ``--header custom-llm-provider:...``, ``list`` exits 1 with LiteLLM's
        message on one line."""
        code, out, err = await run_cli(gateway, "list", "--json")
        assert code == 1
        assert out == ""
        assert "LLM Provider NOT provided" in err
        assert "400" in err

    async def test_delete_fails_with_405(self, gateway: Gateway) -> None:
        """There is no DELETE route: ``delete`` exits 1 naming the status."""
        async with gateway.client() as videos:
            video = await videos.create("kept", model="sora-2")
        code, _, err = await run_cli(gateway, "delete", video.id)
        assert code == 1
        assert "405" in err

    async def test_list_with_header(self, gateway: Gateway) -> None:
        """``--header`` gives LiteLLM its provider hint: ``list`` works."""
        async with gateway.client() as videos:
            video = await videos.create("listed by the CLI", model="sora-2")
        code, out, err = await run_cli(
            gateway, "--header", "custom-llm-provider:hosted_vllm", "list", "--json"
        )
        assert code == 0, err
        listed = [json.loads(line) for line in out.splitlines()]
        assert upstream_id(video.id) in {upstream_id(v["id"]) for v in listed}
