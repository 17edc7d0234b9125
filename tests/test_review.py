"""The report page in a real headless browser (Debian's chromium through /usr/bin/chromedriver),
and the review loop: a small run built by `xinstruction build` against the TGI-protocol test
server; the funnel numbers read from the DOM against summary.json; the sample browser filtered by
a reject reason and searched; two records vetoed and one accepted in the page, review.jsonl
downloaded and given to `xinstruction export --review`: the vetoed records are gone, the others
carry the review in their provenance, and the card counts it."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from test_report import LANGUAGES, build_run, expected_funnel, jsonl, start_server, summary
from xinstruction_dataset import cli
from xinstruction_dataset.errors import UserError
from xinstruction_dataset.hub.review import Review

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1300,1000",
)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path):
    """One chromium for the module, offline, with a fresh profile and downloads going to `downloads`."""
    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="xinstruction-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    # No network: the report must work from disk alone.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    server = start_server()
    try:
        yield build_run(tmp_path_factory.mktemp("review"), server)
    finally:
        server.kill()


def open_report(browser, run: Path) -> None:
    browser.get((run / "report" / "index.html").as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def shown_rows(browser) -> list:
    return browser.find_elements(By.CSS_SELECTOR, "#sample-table tbody tr:not(.full)")


def wait_for_status(browser, text: str) -> None:
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "status").text.startswith(text))


def click(browser, element) -> None:
    """A real click, with the element in the middle of the window (the header and the review bar
    are sticky and may cover its edges)."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def choose(browser, name: str, value: str) -> None:
    Select(browser.find_element(By.CSS_SELECTOR, f"#filters [name={name}]")).select_by_value(value)


def test_funnel_in_the_dom_is_the_summaries(browser, run_dir: Path) -> None:
    open_report(browser, run_dir)
    for language in LANGUAGES:
        expected = expected_funnel(run_dir, language)
        cells = browser.find_elements(By.CSS_SELECTOR, f"#funnel-table td[data-language='{language}']")
        shown = {cell.get_attribute("data-key"): int(cell.text.replace(",", "")) for cell in cells}
        assert {key: shown[key] for key in expected} == expected
    # The page's script and style come from disk (and the browser is offline: see `browser`).
    linked = browser.execute_script("return [...document.querySelectorAll('script[src], link[href], img[src]')].map((e) => e.src || e.href)")
    assert linked and all(url.startswith("file://") for url in linked), linked


def test_sample_browser_filters_by_reject_reason_and_searches(browser, run_dir: Path) -> None:
    open_report(browser, run_dir)
    total = browser.execute_script("return XReport.state.index.count")
    bad = {lang: summary(run_dir, "curation", lang)["rejected"].get("judge:bad", 0) for lang in LANGUAGES}
    assert sum(bad.values()) > 0
    choose(browser, "reason", "judge:bad")
    wait_for_status(browser, f"{sum(bad.values())} of {total} samples")
    rows = shown_rows(browser)
    assert len(rows) == sum(bad.values())
    assert {row.get_attribute("data-reason") for row in rows} == {"judge:bad"}
    assert {row.get_attribute("data-kind") for row in rows} == {"rejected"}

    # Label and round filters combine with it: refined pairs that ended good.
    choose(browser, "reason", "")
    choose(browser, "label", "good")
    choose(browser, "round", "1")
    WebDriverWait(browser, 10).until(lambda d: shown_rows(d) and all(r.find_elements(By.TAG_NAME, "td")[4].text == "1" for r in shown_rows(d)))
    assert {r.find_elements(By.TAG_NAME, "td")[3].text for r in shown_rows(browser)} == {"good"}
    refined_good = [r for lang in LANGUAGES for r in jsonl(next((run_dir / "curated" / lang).glob("*.jsonl"))) if r["provenance"]["refinement_round"] == 1]
    assert {r["id"] for r in refined_good} <= {r.get_attribute("data-id") for r in shown_rows(browser)}

    # The reject-reasons table links into the browser: one language's reason.
    link = browser.find_element(By.CSS_SELECTOR, "a.show-reason[data-language='sw'][data-reason='diversify:not_selected']")
    click(browser, link)
    not_selected = summary(run_dir, "curation", "sw")["rejected"]["diversify:not_selected"]
    wait_for_status(browser, f"{not_selected} of {total} samples")
    assert {(r.get_attribute("data-language"), r.get_attribute("data-reason")) for r in shown_rows(browser)} == {("sw", "diversify:not_selected")}

    # Text search: a word of one curated record's instruction finds it.
    record = jsonl(next((run_dir / "curated" / "th").glob("*.jsonl")))[0]
    browser.execute_script("document.getElementById('filters').reset()")
    query = record["instruction"].split()[-1]
    search = browser.find_element(By.CSS_SELECTOR, "#filters [name=q]")
    search.send_keys(query)
    WebDriverWait(browser, 10).until(lambda d: record["id"] in [r.get_attribute("data-id") for r in shown_rows(d)])
    for row in shown_rows(browser):
        assert query.lower() in row.text.lower() or row.get_attribute("data-kind") == "rejected"


def test_review_vetoes_two_records_and_export_applies_it(browser, run_dir: Path, downloads: Path, tmp_path: Path) -> None:
    open_report(browser, run_dir)
    choose(browser, "kind", "curated")
    curated_total = sum(summary(run_dir, "curation", lang)["curated"] for lang in LANGUAGES)
    wait_for_status(browser, f"{curated_total} of")
    rows = shown_rows(browser)
    vetoed = [rows[0].get_attribute("data-id"), rows[-1].get_attribute("data-id")]
    accepted = rows[1].get_attribute("data-id")
    rows[0].find_element(By.CSS_SELECTOR, "input.note").send_keys("machine-translated")
    click(browser, rows[0].find_element(By.CSS_SELECTOR, "button.veto"))
    click(browser, rows[-1].find_element(By.CSS_SELECTOR, "button.veto"))
    rows[1].find_element(By.CSS_SELECTOR, "input.note").send_keys("fine")
    click(browser, rows[1].find_element(By.CSS_SELECTOR, "button.accept"))
    assert browser.find_element(By.ID, "review-count").text == "3 decisions (2 vetoed)"
    assert "decision-veto" in rows[0].get_attribute("class")

    # Decisions outlive a reload (kept in the browser until cleared).
    open_report(browser, run_dir)
    choose(browser, "decision", "veto")
    wait_for_status(browser, "2 of")
    assert sorted(r.get_attribute("data-id") for r in shown_rows(browser)) == sorted(vetoed)

    click(browser, browser.find_element(By.ID, "download-review"))
    review_file = downloads / "review.jsonl"
    deadline = time.monotonic() + 15
    while not review_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = jsonl(review_file)
    assert {(line["id"], line["decision"]) for line in lines} == {(vetoed[0], "veto"), (vetoed[1], "veto"), (accepted, "accept")}
    assert {line["id"]: line["note"] for line in lines}[vetoed[0]] == "machine-translated"
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000

    folder = tmp_path / "x-instruction"
    args = ["export", str(folder), "--data-dir", str(run_dir / "curated"), "--cache-dir", str(tmp_path / "cache"), "--review", str(review_file), "--no-progress"]
    assert cli.main([*args[:2], *[a for lang in LANGUAGES for a in ("--language", lang)], *args[2:]]) == 0
    rows = [row for lang in LANGUAGES for f in sorted((folder / "data" / lang).glob("*.parquet")) for row in pq.read_table(f).to_pylist()]
    assert len(rows) == curated_total - 2
    exported = {row["id"]: row["provenance"] for row in rows}
    assert not set(vetoed) & set(exported)
    assert (exported[accepted]["reviewed"], exported[accepted]["decision"], exported[accepted]["note"]) == (True, "accept", "fine")
    others = [p for i, p in exported.items() if i != accepted]
    assert others and all((p["reviewed"], p["decision"], p["note"]) == (False, "", "") for p in others)
    card = (folder / "README.md").read_text(encoding="utf-8")
    by_language = {lang: [v for v in vetoed if v.startswith(lang + "-")] for lang in LANGUAGES}
    for lang in LANGUAGES:
        reviewed = len(by_language[lang]) + accepted.startswith(lang + "-")
        if reviewed:
            assert f"`{lang}` {reviewed} records reviewed, {len(by_language[lang])} vetoed" in card
        # The card's statistics are computed after the vetoes.
        kept = summary(run_dir, "curation", lang)["curated"] - len(by_language[lang])
        assert f"| `{lang}` |" in card and f"| {kept} |" in card.split(f"| `{lang}` |", 1)[1].split("\n", 1)[0]


def test_a_review_naming_unknown_ids_is_an_error_listing_them(run_dir: Path, tmp_path: Path, capsys) -> None:
    record = jsonl(next((run_dir / "curated" / "sw").glob("*.jsonl")))[0]
    review = tmp_path / "review.jsonl"
    lines = [{"id": record["id"], "language": "sw", "decision": "veto"}, {"id": "sw-0000000000000000", "language": "sw", "decision": "veto"},
             {"id": "sw-ffffffffffffffff", "language": "sw", "decision": "accept"}]
    review.write_text("".join(json.dumps(line) + "\n" for line in lines))
    folder = tmp_path / "x-instruction"
    code = cli.main(["export", str(folder), "--language", "sw", "--data-dir", str(run_dir / "curated"), "--cache-dir", str(tmp_path / "cache"), "--review", str(review), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert "2 id(s) are not 'sw' records" in error and "sw-0000000000000000" in error and "sw-ffffffffffffffff" in error
    assert not folder.exists()  # nothing exported
    code = cli.main(["export", str(folder), "--language", "th", "--data-dir", str(run_dir / "curated"), "--review", str(review), "--no-progress"])
    assert code == 2 and "language(s) not exported (sw)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "problem"),
    [("{not json", "line 2: not JSON"), ('{"decision": "veto"}', 'line 2: a decision needs an "id"'),
     ('{"id": "sw-1", "decision": "maybe"}', "decision must be one of accept, veto, got 'maybe'"),
     ('{"id": "sw-1", "decision": "veto", "note": 3}', "note must be text")],
)
def test_a_bad_review_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    review = tmp_path / "review.jsonl"
    review.write_text('{"id": "sw-0", "decision": "accept"}\n' + line + "\n")
    with pytest.raises(UserError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Review.load(review)
