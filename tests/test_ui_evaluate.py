"""The Evaluate tab: starting an experiment as a job, then its table, the error-bar chart (escaped) and the
predictions side by side."""

from __future__ import annotations

import re

import pytest

from curate import jobs, review
from curate.settings import load_settings
from curate.ui import Handlers
from curate.ui.tabs.evaluate import error_bar_svg, prediction_widths, table_frame
from review_fixtures import filled_store
from test_train import _tiny


class RecordingRunner:
    def __init__(self):
        self.submitted = []

    def submit(self, job_id):
        self.submitted.append(job_id)


TABLE = {"evalset": "sni-sample", "base": "b", "budget": 10, "metrics": ["rouge_l", "exact_match"], "notes": [],
         "rows": [{"arm": "base (no fine-tuning)", "train_rows": 0, "seeds": 0,
                   "rouge_l": {"mean": 20.0, "ci": [10.0, 30.0]}, "exact_match": {"mean": 5.0, "ci": [0.0, 10.0]}},
                  {"arm": "<b>qdit:0.7</b>", "train_rows": 10, "seeds": 2,
                   "rouge_l": {"mean": 50.0, "ci": [40.0, 60.0], "vs_random": {"delta": 3.0, "ci": [1, 5], "p": 0.04,
                                                                             "n": 9}},
                   "exact_match": {"mean": 10.0, "ci": None}}]}


def test_the_chart_draws_means_and_intervals_and_escapes_names():
    svg = error_bar_svg(TABLE, "rouge_l", width=640)
    assert "<b>" not in svg and "&lt;b&gt;qdit:0.7&lt;/b&gt;" in svg
    widths = [float(w) for w in re.findall(r'<rect x="180" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths == [pytest.approx(20 * 4.4), pytest.approx(50 * 4.4)]  # (640 - 180 - 20) / 100 per point
    assert len(re.findall(r'<line ', svg)) == 6  # an interval and its two caps per bar
    assert len(re.findall(r'<line ', error_bar_svg(TABLE, "exact_match"))) == 3  # no interval, no bar
    frame = table_frame(TABLE)
    assert frame.values.tolist()[1][3:5] == ["50.00 [40.0, 60.0]", "+3.00 (0.040)"]


def test_an_experiment_started_and_shown_from_the_tab(tmp_path):
    db = tmp_path / "c.db"
    st = filled_store(db, 30)
    for r in st.review_queue(status="pending", limit=6):
        review.accept(st, r["id"], reviewer="ann")
    runner = RecordingRunner()
    h = Handlers(load_settings(None, db=str(db), reviewer="ann"), runner)
    tiny = _tiny(tmp_path / "tiny")
    out = h.evaluate.ui_experiment_start(tiny, "sni-sample", 4, ["random", "accepted"], "passing@0.3", 1, 1, 2,
                                         str(tmp_path / "exp"))
    (jid,) = runner.submitted
    assert out["job_id"] == jid and out["exp_folder"] == str(tmp_path / "exp")
    cfg = st.get_job(jid)["config"]
    assert cfg["arms"] == ["random", "accepted", "passing@0.3"] and cfg["budget"] == 4 and cfg["eval_limit"] == 2
    assert f"job {jid}" in h.evaluate.ui_experiment_show(str(tmp_path / "exp"))["exp_status"]  # queued, no report
    assert jobs.run_job(st, jid)["state"] == "done"
    shown = h.evaluate.ui_experiment_show(str(tmp_path / "exp"), "rouge_l")
    assert shown["exp_table"]["arm"].tolist() == ["base (no fine-tuning)", "random", "accepted", "passing@0.3"]
    preds = shown["exp_predictions"]["value"]
    assert list(preds.columns) == ["id", "instruction", "input", "reference", "base", "random", "accepted",
                                   "passing@0.3"]
    assert len(preds) == 2 and "<svg" in shown["exp_chart"]
    assert shown["exp_predictions"]["column_widths"] == prediction_widths(list(preds.columns))


def test_the_mean_label_sits_right_of_the_interval_it_would_overlap():
    svg = error_bar_svg(TABLE, "rouge_l", width=640)
    labels = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="[\d.]+" fill="#374151">[\d.]+</text>', svg)]
    caps = sorted({float(x) for x in re.findall(r'<line x1="([\d.]+)" x2="\1"', svg)})
    # base: mean 20 (x 268), interval up to 30 (x 312); qdit: mean 50, interval up to 60
    assert labels == [pytest.approx(180 + 30 * 4.4 + 6), pytest.approx(180 + 60 * 4.4 + 6)]
    assert all(lab > cap for lab, cap in zip(labels, caps[1::2]))


def test_the_side_by_side_columns_leave_room_for_every_arm():
    cols = ["id", "instruction", "input", "reference", "base", "random", "passing@0.01"]
    widths = prediction_widths(cols)
    assert widths[:3] == ["8.0%", "22.0%", "18.0%"] and len(set(widths[3:])) == 1 and widths[3] == "13.0%"
    assert sum(float(w[:-1]) for w in widths) == pytest.approx(100)


def test_the_tab_passes_the_generation_and_training_knobs(tmp_path):
    db = tmp_path / "c.db"
    st = filled_store(db, 20)
    runner = RecordingRunner()
    h = Handlers(load_settings(None, db=str(db), reviewer="ann"), runner)
    h.evaluate.ui_experiment_start("smollm2-135m-instruct", "sni-sample", 8, ["random", "passing@0.01"], "", 1, 0, 4,
                                   str(tmp_path / "exp"), 16, 2, 256, True)
    cfg = st.get_job(runner.submitted[0])["config"]
    assert (cfg["max_new_tokens"], cfg["batch_size"], cfg["max_length"], cfg["full"]) == (16, 2, 256, True)
    assert cfg["max_steps"] is None and cfg["eval_limit"] == 4 and cfg["seeds"] == 1
    st.update_job(runner.submitted[0], state="cancelled")  # one experiment job at a time: this one never ran
    h.evaluate.ui_experiment_start("smollm2-135m-instruct", "sni-sample", 8, ["random"], "", 1, 0, 0,
                                   str(tmp_path / "exp2"), None, None, None)
    cfg = st.get_job(runner.submitted[1])["config"]
    assert (cfg["max_new_tokens"], cfg["batch_size"], cfg["max_length"], cfg["full"]) == (128, 4, 512, False)


def test_show_while_the_experiment_runs_says_how_far_it_is_and_keeps_the_results(tmp_path):
    import gradio as gr
    db = tmp_path / "c.db"
    filled_store(db, 20)
    runner = RecordingRunner()
    h = Handlers(load_settings(None, db=str(db), reviewer="ann"), runner)
    out = h.evaluate.ui_experiment_start("smollm2-135m-instruct", "sni-sample", 8, ["random"], "", 1, 0, 4,
                                         str(tmp_path / "exp"), 16)
    shown = h.evaluate.ui_experiment_show(out["exp_folder"], "rouge_l")
    assert re.match(rf"job {out['job_id']} \(.*exp\) is queued", shown["exp_status"])
    assert all(shown[k] == gr.update() for k in ("exp_table", "exp_chart", "exp_predictions"))
    h.store().update_job(out["job_id"], state="failed", error="TrainingError: out of memory while training")
    with pytest.raises(gr.Error, match="failed: TrainingError: out of memory"):
        h.evaluate.ui_experiment_show(out["exp_folder"], "rouge_l")
