"""The report in a real browser: headless Chromium through Playwright.

Needs ``pip install playwright`` and a Chromium binary; Playwright's own browser
download is not used. On Debian: ``apt-get install -y chromium`` (``.ci/run`` does it
when ``/usr/bin/chromium`` is missing); elsewhere set ``DGPRM_CHROMIUM`` to a Chromium
or Chrome executable. Skipped, with the reason, only when one of the two is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dgprm.report import write_report
from tests.report_demo import build_demo

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
CHROMIUM = os.environ.get("DGPRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install -y chromium, or set DGPRM_CHROMIUM",
        allow_module_level=True,
    )
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REVIEW_COPY = Path("/tmp/report_screenshot.png")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    demo = build_demo(out / "demo")
    write_report(
        demo.tree,
        out / "report.html",
        scores=[demo.scores],
        trajectories=[demo.trajectories],
        bench=[demo.bench],
    )
    return out / "report.html"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, report):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.problems = []  # console errors, uncaught exceptions, and any request off the page
    page.on(
        "console",
        lambda m: (
            page.problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: (
            page.problems.append(f"request: {r.url}")
            if not r.url.startswith(("file:", "data:"))
            else None
        ),
    )
    page.goto(report.as_uri())
    yield page
    page.close()


def visible(page, selector: str) -> int:
    return sum(element.is_visible() for element in page.query_selector_all(selector))


def test_the_tree_renders_collapses_and_searches_without_console_errors(page, tmp_path):
    assert page.title().startswith("dgprm report:")
    assert visible(page, "ul.tree > li.parent") == 5
    assert visible(page, "li.child > details > summary") == 14

    first = page.locator("ul.tree > li.parent").first
    first.locator(":scope > details > summary").click()  # collapse one parent
    assert not first.locator("ul.children").is_visible()
    assert visible(page, "li.child > details > summary") < 14
    first.locator(":scope > details > summary").click()  # and open it again
    assert first.locator("ul.children").is_visible()
    page.click("#collapse-all")
    assert visible(page, "li.child > details > summary") == 0
    page.click("#expand-all")
    assert visible(page, "li.child > details > summary") == 14

    child = page.locator("#node-c0007")
    assert not child.get_by_text("Member criteria").is_visible()
    child.locator("summary").click()  # a child opens its provenance
    assert child.get_by_text("Member criteria").is_visible()
    assert child.get_by_text("validator: verdict and reason").is_visible()

    page.fill("#tree-search", "rounded")
    assert visible(page, "ul.tree > li.parent") == 1
    assert visible(page, "li.child") == 1 and page.locator("#node-c0014").is_visible()
    assert page.locator("#node-c0014 mark").inner_text().lower() == "rounded"
    assert page.inner_text("#search-count") == "1 match"
    page.fill("#tree-search", "zzz-no-such-criterion")
    assert visible(page, "ul.tree > li.parent") == 0 and page.locator("#no-match").is_visible()
    page.fill("#tree-search", "")
    assert visible(page, "ul.tree > li.parent") == 5 and visible(page, "li.child") == 14
    assert page.locator("ul.tree mark").count() == 0

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    shutil.copy(shot, REVIEW_COPY)
    assert page.problems == []


def test_tables_sort_links_reveal_nodes_and_steps_carry_their_text(page):
    page.click("table.stats th:has-text('AUROC')")
    values = page.eval_on_selector_all(
        "table.stats tbody tr",
        "rows => rows.map(r => r.cells[9].dataset.v).filter(v => v !== '').map(Number)",
    )
    assert values == sorted(values, reverse=True) and len(values) > 5
    page.click("#collapse-all")
    page.click("table.stats a[href='#node-c0010']")
    page.wait_for_function("document.querySelector('#node-c0010').checkVisibility()")
    assert page.locator("#node-c0010").is_visible()
    row = page.locator("table.heatmap tbody tr").first
    title = row.get_attribute("title")
    assert title and title.startswith("1. Let's call the price of a pencil p")
    cell = row.locator("td.steptext")
    cell.click()
    assert "open" in (cell.get_attribute("class") or "")
    assert page.locator("td.err-cell").count() == 2
    assert page.locator("figure.chart img").evaluate("img => img.naturalWidth") > 500
    assert page.problems == []
