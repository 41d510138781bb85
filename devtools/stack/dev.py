"""``sluice dev up|down|status``: a local stack that outlives the command.

Kafka, Redis, fakellm and the admin API (on loopback, with an operator token
made for this stack: see :mod:`devtools.stack.dev_admin`). State (addresses,
pids, data folders, the token's file) is kept in ``.sluice/dev/`` under the
current directory so ``status`` and ``down`` find what ``up`` started. Kafka
and Redis come from :mod:`devtools.stack.resolve`'s order, minus Docker
(compose is the Docker path for a long-running stack).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from devtools.stack.dev_admin import admin_env, exports, token_notice, write_token
from devtools.stack.kafka_local import LocalKafka, metadata_ok
from devtools.stack.ports import free_port, port_open, wait_until
from devtools.stack.redis_local import LocalRedis, redis_ping
from shared.errors import StackError

STATE_DIR = Path(os.environ.get("SLUICE_DEV_DIR", ".sluice/dev"))
START_TIMEOUT_S = 60.0  # a busy machine takes a while to import the admin's web stack


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


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _entry(proc: subprocess.Popen[bytes] | None, address: str, log: Path) -> dict[str, Any]:
    return {"pid": proc.pid if proc else None, "address": address, "log": str(log)}


def _spawn(name: str, argv: list[str], address: str, ready: Callable[[], bool],
           env: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """``sluice *argv`` in the background, logging to ``<name>.log``, once ``ready()``."""
    log_path = (STATE_DIR / f"{name}.log").resolve()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", *argv], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    if not wait_until(ready, START_TIMEOUT_S, lambda: proc.poll() is not None):
        if proc.poll() is None:
            proc.kill()
        raise StackError(f"{name} did not start; see {log_path}")
    return _entry(proc, address, log_path)


def _save(services: dict[str, Any]) -> dict[str, Any]:
    state = {"started": time.time(), "services": services}
    _state_file().write_text(json.dumps(state, indent=2))
    return state


def up(with_fakellm: bool = True) -> tuple[dict[str, Any], str | None]:
    """Start Kafka, Redis, fakellm and the admin in the background (idempotent): the state,
    and the admin's operator token if this call made it (None if all was running). A
    service that does not start stops the ones started before it."""
    state = read_state()
    wanted = {"kafka", "redis", "admin"} | ({"fakellm"} if with_fakellm else set())
    if state is not None:
        running = state["services"]
        if wanted <= set(running) and all(_alive(s.get("pid")) for s in running.values()):
            return state, None
        down()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        return _start(with_fakellm)
    except BaseException:
        down()
        raise


def _start(with_fakellm: bool) -> tuple[dict[str, Any], str]:
    services: dict[str, Any] = {}
    kafka = LocalKafka(data_dir=(STATE_DIR / "kafka").resolve()).start()
    services["kafka"] = _entry(kafka.proc, kafka.bootstrap, kafka.log_path)
    _save(services)
    redis = LocalRedis(data_dir=(STATE_DIR / "redis").resolve()).start()
    services["redis"] = _entry(redis.proc, redis.url, redis.log_path)
    _save(services)
    if with_fakellm:
        port = free_port()
        argv = ["fakellm", "--host", "127.0.0.1", "--port", str(port)]
        services["fakellm"] = _spawn("fakellm", argv, f"http://127.0.0.1:{port}",
                                     partial(port_open, "127.0.0.1", port))  # fmt: skip
        _save(services)
    token_file = (STATE_DIR / "admin.token").resolve()
    token = write_token(token_file)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["admin", "--host", "127.0.0.1", "--port", str(port)]
    env = admin_env(os.environ, stack_exports(services), token_file)
    admin = _spawn("admin", argv, url, partial(_http_ok, f"{url}/healthz"), env)
    services["admin"] = {**admin, "token_file": str(token_file)}
    return _save(services), token


def down() -> list[str]:
    """Stop what ``up`` started (SIGTERM; SIGKILL after 30 s, which the name then says);
    data folders and the admin's token are removed."""
    state = read_state()
    stopped: list[str] = []
    if not state:
        return stopped
    for name, svc in reversed(state["services"].items()):  # the admin first, Kafka last
        pid = svc.get("pid")
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_until(partial(_dead, pid), 30):
                os.kill(pid, signal.SIGKILL)
                name += " (killed after 30 s)"
            stopped.append(name)
    _state_file().unlink(missing_ok=True)
    (STATE_DIR / "admin.token").unlink(missing_ok=True)
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


def stack_exports(services: dict[str, Any]) -> dict[str, str]:
    """Where a service of the pipeline finds the stack's Kafka, Redis and fakellm."""
    out = {"SLUICE_KAFKA_BOOTSTRAP": services["kafka"]["address"],
           "SLUICE_REDIS_URL": services["redis"]["address"]}  # fmt: skip
    if "fakellm" in services:
        out["SLUICE_FAKELLM_URL"] = f"{services['fakellm']['address']}/v1"
    return out


def client_exports(services: dict[str, Any]) -> dict[str, str]:
    """The same, and the admin API with its token's file (for ``sluice providers`` etc.)."""
    admin = services["admin"]
    return {**stack_exports(services), "SLUICE_ADMIN_URL": admin["address"],
            "SLUICE_ADMIN_TOKEN_FILE": admin["token_file"]}  # fmt: skip


def run(argv: list[str]) -> int:
    """``sluice dev up | down | status``: print addresses, what stopped, or health."""
    parser = argparse.ArgumentParser(
        prog="sluice dev", description="Local stack: Kafka, Redis, fakellm, the admin API."
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    if args.action == "up":
        state, token = up()
        for name, svc in state["services"].items():
            print(f"{name:8} {svc['address']}   (log {svc['log']})")
        print(f"\n{exports(client_exports(state['services']))}\n")
        print("\n".join(token_notice(token, state["services"]["admin"]["token_file"])))
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
