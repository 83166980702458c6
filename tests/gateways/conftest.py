"""A real LiteLLM proxy on loopback in front of ``FakeVideosAPI``, for the gateway suite.

LiteLLM lives in its own virtual environment (its pins must not change what the
rest of the suite runs on): ``ASYNCVIDEOS_LITELLM`` names its ``litellm``
executable, else ``litellm`` on ``PATH`` is used. Without either the suite is
skipped with the reason; in CI (``CI=true``) with the variable set, a missing
executable or a proxy that does not start fails instead.

One fake upstream and one proxy serve the whole session (LiteLLM takes 15-30 s
to start on a busy 2-core machine), on one session-wide event loop so the
in-process fake keeps answering while a test awaits the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from litellm_support import MASTER_KEY, Gateway, fail_or_skip, require_litellm

from asyncvideos import AsyncVideos
from asyncvideos.testing import FakeVideosAPI

HERE = Path(__file__).parent
CONFIG_TEMPLATE = HERE / "litellm_config.yaml"
#: The route the proxy answers once uvicorn has finished its start-up (config loaded).
HEALTH_PATH = "/health/readiness"


def litellm_version(executable: str) -> str | None:
    """The installed version, read from the executable's own environment.

    ``litellm --version`` imports the whole proxy (over 15 s); reading the
    package metadata with the interpreter beside the executable takes ~50 ms.
    """
    python = Path(executable).parent / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return found.stdout.strip() or None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _proxy_environment(upstream: FakeVideosAPI) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # The proxy must not pick up a real key, base URL or database from the caller.
        if not name.startswith(("OPENAI_", "AZURE_", "LITELLM_", "HOSTED_VLLM_", "DATABASE_"))
    }
    env.update(
        {
            # No price-map download at start-up: no network but loopback.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY_DISABLED": "True",
            "LITELLM_LOG": "WARNING",
            # GET /videos has no model to route by: with the header
            # custom-llm-provider: hosted_vllm LiteLLM lists from this base.
            "HOSTED_VLLM_API_BASE": upstream.base_url,
            "HOSTED_VLLM_API_KEY": upstream.api_key,
            # Anything that would leave the machine goes to a closed loopback port.
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


async def _wait_ready(
    root_url: str, process: asyncio.subprocess.Process, deadline: float, log_path: Path
) -> None:
    """Poll the health route until it answers 200, the process dies, or time runs out."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            if process.returncode is not None:
                fail_or_skip(
                    f"the LiteLLM proxy exited with {process.returncode} during start-up:\n"
                    + _tail(log_path)
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(root_url + HEALTH_PATH) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                fail_or_skip("the LiteLLM proxy did not become ready in time:\n" + _tail(log_path))
            await asyncio.sleep(0.25)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the proxy's own process group, then SIGKILL if it lingers."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


#: What the session's proxy was, for the closing summary.
_started: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the LiteLLM version the gateway suite ran against at the end of the log."""
    for line in _started:
        terminalreporter.write_line(f"gateways: {line}")


@pytest.fixture(scope="session")
def litellm_executable() -> str:
    """The ``litellm`` executable (each test module has checked that there is one)."""
    return require_litellm()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def upstream() -> AsyncIterator[FakeVideosAPI]:
    """The fake API LiteLLM forwards to: jobs finish in about 0.1 s of real time, and
    more jobs than one default page (20) so that listing has a second page."""
    async with FakeVideosAPI(speed=60.0, poll_after_ms=10) as fake:
        fake.seed(25)
        yield fake


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(
    litellm_executable: str,
    upstream: FakeVideosAPI,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> AsyncIterator[Gateway]:
    """LiteLLM's proxy on a free loopback port, configured from ``litellm_config.yaml``."""
    folder = tmp_path_factory.mktemp("litellm")
    config = folder / "config.yaml"
    config.write_text(
        CONFIG_TEMPLATE.read_text().format(
            upstream_base=upstream.base_url, upstream_key=upstream.api_key, master_key=MASTER_KEY
        )
    )
    log_path = folder / "proxy.log"
    version = litellm_version(litellm_executable) or "unknown"
    port = _free_port()
    root_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    limit = float(os.environ.get("ASYNCVIDEOS_LITELLM_START_TIMEOUT", "180"))
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            litellm_executable,
            *("--config", str(config), "--host", "127.0.0.1", "--port", str(port)),
            *("--num_workers", "1"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=_proxy_environment(upstream),
            start_new_session=True,
        )
    try:
        await _wait_ready(root_url, process, started + limit, log_path)
        gateway = Gateway(
            base_url=root_url + "/v1",
            root_url=root_url,
            version=version,
            log_path=log_path,
            started_in=time.monotonic() - started,
        )
        _started.append(
            f"LiteLLM {version} proxy ({litellm_executable}) on {root_url}, "
            f"ready in {gateway.started_in:.1f} s"
        )
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n{_started[-1]}", file=sys.stderr)
        yield gateway
    finally:
        await _stop(process)


@pytest_asyncio.fixture(loop_scope="session")
async def videos(gateway: Gateway, upstream: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    """A client on the proxy; the upstream's request log and faults start empty."""
    upstream.clear_requests()
    upstream.clear_faults()
    async with gateway.client() as client:
        yield client
    upstream.clear_faults()
