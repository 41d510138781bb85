"""``sluice dev up|down|status``: a local stack that outlives the command.

State (addresses, pids, data folders) is kept in ``.sluice/dev/state.json``
under the current directory so ``status`` and ``down`` find what ``up``
started. Kafka and Redis come from :mod:`devtools.stack.resolve`'s order, minus
Docker (compose is the Docker path for a long-running stack).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from devtools.stack.kafka_local import LocalKafka, metadata_ok
from devtools.stack.ports import free_port, port_open, wait_until
from devtools.stack.redis_local import LocalRedis, redis_ping
from shared.errors import StackError

STATE_DIR = Path(os.environ.get("SLUICE_DEV_DIR", ".sluice/dev"))


def _state_file() -> Path:
    return STATE_DIR / "state.json"


def read_state() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(_state_file().read_text())
        return data
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _dead(pid: int) -> bool:
    return not _alive(pid)


def up(with_fakellm: bool = True) -> dict[str, Any]:
    """Start Kafka, Redis and fakellm in the background (idempotent)."""
    state = read_state()
    if state and all(_alive(s.get("pid")) for s in state["services"].values()):
        return state
    if state:
        down()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    kafka = LocalKafka(data_dir=(STATE_DIR / "kafka").resolve()).start()
    redis = LocalRedis(data_dir=(STATE_DIR / "redis").resolve()).start()
    services: dict[str, Any] = {
        "kafka": {
            "pid": kafka.proc.pid if kafka.proc else None,
            "address": kafka.bootstrap,
            "log": str(kafka.log_path),
        },
        "redis": {
            "pid": redis.proc.pid if redis.proc else None,
            "address": redis.url,
            "log": str(redis.log_path),
        },
    }
    if with_fakellm:
        port = free_port()
        log_path = (STATE_DIR / "fakellm.log").resolve()
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "fakellm", "--host", "127.0.0.1",
                 "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        if not wait_until(
            lambda: port_open("127.0.0.1", port), 20, lambda: proc.poll() is not None
        ):
            raise StackError(f"fakellm did not start; see {log_path}")
        services["fakellm"] = {
            "pid": proc.pid,
            "address": f"http://127.0.0.1:{port}",
            "log": str(log_path),
        }
    state = {"started": time.time(), "services": services}
    _state_file().write_text(json.dumps(state, indent=2))
    return state


def down() -> list[str]:
    """Stop what ``up`` started; data folders are removed."""
    state = read_state()
    stopped: list[str] = []
    if not state:
        return stopped
    for name, svc in state["services"].items():
        pid = svc.get("pid")
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_until(partial(_dead, pid), 30):
                os.kill(pid, signal.SIGKILL)
            stopped.append(name)
    _state_file().unlink(missing_ok=True)
    import shutil

    for sub in ("kafka", "redis"):
        shutil.rmtree(STATE_DIR / sub, ignore_errors=True)
    return stopped


def status() -> dict[str, dict[str, Any]]:
    state = read_state()
    if not state:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, svc in state["services"].items():
        healthy = False
        if name == "kafka":
            healthy = metadata_ok(svc["address"])
        elif name == "redis":
            healthy = redis_ping(svc["address"])
        elif _alive(svc.get("pid")):
            host, port = svc["address"].rsplit(":", 1)
            healthy = port_open(host.split("//")[-1], int(port))
        out[name] = {**svc, "running": _alive(svc.get("pid")), "healthy": healthy}
    return out


def run(argv: list[str]) -> int:
    """``sluice dev up | down | status``: print addresses, what stopped, or health."""
    parser = argparse.ArgumentParser(
        prog="sluice dev", description="Local stack: Kafka, Redis, fakellm."
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    if args.action == "up":
        state = up()
        for name, svc in state["services"].items():
            print(f"{name:8} {svc['address']}   (log {svc['log']})")
        kafka, redis = state["services"]["kafka"]["address"], state["services"]["redis"]["address"]
        print(f"\nexport SLUICE_KAFKA_BOOTSTRAP={kafka} SLUICE_REDIS_URL={redis}")
    elif args.action == "down":
        stopped = down()
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
    else:
        st = status()
        if not st:
            print("not running (sluice dev up starts it)")
            return 1
        for name, svc in st.items():
            print(f"{name:8} {'up' if svc['healthy'] else 'DOWN':5} {svc['address']}")
        return 0 if all(s["healthy"] for s in st.values()) else 1
    return 0
