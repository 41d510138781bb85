"""Three OS processes hammer one bucket: the fleet never beats the limit.

rpm = 1200 (20/s). Every grant time is Redis TIME as the script saw it; no
1 s sliding window may hold more than 20 of them, and the fleet must use the
limit (at least half of what it allows: a refill that appears while every
contender is descheduled is lost, and a starved machine deschedules them for
long stretches; how much of the limit the fleet uses is measured on a quiet
machine by ``sluice bench enrich``, not asserted here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from bisect import bisect_right
from pathlib import Path

import pytest
import redis

from devtools.stack.resolve import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RPM = 1200
PER_S = RPM // 60
DURATION_US = 4_000_000

WORKER = r"""
import asyncio, json, sys
from shared.redis.bucket import ProviderLimits
from shared.redis.client import connect
from tests.support.redis_ops import LimiterOps

url, pipeline, barrier, rpm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

async def contender(lim, grants, end_us):
    while True:
        res = await lim.reserve("p", None, 10)
        if res.now_us >= end_us:
            return
        if res.granted:
            grants.append(res.now_us)
        else:
            await asyncio.sleep(res.wait_s)

async def main():
    r = connect(url)
    await r.incr(barrier + ":ready")  # started; the run's times come once all are
    _, times = await r.blpop([barrier + ":go"], timeout=60)
    start_us, end_us = map(int, times.split())
    sec, usec = await r.time()
    await asyncio.sleep(max(0.0, (start_us - (sec * 1_000_000 + usec)) / 1e6))
    lim = LimiterOps(r, pipeline, {"p": ProviderLimits(rpm=rpm)})
    grants = []
    await asyncio.gather(*(contender(lim, grants, end_us) for _ in range(4)))
    await r.aclose()
    print(json.dumps(grants))

asyncio.run(main())
"""


def _max_in_window(times: list[int], window_us: int) -> int:
    """Most grants in any window (t - w, t]: the busiest one ends at a grant."""
    return max(i + 1 - bisect_right(times, t - window_us) for i, t in enumerate(times))


def test_three_processes_stay_under_the_limit_and_use_it(stack: Stack, pipeline: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    barrier = f"{pipeline}:test-barrier"
    argv = [stack.redis_url, pipeline, barrier, str(RPM)]
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, *argv], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    # the run starts once all three interpreters are up, however long that takes here
    sync = redis.Redis.from_url(stack.redis_url)
    deadline = time.monotonic() + 60
    while int(sync.get(f"{barrier}:ready") or 0) < len(procs):
        assert time.monotonic() < deadline, "the worker processes did not start"
        assert all(p.poll() is None for p in procs), [
            p.communicate() for p in procs if p.poll() is not None
        ]
        time.sleep(0.05)
    sec, usec = sync.time()
    start_us = sec * 1_000_000 + usec + 500_000
    end_us = start_us + DURATION_US
    sync.rpush(f"{barrier}:go", *[f"{start_us} {end_us}"] * len(procs))
    sync.close()
    per_proc: list[list[int]] = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        per_proc.append(json.loads(out.strip().splitlines()[-1]))
    grants = sorted(t for g in per_proc for t in g)
    assert all(len(g) > 0 for g in per_proc), "every process got some grants"
    assert grants[0] >= start_us - 1_000_000 and grants[-1] < end_us
    assert _max_in_window(grants, 1_000_000) <= PER_S
    in_run = [t for t in grants if t >= start_us]
    allowed = PER_S * DURATION_US / 1_000_000
    assert len(in_run) >= 0.5 * allowed, f"{len(in_run)} grants of {allowed:.0f} allowed"
