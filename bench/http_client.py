"""``sluice bench http``: CPU per LLM call of enrich's HTTP edge, against httpx.

fakellm runs as its own process (``--latency``, no limit), so only the client's
CPU is counted. The same ``--calls`` chat completions, ``--concurrency`` at a
time, go through:

* **sluice**: the provider adapter enrich uses
  (:class:`services.enrich.providers.openai.OpenAIProvider`: aiohttp, one
  pooled session, a hard deadline, the answer parsed and classified);
* **baseline**: an ``httpx.AsyncClient`` with a pool as large
  (``max_connections`` = ``max_keepalive_connections``), posting the same body
  and parsing the JSON answer, nothing else.

Each side runs twice, alternating; the better run of each counts. CPU is the
process's user + system time during the calls. Last line one JSON object with
``cpu_ms_per_call`` of both and ``ratio`` (baseline / sluice: how many times
cheaper the adapter is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit
from devtools.fleet.processes import Processes, start_fakellm
from services.enrich.providers import CallSuccess, Message, ProviderRequest, build_provider
from shared.config_file import ProviderConfig

MODEL = "fake-sentiment-1"
TEXT = "The package arrived late and the box was damaged."


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _timed(
    calls: int, concurrency: int, one: Callable[[], Awaitable[bool]]
) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)

    async def limited() -> bool:
        async with sem:
            return await one()

    wall, cpu = time.monotonic(), _cpu_s()
    ok = sum(await asyncio.gather(*(limited() for _ in range(calls))))
    wall, cpu = time.monotonic() - wall, _cpu_s() - cpu
    return {"ok": ok, "wall_s": round(wall, 2), "cpu_ms_per_call": round(cpu * 1000 / calls, 3)}


async def sluice_side(url: str, calls: int, concurrency: int) -> dict[str, Any]:
    cfg = ProviderConfig(kind="openai", base_url=f"{url}/v1", api_key="sk-bench",
                         max_connections=concurrency, timeout_s=30)  # fmt: skip
    provider = build_provider("fakellm", cfg)
    request = ProviderRequest(MODEL, (Message("user", TEXT),), max_tokens=20)
    try:
        return await _timed(calls, concurrency, lambda: _is_success(provider.call(request)))
    finally:
        await provider.aclose()


async def _is_success(call: Awaitable[object]) -> bool:
    return isinstance(await call, CallSuccess)


async def baseline_side(url: str, calls: int, concurrency: int) -> dict[str, Any]:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": TEXT}],
                       "max_tokens": 20}).encode()  # fmt: skip
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> bool:
            try:  # a failed call is counted (``all_ok``), as the adapter's are, not a crash
                r = await client.post(f"{url}/v1/chat/completions", content=body, headers=headers)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and "choices" in r.json()

        return await _timed(calls, concurrency, one)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice bench http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", default="fixed:100", help="fakellm latency")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1:
        parser.error("--calls and --concurrency must be positive")
    procs = Processes(Path(tempfile.mkdtemp(prefix="sluice-bench-http-")))
    try:
        url = start_fakellm(procs, args.latency, 0)
        runs: dict[str, list[dict[str, Any]]] = {"sluice": [], "baseline": []}
        for _ in range(2):
            for name, side in (("sluice", sluice_side), ("baseline", baseline_side)):
                r = asyncio.run(side(url, args.calls, args.concurrency))
                print(f"[{name}] {r}", flush=True)
                runs[name].append(r)
    finally:
        procs.stop(grace_s=10)
    best = {k: min(v, key=lambda r: r["cpu_ms_per_call"]) for k, v in runs.items()}
    ratio = best["baseline"]["cpu_ms_per_call"] / max(best["sluice"]["cpu_ms_per_call"], 1e-9)
    emit({"bench": "http", "calls": args.calls, "concurrency": args.concurrency,
          "latency": args.latency,
          "sluice_cpu_ms_per_call": best["sluice"]["cpu_ms_per_call"],
          "baseline_cpu_ms_per_call": best["baseline"]["cpu_ms_per_call"],
          "ratio": round(ratio, 2),
          "all_ok": all(r["ok"] == args.calls for v in runs.values() for r in v),
          "runs": runs})  # fmt: skip
    return 0
