"""The whole pipeline as local processes: fakellm, ingest, enrich workers, router, sequencer.

Used by ``sluice demo``, ``sluice bench e2e`` and the chaos test. Every service
runs as ``python -m services.cli <service>`` with its output in
``<log_dir>/<name>.log`` (:mod:`devtools.fleet.processes`). Each gets a static
group membership (``group.instance.id`` = its name) and a fixed worker id, so
a service killed and started again takes its partitions back at once instead
of waiting for a session timeout, and a restarted sequencer fences its
predecessor's open transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from devtools.fleet.digest import lag_lines, llm_line, log_warnings
from devtools.fleet.processes import Processes, start_fakellm
from devtools.fleet.restarts import Restarts
from devtools.stack.ports import free_port
from shared.errors import SluiceError

SERVICES = ("ingest", "router", "sequencer")


@dataclass(frozen=True)
class FleetSpec:
    bootstrap: str
    redis_url: str
    pipeline: str
    source_topic: str
    log_dir: Path
    rungs: str = "2s,10s"
    enrich_workers: int = 2
    max_in_flight: int = 128
    llm_rps: int = 400
    latency: str = "lognormal:400:0.5"
    faults: Mapping[str, float] = field(default_factory=dict)
    fake_config: Mapping[str, Any] = field(default_factory=dict)  # more of fakellm's config
    call_timeout_s: float = 3.0
    breaker: Mapping[str, Any] = field(default_factory=dict)  # the provider's breaker settings
    dead_mode: str = "skip"
    env: Mapping[str, str] = field(default_factory=dict)  # added to every service's environment

    @property
    def names(self) -> tuple[str, ...]:
        enrich = tuple(f"enrich-{i + 1}" for i in range(self.enrich_workers))
        return ("ingest", *enrich, "router", "sequencer")

    @property
    def groups(self) -> dict[str, int]:
        """Consumer group → members expected when the fleet is up."""
        p = self.pipeline
        return {f"{p}.ingest": 1, f"{p}.enrich": self.enrich_workers, f"{p}.router": 1,
                f"{p}.sequencer": 1}  # fmt: skip


class Fleet:
    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.procs = Processes(spec.log_dir)
        self.kills: dict[str, int] = {}
        self.fake_url = ""
        # service → its Prometheus port (the same across restarts)
        self.metrics_ports: dict[str, int] = {}
        self._due: dict[str, float] = {}  # service that exited -> when to start it again

    # -- processes -----------------------------------------------------------
    def _service_env(self, name: str) -> dict[str, str]:
        s = self.spec
        return {
            "SLUICE_KAFKA_BOOTSTRAP": s.bootstrap, "SLUICE_REDIS_URL": s.redis_url,
            "SLUICE_PIPELINE": s.pipeline, "SLUICE_SOURCE_TOPIC": s.source_topic,
            "SLUICE_LOG_FORMAT": "json", "SLUICE_CONFIG_FILE": str(s.log_dir / "sluice.yaml"),
            "SLUICE_RETRY_RUNGS": s.rungs, "SLUICE_MAX_IN_FLIGHT": str(s.max_in_flight),
            "SLUICE_DEAD_MODE": s.dead_mode, "SLUICE_WORKER_ID": f"{s.pipeline}-{name}",
            "SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID": f"{s.pipeline}-{name}",
            "SLUICE_METRICS_PORT": str(self.metrics_ports.setdefault(name, free_port())),
            **s.env,
        }  # fmt: skip

    def start_fakellm(self) -> str:
        self.fake_url = start_fakellm(self.procs, self.spec.latency, self.spec.llm_rps)
        self.configure_llm({"faults": dict(self.spec.faults), "hang_seconds": 30,
                            **self.spec.fake_config})  # fmt: skip
        return self.fake_url

    def write_config(self) -> None:
        s = self.spec
        config = {
            "providers": {"fakellm": {"kind": "openai", "base_url": f"{self.fake_url}/v1",
                                      "timeout_s": s.call_timeout_s,
                                      "requests_per_minute": s.llm_rps * 60,
                                      "max_connections": max(32, s.max_in_flight),
                                      "breaker": dict(s.breaker)}},
            "tasks": {"sentiment": {"model": "fake-sentiment-1", "providers": ["fakellm"]}},
            "default_task": "sentiment",
        }  # fmt: skip
        (s.log_dir / "sluice.yaml").write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        """fakellm, then every service."""
        self.start_fakellm()
        self.write_config()
        for name in self.spec.names:
            self.start_service(name)

    def start_service(self, name: str) -> None:
        self.procs.spawn(name, [name.split("-")[0]], self._service_env(name))

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (no goodbye: no commit, no leave-group, an open transaction)."""
        self.procs.kill(name)
        self.kills[name] = self.kills.get(name, 0) + 1

    def check(self) -> None:
        """Raise if a process exited that nobody stopped or killed."""
        self.procs.check()

    def supervise(self, restarts: Restarts, now: float) -> list[str]:
        """Start again each service that exited on its own, once its back-off
        (:mod:`devtools.fleet.restarts`) is over, as a deployment's supervisor
        would; a line for each exit and each start.

        Raises :class:`ProcessExited` when fakellm exits (it stands in for the
        provider) or a service exits more often than ``restarts`` allows.
        """
        lines = []
        for name, code in self.procs.unbidden().items():
            if name in self._due:
                continue
            due = restarts.exited(name, now) if name in self.spec.names else None
            if due is None:
                raise self.procs.exit_error(name, code)
            self._due[name] = due
            lines.append(f"{name} exited with {code} (see {self.procs.log_path(name)}); "
                         f"starting it again in {due - now:.0f} s")  # fmt: skip
        for name, due in list(self._due.items()):
            if now >= due:
                del self._due[name]
                self.start_service(name)
                lines.append(f"{name} started again (restart {restarts.total[name]})")
        return lines

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Every consumer group is stable with all its members."""
        if not wait_groups(self.spec.bootstrap, self.spec.groups, self.check, timeout_s):
            raise SluiceError(
                f"services did not join their consumer groups in {timeout_s:.0f}s; logs in {self.spec.log_dir}"
            )

    def stop(self, grace_s: float = 60.0) -> None:
        """SIGTERM everything, wait for a clean exit (SIGKILL after ``grace_s``)."""
        self.procs.stop(grace_s=grace_s)

    def metrics(self, name: str) -> str:
        """The service's Prometheus exposition text."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        return httpx.get(url, timeout=5).text

    def snapshot(self) -> Path:
        """Every running service's ``/metrics`` and fakellm's stats into the log dir, for a
        failure to be read after the fleet is gone; the file's path."""
        out = self.spec.log_dir / f"snapshot-{int(time.time())}.txt"
        parts = []
        for name in sorted(self.metrics_ports):
            try:
                text = self.metrics(name)
            except httpx.HTTPError as exc:
                text = f"(not scraped: {exc})"
            parts.append(f"==> {name} /metrics\n{text}")
        try:
            parts.append(f"==> fakellm stats\n{json.dumps(self.llm_stats(), indent=1)}")
        except httpx.HTTPError as exc:
            parts.append(f"==> fakellm stats\n(not read: {exc})")
        out.write_text("\n".join(parts))
        return out

    def digest(self, warnings_each: int = 4) -> str:
        """Where the fleet stands, in a few lines for a failure message
        (:mod:`devtools.fleet.digest`): lag per group and topic, fakellm's counters,
        each service's last warnings."""
        lines = []
        for name in sorted(self.metrics_ports):
            try:
                lines += [f"{name} lag {x}" for x in lag_lines(self.metrics(name))]
            except httpx.HTTPError as exc:
                lines.append(f"{name}: metrics not scraped ({exc})")
        try:
            lines.append(llm_line(self.llm_stats(), time.time()))
        except httpx.HTTPError as exc:
            lines.append(f"fakellm: stats not read ({exc})")
        for name in sorted({*self.spec.names, "fakellm"}):
            path = self.procs.log_path(name)
            if path.exists():
                with open(path, errors="replace") as f:
                    lines += [f"{name} | {x}" for x in log_warnings(f, warnings_each)]
        return "\n".join(lines)

    # -- fakellm ------------------------------------------------------------------
    def configure_llm(self, update: Mapping[str, Any]) -> None:
        httpx.put(
            f"{self.fake_url}/_control/config", json=dict(update), timeout=5
        ).raise_for_status()

    def llm_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.fake_url}/_control/stats", timeout=5).json()
        return stats

    def outage(self, seconds: float) -> None:
        """fakellm answers 503 to everything for ``seconds``."""
        httpx.post(
            f"{self.fake_url}/_control/outage", json={"seconds": seconds}, timeout=5
        ).raise_for_status()


def wait_groups(
    bootstrap: str, want: Mapping[str, int], check: Callable[[], None], timeout_s: float
) -> bool:
    """Whether every group of ``want`` (group → members) became stable with at least
    that many members within ``timeout_s``; ``check()`` runs between looks (it raises
    when a process that should join died)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check()
        try:
            futs = admin.describe_consumer_groups(list(want), request_timeout=10)
            groups = {g: f.result(15) for g, f in futs.items()}
        except (KafkaException, TimeoutError):
            # a broker that is still starting (or a starved machine) answers late or
            # not at all; the next look asks again, the deadline bounds the wait
            groups = {}
        if groups and all(
            g.state == ConsumerGroupState.STABLE and len(g.members) >= want[name]
            for name, g in groups.items()
        ):
            return True
        time.sleep(0.5)
    return False
