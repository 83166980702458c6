"""Where a listed job's CPU goes once its bytes have arrived: ``python -m benchmarks.decoding``.

Reads the load server's own 100-job page (and one job, as ``retrieve`` gets it)
in one process, each step timed with ``process_time`` over many loops, the
steps interleaved round after round, and reports the median per job in µs:

- ``json.loads`` (the dict floor's whole work per job);
- the tolerant reader on those dicts (``structure``, no extras);
- ``decode(body, cls)`` without and with msgspec (the extra), bytes to models;
- msgspec's parse alone, and msgspec into typed Structs (the typed floor);
- the masking of the key in the body and in typical headers as they arrive
  (``_masking``; the key is absent, as from every honest server).

No server, no network: this is the decoding share of ``list_all`` and
``retrieve``, which the end-to-end scenarios cannot separate from HTTP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

if __package__ in (None, ""):  # run as ``python benchmarks/decoding.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.server import LoadServer, job_bytes


def _per_job(step: Callable[[], object], loops: int, jobs: int) -> float:
    start = time.process_time()
    for _ in range(loops):
        step()
    return (time.process_time() - start) / loops / jobs * 1e6


#: An OpenAI project key's shape and length, for the masking steps.
_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 8


def _headers() -> Mapping[str, str]:
    from multidict import CIMultiDict, CIMultiDictProxy

    return CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Type": "application/json",
                "Content-Length": "371",
                "Date": "Thu, 03 Dec 2026 12:04:19 GMT",
                "Server": "nginx",
                "x-request-id": "req_0123456789abcdef0123456789abcdef",
                "openai-processing-ms": "42",
                "openai-version": "2020-10-01",
                "x-ratelimit-limit-requests": "5000",
                "x-ratelimit-remaining-requests": "4999",
                "x-ratelimit-reset-requests": "12ms",
            }
        )
    )


_HEADERS = _headers()


def steps(body: bytes, cls: type) -> dict[str, Callable[[], object]]:
    from asyncvideos import _speedups
    from asyncvideos._convert import decode, structure
    from asyncvideos._masking import masker

    secrets = masker((_KEY,))

    data = json.loads(body)
    found: dict[str, Callable[[], object]] = {
        "json.loads (dict floor)": lambda: json.loads(body),
        "tolerant reader on dicts": lambda: structure(data, cls),
    }
    fast = _speedups.load()

    # Switching paths is an assignment (``use()`` would rebuild the decoders).
    def plain() -> object:
        _speedups._current = None
        return decode(body, cls)

    found["decode(), no extras"] = plain
    found["key masking, body"] = lambda: secrets.body(body)
    found["key masking, headers"] = lambda: secrets.headers(_HEADERS)
    if fast is None:
        return found

    def with_msgspec() -> object:
        _speedups._current = fast
        return decode(body, cls)

    found["decode(), speedups"] = with_msgspec
    found["msgspec parse to dicts"] = lambda: fast.loads(body)
    from benchmarks import _typed

    typed = _typed.decode_page if cls.__name__ == "VideoPage" else _typed.decode_job
    found["msgspec to Structs (typed floor)"] = lambda: typed(body)
    return found


def measure(rounds: int, loops: int) -> dict[str, dict[str, list[float]]]:
    from asyncvideos import Video, VideoPage

    cases = {
        "page of 100 jobs": (LoadServer()._page(1000, 0, 100), VideoPage, 100),
        "one job": (job_bytes("video_00000001"), Video, 1),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for case, (body, cls, jobs) in cases.items():
        these = steps(body, cls)
        per = results.setdefault(case, {name: [] for name in these})
        n = max(loops // jobs, 1) * (1 if jobs > 1 else 20)
        for _ in range(rounds):
            for name, step in these.items():
                per[name].append(_per_job(step, n, jobs))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--loops", type=int, default=300)
    args = parser.parse_args(argv)
    results = measure(args.rounds, args.loops)
    for case, per in results.items():
        print(f"\n{case}: µs of CPU per job, median (min) of {args.rounds} rounds\n")
        print("| step | µs/job | min |")
        print("|---|---|---|")
        for name, values in per.items():
            print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
