"""LiteLLM as a peer: ``litellm_app.py`` in a virtual environment of its own.

The environment (``<cache>/peers/litellm-<version>``) holds the pinned LiteLLM,
aiokafka and redis and nothing of sluice; it is made on first use.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from devtools.fleet.processes import Processes
from devtools.stack.maven import cache_dir
from shared.errors import StackError

LITELLM_VERSION = "1.110.2"
REQUIREMENTS = (f"litellm=={LITELLM_VERSION}", "aiokafka==0.12.0", "redis==5.2.1")
HERE = Path(__file__).parent


def venv() -> Path:
    return cache_dir() / "peers" / f"litellm-{LITELLM_VERSION}"


def python() -> Path:
    return venv() / "bin" / "python"


def ensure_venv(say: Callable[[str], None]) -> None:
    """Make the environment unless a complete one is there (marked when pip finished)."""
    done = venv() / "sluice-requirements.txt"
    if done.exists() and done.read_text().split() == list(REQUIREMENTS):
        return
    say(f"making LiteLLM's own environment in {venv()} (first run only) ...")
    for argv in ([sys.executable, "-m", "venv", "--clear", str(venv())],
                 [str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS]):  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise StackError("making LiteLLM's environment failed:\n" + "\n".join(tail))
    done.write_text("\n".join(REQUIREMENTS) + "\n")


def start(procs: Processes, name: str, *, bootstrap: str, source: str, output: str, errors: str,
          group: str, api_base: str, model: str, rpm: int, redis_url: str,
          concurrency: int) -> None:  # fmt: skip
    """One consumer process with its own LiteLLM Router as ``name``."""
    redis = urlparse(redis_url)
    procs.spawn(name, [str(python()), str(HERE / "litellm_app.py"), bootstrap, source, output,
                       errors, group, api_base, model, str(rpm), redis.hostname or "127.0.0.1",
                       str(redis.port or 6379), str(concurrency)],
                # its bundled model price map: no fetch from the internet at import
                {"LITELLM_LOCAL_MODEL_COST_MAP": "True"})  # fmt: skip
