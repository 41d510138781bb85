"""docs/operations.md names only what exists: settings, admin endpoints, alerts; README links it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic_settings import BaseSettings

import services.admin.settings
import services.enrich.settings
import services.fakellm.main
import services.router.settings
import services.sequencer.settings
import shared.settings
from services.admin.app import create_app
from services.admin.settings import AdminSettings
from shared.settings import KAFKA_PROP_PREFIX, load
from tests.unit.test_alert_rules import RULES, github_anchors

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
MODULES = (shared.settings, services.enrich.settings, services.router.settings,
           services.sequencer.settings, services.admin.settings, services.fakellm.main)  # fmt: skip
SETTING = re.compile(r"SLUICE_[A-Z0-9_]+_(?=<|\*)|SLUICE_[A-Z0-9_]*[A-Z0-9]")
ENDPOINT = re.compile(r"`(GET|POST) (/[^`?\s]*)")


def _subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in {sub, *_subclasses(sub)}}


def known_settings() -> set[str]:
    """Every variable a settings model of sluice reads, and every ``"SLUICE_..."`` literal
    the services read themselves (the admin client's ``SLUICE_ADMIN_URL``, ...)."""
    assert MODULES  # imported for their settings classes
    names: set[str] = set()
    for cls in _subclasses(BaseSettings):
        if not cls.__module__.startswith(("shared.", "services.")):
            continue
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        names |= {prefix + field.upper() for field in cls.model_fields}
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]:
        names |= set(re.findall(r"[\"'](SLUICE_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


def test_every_sluice_setting_the_guide_names_is_real() -> None:
    known = known_settings()
    assert {"SLUICE_MAX_IN_FLIGHT", "SLUICE_PARKED_DRAIN_RPS", "SLUICE_ADMIN_LAG_WINDOW_S",
            "SLUICE_DEAD_MODE", "SLUICE_ADMIN_URL"} <= known  # fmt: skip
    named = set(SETTING.findall(GUIDE.read_text()))
    assert len(named) > 20
    unknown = {n for n in named if n not in known and not n.startswith(KAFKA_PROP_PREFIX)}
    assert not unknown, f"docs/operations.md names settings sluice does not read: {sorted(unknown)}"


def test_every_admin_endpoint_the_guide_names_is_served() -> None:
    app = create_app(load(AdminSettings, admin_token="guide-check-token-0123456789"))
    served = {(method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
              for path, ops in app.openapi()["paths"].items() for method in ops}  # fmt: skip
    named = {(m, re.sub(r"\{[^}]*\}", "{}", p)) for m, p in ENDPOINT.findall(GUIDE.read_text())}
    assert len(named) >= 6
    assert named <= served, sorted(named - served)


def test_every_alert_has_a_runbook_section_and_a_row_in_the_table() -> None:
    text = GUIDE.read_text()
    anchors = github_anchors(text)
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for name in alerts:
        assert name.lower() in anchors, name
        assert f"[`{name}`](#{name.lower()})" in text, name
    for question in ("poll loop", "max.poll.interval.ms", "per-partition lag alerts",
                     "separate DLQ for timed-out calls", "provider is down"):  # fmt: skip
        assert re.search(rf"^\*\*\d\. .*{re.escape(question)}", text, re.MULTILINE), question


def test_the_readme_links_the_guide() -> None:
    assert "(docs/operations.md)" in (ROOT / "README.md").read_text()
