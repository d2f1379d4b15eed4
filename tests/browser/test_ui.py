"""The web page at /ui, driven end to end in headless Chromium against the real server.

An analyst signs in with a token, sees the cost of a query before spending anything,
runs it, sees the chart with its 95 % intervals and a budget that went down; a compliance
reviewer sees the policy in plain words, its sha256 and the verified audit log. Errors are
shown in words. Screenshots of both views are saved (under docs/screenshots/ with
TACIT_UPDATE_SCREENSHOTS=1).

Needs Debian's `chromium` and `chromium-driver`; skipped without them unless
TACIT_REQUIRE_BROWSER=1 (as in CI), which turns a missing browser into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from server import REPO, Server, create_token_in_process

from privacy.keyring import MasterKey
from privacy.policy import load_policy
from service.dev.send import run
from service.dev.simulate import Simulation, World
from service.settings import DEFAULT_POLICY

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "docs" / "screenshots"
WAIT_S = 30

_missing = not (CHROMIUM.exists() and CHROMEDRIVER.exists() and shutil.which("chromium"))
if _missing and os.environ.get("TACIT_REQUIRE_BROWSER") == "1":
    pytest.fail(
        "TACIT_REQUIRE_BROWSER=1 but Chromium is missing: apt-get install chromium chromium-driver",
        pytrace=False,
    )
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_missing, reason="needs chromium and chromium-driver (apt-get)"),
]

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@dataclass
class Site:
    server: Server
    tokens: dict[str, str]
    today: date


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A real server holding two weeks of simulated traffic, and a token per role."""
    data = tmp_path_factory.mktemp("ui") / "data"
    with Server(data, MasterKey.generate_base64()) as server:
        tokens = {
            role: create_token_in_process(data, role, f"ui-{role}")
            for role in ("ingest", "analyst", "compliance")
        }
        now = datetime.now(UTC)
        world = World.from_policy(load_policy(DEFAULT_POLICY).policy)
        stats = run(
            Simulation(world, days=14, users=800, seed=11, now=now), server.url, tokens["ingest"]
        )
        assert stats.accepted > 10_000 and stats.failed == stats.rejected == 0
        yield Site(server, tokens, now.date())


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,1700",
        "--force-device-scale-factor=1", "--lang=en-US",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT_S)


def sign_in(driver: WebDriver, site: Site, token: str) -> None:
    driver.get(f"{site.server.url}/ui")
    wait(driver).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()


def set_date(driver: WebDriver, field: str, day: date) -> None:
    # Typing into a date input depends on the browser's locale; setting it does not.
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input', {bubbles: true}));",
        field,
        day.isoformat(),
    )


def budget_left(driver: WebDriver) -> dict[str, float]:
    meters = driver.find_elements(By.CSS_SELECTOR, "#budget-meters meter")
    return {
        str(m.get_attribute("aria-label")).split(":")[0]: float(str(m.get_attribute("value")))
        for m in meters
    }


def screenshot(driver: WebDriver, name: str, tmp: Path) -> None:
    """Into the test's tmp dir; into docs/screenshots/ with TACIT_UPDATE_SCREENSHOTS=1, so
    that ordinary runs leave the working tree alone."""
    folder = SCREENSHOTS if os.environ.get("TACIT_UPDATE_SCREENSHOTS") == "1" else tmp
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(folder / name))


def test_an_analyst_previews_runs_a_query_and_sees_the_chart_and_the_budget_go_down(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    token = site.tokens["analyst"]
    sign_in(browser, site, token)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "query-form")))
    Select(browser.find_element(By.ID, "metric")).select_by_value("task_completion_rate")
    first = site.today - timedelta(days=13)
    set_date(browser, "start", first)
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-day]").click()  # off: whole range
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-cohort]").click()  # on

    # The preview says what it costs before anything is spent.
    preview = browser.find_element(By.ID, "preview")
    wait(browser).until(lambda d: "3 cells" in preview.text)
    assert "ε 0.5 on each of 14 days" in preview.text
    assert "numerator ±" in preview.text and "denominator ±" in preview.text
    before = budget_left(browser)
    assert len(before) == 14 and set(before.values()) == {4.0}

    run = browser.find_element(By.ID, "run")
    assert "spend ε 0.5 \N{MULTIPLICATION SIGN} 14 days" in run.text
    run.click()
    result = wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert "ε 0.5 charged on each of 14 days" in result.text

    # The chart: a dot per released value, with its 95 % interval drawn around it.
    chart = browser.find_element(By.CSS_SELECTOR, "#chart svg")
    dots = chart.find_elements(By.CSS_SELECTOR, "circle")
    assert len(dots) >= 2  # control and treatment (the undeclared "other" may be empty)
    assert len(chart.find_elements(By.CSS_SELECTOR, ".series line")) >= 3 * len(dots)
    cells = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")]
    assert [c.split()[0] for c in cells] == ["control", "treatment", "other"]
    assert all("%" in c for c in cells[:2])

    wait(browser).until(lambda d: budget_left(d) != before)
    assert budget_left(browser) == {day: 3.5 for day in before}
    assert (
        "Lowest left in the chosen days: ε 3.5"
        in browser.find_element(By.ID, "budget-summary").text
    )

    # The token stays out of URLs and out of anything that outlives the tab.
    assert token not in browser.current_url
    assert browser.execute_script("return window.localStorage.length") == 0
    screenshot(browser, "analyst.png", tmp_path)


def test_an_analyst_filters_to_some_values_and_the_answer_holds_only_those(
    browser: WebDriver, site: Site
) -> None:
    sign_in(browser, site, create_token_in_process(site.server.data_dir, "analyst", "ui-filter"))
    wait(browser).until(ec.visibility_of_element_located((By.ID, "query-form")))
    Select(browser.find_element(By.ID, "metric")).select_by_value("event_count")
    set_date(browser, "start", site.today - timedelta(days=6))
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-day]").click()  # off
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-surface]").click()  # on
    rows = {
        r.find_element(By.CLASS_NAME, "filter-dim").text: [
            c.text for c in r.find_elements(By.CSS_SELECTOR, ".chip")
        ]
        for r in browser.find_elements(By.CSS_SELECTOR, "#filters .filter")
    }
    assert rows["surface"] == ["chat", "search", "ide", "docs", "other"]
    assert rows["task type"][-1] == "other" and rows["cohort"] == ["control", "treatment", "other"]
    preview = browser.find_element(By.ID, "preview")
    wait(browser).until(lambda d: "(5 cells)" in preview.text)

    # Untick everything but chat and ide: two cells, and the answer holds only those two.
    for key in ("search", "docs", "other"):
        index = rows["surface"].index(key)
        browser.find_element(By.CSS_SELECTOR, f"label[for=f-surface-{index}]").click()
    wait(browser).until(lambda d: "(2 cells)" in preview.text)
    browser.find_element(By.ID, "run").click()
    result = wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert "only surface chat, ide" in browser.find_element(By.ID, "result-meta").text
    cells = [r.text for r in result.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")]
    assert [c.split()[0] for c in cells] == ["chat", "ide"]

    # Nothing ticked in a row is no question at all: said at once, nothing can be run.
    for index in (0, 2):
        browser.find_element(By.CSS_SELECTOR, f"label[for=f-surface-{index}]").click()
    wait(browser).until(lambda d: "Tick at least one surface value" in preview.text)
    assert not browser.find_element(By.ID, "run").is_enabled()


def test_the_compliance_view_shows_the_policy_in_plain_words_and_the_verified_audit_log(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    sign_in(browser, site, site.tokens["compliance"])
    sha = wait(browser).until(lambda d: d.find_element(By.ID, "policy-sha").text)
    assert sha == httpx.get(f"{site.server.url}/healthz").json()["policy_sha256"]
    summary = browser.find_element(By.ID, "policy-summary").text
    assert summary.startswith("This policy collects 11 kinds of interaction event")
    sections = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#policy-sections h3")]
    assert "What the guarantee means for one person" in sections
    status = wait(browser).until(lambda d: d.find_element(By.ID, "chain-status").text or None)
    assert status.startswith("✓ verified: the hash chain of all")
    kinds = [
        r.text for r in browser.find_elements(By.CSS_SELECTOR, "#audit-table tbody td:nth-child(3)")
    ]
    assert "policy loaded" in kinds and "token created" in kinds
    assert not browser.find_element(By.ID, "tab-analyst").is_displayed()
    screenshot(browser, "compliance.png", tmp_path)


def test_an_unknown_token_is_refused_in_words(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, "tct_" + "x" * 43)
    error = wait(browser).until(ec.visibility_of_element_located((By.ID, "login-error")))
    assert error.text == "This token was not accepted. unknown or revoked token"
    assert browser.find_element(By.ID, "login").is_displayed()


def test_a_query_the_budget_cannot_pay_is_explained_before_it_is_run(
    browser: WebDriver, site: Site
) -> None:
    # Spend this analyst's whole budget of one day through the API: 4 queries of ε 1.0.
    token = create_token_in_process(site.server.data_dir, "analyst", "ui-spender")
    day = (site.today - timedelta(days=20)).isoformat()
    with site.server.client(token) as api:
        for metric in ("event_count", "active_users", "task_completion_rate", "abandonment_rate"):
            body = {"metric": metric, "start": day, "end": day, "epsilon": 1.0}
            assert api.post("/v1/queries", content=json.dumps(body)).status_code == 200
    sign_in(browser, site, token)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "query-form")))
    set_date(browser, "start", date.fromisoformat(day))
    set_date(browser, "end", date.fromisoformat(day))
    preview = browser.find_element(By.ID, "preview")
    wait(browser).until(lambda d: "Not enough budget left" in preview.text)
    assert f"Not enough budget left on {day}" in preview.text
    assert not browser.find_element(By.ID, "run").is_enabled()


def test_an_analyst_compares_cohorts_and_reads_the_lift_and_its_verdict_in_words(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    # Its own analyst, so that the other tests' budget figures stay theirs.
    token = create_token_in_process(site.server.data_dir, "analyst", "ui-analyst-compare")
    sign_in(browser, site, token)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "query-form")))
    Select(browser.find_element(By.ID, "metric")).select_by_value("task_completion_rate")
    set_date(browser, "start", site.today - timedelta(days=13))
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-day]").click()  # off: whole range
    compare = Select(browser.find_element(By.ID, "compare"))
    compare.select_by_value("cohort=control")
    # Choosing a comparison groups by its dimension.
    assert browser.find_element(By.ID, "gb-cohort").is_selected()
    preview = browser.find_element(By.ID, "preview")
    wait(browser).until(lambda d: "3 cells" in preview.text)
    browser.find_element(By.ID, "run").click()
    box = wait(browser).until(ec.visibility_of_element_located((By.ID, "comparison")))
    assert "Compared with cohort control" in box.text
    words = [li.text for li in box.find_elements(By.CSS_SELECTOR, "#comparison-words li")]
    assert len(words) == 2 and words[0].startswith("treatment against control: ")
    # Whether the interval excludes zero depends on the noise; the page says which, in words.
    assert ("The interval excludes zero" in words[0]) != ("could be noise alone" in words[0])
    chart = box.find_element(By.CSS_SELECTOR, "#lift-chart svg")
    assert chart.find_elements(By.CSS_SELECTOR, "line.zero-line")
    rows = chart.find_elements(By.CSS_SELECTOR, ".lift-row")
    assert [r.find_element(By.TAG_NAME, "text").text for r in rows] == ["treatment", "other"]
    assert rows[0].find_elements(By.CSS_SELECTOR, "line.lift-interval")  # the interval
    # The comparison is charged as the query alone: ε 0.5 on each day, nothing more.
    assert "ε 0.5 charged on each of 14 days" in browser.find_element(By.ID, "result").text
    # A count cannot be compared: the control hides.
    Select(browser.find_element(By.ID, "metric")).select_by_value("event_count")
    assert not browser.find_element(By.ID, "compare-field").is_displayed()
    screenshot(browser, "compare.png", tmp_path)


def test_an_analyst_reads_a_funnel_chart_with_each_steps_interval(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    token = create_token_in_process(site.server.data_dir, "analyst", "ui-analyst-funnel")
    sign_in(browser, site, token)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "query-form")))
    Select(browser.find_element(By.ID, "metric")).select_by_value("session_funnel")
    set_date(browser, "start", site.today - timedelta(days=13))
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-day]").click()  # off: whole range
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-surface]").click()
    preview = browser.find_element(By.ID, "preview")
    wait(browser).until(lambda d: "5 cells" in preview.text)
    assert "each count of sessions by steps reached" in preview.text
    browser.find_element(By.ID, "run").click()
    box = wait(browser).until(ec.visibility_of_element_located((By.ID, "funnel")))
    steps = ["click_through", "copy_paste", "task_completion:outcome=success"]
    cells = box.find_elements(By.CSS_SELECTOR, "#funnel-chart svg .funnel-cell")
    assert len(cells) == 5  # chat, search, ide, docs, other
    labels = [c.find_element(By.CSS_SELECTOR, ".funnel-cell-label").text for c in cells]
    assert labels[0].startswith("chat: ") and "sessions shown a response" in labels[0]
    drawn = 0
    for cell in cells:
        rows = cell.find_elements(By.CSS_SELECTOR, ".funnel-step")
        assert [r.find_element(By.CSS_SELECTOR, ".funnel-step-name").text for r in rows] == steps
        bars = [r.find_elements(By.CSS_SELECTOR, "rect.funnel-bar") for r in rows]
        widths = [float(str(b[0].get_attribute("width"))) for b in bars if b]
        assert widths == sorted(widths, reverse=True)  # each step at most the one before
        for r in rows:
            if r.find_elements(By.CSS_SELECTOR, "rect.funnel-bar"):
                assert r.find_elements(By.CSS_SELECTOR, "line.funnel-interval")
                drawn += 1
    assert drawn >= 9  # simulated chat, search and ide traffic goes through every step
    table = browser.find_element(By.ID, "result-table").text
    assert "Steps (share of sessions shown a response, 95 % interval)" in table
    assert "click_through" in table
    assert "ε 0.5 charged on each of 14 days" in browser.find_element(By.ID, "result").text
    screenshot(browser, "funnel.png", tmp_path)


def test_an_analyst_asks_for_totals_and_the_total_row_is_the_sum_of_the_rows(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    token = create_token_in_process(site.server.data_dir, "analyst", "ui-analyst-totals")
    sign_in(browser, site, token)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "query-form")))
    Select(browser.find_element(By.ID, "metric")).select_by_value("event_count")
    set_date(browser, "start", site.today - timedelta(days=13))
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-day]").click()  # off: whole range
    browser.find_element(By.CSS_SELECTOR, "label[for=gb-surface]").click()
    assert browser.find_element(By.ID, "totals-field").is_displayed()
    browser.find_element(By.ID, "totals").click()
    preview = browser.find_element(By.ID, "preview")
    wait(browser).until(lambda d: "5 cells" in preview.text)
    browser.find_element(By.ID, "run").click()
    wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "tr.total-row")))
    body = browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")
    values = [int(r.find_elements(By.TAG_NAME, "td")[1].text.replace(",", "")) for r in body]
    *parts, total = values
    assert len(parts) == 5 and total == sum(parts)  # whole events, exactly
    assert body[-1].find_element(By.TAG_NAME, "td").text == "total"
    notes = str(browser.find_element(By.ID, "result-notes").get_attribute("textContent"))
    assert "Totals: the total of the range is the sum of its rows' values" in notes
    assert "ε 0.5 charged on each of 14 days" in browser.find_element(By.ID, "result").text
    # Medians cannot be totalled: the control hides.
    Select(browser.find_element(By.ID, "metric")).select_by_value("dwell_time_median")
    assert not browser.find_element(By.ID, "totals-field").is_displayed()
    # Sums can; they cannot be compared (a total grows with each key's traffic).
    Select(browser.find_element(By.ID, "metric")).select_by_value("copy_span_length_total")
    assert browser.find_element(By.ID, "totals-field").is_displayed()
    assert not browser.find_element(By.ID, "compare-field").is_displayed()
