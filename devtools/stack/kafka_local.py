"""A single-node Apache Kafka (KRaft) run from the official jars.

The broker jars (``org.apache.kafka:kafka_2.13`` with its runtime
dependencies) are resolved through Maven into a cache outside the repository;
storage is formatted in a temporary data folder with
``kafka.tools.StorageTool``; the broker runs as ``java kafka.Kafka``.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from devtools.stack import maven
from devtools.stack.ports import free_port, wait_until
from devtools.stack.procs import reap
from shared.errors import StackError

log = logging.getLogger(__name__)

KAFKA_VERSION = os.environ.get("SLUICE_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"


def _pom(version: str) -> str:
    return (
        resources.files("devtools.stack")
        .joinpath("kafka-pom.xml")
        .read_text()
        .replace("@KAFKA_VERSION@", version)
        .replace("@LOG4J_VERSION@", LOG4J_VERSION)
    )


def resolve_classpath(version: str = KAFKA_VERSION) -> str:
    """Resolve the broker's classpath through Maven once; cached afterwards."""
    return maven.classpath(f"kafka-{version}", _pom(version), f"the Apache Kafka {version} jars")


# The JVM options of the distribution's start scripts (kafka-run-class.sh): G1
# aiming at 20 ms pauses. The JVM's own default target is 200 ms, and a broker
# pause stalls every stage at once (produce acks, fetches, commits).
JVM_PERFORMANCE_OPTS = (
    "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)  # fmt: skip


def jvm_options(env: dict[str, str] | None = None) -> list[str]:
    """The broker's JVM options: ``SLUICE_KAFKA_JVM_OPTS`` (shell words) in place of
    :data:`JVM_PERFORMANCE_OPTS` when set, as ``KAFKA_JVM_PERFORMANCE_OPTS`` replaces
    them in the distribution's scripts (say, another collector). Words that do not
    parse (an unclosed quote) raise :class:`StackError` before anything starts."""
    given = (os.environ if env is None else env).get("SLUICE_KAFKA_JVM_OPTS", "").strip()
    if not given:
        return list(JVM_PERFORMANCE_OPTS)
    try:
        return shlex.split(given)
    except ValueError as exc:
        raise StackError(f"SLUICE_KAFKA_JVM_OPTS is not shell words ({exc}): {given!r}") from exc


@dataclass
class LocalKafka:
    """One KRaft broker+controller on free loopback ports."""

    data_dir: Path | None = None
    port: int = 0
    # Kept across restarts with the same data: the node was formatted for this quorum, and
    # a restart that moved its controller listener came back slowly or flapping.
    controller_port: int = 0
    heap: str = "768m"
    extra_config: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _own_dir: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "broker.log"

    @property
    def gc_log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "gc.log"

    def _properties(self, controller_port: int) -> str:
        assert self.data_dir is not None
        conf = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "5000",
        }
        conf.update(self.extra_config)
        return "".join(f"{k}={v}\n" for k, v in conf.items())

    def start(self, timeout_s: float = 90.0) -> LocalKafka:
        jvm = jvm_options()
        cp = resolve_classpath()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="sluice-kafka-"))
            self._own_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        formatted = (self.data_dir / "logs" / "meta.properties").exists()
        if not self.port:
            self.port = free_port()
        if not self.controller_port:
            self.controller_port = free_port()
        props = self.data_dir / "server.properties"
        props.write_text(self._properties(self.controller_port))
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(
            resources.files("devtools.stack").joinpath("log4j2.properties").read_text()
        )
        java = ["java", f"-Xmx{self.heap}", f"-Dlog4j2.configurationFile={log4j}", "-cp", cp]
        if not formatted:
            fmt = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(props)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {fmt.stderr.strip()[-800:]}")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*java, f"-Xms{self.heap}", *jvm,
                 f"-Xlog:gc:file={self.gc_log_path}:time,uptime:filecount=2,filesize=10M",
                 "kafka.Kafka", str(props)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        if not wait_until(
            self._ready, timeout_s, lambda: self.proc is not None and self.proc.poll() is not None
        ):
            tail = self.log_tail()
            self.stop()
            raise StackError(f"Kafka did not become ready in {timeout_s:.0f}s; log tail:\n{tail}")
        log.info("local Kafka ready at %s (data %s)", self.bootstrap, self.data_dir)
        return self

    def _ready(self) -> bool:
        return metadata_ok(self.bootstrap)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL with ``kill``); data is kept."""
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                reap(self.proc)
        self.proc = None

    def restart(self, timeout_s: float = 90.0) -> None:
        """Stop and start again on the same ports and data (a broker restart)."""
        self.stop()
        self.start(timeout_s)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def metadata_ok(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """Readiness: the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    try:
        md = admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return bool(md.brokers)


def wait_for_kafka(bootstrap: str, timeout_s: float = 60.0) -> None:
    if not wait_until(lambda: metadata_ok(bootstrap), timeout_s):
        raise StackError(
            f"Kafka at {bootstrap} did not answer a metadata request in {timeout_s:.0f}s"
        )


__all__ = ["LocalKafka", "metadata_ok", "resolve_classpath", "wait_for_kafka"]
