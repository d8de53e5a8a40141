"""The failed-work page in a real browser: a real prefork worker, the real exporter, Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from selenium.common.exceptions import JavascriptException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.support.broker_exporter import ExporterProcess
from tests.support.browser import (
    PHONE,
    chromium,
    console,
    csp_violations,
    screenshot,
    texts,
    wait_for,
)
from tests.support.failed import DEAD_LETTERS, OpsClient, records
from tests.support.messages import item
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.tracing import traced_env
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

FAST = {"QUEUE_POLL_INTERVAL": "0.3", "METRICS_RENDER_INTERVAL": "0"}
TOKEN = "an-operator-token-of-some-length"
TRACE_URL = "https://tracing.example/trace/{trace_id}?from=ops"
KIND_NAMES = {"exhausted": "exhausted", "dead_letter": "dead letter"}
#: Sets window.__xss if any of it is ever parsed as HTML and allowed to run.
PAYLOAD = (
    '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    '<svg onload="window.__xss=3"></svg>'
)
RECORD_ROWS = "#records tbody tr[data-id]"
GROUP_ROWS = "#groups tbody tr"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path) as driver:
        yield driver


def page_url(exporter: ExporterProcess, query: str = "") -> str:
    return f"http://127.0.0.1:{exporter.ops_port}/failed{query}"


def settled(driver: WebDriver) -> None:
    """Wait until the page has loaded its current view (its body is no longer aria-busy)."""
    wait_for(
        driver,
        lambda d: d.execute_script("return !document.body.hasAttribute('aria-busy')"),
        "the page to load its view",
    )


def shown(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


def group_rows(driver: WebDriver) -> list[dict[str, Any]]:
    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, GROUP_ROWS):
        cells = row.find_elements(By.TAG_NAME, "td")
        rows.append(
            {
                "kind": cells[0].text,
                "queue": cells[1].text,
                "task": cells[2].text,
                "exception": cells[3].text,
                "count": int(cells[4].text),
                "newest": cells[5].find_element(By.TAG_NAME, "time").get_attribute("datetime"),
            }
        )
    return rows


def api_groups(ops: OpsClient, query: str = "") -> list[dict[str, Any]]:
    status, answer = ops.get(f"/api/v1/failed/groups{query}")
    assert status == 200
    return [
        {
            "kind": KIND_NAMES[group["kind"]],
            "queue": shown(group["queue"]),
            "task": shown(group["task"]),
            "exception": shown(group["exception"]),
            "count": group["count"],
            "newest": group["newest"],
        }
        for group in answer["groups"]
    ]


def row_ids(driver: WebDriver) -> list[str]:
    return [
        str(row.get_attribute("data-id"))
        for row in driver.find_elements(By.CSS_SELECTOR, RECORD_ROWS)
    ]


def api_ids(ops: OpsClient, query: str = "") -> list[str]:
    status, answer = ops.get(f"/api/v1/failed{query}")
    assert status == 200
    return [entry["id"] for entry in answer["items"]]


def quiet(entries: list[dict[str, Any]]) -> bool:
    """Whether a stretch of the console holds no policy violation and no error at all."""
    assert csp_violations(entries) == []
    assert [e for e in entries if e["level"] == "SEVERE"] == []
    return True


def unlabelled_controls(driver: WebDriver) -> list[str]:
    """Every input, select and button without an accessible name, by its outer HTML."""
    found: list[str] = driver.execute_script(
        """
        return [...document.querySelectorAll("input, select, button")]
          .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label")
                         && !(c.tagName === "BUTTON" && c.textContent.trim()))
          .map((c) => c.outerHTML);
        """
    )
    return found


def test_the_page_lists_filters_and_groups_what_the_api_counts_and_writes_nothing(
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    receiver: OtlpReceiver,
    browser: WebDriver,
) -> None:
    # Given a real worker's failed work: two exhausted tasks of one kind, one of another,
    # and a dead letter; and an exporter with no OPS_TOKEN (read-only), linking to our tracer
    env = {**traced_env(worker_env, receiver), **FAST}
    start_worker(env)
    app.send_task("tests.always_fail", args=["a"])
    app.send_task("tests.always_fail", args=["b"])
    app.send_task("tests.retry_without_exc", args=["c"])
    redis_client.lpush("default", "not json at all")
    wait_until(
        lambda: len(records(redis_client)) == 3 and len(records(redis_client, DEAD_LETTERS)) == 1,
        30,
        message="three exhausted records and a dead letter",
    )
    exporter = start_exporter({**env, "OPS_TRACE_URL": TRACE_URL})
    ops = OpsClient(exporter.ops_port)

    # When an operator opens the page
    browser.get(page_url(exporter))
    settled(browser)
    # Then the group view counts what the API counts, group by group, with the newest time
    assert group_rows(browser) == api_groups(ops)
    assert browser.find_element(By.ID, "groups-total").text == "4 records in 3 groups"
    assert {row["task"]: row["count"] for row in group_rows(browser)} == {
        "tests.always_fail": 2,
        "tests.retry_without_exc": 1,
        "—": 1,
    }
    screenshot(browser, "failed-page-groups.png")
    # And the list holds the API's records, newest first
    assert row_ids(browser) == api_ids(ops) and len(row_ids(browser)) == 4
    # And every row with a trace links to it through OPS_TRACE_URL
    _, listing = ops.get("/api/v1/failed")
    traced = {entry["id"]: entry["trace_id"] for entry in listing["items"] if entry["trace_id"]}
    assert len(traced) == 3  # the exhausted tasks ran in sampled traces
    for record_id, trace_id in traced.items():
        link = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{record_id}"] a.trace')
        assert link.get_attribute("href") == TRACE_URL.format(trace_id=trace_id)
        assert link.get_attribute("rel") == "noopener noreferrer"
    # And, read-only, there is no write control at all, and the page says why
    for selector in ("[data-write]", "#confirm", "input.select", "#requeue-filter"):
        assert browser.find_elements(By.CSS_SELECTOR, selector) == [], selector
    buttons = texts(browser.find_elements(By.TAG_NAME, "button"))
    assert not [text for text in buttons if "Requeue" in text or "Delete" in text], buttons
    assert browser.find_element(By.ID, "mode").text.startswith("Read-only")
    assert not browser.find_element(By.ID, "token-form").is_displayed()
    # And every control has a label
    assert unlabelled_controls(browser) == []

    # When the operator filters by task from the keyboard
    task = browser.find_element(By.ID, "f-task")
    task.send_keys("tests.always_fail", Keys.ENTER)
    settled(browser)
    # Then the address holds the API's own query key, and the page shows what the API answers
    assert browser.current_url == page_url(exporter, "?task=tests.always_fail")
    assert (
        row_ids(browser) == api_ids(ops, "?task=tests.always_fail") and len(row_ids(browser)) == 2
    )
    assert group_rows(browser) == api_groups(ops, "?task=tests.always_fail")
    # And Back returns to the whole set
    browser.back()
    settled(browser)
    assert len(row_ids(browser)) == 4 and task.get_attribute("value") == ""
    assert quiet(console(browser))

    # When a value is bad: the API's 400 is shown, and its field is marked and focused
    since = browser.find_element(By.ID, "f-since")
    since.send_keys("yesterday", Keys.ENTER)
    settled(browser)
    assert browser.find_element(By.ID, "status").text == (
        "since: not an RFC 3339 time (e.g. 2026-12-07T10:00:00Z)"
    )
    assert since.get_attribute("aria-invalid") == "true"
    assert since == browser.switch_to.active_element
    refused = [e for e in console(browser) if e["level"] == "SEVERE"]
    assert refused and all("status of 400" in str(e["message"]) for e in refused), refused

    # When a shared address is opened: its filter is filled in and applied
    browser.get(page_url(exporter, "?kind=dead_letter"))
    settled(browser)
    assert browser.find_element(By.ID, "f-kind").get_attribute("value") == "dead_letter"
    assert row_ids(browser) == api_ids(ops, "?kind=dead_letter") and len(row_ids(browser)) == 1
    # And a paged list walks the API's pages
    browser.get(page_url(exporter, "?limit=3"))
    settled(browser)
    first = row_ids(browser)
    browser.find_element(By.ID, "older").click()
    settled(browser)
    _, page_one = ops.get("/api/v1/failed?limit=3")
    assert first == [entry["id"] for entry in page_one["items"]]
    assert row_ids(browser) == api_ids(ops, f"?limit=3&cursor={page_one['next']}")
    assert "cursor=" in browser.current_url
    assert not browser.find_element(By.ID, "older").is_enabled()

    # When the record view of the retried task is opened
    retried = next(r for r in records(redis_client) if r.task == "tests.retry_without_exc")
    browser.get(page_url(exporter, f"#record={retried.id}"))
    settled(browser)
    # Then it shows the API's record, its traceback whole
    _, record = ops.get(f"/api/v1/failed/{retried.id}")
    assert browser.find_element(By.ID, "record-traceback").text == record["traceback"].strip()
    assert "MaxRetriesExceededError" in record["traceback"]
    assert browser.find_element(By.ID, "record-title").text == (
        "tests.retry_without_exc: MaxRetriesExceededError"
    )
    browser.find_element(By.ID, "record-back").click()
    settled(browser)
    assert len(row_ids(browser)) == 4

    # And at a phone's width nothing needs scrolling sideways
    browser.set_window_size(*PHONE)
    settled(browser)
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    screenshot(browser, "failed-page-phone.png")
    # And the browser logged no other error and no policy violation
    assert quiet(console(browser))


def test_a_bulk_requeue_shows_the_dry_run_then_runs_and_the_page_shows_them_gone(
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    browser: WebDriver,
) -> None:
    # Given three tasks that failed their only run (they succeed the second time), another
    # failure, and an exporter whose reads and writes need the token
    env = {**worker_env, **FAST}
    start_worker(env)
    keys = [f"runs:{n}" for n in range(3)]
    for key in keys:
        app.send_task("tests.fail_first_run", args=[key, "secret"])
    app.send_task("tests.fail_with_message", args=["not this one"])
    wait_until(lambda: len(records(redis_client)) == 4, 20, message="four exhausted records")
    exporter = start_exporter({**env, "OPS_TOKEN": TOKEN})

    # When the operator opens the page: it asks for the token first
    browser.get(page_url(exporter, "?task=tests.fail_first_run"))
    settled(browser)
    assert row_ids(browser) == []
    token = browser.find_element(By.ID, "token")
    assert token == browser.switch_to.active_element
    token.send_keys(TOKEN, Keys.ENTER)
    settled(browser)
    # Then the filtered list shows the three, and the token is kept for the tab only
    assert len(row_ids(browser)) == 3
    assert browser.execute_script("return sessionStorage.getItem('jobpilot-ops-token')") == TOKEN
    assert browser.get_cookies() == [] and TOKEN not in browser.current_url

    # When the operator requeues every record matching the filter
    browser.find_element(By.ID, "requeue-filter").click()
    go = dry_run_answered(browser)
    # Then the confirmation shows the dry run's matched and skipped, and nothing has changed
    assert counts(browser) == {"Matched": "3", "To be requeued": "3"}
    assert browser.find_element(By.ID, "confirm-what").text == (
        "Every record matching task = tests.fail_first_run."
    )
    assert go.text == "Requeue 3"
    assert len(records(redis_client)) == 4
    screenshot(browser, "failed-page-confirmation.png")
    # When it is confirmed
    go.click()
    wait_for(browser, lambda d: not go.is_displayed(), "the requeue's answer")
    # Then the dialog shows the result, and the tasks run again and succeed
    assert counts(browser) == {"Matched": "3", "Done: requeued": "3"}
    wait_until(
        lambda: all(redis_client.get(key) == b"2" for key in keys), 20, message="three reruns"
    )
    # And once closed, the page shows them gone, and still after a reload
    browser.find_element(By.ID, "confirm-close").click()
    settled(browser)
    assert row_ids(browser) == []
    browser.refresh()
    settled(browser)
    assert row_ids(browser) == []
    assert [r.task for r in records(redis_client)] == ["tests.fail_with_message"]

    # When the last one is chosen by its checkbox and deleted
    browser.find_element(By.ID, "clear").click()
    settled(browser)
    (only,) = row_ids(browser)
    browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{only}"] input.select').click()
    browser.find_element(By.ID, "delete-selected").click()
    go = dry_run_answered(browser)
    assert counts(browser) == {"Matched": "1", "To be deleted": "1"}
    assert go.text == "Delete 1" and len(records(redis_client)) == 1
    go.click()
    wait_for(browser, lambda d: not go.is_displayed(), "the delete's answer")
    browser.find_element(By.ID, "confirm-close").click()
    settled(browser)
    # Then it is gone from the page and from the set
    assert row_ids(browser) == [] and records(redis_client) == []
    assert quiet(console(browser))

    # When the token is forgotten: it leaves the tab, and the page asks for it again
    app.send_task("tests.fail_with_message", args=["one more"])
    wait_until(lambda: len(records(redis_client)) == 1, 20, message="another record")
    browser.refresh()
    settled(browser)
    assert len(row_ids(browser)) == 1
    browser.find_element(By.ID, "token-forget").click()
    settled(browser)
    assert browser.execute_script("return sessionStorage.length") == 0
    assert row_ids(browser) == [] and browser.find_element(By.ID, "requeue-filter").get_attribute(
        "disabled"
    )
    assert browser.switch_to.active_element == browser.find_element(By.ID, "token")


def dry_run_answered(driver: WebDriver) -> WebElement:
    """The confirmation's go button, once it shows the dry run's answer."""
    go = driver.find_element(By.ID, "confirm-go")
    wait_for(driver, lambda d: go.is_enabled(), "the dry run's answer")
    return go


def counts(driver: WebDriver) -> dict[str, str]:
    terms = texts(driver.find_elements(By.CSS_SELECTOR, "#confirm-counts dt"))
    values = texts(driver.find_elements(By.CSS_SELECTOR, "#confirm-counts dd"))
    return dict(zip(terms, values, strict=True))


def test_a_records_xss_payload_stays_text_and_executes_nothing(
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    browser: WebDriver,
) -> None:
    # Given a task that failed with the payload as its exception's message, and a dead
    # letter whose task name is the payload (any producer can write one)
    env = {**worker_env, **FAST}
    start_worker(env)
    app.send_task("tests.fail_with_message", args=[PAYLOAD])
    redis_client.lpush("default", item(task=PAYLOAD))
    wait_until(
        lambda: len(records(redis_client)) == 1 and len(records(redis_client, DEAD_LETTERS)) == 1,
        20,
        message="the exhausted record and the dead letter",
    )
    (failed,) = records(redis_client)
    (dead,) = records(redis_client, DEAD_LETTERS)
    assert failed.message == PAYLOAD and dead.task == PAYLOAD
    # And a page with every control shown: writes need the token, which is typed in
    exporter = start_exporter({**env, "OPS_TOKEN": TOKEN, "OPS_READ_OPEN": "true"})
    browser.get(page_url(exporter))
    settled(browser)
    browser.find_element(By.ID, "token").send_keys(TOKEN, Keys.ENTER)
    settled(browser)

    # When the list, the groups, both records and a confirmation are shown
    message = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{failed.id}"] td.message')
    dead_task = browser.find_elements(By.CSS_SELECTOR, f'tr[data-id="{dead.id}"] td.code')[0]
    # Then every string is the payload's text, as written
    assert message.get_attribute("textContent") == PAYLOAD
    assert message.get_attribute("title") == PAYLOAD
    assert dead_task.text == PAYLOAD
    assert PAYLOAD in texts(browser.find_elements(By.CSS_SELECTOR, f"{GROUP_ROWS} td"))
    browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{dead.id}"] input.select').click()
    browser.find_element(By.ID, "delete-selected").click()
    dry_run_answered(browser)
    browser.find_element(By.ID, "confirm-close").click()
    for record in (failed, dead):
        browser.get(page_url(exporter, f"#record={record.id}"))
        settled(browser)
        fields = texts(browser.find_elements(By.CSS_SELECTOR, "#record-fields dd"))
        assert PAYLOAD in fields
    assert PAYLOAD in browser.find_element(By.ID, "record-title").text
    browser.get(page_url(exporter, f"#record={failed.id}"))
    settled(browser)
    assert browser.find_element(By.ID, "record-traceback").text.endswith(f"ValueError: {PAYLOAD}")
    # And nothing ran: no element was made from it, and the browser logged no violation at
    # all (one would mean the payload was parsed as HTML and only the policy stopped it)
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    assert browser.execute_script("return document.querySelectorAll('img, svg').length") == 0
    assert quiet(console(browser))

    # And the check sees a violation when there is one: a script that parses the payload
    # as HTML is refused by the page's Trusted Types rule, and the refusal is logged
    with pytest.raises(JavascriptException):
        browser.execute_script(
            "document.body.insertAdjacentHTML('beforeend', arguments[0])", PAYLOAD
        )
    assert csp_violations(console(browser)) != []
    assert browser.execute_script("return typeof window.__xss") == "undefined"
