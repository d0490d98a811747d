"""The Run tab in real Chromium: a second job of a kind is refused with a message naming the running one, which
stays in view; the form is checked before a job exists; the Ensemble form shows only its own fields. Skipped
when Chromium or Playwright is missing (required in CI)."""

from __future__ import annotations

import os
import re

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import pytest  # noqa: E402

from test_app_browser import ARGS, CHROMIUM  # noqa: E402 (it requires, or skips without, Chromium)
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from curate import jobs  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui import launch  # noqa: E402
from review_fixtures import filled_store, free_port, scripted_pool  # noqa: E402

TOAST = '[data-testid="toast-body"]'


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("browser-jobs") / "j.db"
    filled_store(db, 10).close()
    s = load_settings(None, db=str(db), port=free_port(), reviewer="ann")
    runner = jobs.JobRunner(str(db), scripted_pool(delay=0.12))
    for attempt in range(3):  # Gradio gives up when its first HEAD takes over 3 s (a loaded machine): again
        try:
            demo = launch(s, runner, prevent_thread_lock=True, quiet=True)
            break
        except ValueError as e:
            if "localhost is not accessible" not in str(e) or attempt == 2:
                raise
            s = load_settings(None, db=str(db), port=free_port(), reviewer="ann")
    yield db, demo.local_url
    with Store(db) as st:
        for j in st.active_jobs():
            jobs.cancel(st, j["id"])
    runner.join(30)
    demo.close()


@pytest.fixture
def page(app):
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = b.new_context(viewport={"width": 1500, "height": 1250}).new_page()
        pg.goto(app[1])
        pg.get_by_role("tab", name="Run").click()
        yield pg
        b.close()


def box(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def close_toasts(page) -> None:
    for close in page.locator('[data-testid="toast-close"]').all():
        close.click()
    expect(page.locator(TOAST)).to_have_count(0)


def test_a_second_job_is_refused_by_name_and_the_running_one_stays_in_view(app, page):
    db, _ = app
    with Store(db) as st:
        target = st.count_kept_instructions() + 300  # ~0.12 s per scripted call: runs for minutes
    n = box(page, "curate-job-n")
    expect(n).not_to_have_value("")
    n.fill(str(target))
    n.press("Tab")
    page.locator("#curate-job-start").click()
    state, job_id = box(page, "curate-job-state"), box(page, "curate-job-id")
    expect(state).to_have_value(re.compile("^(running|queued)"), timeout=15_000)
    first = job_id.input_value()
    assert first
    close_toasts(page)
    page.locator("#curate-job-start").click()  # again, while it runs
    toast = page.locator(TOAST).filter(has_text="already")
    expect(toast).to_contain_text(f"job {first}", timeout=10_000)
    expect(toast).to_contain_text("Run alongside")
    expect(job_id).to_have_value(first)  # the running job stays in the panel
    expect(state).to_have_value("running")
    with Store(db) as st:
        assert [j["id"] for j in st.list_jobs()] == [first]
    close_toasts(page)  # the refusal's toast says "already running" too
    # pausing shows honestly, and Resume meanwhile is no error
    page.locator("#curate-job-pause").click()
    expect(state).to_have_value(re.compile("^(pausing|paused)"))
    page.locator("#curate-job-resume").click()
    expect(state).to_have_value("running")
    expect(page.locator(TOAST).filter(has_text="already running")).to_have_count(0)
    page.locator("#curate-job-cancel").click()
    expect(state).to_have_value(re.compile("^cancel"), timeout=10_000)
    expect(state).to_have_value("cancelled", timeout=10_000)


def test_the_form_is_checked_before_a_job_exists_and_the_ensemble_form_has_its_own_fields(app, page):
    db, _ = app
    with Store(db) as st:
        before = len(st.list_jobs())
    n, imodels, emodels = box(page, "curate-job-n"), box(page, "curate-job-imodels"), box(page, "curate-job-emodels")
    expect(n).not_to_have_value("")
    expect(emodels).to_be_hidden()  # a generation form: no ensembling field
    page.locator("#curate-job-kind").get_by_text("Ensemble outputs").click()
    expect(emodels).to_be_visible()
    for hidden in (n, imodels, box(page, "curate-job-xmodels")):
        expect(hidden).to_be_hidden()
    expect(page.locator("#curate-job-sampling")).to_be_hidden()
    page.locator("#curate-job-kind").get_by_text("Generate instructions").click()
    expect(n).to_be_visible()
    expect(emodels).to_be_hidden()
    # an empty target is refused (not silently 1)
    n.fill("")
    n.press("Tab")
    page.locator("#curate-job-start").click()
    expect(page.locator(TOAST).filter(has_text="Kept instructions")).to_contain_text("empty", timeout=10_000)
    close_toasts(page)
    # a bogus mixture is refused up front, naming the model
    n.fill("50")
    n.press("Tab")
    imodels.fill("bogus-model:abc, ;;")
    imodels.press("Tab")
    page.locator("#curate-job-start").click()
    expect(page.locator(TOAST).filter(has_text="unknown model")).to_contain_text("bogus-model:abc",
                                                                                 timeout=10_000)
    with Store(db) as st:
        assert len(st.list_jobs()) == before  # nothing was started
