"""The app in real Chromium (Playwright for Python, Debian's /usr/bin/chromium): review a candidate, move the
threshold, run a job, untrusted text stays inert, login. Skipped when Chromium or Playwright is missing."""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import pytest  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
if os.environ.get("CURATE_REQUIRE_BROWSER") == "1":  # scripts/test.sh (CI): missing browser = failure
    assert os.path.exists(CHROMIUM), "needs Debian's chromium: apt-get install -y chromium"
else:
    pytest.importorskip("playwright")
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from curate import jobs  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui import launch  # noqa: E402
from review_fixtures import XSS, filled_store, free_port, scripted_pool  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
XSS_INSTRUCTION = 'Explain <img src=x onerror="window.__xss = 3"> and [a link](https://example.com).'


def serve(db, **settings):
    s = load_settings(None, db=str(db), port=free_port(), reviewer="ann", **settings)
    return launch(s, jobs.JobRunner(str(db), scripted_pool(delay=0.12)), prevent_thread_lock=True, quiet=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("browser") / "b.db"
    filled_store(db, 60, texts={0: {"instruction": XSS_INSTRUCTION, "outputs": [XSS, XSS.upper(), "other"]}}).close()
    demo = serve(db)
    yield db, demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1250})
    pg = ctx.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    yield pg
    ctx.close()


def box(page, elem_id: str):
    """The text field (input or textarea) of a Textbox / Number."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def header(page):
    return box(page, "curate-header")


def test_review_a_candidate_in_the_browser(app, page):
    db, url = app
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)  # the first pending opens
    # every output, side by side, with its model and agreement score
    for i, model in enumerate(["smollm2-135m-instruct", "smollm2-135m-instruct", "qwen2.5-0.5b-instruct"]):
        slot = page.locator(f"#curate-output-{i}")
        expect(slot).to_be_visible()
        expect(slot).to_contain_text(re.compile(rf"o{i} · {re.escape(model)} .*agreement \d\.\d\d"))
    expect(page.locator("#curate-output-3")).to_be_hidden()
    expect(page.locator("#curate-heatmap")).to_contain_text("1.00")
    expect(box(page, "curate-explanation")).to_have_value(re.compile("^Chose o0"))
    # untrusted text is shown literally and runs nothing
    expect(box(page, "curate-output-0")).to_have_value(XSS)
    expect(box(page, "curate-instruction")).to_have_value(XSS_INSTRUCTION)
    expect(page.locator("#curate-queue")).to_contain_text("<img src=x")
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("window.__xss") is None and page.dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

    # the edit form is opened (rendered) now, long before we type into it
    page.locator("#curate-edit-box").get_by_text("Edit (saved").click()
    edit = box(page, "curate-edit-output")
    expect(edit).to_be_visible()
    # accept with the keyboard shortcut → stored, next pending opens
    page.locator("#curate-title").click()
    page.keyboard.press("a")
    expect(header(page)).to_have_value(re.compile(r"^#2 · "))
    # typing "r" in a text box is text, not a shortcut
    box(page, "curate-reject-reason").fill("")
    box(page, "curate-reject-reason").type("off topic r")
    expect(header(page)).to_have_value(re.compile(r"^#2 · "))
    info = box(page, "curate-page-info")
    before, shown_2 = info.input_value(), edit.input_value()
    page.locator("#curate-reject").click()
    expect(header(page)).to_have_value(re.compile(r"^#3 · "))
    expect(info).not_to_have_value(before)  # the counts / queue refresh that follows an action has landed
    expect(edit).not_to_have_value(shown_2)  # the edit form shows #3's text
    expect(edit).not_to_have_value("")
    edit.fill("A better answer.")
    edit.press("Tab")  # leave the field, as a person does before clicking Save
    expect(edit).to_have_value("A better answer.")
    page.locator("#curate-save-edit").click()
    expect(header(page)).to_have_value(re.compile(r"^#3 · .* edited .*saved as version", re.S))  # it stays open
    with Store(db) as st:
        rows = {r["seq"]: r for r in st.review_queue(status=None, limit=3)}
        assert (rows[1]["review_status"], rows[1]["reviewed_by"]) == ("accepted", "ann")
        assert rows[2]["review_status"] == "rejected"
        assert st.review_log(rows[2]["id"])[-1].reason == "off topic r"
        assert (rows[3]["review_status"], rows[3]["output"]) == ("edited", "A better answer.")
    # undo (u) restores the edited one to pending and shows it
    page.locator("#curate-title").click()
    page.keyboard.press("u")
    expect(header(page)).to_have_value(re.compile(r"^#3 · .* pending"))
    # a queue row opens on click
    expect(page.locator('#curate-queue [data-testid="cell-0-0"]')).to_have_text("3")  # queue refreshed
    cell = page.locator('#curate-queue [data-testid="cell-4-0"]')
    seq = cell.inner_text().strip()
    assert seq != "3"
    cell.click()
    expect(header(page)).to_have_value(re.compile(rf"^#{seq} · "))


def test_tau_slider_updates_the_pass_count(app, page):
    db, url = app
    page.goto(url)
    count = box(page, "curate-pass-count")
    expect(count).to_have_value(re.compile(r"pass at τ = 0\.01"), timeout=30_000)
    before = count.input_value()
    track = page.locator("#curate-tau input[type=range]")
    b = track.bounding_box()
    page.mouse.move(b["x"] + 2, b["y"] + b["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] * 0.6, b["y"] + b["height"] / 2, steps=5)
    page.mouse.up()
    expect(count).not_to_have_value(before)
    tau = float(page.locator("#curate-tau input[type=number]").input_value())  # where the drag ended
    assert 0.4 < tau < 0.8
    expect(count).to_have_value(re.compile(rf"τ = {tau:.2f}"))  # the counts of the last τ, not a midway one
    with Store(db) as st:
        n = st.count_passing(tau)["passing"]
    expect(count).to_have_value(re.compile(rf"^{n:,} of "))
    expect(page.locator("#curate-accept-all")).to_contain_text("Accept all")


def test_run_a_job_and_watch_progress(app, page):
    db, url = app
    with Store(db) as st:
        target = st.count_kept_instructions() + 16  # the target is what the store should hold (a few batches)
    page.goto(url)
    page.get_by_role("tab", name="Run").click()
    n = box(page, "curate-job-n")
    expect(n).not_to_have_value("")  # the tab has rendered its defaults before we type over them
    n.fill(str(target))
    n.press("Tab")  # leave the field, as a person does before clicking Start
    expect(n).to_have_value(str(target))
    page.locator("#curate-job-start").click()
    state, counts = box(page, "curate-job-state"), box(page, "curate-job-counts")
    expect(state).to_have_value(re.compile("running|queued"), timeout=15_000)
    seen = set()
    for _ in range(200):
        seen.add(counts.input_value())
        if state.input_value() == "done":
            break
        page.wait_for_timeout(100)
    expect(state).to_have_value("done", timeout=30_000)
    expect(counts).to_have_value(re.compile(rf"^\d+ / {target} instructions kept"))
    assert len(seen) >= 3, seen  # the numbers moved while it ran
    expect(page.locator("#curate-jobs")).to_contain_text("done")


def test_login_is_required_when_auth_is_on(tmp_path, browser):
    db = tmp_path / "auth.db"
    filled_store(db, 5).close()
    demo = serve(db, auth="ann:pw1,bob:pw2")
    try:
        page = browser.new_page()
        page.goto(demo.local_url)
        expect(page.get_by_role("button", name=re.compile("Login", re.I))).to_be_visible(timeout=20_000)
        assert page.locator("#curate-queue").count() == 0
        page.get_by_label(re.compile("username", re.I)).fill("bob")
        page.get_by_label(re.compile("password", re.I)).fill("wrong")
        page.get_by_role("button", name=re.compile("Login", re.I)).click()
        expect(page.get_by_text(re.compile("incorrect", re.I))).to_be_visible()
        page.get_by_label(re.compile("username", re.I)).fill("bob")  # the form clears after a failure
        page.get_by_label(re.compile("password", re.I)).fill("pw2")
        page.get_by_role("button", name=re.compile("Login", re.I)).click()
        expect(box(page, "curate-reviewer")).to_have_value("bob", timeout=30_000)
        expect(box(page, "curate-reviewer")).to_be_disabled()
        page.close()
    finally:
        demo.close()


def _start_server(db, port):
    import subprocess
    import sys
    import urllib.request
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_app.py")), str(db), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"the app server exited with {proc.returncode}")
            import time
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the app server did not come up in 60 s")


def test_every_action_survives_a_server_kill_and_the_job_resumes(tmp_path, browser):
    """kill -9 of the server mid-job: the review stays, the job shows as interrupted and resumes to done."""
    import signal
    db = tmp_path / "restart.db"
    filled_store(db, 8).close()
    with Store(db) as st:
        target = st.count_kept_instructions() + 40  # ~0.3 s per scripted call: runs for a while
    port = free_port()
    proc, url = _start_server(db, port)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1250})
        page.goto(url)
        expect(header(page)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)
        page.locator("#curate-accept").click()
        expect(header(page)).to_have_value(re.compile(r"^#2 · "))
        page.get_by_role("tab", name="Run").click()
        n = box(page, "curate-job-n")
        expect(n).not_to_have_value("")
        n.fill(str(target))
        n.press("Tab")
        expect(n).to_have_value(str(target))
        page.locator("#curate-job-start").click()
        expect(box(page, "curate-job-state")).to_have_value("running", timeout=15_000)
        expect(box(page, "curate-job-counts")).not_to_have_value(re.compile(r"^(0 /|$)"), timeout=15_000)
        job_id = box(page, "curate-job-id").input_value()
        proc.send_signal(signal.SIGKILL)  # the server dies mid-job
        proc.wait(10)
        with Store(db) as st:
            kept_at_kill = st.count_kept_instructions()
            assert kept_at_kill < target and st.get_job(job_id)["state"] == "running"

        page.close()  # the dead server's page may reload itself when the server returns: use a fresh one
        proc, url = _start_server(db, port)  # restart on the same store
        page = browser.new_page(viewport={"width": 1500, "height": 1250})
        page.goto(url)
        expect(header(page)).to_have_value(re.compile(r"^#2 · "), timeout=30_000)  # #1 stays accepted
        page.get_by_role("tab", name="Run").click()
        page.locator('#curate-jobs [data-testid^="cell-"]', has_text=job_id).first.click()
        expect(box(page, "curate-job-state")).to_have_value(re.compile("^interrupted"))
        page.locator("#curate-job-resume").click()
        expect(box(page, "curate-job-state")).to_have_value("done", timeout=60_000)
        expect(box(page, "curate-job-counts")).to_have_value(re.compile(rf"^{target} / {target} instructions kept"))
        with Store(db) as st:
            assert st.count_kept_instructions() == target  # continued to exactly the target
            assert st.get_candidate(st.review_queue(status=None, limit=1)[0]["id"]).review_status == "accepted"
        page.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_download_an_export_from_the_app(app, page, tmp_path):
    import zipfile

    from datasets import load_dataset
    db, url = app
    with Store(db) as st:
        for r in st.review_queue(status="pending", limit=2, sort="-seq"):
            st.review(r["id"], "accept", reviewer="ann")
        n = st.review_counts().get("accepted", 0) + st.review_counts().get("edited", 0)
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"^#\d+ · "), timeout=30_000)
    page.get_by_role("tab", name="Export").click()
    page.locator("#curate-ex-preview-btn").click()
    expect(page.locator("#curate-ex-preview")).to_contain_text('"instruction"')
    page.locator("#curate-ex-export").click()
    expect(box(page, "curate-ex-summary")).to_have_value(re.compile(rf"^Exported {n} rows"), timeout=30_000)
    links = page.locator("#curate-ex-files a")
    expect(links).to_have_count(2)
    with page.expect_download() as dl:
        links.nth(0).click()
    archive = tmp_path / dl.value.suggested_filename
    dl.value.save_as(archive)
    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "x")
    rows = load_dataset("json", data_files=str(tmp_path / "x" / "curate-alpaca-jsonl" / "data.jsonl"), split="train")
    assert len(rows) == n and set(rows.column_names) == {"instruction", "input", "output"}
    assert "README.md" in {p.name for p in (tmp_path / "x" / "curate-alpaca-jsonl").iterdir()}
    with Store(db) as st:
        reviewed = [r for status in ("accepted", "edited")
                    for r in st.review_queue(status=status, limit=500, snippet=10**6)]
    assert sorted((r["instruction"], r["output"]) for r in rows) == sorted(
        (r["instruction"], r["output"]) for r in reviewed)  # exactly the reviewed set, edited text included


def _wait_job(db, kind, timeout=120.0):
    import time
    t0 = time.time()
    while time.time() - t0 < timeout:
        with Store(db) as st:
            js = [j for j in st.list_jobs() if j["kind"] == kind]
        if js and js[0]["state"] in ("done", "failed", "cancelled"):
            assert js[0]["state"] == "done", js[0]["error"]
            return js[0]
        time.sleep(0.3)
    raise AssertionError(f"no {kind} job finished in {timeout} s")


def _drag(page, selector, fraction):
    track = page.locator(f"{selector} input[type=range]")
    b = track.bounding_box()
    page.mouse.move(b["x"] + 2, b["y"] + b["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] * fraction, b["y"] + b["height"] / 2, steps=5)
    page.mouse.up()  # .release fires on pointer-up


def test_teachers_and_selection_are_visible_and_tunable(app, page):
    db, url = app
    page.goto(url)
    expect(header(page)).to_have_value(re.compile(r"^#\d+ · "), timeout=30_000)
    # Teachers: compute in the background, then the ranking; β re-ranks from stored numbers
    page.get_by_role("tab", name="Teachers").click()
    limit = box(page, "curate-tch-limit")
    expect(limit).not_to_have_value("")
    limit.fill("12")
    page.locator("#curate-tch-start").click()
    _wait_job(db, "teachers")
    page.locator("#curate-tch-show").click()
    table = page.locator("#curate-tch-table")
    expect(table).to_contain_text("smollm2-135m-instruct")
    expect(box(page, "curate-tch-status")).to_have_value(re.compile("not a reward model"))
    car_before = table.locator('[data-testid="cell-0-5"]').inner_text()
    _drag(page, "#curate-tch-beta", 0.9)
    expect(box(page, "curate-tch-status")).to_have_value(re.compile(r"β = [1-9]"))
    expect(table.locator('[data-testid="cell-0-5"]')).not_to_have_text(car_before)
    page.locator("#curate-tch-mix").click()
    page.get_by_role("tab", name="Run").click()
    expect(box(page, "curate-job-imodels")).to_have_value(re.compile(r"^[\w.\-]+:0\.\d+"))
    # Select: embed the pool in the background, select, then move α
    page.get_by_role("tab", name="Select").click()
    k = page.locator("#curate-sel-k input[type=number]")
    k.fill("8")
    k.press("Tab")
    expect(k).to_have_value("8")
    page.locator("#curate-sel-run").click()  # before embedding: said once, with the button that starts the job
    expect(box(page, "curate-sel-status")).to_have_value(re.compile(r"have no .* embedding .*Embed them now"),
                                                         timeout=30_000)
    assert "curate embed" not in box(page, "curate-sel-status").input_value()
    page.locator("#curate-sel-embed-offer").click()  # the default pool: candidates passing τ
    expect(page.locator("#curate-sel-embed-offer")).to_be_hidden()
    _wait_job(db, "embed")
    page.locator("#curate-sel-run").click()
    status = box(page, "curate-sel-status")
    expect(status).to_have_value(re.compile(r"^Selected 8 of \d+ \(passing pool\) with α = 0\.7"), timeout=30_000)
    expect(page.locator("#curate-sel-report")).to_contain_text("quality-only")
    expect(page.locator("#curate-sel-map canvas, #curate-sel-map svg").first).to_be_visible()
    _drag(page, "#curate-sel-alpha", 0.1)
    expect(status).not_to_have_value(re.compile(r"α = 0\.7;"), timeout=30_000)
    with Store(db) as st:
        picks = st.get_selection("qdit")
    assert len(picks) == 8 and picks[0]["params"]["alpha"] < 0.5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "select.png"), full_page=True)


def test_import_a_dataset_and_two_models_outputs_then_review_with_consensus(tmp_path, browser):
    """Bring your own data in the browser: upload a dataset, preview it, import it; import two other models'
    outputs for it; consensus without a model; then review an imported candidate with its three outputs."""
    import json
    rows = [{"instruction": f"Name colour number {i}.", "input": "" if i % 2 else f"hint {i}",
             "output": f"Colour {i} is blue."} for i in range(6)]
    rows[0]["instruction"] = XSS_INSTRUCTION
    data = tmp_path / "colours.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = {}
    for model, text in (("model-a", "Colour {i} is blue!"), ("model-b", "It is blue, colour {i}.")):
        outs[model] = tmp_path / f"{model}.jsonl"
        outs[model].write_text("".join(json.dumps({**r, "output": text.format(i=i)}) + "\n"
                                       for i, r in enumerate(rows)))
    db = tmp_path / "import.db"
    demo = serve(db)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = ctx.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(demo.local_url)
        page.get_by_role("tab", name="Import").click()
        page.locator("#curate-imp-file input[type=file]").set_input_files(str(data))
        detected = box(page, "curate-imp-detected")
        expect(detected).to_have_value(re.compile(r"format alpaca · source name colours"), timeout=20_000)
        expect(box(page, "curate-imp-map")).to_have_value("instruction=instruction,input=input,output=output")
        expect(page.locator("#curate-imp-rows")).to_contain_text("<img src=x")  # shown as text
        box(page, "curate-imp-license").fill("CC-BY-4.0")
        box(page, "curate-imp-license").press("Tab")
        page.locator("#curate-imp-start").click()
        state = box(page, "curate-imp-state")
        expect(state).to_have_value("done", timeout=30_000)
        expect(page.locator("#curate-imp-sources")).to_contain_text("CC-BY-4.0")
        page.locator("#curate-imp-as-outputs input").check()
        for model, path in outs.items():  # typed paths this time (a path wins over the earlier upload)
            box(page, "curate-imp-path").fill(str(path))
            box(page, "curate-imp-model").fill(model)
            box(page, "curate-imp-model").press("Tab")
            page.locator("#curate-imp-preview").click()
            expect(detected).to_have_value(re.compile(rf"source name {model}"), timeout=20_000)
            previous = box(page, "curate-imp-job").input_value()
            page.locator("#curate-imp-start").click()
            # wait for this job, not the previous one: its id replaces the earlier job's, then it ends
            expect(box(page, "curate-imp-job")).not_to_have_value(previous, timeout=10_000)
            expect(state).to_have_value("done", timeout=30_000)
            expect(box(page, "curate-imp-counts")).to_have_value(re.compile(r"staged 6"))
        previous = box(page, "curate-imp-job").input_value()
        page.locator("#curate-imp-consensus").click()
        expect(box(page, "curate-imp-job")).not_to_have_value(previous, timeout=10_000)
        expect(state).to_have_value("done", timeout=30_000)
        expect(box(page, "curate-imp-stage")).to_have_value("done", timeout=30_000)
        with Store(db) as st:
            assert st.count_passing(0.01)["scored"] == 6
        # the Review tab: pick the source, open the first candidate, see o0 (the dataset's) and both models
        page.reload()
        expect(header(page)).to_have_value(re.compile(r"^#1 · .*generator colours"), timeout=30_000)
        for i, model in enumerate(["colours", "model-a", "model-b"]):
            expect(page.locator(f"#curate-output-{i}")).to_contain_text(
                re.compile(rf"o{i} · {re.escape(model)} .*agreement \d\.\d\d"))
        expect(box(page, "curate-instruction")).to_have_value(XSS_INSTRUCTION)
        assert page.locator('img[src="x"]').count() == 0 and page.evaluate("window.__xss") is None
        assert dialogs == []
        page.locator("#curate-accept").click()
        expect(header(page)).to_have_value(re.compile(r"^#2 · "))
        page.get_by_role("tab", name="Import").click()
        expect(page.locator("#curate-imp-sources")).to_contain_text("model-b", timeout=10_000)  # the timer's tables
        box(page, "curate-imp-path").fill(str(outs["model-a"]))
        page.locator("#curate-imp-preview").click()
        expect(detected).to_have_value(re.compile("source name model-a"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "import.png"), full_page=True)
    finally:
        ctx.close()


RECORD_TOASTS = """() => {
    window.__toasts = [];
    new MutationObserver(() => {
        document.querySelectorAll('[data-testid="toast-body"]').forEach((t) => {
            if (!t.dataset.seen) { t.dataset.seen = "1"; window.__toasts.push(t.innerText); }
        });
    }).observe(document.body, {childList: true, subtree: true});
}"""


def _close_toasts(page) -> list[str]:
    """The texts of the toasts shown now, closing each."""
    texts = page.locator('[data-testid="toast-body"]').all_inner_texts()
    for close in page.locator('[data-testid="toast-close"]').all():
        close.click()
    expect(page.locator('[data-testid="toast-body"]')).to_have_count(0)
    return texts


def test_typing_at_once_after_opening_saves_what_was_typed_or_is_refused(app, page):
    """Defect 7: a reviewer who types the moment a candidate opens (before or while the form renders) gets
    exactly what they typed saved onto the candidate the form showed, or a refusal asking to reload — never
    the old text, a mix of old and typed text, nor another candidate's instruction."""
    db, url = app
    with Store(db) as st:
        edited_before = {r["id"] for r in st.review_queue(status="edited", limit=10_000)}
        logged_before = len(st.review_log(limit=None))
    page.goto(url)
    edit_box = page.locator("#curate-edit-box").get_by_text("Edit (saved")
    rounds, toasts = 6, []

    def logged() -> int:
        with Store(db) as st:
            return len(st.review_log(limit=None)) - logged_before
    for i in range(rounds):
        if i == 0:
            edit_box.click()  # open the form and type into it at once, right after the page opened
        else:
            page.locator("#curate-next").click()  # open the next pending candidate and type at once
        box(page, "curate-edit-output").fill(f"Typed at once, round {i}.")
        saved = logged()
        page.locator("#curate-save-edit").click()
        for _ in range(300):  # this save's answer — a log row, or a refusal — before the next round
            if logged() > saved or page.locator('[data-testid="toast-body"]').count():
                break
            page.wait_for_timeout(200)
        page.wait_for_timeout(300)
        toasts += _close_toasts(page)
    typed = {f"Typed at once, round {i}." for i in range(rounds)}
    assert all(re.search(r"(?i)nothing was saved|reload|open a candidate first", t) for t in toasts), toasts
    with Store(db) as st:
        new = [st.get_candidate(r["id"]) for r in st.review_queue(status="edited", limit=10_000)
               if r["id"] not in edited_before]
        log = st.review_log(limit=None)[logged_before:]
    assert {e.action for e in log} <= {"edit"} and len(log) == len(new)  # each save edits a new candidate
    for x in new:
        assert x.final_output in typed, x.final_output  # exactly what was typed, never old (or old + typed) text
        assert x.final_instruction == x.instruction  # onto the candidate the form showed
    assert len(new) + len(toasts) == rounds, (len(new), toasts)  # every round was saved as typed, or refused


def test_a_reviewer_name_in_a_toast_is_shown_as_text(tmp_path, browser):
    """Defect 5: a conflict toast names the other reviewer; a name full of HTML stays text."""
    db = tmp_path / "names.db"
    filled_store(db, 6).close()
    demo = serve(db)
    evil = '<img src=x onerror="window.__xss=7"><b style="color:red">BOLD</b>'
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1250})
        page.goto(demo.local_url)
        expect(header(page)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)
        with Store(db) as st:  # someone else reviews the open candidate meanwhile
            cid = st.review_queue(status="pending", limit=1)[0]["id"]
            st.review(cid, "accept", reviewer=evil)
        page.locator("#curate-reject").click()
        toast = page.locator('[data-testid="toast-body"]').first
        expect(toast).to_contain_text("<img src=x", timeout=15_000)  # the name, as text
        assert page.locator('[data-testid="toast-body"] img, [data-testid="toast-body"] b').count() == 0
        assert page.evaluate("window.__xss") is None
        page.close()
    finally:
        demo.close()


def _login(browser, url, user, password):
    page = browser.new_page(viewport={"width": 1500, "height": 1250})
    page.goto(url)
    page.get_by_label(re.compile("username", re.I)).fill(user)
    page.get_by_label(re.compile("password", re.I)).fill(password)
    page.get_by_role("button", name=re.compile("Login", re.I)).click()
    expect(box(page, "curate-reviewer")).to_have_value(user, timeout=30_000)
    return page


def test_a_team_splits_the_queue_and_an_admin_adjudicates_in_the_browser(tmp_path, browser):
    """Two reviewers with logins review the same candidate (two reviews each), disagree; the reviewers see no
    admin tools; the admin sees the disagreement side by side, picks one version, and the agreement shows."""
    db = tmp_path / "team.db"
    filled_store(db, 10).close()
    users = tmp_path / "users.txt"
    users.write_text("ann:pw1 reviewer\nbob:pw2 reviewer\ncarl:pw3 admin\n", encoding="utf-8")
    demo = serve(db, users_file=str(users), reviews_per_candidate=2)
    try:
        ann = _login(browser, demo.local_url, "ann", "pw1")
        expect(header(ann)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)
        expect(ann.locator("#curate-team-note")).to_contain_text("2 agreeing reviews")
        expect(ann.locator("#curate-accept-all")).to_be_hidden()  # no bulk action for a reviewer
        expect(ann.get_by_role("tab", name="Disagreements")).to_be_hidden()
        ann.locator("#curate-accept").click()
        expect(header(ann)).to_have_value(re.compile(r"^#2 · "))
        bob = _login(browser, demo.local_url, "bob", "pw2")
        expect(header(bob)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)  # it still needs bob's review
        box(bob, "curate-reject-reason").fill("made-up facts")
        bob.locator("#curate-reject").click()
        expect(header(bob)).to_have_value(re.compile(r"^#2 · "))
        with Store(db) as st:
            first = st.review_queue(status=None, limit=1)[0]
            assert first["review_status"] == "disputed"
        ann.locator("#curate-next").click()  # ann's queue never offers #1 again
        expect(header(ann)).not_to_have_value(re.compile(r"^#1 · "))
        carl = _login(browser, demo.local_url, "carl", "pw3")
        expect(carl.locator("#curate-accept-all")).to_be_visible(timeout=30_000)
        carl.get_by_role("tab", name="Disagreements").click()
        expect(carl.locator("#curate-dis-queue")).to_contain_text("ann: accepted, bob: rejected")
        carl.locator('#curate-dis-queue [data-testid="cell-0-0"]').click()
        expect(carl.locator("#curate-dis-vote-0")).to_contain_text("ann · accepted")
        expect(carl.locator("#curate-dis-vote-1")).to_contain_text("bob · rejected")
        expect(box(carl, "curate-dis-vote-1")).to_have_value(re.compile("made-up facts"))
        carl.locator("#curate-dis-pick-0").click()  # ann's version
        expect(box(carl, "curate-dis-info")).to_have_value("No disagreement to decide.", timeout=15_000)
        with Store(db) as st:
            x = st.get_candidate(first["id"])
            assert (x.review_status, x.reviewed_by) == ("accepted", "carl")
        carl.get_by_role("tab", name="Overview").click()
        expect(carl.locator("#curate-ov-agreement")).to_contain_text("bob", timeout=15_000)
        expect(box(carl, "curate-ov-agreement-text")).to_have_value(re.compile("Fleiss"))
        ARTIFACTS.mkdir(exist_ok=True)
        carl.screenshot(path=str(ARTIFACTS / "team-overview.png"), full_page=True)
        for p in (ann, bob, carl):
            p.close()
    finally:
        demo.close()


def test_an_admin_rejects_the_rows_ticked_in_the_queue(tmp_path, browser):
    db = tmp_path / "bulk.db"
    filled_store(db, 8, rejected_every=0).close()
    demo = serve(db)  # no login: the one local user is an admin
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1250})
        page.goto(demo.local_url)
        expect(header(page)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)
        page.locator("#curate-bulk").get_by_text("Bulk: accept or reject").click()
        picks = page.locator("#curate-bulk-pick")
        expect(picks.get_by_text("#3", exact=True)).to_be_visible(timeout=15_000)
        picks.get_by_text("#2", exact=True).click()
        picks.get_by_text("#3", exact=True).click()
        box(page, "curate-bulk-reason").fill("off topic")
        page.locator("#curate-bulk-reject").click()
        expect(box(page, "curate-bulk-status")).to_have_value(re.compile(r"^2 rejected as ann"), timeout=15_000)
        with Store(db) as st:
            rows = {r["seq"]: r for r in st.review_queue(status=None, limit=10)}
            assert [s for s, r in sorted(rows.items()) if r["review_status"] == "rejected"] == [2, 3]
            assert {st.review_log(rows[s]["id"])[-1].reason for s in (2, 3)} == {"off topic"}
        expect(picks.get_by_text("#2", exact=True)).to_have_count(0)  # the box shows the refreshed page
        page.close()
    finally:
        demo.close()


def test_the_edit_flow_save_stays_with_a_diff_ctrl_enter_saves_and_p_goes_back(browser, tmp_path):
    """Issue 16, item 11: Save edit stays on the candidate and shows the saved version (the reviewed
    instruction in the main panel, the output and a word diff against the original, as text); Ctrl+Enter
    saves from inside the edit form but not from another text box; p opens the previous candidate, and is
    text inside a text box."""
    db = tmp_path / "edit.db"
    filled_store(db, 8, texts={0: {"instruction": "Name a colour.", "outputs": ["Red is one.", "red is one",
                                                                               "Blue."]}}).close()
    demo = serve(db)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1400})
    page = ctx.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(demo.local_url)
        expect(header(page)).to_have_value(re.compile(r"^#1 · "), timeout=30_000)
        expect(page.locator("#curate-saved-output")).to_be_hidden()
        page.locator("#curate-edit-box").get_by_text("Edit (saved").click()
        out, instr = box(page, "curate-edit-output"), box(page, "curate-edit-instruction")
        expect(out).to_have_value("Red is one.")
        # Save with the button: stays on #1, shows the saved version and the diff
        out.fill("Red is <b>one</b> colour.")
        out.press("Tab")
        page.locator("#curate-save-edit").click()
        expect(header(page)).to_have_value(re.compile(r"^#1 · .* edited .*saved as version 1", re.S))
        expect(page.locator("#curate-saved-output")).to_be_visible()
        expect(box(page, "curate-saved-output")).to_have_value("Red is <b>one</b> colour.")
        diff = page.locator("#curate-diff")
        expect(diff).to_contain_text("colour.")
        expect(diff).to_contain_text("<b>one</b>")  # the markup is text: no <b> element
        assert diff.locator("b").count() == 0
        # Ctrl+Enter inside the edit form saves too (the instruction now: the main panel shows it)
        instr.fill("Name one colour.")
        instr.press("Control+Enter")
        expect(header(page)).to_have_value(re.compile(r"^#1 · .*saved as version 2", re.S))
        expect(box(page, "curate-instruction")).to_have_value("Name one colour.")
        expect(page.locator("#curate-instruction")).to_contain_text("reviewed version")
        expect(diff).to_contain_text("Name")
        with Store(db) as st:
            first = st.review_queue(status=None, limit=1)[0]
            assert (first["review_status"], first["instruction"], first["output"]) == (
                "edited", "Name one colour.", "Red is <b>one</b> colour.")
            assert first["version"] == 2
        # Ctrl+Enter in another text box is not Save
        reason = box(page, "curate-reject-reason")
        reason.fill("typo")
        reason.press("Control+Enter")
        page.wait_for_timeout(1500)
        expect(header(page)).to_have_value(re.compile(r"^#1 · .*version 2", re.S))
        with Store(db) as st:
            assert st.review_queue(status=None, limit=1)[0]["version"] == 2
        # next, then p goes back to #1 (reviewed: still one key away); p inside a text box is text
        page.locator("#curate-title").click()
        page.keyboard.press("n")
        expect(header(page)).to_have_value(re.compile(r"^#2 · "))
        reason.fill("")
        reason.type("p")
        expect(reason).to_have_value("p")
        expect(header(page)).to_have_value(re.compile(r"^#2 · "))
        page.locator("#curate-title").click()
        page.keyboard.press("p")
        expect(header(page)).to_have_value(re.compile(r"^#1 · .* edited"))
        expect(box(page, "curate-saved-output")).to_have_value("Red is <b>one</b> colour.")
        assert page.dialogs == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "edit-flow.png"), full_page=True)
    finally:
        ctx.close()
        demo.close()
