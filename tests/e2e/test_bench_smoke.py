"""Every benchmark runs end to end at a tiny size and ends with its JSON line.

The figures of such short runs mean nothing; the benchmarks' README figures
come from full runs. This keeps the benchmarks working as the code moves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from typing import Any

import pytest

from devtools.stack.resolve import Stack
from tests.support.procs import alive, children, running

pytestmark = pytest.mark.e2e


STOP_GRACE_S = 60.0  # a terminated bench stops its fleet, fakellm and peers within this


def bench_env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap,
            "SLUICE_REDIS_URL": stack.redis_url}  # fmt: skip


def running_bench(stack: Stack, *args: str) -> AbstractContextManager[subprocess.Popen[str]]:
    """``sluice bench ARGS`` as a process, terminated if the test gives up on it."""
    cmd = [sys.executable, "-m", "services.cli", "bench", *args]
    return running(cmd, bench_env(stack), STOP_GRACE_S)


def bench(stack: Stack, *args: str) -> dict[str, Any]:
    with running_bench(stack, *args) as proc:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out[-2000:], err[-3000:])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["bench"] == args[0]
    return result


def test_a_terminated_bench_stops_what_it_started(stack: Stack) -> None:
    """SIGTERM to a bench mid-run (a CI timeout, a test run interrupted): it ends with
    a one-line error, and its fakellm and workers end with it instead of outliving it."""
    args = ("enrich", "--seconds", "120", "--warmup", "2", "--limit", "40", "--no-baseline")
    with running_bench(stack, *args) as proc:
        started: dict[int, str] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            started = children(proc.pid)
            if any("fakellm" in c for c in started.values()) and any(
                "enrich" in c and "fakellm" not in c for c in started.values()
            ):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        assert len(started) >= 2, started
        proc.terminate()
        out, err = proc.communicate(timeout=STOP_GRACE_S)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err, err[-3000:]
    assert not [cmd for pid, cmd in started.items() if alive(pid)]


def test_bench_ingest(stack: Stack) -> None:
    r = bench(stack, "ingest", "--records", "5000", "--rounds", "1")
    assert r["sluice_rps"] > 0 and r["baseline_rps"] > 0
    assert r["ratio"] == pytest.approx(r["sluice_rps"] / r["baseline_rps"], abs=0.01)
    assert r["stamping_baseline_rps"] > 0
    assert r["ratio_vs_stamping"] == pytest.approx(
        r["sluice_rps"] / r["stamping_baseline_rps"], abs=0.01
    )
    assert set(r["targets_met"]) == {"ratio_vs_stamping>=0.9"}


def test_bench_enrich(stack: Stack) -> None:
    r = bench(stack, "enrich", "--seconds", "4", "--warmup", "2", "--limit", "40",
              "--baseline-seconds", "3")  # fmt: skip
    for k in ("throughput_rps", "limit_rps", "utilization", "max_1s_window_over_limit",
              "provider_429", "baseline_rps", "speedup", "worker_rss_mb_max"):  # fmt: skip
        assert k in r, k
    assert r["throughput_rps"] > 0 and r["baseline_rps"] > 0 and r["worker_rss_mb_max"] > 0


def test_bench_e2e(stack: Stack) -> None:
    r = bench(stack, "e2e", "--seconds", "4", "--warmup", "1", "--limit", "100", "--no-baseline",
              "--stack-warmup", "0")  # fmt: skip
    for k in ("overhead_p50_ms", "overhead_p99_ms", "others_p99_ms_clean",
              "others_p99_ms_failing", "others_p99_delta_ms", "targets_met"):  # fmt: skip
        assert r[k] is not None, k
    clean = r["runs"]["clean"]
    assert clean["emitted"] == clean["wanted"] > 0
    assert set(clean["hops_p50_p99_ms"]) == {"ingest", "enrich_minus_llm", "ordering_wait",
                                             "sequencer", "commit_visibility"}  # fmt: skip
    steps = clean["enrich_steps_le_ms"]  # scraped from the workers' /metrics
    assert set(steps) == {"bucket_wait", "admit", "settle"}
    assert all(p50 is not None for p50, _ in steps.values())
    p50, p99 = clean["sequencer_commit_le_ms"]  # scraped from the sequencer's /metrics
    assert p50 is not None and p99 is not None


def test_bench_http(stack: Stack) -> None:
    r = bench(stack, "http", "--calls", "200", "--concurrency", "16", "--latency", "fixed:20")
    assert r["all_ok"] is True
    assert r["sluice_cpu_ms_per_call"] > 0 and r["baseline_cpu_ms_per_call"] > 0
    assert r["ratio"] == pytest.approx(
        r["baseline_cpu_ms_per_call"] / r["sluice_cpu_ms_per_call"], rel=0.05
    )


def test_bench_replay(stack: Stack) -> None:
    r = bench(stack, "replay", "--records", "200", "--limit", "100", "--fresh-rate", "10",
              "--warmup", "1", "--baseline-seconds", "3", "--latency", "fixed:50")  # fmt: skip
    task = r["task"]
    assert (task["status"], task["matched"], task["sent"], r["replay_outcomes"]) == (
        "completed", 200, 200, 200)  # fmt: skip
    assert (r["dry_run"]["matched"], r["dry_run"]["paid_calls"]) == (200, 200)
    assert r["replay_drain_s"] > 0 and 0 < r["utilization"] <= 1.05
    assert r["fresh_measured"]["baseline"] > 0 and r["fresh_measured"]["replay"] > 0
    assert r["fresh_p99_delta_ms"] == r["fresh_p99_ms_replay"] - r["fresh_p99_ms_baseline"]
    hops = r["fresh_hops_p50_p99_ms"]
    assert all(p50 is not None for phase in hops.values() for p50, _ in phase.values()), hops
    assert r["ratio"] == pytest.approx(
        r["fresh_p99_ms_replay"] / r["fresh_p99_ms_baseline"], abs=0.01
    )
    cpu = r["cpu_during_replay"]["cpu_ms_per_record"]
    assert {"enrich", "ingest", "sequencer", "admin", "fakellm", "bench"} <= set(cpu), cpu
    assert set(r["targets_met"]) == {"provider_429==0", "utilization>=0.9",
                                     "fresh_p99_delta_ms<=100"}  # fmt: skip


def test_bench_peers(stack: Stack) -> None:
    # The peers' jars and LiteLLM's environment are made first (minutes on a cold cache).
    subprocess.run([sys.executable, "-c", "from bench.peers import litellm_peer, pc; pc.classpath(); "
                    "litellm_peer.ensure_venv(print)"], check=True, timeout=1800)  # fmt: skip
    # pc-default is pc-tuned's code at another concurrency: left out to save a minute
    r = bench(stack, "peers", "--tools", "sluice,pc-tuned,litellm", "--seconds", "4", "--warmup",
              "1", "--drain", "20", "--limit", "60", "--latency", "fixed:100", "--keys", "50",
              "--failing-keys", "10")  # fmt: skip
    rows = r["rows"]
    assert list(rows) == ["sluice", "pc-tuned", "litellm"]
    healthy = rows["sluice"]["records"] - r["failing_records"]
    for tool, row in rows.items():
        assert row["records"] == 5 * 54, tool  # (seconds + warmup) * rate, rate 0.9 * limit
        assert row["answered"] > 0 and row["e2e_p50_ms"] is not None, tool
    # sluice answers every healthy record, loses nothing and keeps each key's order.
    assert rows["sluice"]["answered"] == healthy
    assert rows["sluice"]["lost"] == 0 and rows["sluice"]["order_violations"] == 0
