"""The command-line tools the deploy checks run (helm, promtool), as the project's scripts
installed them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool_path(name: str) -> str:
    """The ``name`` that ``scripts/<name>.sh`` installed (else one on PATH); skips saying why not."""
    found = subprocess.run(["bash", str(ROOT / "scripts" / f"{name}.sh"), "--path"],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if found.returncode == 0:
        return found.stdout.strip()
    on_path = shutil.which(name)
    if on_path is None:
        pytest.skip(found.stderr.strip() or f"{name} is not installed")
    return on_path
