"""The operator page in a real headless browser (Debian's chromium), on a real Kafka and Redis.

One browser session walks the page as an operator would: a wrong token, the
right one, pause a provider with a typed reason (seen in Redis, in the page and
in the audit list), a blank reason refused, resume, a change made elsewhere
showing up by itself, a reload that keeps the token, then the viewer token
(read only). Screenshots go to the test's tmp dir (and ``SLUICE_ARTIFACTS_DIR``).
Throughout, the tokens must not appear in the page's HTML, the service's log
records, ``/metrics`` or error bodies.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from devtools.stack.resolve import Stack
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.admin import OP, VIEW, pause_in_redis, serve_admin
from tests.support.browser import chromium, console_errors, screenshot, wait_until
from tests.support.enrich import write_config
from tests.support.kafka import produce

pytestmark = pytest.mark.integration

ODD = "<img src=x onerror=alert(1)> & co"  # a provider name with HTML in it
REASON = 'disk <b>full</b> on "db-2" & more'
LAG_WAIT_S = 60.0  # a loaded broker can fail a few samples before the first good one
PROJECT_LOGGERS = ("services", "shared", "devtools", "uvicorn", "fastapi")


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", rpm=600)
    doc = json.loads(path.read_text())
    doc["providers"][ODD] = {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}
    path.write_text(json.dumps(doc))
    return path


def some_lag(bootstrap: str, pipeline: str) -> None:
    """Records in P.work and an enrich group that committed part of them: lag to show."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    produce(bootstrap, f"{pipeline}.work",
            [(f"k{i}".encode(), b"{}", None) for i in range(40)])  # fmt: skip
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{pipeline}.enrich"})
    offsets = [TopicPartition(f"{pipeline}.work", p, 2) for p in range(3)]
    try:
        for attempt in range(30):  # a new broker's coordinator may still be loading
            try:
                c.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == 29:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


STALE_TRIES = 5
T = TypeVar("T")


def fresh(read: Callable[[], T]) -> T:
    """``read()``, again if an element it used was replaced meanwhile: the page swaps
    its fragments every few seconds, so an element found may be gone a moment later."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(STALE_TRIES - 1):
        try:
            return read()
        except StaleElementReferenceException:
            continue
    return read()


def text(el: Any) -> str:
    return str(el.text)


def enabled(el: Any) -> bool:
    return bool(el.is_enabled())


class Page:
    """The operator page in the browser, by what an operator sees."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.webdriver.common.by import By

        self.d = driver
        self.base = base
        self.by = By
        self.html: list[str] = []  # every page source seen, to grep for tokens

    def source(self) -> str:
        self.html.append(self.d.page_source)
        return self.html[-1]

    def el(self, css: str) -> Any:
        return self.d.find_element(self.by.CSS_SELECTOR, css)

    def sign_in(self, token: str) -> None:
        field = wait_until(self.d, lambda d: self._visible("#token-form input[name=token]"),
                           "the token form")  # fmt: skip
        field.send_keys(token)
        self.el("#token-form button[type=submit]").click()

    def _visible(self, css: str) -> Any:
        found = self.d.find_elements(self.by.CSS_SELECTOR, css)
        return found[0] if found and found[0].is_displayed() else None

    def row(self, name: str) -> Any:
        return self.in_row(name, lambda tr: tr)

    def _row(self, name: str) -> Any:
        for tr in self.d.find_elements(self.by.CSS_SELECTOR, "#providers tr.provider"):
            if tr.find_element(self.by.CSS_SELECTOR, ".name").text == name:
                return tr
        return None

    def in_row(self, name: str, act: Callable[[Any], T]) -> T:
        """``act`` on the provider's row (None: no such row yet), found anew if a
        refresh swapped it meanwhile (:func:`fresh`)."""

        def once() -> T:
            tr = self._row(name)
            return act(tr) if tr is not None else cast(T, None)

        return fresh(once)

    def in_row_find(self, name: str, by: str, what: str, act: Callable[[Any], T]) -> T:
        """``act`` on the element ``what`` of the provider's row (see :meth:`in_row`)."""
        return self.in_row(name, lambda tr: act(tr.find_element(by, what)))

    def state(self, name: str) -> str | None:
        """The provider's state badge (running, paused), once its row is there."""
        return self.in_row_find(name, self.by.CSS_SELECTOR, ".badge", lambda el: el.text)

    def wait_state(self, name: str, state: str) -> Any:
        wait_until(self.d, lambda d: self.state(name) == state, f"{name} {state} in the page")
        return self.row(name)

    def flash(self) -> str:
        text: str = self.el("#flash").text
        return text

    def blocked_rows(self) -> list[Any]:
        rows: list[Any] = self.d.find_elements(self.by.CSS_SELECTOR, "#blocked tr.blocked-key")
        return rows

    def blocked_row(self, shown: str) -> Any:
        """The blocked key's row by the key as shown (its text, or base64), or None."""
        for tr in self.blocked_rows():
            if tr.find_element(self.by.CSS_SELECTOR, ".key").text == shown:
                return tr
        return None

    def audit_top(self) -> str:
        rows = self.d.find_elements(self.by.CSS_SELECTOR, "#audit tbody tr")
        return rows[0].text if rows else ""


def test_an_operator_pauses_and_resumes_a_provider_from_the_page(
    stack: Stack, topics: str, config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    some_lag(stack.bootstrap, topics)
    errors: list[str] = []
    with serve_admin(config_file=config, admin_lag_interval_s=0.5, admin_lag_window_s=2.0) as admin, \
            chromium() as driver:  # fmt: skip
        page = Page(driver, str(admin.http.base_url).rstrip("/"))
        driver.get(page.base + "/")
        assert "sluice admin" in driver.title
        assert not page.el("main").is_displayed()  # nothing shown before a token

        page.sign_in("wrong-token-0123456789")
        wait_until(driver, lambda d: "not accepted" in page.el("#token-problem").text,
                   "the wrong token refused")  # fmt: skip
        page.sign_in(OP)
        wait_until(driver, lambda d: page.state("primary") == "running", "the providers")
        assert page.el("#token-form input[name=token]").get_attribute("value") == ""
        assert driver.execute_script("return sessionStorage.getItem('sluice-admin-token')") == OP
        assert driver.execute_script("return document.cookie") == ""
        assert "operator" in page.el("#session").text

        # HTML in a provider's name is text, not markup
        assert page.state(ODD) == "running"
        assert driver.find_elements(page.by.TAG_NAME, "img") == []

        # lag per partition with its status: enrich is 2 records into P.work's partitions
        def enrich_cells() -> list[Any]:
            rows = driver.find_elements(page.by.CSS_SELECTOR, "#lag tbody tr")
            return [c for r in rows if r.text.startswith("enrich")
                    for c in r.find_elements(page.by.CSS_SELECTOR, ".cell")]  # fmt: skip

        wait_until(driver, lambda d: len(enrich_cells()) == 3, "enrich's P.work partitions",
                   LAG_WAIT_S)  # fmt: skip
        lag = admin.get("/v1/lag", VIEW, params={"group": f"{topics}.enrich"}).json()
        behind = sum(p["lag_records"] for p in lag["groups"][0]["partitions"])
        assert behind == 40 - 3 * 2
        assert fresh(lambda: sum(int(c.text) for c in enrich_cells())) == behind
        assert fresh(lambda: {c.get_attribute("data-status") for c in enrich_cells()}) <= {
            "ok", "unknown", "stalled", "stopped", "growing"}  # fmt: skip

        # a blank reason is refused by the API, and the page says why
        page.in_row_find("primary", page.by.NAME, "reason", lambda f: f.send_keys("   "))
        page.in_row_find("primary", page.by.CSS_SELECTOR, "button.pause", lambda b: b.click())
        wait_until(driver, lambda d: "reason" in page.flash(), "the refusal of a blank reason")
        assert pause_in_redis(stack.redis_url, topics, "primary") is None

        # pause with a typed reason: paused in Redis, in the page, in the audit list
        def type_reason(field: Any) -> None:
            field.clear()
            field.send_keys(REASON)

        page.in_row_find("primary", page.by.NAME, "reason", type_reason)
        page.in_row_find("primary", page.by.CSS_SELECTOR, "button.pause", lambda b: b.click())
        page.wait_state("primary", "paused")
        info = pause_in_redis(stack.redis_url, topics, "primary")
        assert info is not None and info.reason == REASON and info.by == "operator"
        assert page.in_row_find("primary", page.by.CSS_SELECTOR, ".reason", text) == REASON
        assert page.flash() == "primary paused"
        wait_until(driver, lambda d: "provider.pause" in page.audit_top(), "the pause audited")
        assert REASON in page.audit_top() and "primary" in page.audit_top()
        assert page.state(ODD) == "running"
        page.source()
        screenshot(driver, tmp_path, "admin-page-paused")

        # resume
        page.in_row_find("primary", page.by.CSS_SELECTOR, "button.resume", lambda b: b.click())
        page.wait_state("primary", "running")
        assert pause_in_redis(stack.redis_url, topics, "primary") is None
        wait_until(driver, lambda d: "provider.resume" in page.audit_top(), "the resume audited")
        records = admin.get("/v1/audit", VIEW).json()["records"]
        assert [(r["action"], r["target"], r["who"]) for r in records] == [
            ("provider.resume", "primary", "operator"), ("provider.pause", "primary", "operator")]  # fmt: skip

        # the page refreshes itself: a pause made through the API shows up untouched
        assert admin.post("/v1/providers/primary/pause", json={"reason": "from the API"}).is_success
        page.wait_state("primary", "paused")
        assert page.in_row_find("primary", page.by.CSS_SELECTOR, ".reason", text) == "from the API"

        # a reload keeps the token (this tab's session storage) and asks for nothing
        driver.refresh()
        page.wait_state("primary", "paused")
        assert not page.el("#token-form").is_displayed()
        page.source()

        # the viewer token: everything readable, the actions disabled
        page.el("#forget").click()
        assert driver.execute_script("return sessionStorage.getItem('sluice-admin-token')") is None
        assert not page.el("main").is_displayed()
        page.sign_in(VIEW)
        wait_until(driver, lambda d: "read only" in page.el("#session").text, "the viewer session")
        page.wait_state("primary", "paused")
        assert not page.in_row_find("primary", page.by.CSS_SELECTOR, "button.resume", enabled)
        assert not page.in_row_find(ODD, page.by.CSS_SELECTOR, "button.pause", enabled)
        assert not page.in_row_find(ODD, page.by.NAME, "reason", enabled)
        page.source()
        screenshot(driver, tmp_path, "admin-page-viewer")
        assert console_errors(driver) == []  # no script error, nothing blocked by the CSP

        errors += [admin.get("/page/providers", "wrong-token-0123456789").text,
                   admin.post("/v1/providers/primary/resume", VIEW).text,
                   admin.post("/v1/providers/primary/pause", json={"reason": " "}).text]  # fmt: skip
        metrics = admin.get("/metrics", None).text

    logged = [
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records
        if r.name.split(".")[0] in PROJECT_LOGGERS
    ]  # fmt: skip
    assert logged, "no log record of the service was captured"
    for token in (OP, VIEW):
        assert not [h for h in page.html if token in h], "a token in the page's HTML"
        assert not [line for line in logged if token in line], "a token in the log"
        assert token not in metrics, "a token in /metrics"
        assert not [e for e in errors if token in e], "a token in an error body"


def test_with_insecure_dev_the_page_asks_for_no_token(
    stack: Stack, topics: str, config: Path
) -> None:
    with serve_admin(config_file=config, insecure_dev=True, admin_token=None,
                     admin_viewer_token=None) as admin, chromium() as driver:  # fmt: skip
        page = Page(driver, str(admin.http.base_url).rstrip("/"))
        driver.get(page.base + "/")
        wait_until(driver, lambda d: page.state("primary") == "running", "the providers")
        assert not page.el("#token-form").is_displayed()
        assert not page.el("#forget").is_displayed()
        assert "insecure-dev" in page.el("#session").text
        assert driver.execute_script("return sessionStorage.getItem('sluice-admin-token')") is None


def test_an_operator_releases_a_blocked_key_from_the_page(
    stack: Stack, kafka_env: dict[str, str], pipeline: str, tmp_path: Path
) -> None:
    from selenium.webdriver.support import expected_conditions

    from services.sequencer.settings import SequencerSettings
    from tests.integration.test_admin_blocked import FREE, KEY, block_two_keys, per_key
    from tests.integration.test_sequencer import Running

    settings = load(SequencerSettings, worker_id=f"w-{pipeline}", dead_mode="block")
    create_topics(settings)
    with Running(settings), serve_admin() as admin, chromium() as driver:
        block_two_keys(stack, pipeline)
        page = Page(driver, str(admin.http.base_url).rstrip("/"))
        driver.get(page.base + "/")
        page.sign_in(OP)
        wait_until(driver, lambda d: len(page.blocked_rows()) == 2, "two blocked keys in the page",
                   LAG_WAIT_S)  # fmt: skip
        assert per_key(stack, pipeline, expect=1) == {FREE: [(6, "ok")]}
        row = page.blocked_row("cust-7")
        assert "src[0]@0" in row.text and "timeout" in row.text
        assert page.blocked_row("//4tYmlu") is not None  # a key that is not UTF-8: its base64
        screenshot(driver, tmp_path, "admin-page-blocked")

        row.find_element(page.by.CSS_SELECTOR, "button.release").click()
        alert = wait_until(driver, expected_conditions.alert_is_present(), "the confirmation")
        assert "Release cust-7?" in alert.text
        alert.accept()
        wait_until(driver, lambda d: page.flash() == "cust-7 released", "the release answered")
        keyed = per_key(stack, pipeline, expect=5)  # read_committed
        assert keyed[KEY] == [(0, "dead"), (1, "ok"), (2, "ok"), (3, "ok")]
        wait_until(driver, lambda d: page.blocked_row("cust-7") is None,
                   "cust-7 gone from the page", LAG_WAIT_S)  # fmt: skip
        assert len(page.blocked_rows()) == 1
        wait_until(driver, lambda d: "blocked.release" in page.audit_top(),
                   "the release audited", LAG_WAIT_S)  # fmt: skip
        assert "src/0/0" in page.audit_top()
        page.source()
        screenshot(driver, tmp_path, "admin-page-released")
        assert console_errors(driver) == []
    assert not [html for html in page.html if OP in html]
