"""The operator page's DLQ view in headless Chromium, over the real pipeline.

Records die into ``P.dlq.error`` through the real enrich, router and sequencer
(fakellm's counted fault marker: a record fails its first call, then
succeeds). An operator filters the DLQ on the page, opens a record's detail,
asks for the dry run, confirms the replay (the confirmation shows the
estimate and the replay id), and watches its progress to ``completed``; the
record is then in ``P.output`` (``read_committed``), late, with the page's
replay id; the replay was audited as the operator's. A replay that waits (its
provider paused) is cancelled from the page; the viewer's Replay… is disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.stack.resolve import Stack
from tests.integration.test_admin_page import Page
from tests.integration.test_replay_pipeline import ONCE, config, of, services, topics, work
from tests.support.admin import OP, VIEW, Client, serve_admin
from tests.support.browser import chromium, console_errors, screenshot, wait_until
from tests.support.dlq import dead_record
from tests.support.kafka import produce
from tests.support.tail import Tail

pytestmark = pytest.mark.integration
__all__ = ["config", "topics"]  # the fixtures, shared with the pipeline's replay tests

A, B = b"cust-a", b"cust-b"


def open_dlq(driver: Any, admin: Client, token: str, dlq: str, counted: str) -> Page:
    """The page signed in with ``token``, once the DLQ's counts say ``counted``, and
    ``dlq`` chosen in the filter."""
    from selenium.webdriver.support.ui import Select

    page = Page(driver, str(admin.http.base_url).rstrip("/"))
    driver.get(page.base + "/")
    page.sign_in(token)
    wait_until(driver, lambda d: counted in page.el(f'#dlq-counts tr[data-dlq="{dlq}"]').text,
               f"{counted} in the {dlq} DLQ's counts", 30)  # fmt: skip
    Select(page.el("#dlq-filter select[name=dlq]")).select_by_value(dlq)
    return page


def test_an_operator_replays_a_dead_record_from_the_page(
    stack: Stack, topics: str, config: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select

    with (services(config, topics), serve_admin(config_file=config) as admin,
          Tail(stack.bootstrap, f"{topics}.output") as out,
          Tail(stack.bootstrap, f"{topics}.dlq.error") as dlq, chromium() as driver):  # fmt: skip
        produce(stack.bootstrap, f"{topics}.work", [work(0, A), work(1, A, ONCE), work(2, B, ONCE)])
        dlq.until(lambda ms: len(ms) >= 2, 60, "1 and 2 dead in P.dlq.error")
        out.until(lambda ms: len(ms) >= 3, 30, "0, and the gap markers of 1 and 2")

        page = open_dlq(driver, admin, OP, "error", "bad_request 2")

        # filter: kind and key; one record, its detail on click
        Select(page.el("#dlq-filter select[name=kind]")).select_by_value("bad_request")
        page.el("#dlq-filter input[name=key]").send_keys("cust-a")
        page.el("#dlq-filter button.show").click()
        rows = wait_until(driver, lambda d: d.find_elements(page.by.CSS_SELECTOR, "tr.dlq-record"),
                          "the filtered records")  # fmt: skip
        assert len(rows) == 1 and "cust-a" in rows[0].text and "bad_request" in rows[0].text
        assert rows[0].find_element(page.by.CSS_SELECTOR, ".replay-count").text == "0"
        detail = page.el("tr.dlq-detail")
        assert not detail.is_displayed()
        rows[0].click()
        assert detail.is_displayed()
        assert "sluice.error.kind" in detail.text and "bad_request" in detail.text
        assert "History" in detail.text

        # dry run: the estimate of those filters
        page.el("#dlq-filter button.dry-run").click()
        wait_until(driver, lambda d: page.el("#dlq-estimate .matched").text == "1", "the estimate")
        assert page.el("#dlq-estimate .selected").text == "1"
        assert page.el("#dlq-estimate .refused").text.startswith("0")
        screenshot(driver, tmp_path, "admin-page-dlq-estimate")

        # replay: the confirmation shows the estimate and a new replay id; then the progress
        page.el("#dlq-estimate button.replay").click()
        alert = wait_until(driver, expected_conditions.alert_is_present(), "the confirmation")
        asked = alert.text
        assert "1 record matched in error" in asked and "1 to send" in asked, asked
        assert "replay id: page-" in asked, asked
        replay_id = asked.rsplit("replay id: ", 1)[1].strip()
        alert.accept()
        progress = wait_until(driver, lambda d: d.find_elements(page.by.CSS_SELECTOR, "#dlq-progress"),
                              "the progress", 10)  # fmt: skip
        assert progress[0].get_attribute("data-replay-id") == replay_id
        wait_until(driver, lambda d: page.el("#dlq-progress").get_attribute("data-status") == "completed",
                   "the replay completed in the page", 60)  # fmt: skip
        assert "1 / 1 sent" in page.el("#dlq-progress").text
        assert page.el("#dlq-progress progress").get_attribute("value") == "1"
        assert not driver.find_elements(page.by.CSS_SELECTOR, "#dlq-progress button.cancel")
        page.source()
        screenshot(driver, tmp_path, "admin-page-dlq-replayed")

        # the record in P.output, late, with the page's replay id; 2 (key b) was not replayed
        out.until(lambda ms: len(ms) >= 4, 30, "1's replayed success in P.output")
        assert of(out.messages[-1]) == (1, "ok", "true", replay_id, 1)
        out.settle(2)
        assert [of(m)[:2] for m in out.messages if m.key() == B] == [(2, "dead")]
        records = admin.get("/v1/audit", VIEW).json()["records"]
        started = [r for r in records if r["action"] == "replay.start"]
        assert [(r["who"], r["target"], r["params"]["key"]) for r in started] == [
            ("operator", "error", "cust-a")]  # fmt: skip
        assert console_errors(driver) == []
    assert not [html for html in page.html if OP in html]


def test_an_operator_cancels_a_waiting_replay_from_the_page_and_a_viewer_may_not(
    stack: Stack, topics: str, config: Path
) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select

    dead = [dead_record(i, key=b"k%d" % i, text=f"ticket {i}") for i in range(3)]
    produce(stack.bootstrap, f"{topics}.dlq.timeout", [(r.key, r.value, r.headers) for r in dead])
    with serve_admin(config_file=config) as admin, chromium() as driver:
        # the task's only provider is paused: the replay waits until it is cancelled
        assert admin.post("/v1/providers/primary/pause", json={"reason": "hold"}).is_success
        page = open_dlq(driver, admin, VIEW, "timeout", "timeout 3")
        page.el("#dlq-filter button.dry-run").click()
        wait_until(driver, lambda d: page.el("#dlq-estimate .matched").text == "3", "the estimate")
        assert not page.el("#dlq-estimate button.replay").is_enabled()  # the viewer's

        page.el("#forget").click()
        page.sign_in(OP)
        Select(page.el("#dlq-filter select[name=dlq]")).select_by_value("timeout")
        page.el("#dlq-filter button.dry-run").click()
        wait_until(driver, lambda d: page.el("#dlq-estimate button.replay").is_enabled(),
                   "Replay… for the operator")  # fmt: skip
        page.el("#dlq-estimate button.replay").click()
        wait_until(driver, expected_conditions.alert_is_present(), "the confirmation").accept()
        wait_until(driver, lambda d: "waiting" in page.el("#dlq-progress").text,
                   "the replay waiting for its provider")  # fmt: skip
        replay_id = page.el("#dlq-progress").get_attribute("data-replay-id")
        assert page.el("#dlq-progress").get_attribute("data-status") == "running"
        page.el("#dlq-progress button.cancel").click()
        wait_until(
            driver, expected_conditions.alert_is_present(), "the cancel's confirmation"
        ).accept()
        wait_until(driver, lambda d: page.el("#dlq-progress").get_attribute("data-status") == "cancelled",
                   "the replay cancelled in the page")  # fmt: skip
        assert page.el("#dlq-progress .sent").text.startswith("0 / ")  # nothing sent
        assert "waiting" not in page.el("#dlq-progress").text
        assert not driver.find_elements(page.by.CSS_SELECTOR, "#dlq-progress button.cancel")
        done = admin.get(f"/v1/replays/{replay_id}", VIEW).json()
        assert (done["status"], done["sent"]) == ("cancelled", 0), done
        actions = [(r["action"], r["who"]) for r in admin.get("/v1/audit", VIEW).json()["records"]]
        assert ("replay.cancel", "operator") in actions and ("replay.start", "operator") in actions
        assert console_errors(driver) == []
