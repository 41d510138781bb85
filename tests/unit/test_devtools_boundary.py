"""Import boundaries: the dev wing stays out of the runtime, the enrich core out of Redis.

Importing a service's entry module (or the ``sluice`` command) loads no module
of ``devtools`` and none of ``bench``: only the CLI's ``dev``, ``demo`` and
``bench`` commands reach them, from inside the command. Each import runs in a
fresh interpreter, since this test process has the wing loaded already
(``tests/conftest.py`` takes its stack from it).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WING = ("devtools", "bench")
ENTRIES = (
    "services.ingest.main",
    "services.enrich.main",
    "services.router.main",
    "services.sequencer.main",
    "services.fakellm.main",
    "services.admin.main",
    "services.cli",
)
PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after(*modules: str) -> list[str]:
    """The names in ``sys.modules`` of a fresh interpreter after importing ``modules``."""
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    names: list[str] = json.loads(done.stdout.splitlines()[-1])
    return names


def of_the_wing(names: list[str]) -> list[str]:
    return [n for n in names if n.split(".")[0] in WING]


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_runtime_entry_loads_nothing_of_the_wing(entry: str) -> None:
    for root in WING:
        assert importlib.util.find_spec(root) is not None, f"{root} is not a package"
    assert of_the_wing(loaded_after(entry)) == []


def test_the_probe_sees_the_wing_once_a_dev_command_loads_it() -> None:
    """The check above can fail: a wing module loaded next to the CLI shows up."""
    loaded = of_the_wing(loaded_after("services.cli", "devtools.demo", "bench.main"))
    want = {"devtools.demo", "devtools.stack.resolve", "devtools.fleet.fleet", "bench.main"}
    assert want <= set(loaded)


def test_the_enrich_core_loads_no_store_client() -> None:
    """``Enricher`` works over the ProviderState seam: no redis module comes with it."""
    loaded = loaded_after("services.enrich.enricher")
    assert "services.enrich.enricher" in loaded
    assert [n for n in loaded if n.split(".")[0] == "redis"] == []
