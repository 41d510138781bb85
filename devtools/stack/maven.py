"""Jars resolved through Maven into a cache outside the repository.

:func:`classpath` writes a POM into ``<cache>/<name>/`` and asks Maven for its
runtime classpath once (``dependency:build-classpath``); afterwards the cached
classpath is used as long as every jar it names still exists.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from shared.errors import StackError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    base = os.environ.get("SLUICE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sluice"
    )
    return Path(base)


def require_java() -> None:
    if shutil.which("java") is None:
        raise StackError(
            "no JDK found: install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)"
        )


def classpath(name: str, pom: str, what: str) -> str:
    """The runtime classpath of ``pom`` (cached under ``name``); ``what`` names the jars
    in messages ("the Kafka jars")."""
    home = cache_dir() / name
    cp_file = home / "classpath.txt"
    pom_file = home / "pom.xml"
    if cp_file.exists() and pom_file.exists() and pom_file.read_text() == pom:
        cp = cp_file.read_text().strip()
        if cp and all(Path(p).exists() for p in cp.split(os.pathsep)):
            return cp
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(f"Maven (mvn) not found: it resolves {what}; apt-get install maven")
    home.mkdir(parents=True, exist_ok=True)
    pom_file.write_text(pom)
    log.info("resolving %s through Maven (first run only)", what)
    tmp = home / "classpath.txt.tmp"
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom_file), "dependency:build-classpath",
         f"-Dmdep.outputFile={tmp}"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or not tmp.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise StackError(f"Maven could not resolve {what}:\n" + "\n".join(tail))
    tmp.replace(cp_file)
    return cp_file.read_text().strip()
