"""Live views in real Chromium (issue 16, items 1–4): the page shows what the store holds now, without a reload
— a job that lands rows, the τ box, the Teachers table, a reload mid-job. Same fixtures as test_app_browser."""

from __future__ import annotations

import re

import pytest

from test_app_browser import CHROMIUM, box, browser, header, page, serve  # noqa: F401 (fixtures)

from playwright.sync_api import expect  # noqa: E402

from curate import jobs, review  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui.synthetic import fill  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.ui import launch  # noqa: E402
from review_fixtures import filled_store, free_port, scripted_pool  # noqa: E402

assert CHROMIUM


@pytest.fixture
def unensembled(tmp_path):
    """A store of 12 candidates with every ensembling model's output but no consensus yet, served."""
    db = tmp_path / "live.db"
    with Store(db) as st:
        fill(st, 12, consensus="none", rejected_every=0)
    demo = serve(db)
    yield db, demo.local_url
    demo.close()


def _consensus_job(db) -> None:
    """An ensembling job over the stored outputs, run here (another connection, as a worker would)."""
    with Store(db) as st:
        jid = jobs.start_job(st, "ensemble", {"consensus_only": True})
        assert jobs.run_job(st, jid, scripted_pool())["state"] == "done"


def test_review_tab_follows_an_ensemble_job_without_a_reload(unensembled, page):
    db, url = unensembled
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"not ensembled yet"), timeout=30_000)
    count = box(page, "curate-pass-count")
    expect(count).to_have_value(re.compile(r"^0 of 0 ensembled candidates"))
    queue = page.locator("#curate-queue")
    expect(queue.locator('[data-testid="cell-0-4"]')).to_have_text(re.compile(r"^\s*—\s*$"))  # min RL
    _consensus_job(db)
    # no click, no reload: the counts, the queue's min RL, the histogram and the open candidate follow
    expect(count).to_have_value(re.compile(r"^\d+ of 12 ensembled candidates pass"), timeout=15_000)
    expect(queue.locator('[data-testid="cell-0-4"]')).to_have_text(re.compile(r"^\s*\d\.\d{3}\s*$"), timeout=15_000)
    expect(header(page)).to_have_value(re.compile(r"consensus: .* min pairwise \d\.\d{3}"), timeout=15_000)
    expect(box(page, "curate-explanation")).not_to_have_value("")
    expect(page.locator("#curate-histogram canvas, #curate-histogram svg").first).to_be_visible()


def test_another_reviewers_action_shows_in_the_open_tab(unensembled, page):
    db, url = unensembled
    _consensus_job(db)
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"^#1 · .* pending"), timeout=30_000)
    count = box(page, "curate-pass-count")
    expect(count).to_have_value(re.compile(r"\(\d+ of them still pending\)"))
    pending = int(re.search(r"\((\d+) of them", count.input_value()).group(1))
    cid = box(page, "curate-open-id").input_value()
    page.wait_for_timeout(16_000)  # idle: the page's probe has backed off to its slowest (8 s) and still runs
    with Store(db) as st:  # someone else accepts the open candidate
        review.accept(st, cid, reviewer="bob", version=review.candidate(st, cid)["version"])
    expect(header(page)).to_have_value(re.compile(r"accepted by bob.*reviewed since you opened it", re.S),
                                       timeout=25_000)
    expect(count).to_have_value(re.compile(rf"\({pending - 1} of them still pending\)"), timeout=15_000)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    db = tmp_path_factory.mktemp("live-tau") / "t.db"
    filled_store(db, 30).close()
    demo = serve(db)
    yield db, demo.local_url
    demo.close()


def _errors_shown(page) -> int:
    """Red "Error" badges Gradio puts over outputs whose event failed."""
    return page.locator(".error").filter(has_text=re.compile(r"^\s*Error\s*$")).count()


def _type_tau(page, url, text: str):
    """Open the app, wait for the first candidate, type ``text`` into τ's number box and press Enter (the box
    keeps the focus: no blur). Returns the τ box and the pass count box."""
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"τ = 0\.01"), timeout=30_000)
    tau_box = page.locator("#curate-tau input[type=number]")
    tau_box.fill(text)
    tau_box.press("Enter")
    return tau_box, box(page, "curate-pass-count")


def test_tau_box_enter_updates_counts_header_and_why(reviewed, page):
    db, url = reviewed
    _, count = _type_tau(page, url, "0.5")
    with Store(db) as st:
        n = st.count_passing(0.5)["passing"]
    expect(count).to_have_value(re.compile(rf"^{n:,} of .* at τ = 0\.50"), timeout=10_000)
    expect(header(page)).to_have_value(re.compile(r"τ = 0\.50"), timeout=10_000)  # the open candidate follows
    expect(box(page, "curate-explanation")).to_have_value(re.compile(r"0\.5"), timeout=10_000)
    assert page.evaluate("document.activeElement && document.activeElement.type") == "number"


def test_out_of_range_tau_gives_one_message_and_no_error_badges(reviewed, page):
    db, url = reviewed
    tau_box, count = _type_tau(page, url, "5")
    expect(count).to_have_value(re.compile(r"at τ = 1\.00"), timeout=10_000)  # counts follow the nearest τ
    toasts = page.locator(".toast-body")
    expect(toasts.first).to_contain_text("from 0 to 1", timeout=10_000)
    page.wait_for_timeout(1500)
    assert toasts.count() == 1, [t.inner_text() for t in toasts.all()]
    assert _errors_shown(page) == 0
    expect(tau_box).to_have_value("1")


def test_teachers_table_fills_when_its_job_finishes(reviewed, page):
    db, url = reviewed
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"^#\d+ · "), timeout=30_000)
    page.get_by_role("tab", name="Teachers").click()
    table = page.locator("#curate-tch-table")
    limit = box(page, "curate-tch-limit")
    expect(limit).not_to_have_value("")
    limit.fill("6")
    page.locator("#curate-tch-start").click()
    # no "Show ranking" click: the table fills in when the job's numbers land
    expect(table).to_contain_text("smollm2-135m-instruct", timeout=60_000)


def test_reload_mid_job_shows_the_running_job_and_its_form(tmp_path, browser):  # noqa: F811
    db = tmp_path / "r.db"
    filled_store(db, 10).close()
    s = load_settings(None, db=str(db), port=free_port(), reviewer="ann")  # slow models: it outlasts a reload
    demo = launch(s, jobs.JobRunner(str(db), scripted_pool(delay=0.5)), prevent_thread_lock=True, quiet=True)
    try:
        h = demo.handlers.run
        with Store(db) as st:
            target = st.count_kept_instructions() + 400  # long enough to still run after the reload
        jid = h.start_job("generate", instructions=target, seed=7, batch_size=2)
        ctx = browser.new_context(viewport={"width": 1500, "height": 1250})
        pg = ctx.new_page()
        pg.goto(demo.local_url)
        pg.get_by_role("tab", name="Run").click()
        expect(box(pg, "curate-job-id")).to_have_value(jid, timeout=30_000)
        expect(box(pg, "curate-job-state")).to_have_value(re.compile("running|queued"), timeout=15_000)
        expect(box(pg, "curate-job-n")).to_have_value(str(target))
        pg.reload()
        pg.get_by_role("tab", name="Run").click()
        expect(box(pg, "curate-job-id")).to_have_value(jid, timeout=30_000)
        expect(box(pg, "curate-job-n")).to_have_value(str(target))
        expect(box(pg, "curate-job-state")).to_have_value("running", timeout=15_000)
        ctx.close()
    finally:
        demo.handlers.run.cancel_job(jid)
        demo.handlers.runner.join(60)
        demo.close()


def test_output_buttons_stay_small_and_the_histogram_has_no_empty_legend(reviewed, page):
    db, url = reviewed
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)
    expect(page.locator("#curate-histogram canvas, #curate-histogram svg").first).to_be_visible()
    heights = [page.locator(f"#curate-accept-{i}").bounding_box()["height"] for i in range(3)]
    assert max(heights) < 32 and max(heights) - min(heights) < 1, heights  # none stretched to fill its column
    assert "side" not in page.locator("#curate-histogram").inner_text()  # no legend titled "side"
    expect(page.locator("#curate-histogram")).to_contain_text("green passes τ")
