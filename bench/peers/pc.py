"""Confluent Parallel Consumer as a peer: its jars through Maven, ``PcPeer.java`` run by ``java``.

The jar of ``parallel-consumer-core`` is taken without its transitive
dependencies (its parent POM names artifacts Maven Central does not serve) and
the ones it needs at run time are declared in ``pc-pom.xml``. ``PcPeer.java``
is run as a single source file (``java PcPeer.java``, JDK 11+): nothing to
build or install.
"""

from __future__ import annotations

from pathlib import Path

from devtools.fleet.processes import Processes
from devtools.stack import maven

PC_VERSION = "0.5.3.3"
HERE = Path(__file__).parent


def classpath() -> str:
    pom = (HERE / "pc-pom.xml").read_text().replace("@PC_VERSION@", PC_VERSION)
    return maven.classpath(f"peer-parallel-consumer-{PC_VERSION}", pom,
                           f"Confluent Parallel Consumer {PC_VERSION}'s jars")  # fmt: skip


def start(procs: Processes, name: str, *, bootstrap: str, source: str, output: str, group: str,
          url: str, model: str, concurrency: int | None) -> None:  # fmt: skip
    """One Parallel Consumer process as ``name`` (``concurrency`` None: its default)."""
    procs.spawn(name, ["java", "-Xmx512m", "-XX:+UseG1GC", "-cp", classpath(),
                       "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", str(HERE / "PcPeer.java"),
                       bootstrap, source, output, group, url, model,
                       "default" if concurrency is None else str(concurrency)])  # fmt: skip
