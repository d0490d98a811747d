"""The Evaluate tab in real Chromium (Playwright for Python, Debian's /usr/bin/chromium), as a new user: start a
tiny experiment from the tab (a randomly initialised two-layer Llama with the embedded SmolLM2 tokenizer, so it
trains and predicts in seconds), watch Show say how far it is, then read the table, the bar chart with its error
bars and the predictions side by side; untrusted text (an evaluation set's rows, predictions) stays inert; bad
input gets the library's message. Skipped when Chromium or Playwright is missing."""

from __future__ import annotations

import json
import os
import re
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import pytest  # noqa: E402

from test_app_browser import ARTIFACTS, box, browser, page, serve  # noqa: E402,F401 - fixtures
from playwright.sync_api import expect  # noqa: E402

from curate import review  # noqa: E402
from curate.store import Store  # noqa: E402
from review_fixtures import XSS, filled_store  # noqa: E402
from test_train import _tiny  # noqa: E402

EVAL_ROWS = [{"id": "x1", "instruction": 'Say <img src=x onerror="window.__xss = 5"> back.', "input": XSS,
              "reference": "<b>bold</b> <script>window.__xss = 6</script>"},
             {"id": "x2", "instruction": "Name a colour.", "input": "", "reference": "Blue."}]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate-tab")
    db = folder / "e.db"
    st = filled_store(db, 30)
    for r in st.review_queue(status="pending", limit=6):
        review.accept(st, r["id"], reviewer="ann")
    st.close()
    evalset = folder / "hostile.jsonl"
    evalset.write_text("".join(json.dumps(r) + "\n" for r in EVAL_ROWS))
    no_refs = folder / "norefs.jsonl"
    no_refs.write_text(json.dumps({"instruction": "Write a poem.", "input": ""}) + "\n")
    demo = serve(db)
    yield {"db": db, "url": demo.local_url, "tiny": _tiny(folder / "tiny"), "evalset": str(evalset),
           "no_refs": str(no_refs), "folder": folder}
    demo.close()


def _fill(page, lab, *, evalset: str, budget: str = "6", folder: str = "exp"):
    page.goto(lab["url"])
    page.get_by_role("tab", name="Evaluate").click()
    expect(page.locator("#curate-exp-start")).to_be_visible(timeout=30_000)
    box(page, "curate-exp-base").fill(lab["tiny"])
    box(page, "curate-exp-set").fill(evalset)
    box(page, "curate-exp-set").press("Enter")
    page.locator("#curate-exp-arms").get_by_label("qdit:0.7").uncheck()
    for eid, value in (("budget", budget), ("seeds", "1"), ("steps", "1"), ("limit", "0")):
        box(page, f"curate-exp-{eid}").fill(value)
    page.get_by_text("Training and generation").click()
    box(page, "curate-exp-new-tokens").fill("4")
    box(page, "curate-exp-batch").fill("2")
    box(page, "curate-exp-folder").fill(str(lab["folder"] / folder))


def _toast(page, pattern: str):
    toast = page.locator('[data-testid="toast-body"]').filter(has_text=re.compile(pattern)).first
    expect(toast).to_be_visible(timeout=30_000)


def test_an_experiment_started_from_the_tab_shows_its_table_chart_and_predictions(lab, page):
    _fill(page, lab, evalset=lab["evalset"])
    page.locator("#curate-exp-start").click()
    status = box(page, "curate-exp-status")
    expect(status).to_have_value(re.compile(r"^job \w+: training and evaluating 2 arms"), timeout=30_000)
    page.locator("#curate-exp-show").click()  # at once: not done yet, and Show says so instead of failing
    expect(status).to_have_value(re.compile(r"is (queued|running).*Show results again when it is done"))
    with Store(lab["db"]) as st:
        (job,) = [j for j in st.list_jobs() if j["kind"] == "experiment"]
        deadline = time.time() + 240
        while st.get_job(job["id"])["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
        assert st.get_job(job["id"])["state"] == "done", st.get_job(job["id"])["error"]
    page.locator("#curate-exp-show").click()
    expect(status).to_have_value(re.compile(r"^hostile, student .*, 6 rows per arm.*not a failure"))
    table = page.locator("#curate-exp-table")
    for arm in ("base (no fine-tuning)", "random", "passing@0.01"):
        expect(table).to_contain_text(arm)
    expect(table).to_contain_text(re.compile(r"rouge_l vs random \(p\)"))
    chart = page.locator("#curate-exp-chart svg")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() == 3  # a bar per row of the table
    assert chart.locator("text").filter(has_text="passing@0.01").count() == 1
    preds = page.locator("#curate-exp-predictions")
    # the columns, in order: the row, the reference beside the base model and each arm
    heads = ("id", "instruction", "input", "reference", "base", "random", r"passing@0\.01")
    expect(preds).to_contain_text(re.compile(r"[\s⋮]+".join(heads)))  # ⋮: each header's menu
    # the evaluation set's hostile rows are shown as text, and run nothing
    expect(preds).to_contain_text("<img src=x")
    expect(preds).to_contain_text("<script>window.__xss = 6</script>")
    assert page.locator('img[src="x"]').count() == 0 and page.locator("#curate-exp-predictions b").count() == 0
    assert page.evaluate("window.__xss") is None and page.dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "evaluate.png"), full_page=True)
    # the other metric redraws the chart from the same report
    page.locator("#curate-exp-predictions").scroll_into_view_if_needed()
    page.get_by_label("exact_match").check()
    expect(page.locator("#curate-exp-chart")).to_contain_text("exact_match (mean, 95% CI)")


@pytest.mark.parametrize("evalset,budget,message", [
    ("vicuna80", "6", r"'vicuna80' has no references.*--judge judge:"),
    ("NOREFS", "6", r"'norefs' has no references.*--judge judge:"),
    ("sni-sample", "5000", r"budget of 5000 .* larger than the pool.*at most \d+"),
])
def test_bad_input_from_the_tab_gets_the_librarys_message(lab, page, evalset, budget, message):
    _fill(page, lab, evalset=lab["no_refs"] if evalset == "NOREFS" else evalset, budget=budget,
          folder=f"bad-{budget}")
    page.locator("#curate-exp-start").click()
    _toast(page, message)
    expect(box(page, "curate-exp-status")).to_have_value("")  # no job was started
