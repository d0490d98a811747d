"""Export: every format loads back with `datasets`, the right rows go in, writes are safe and reproducible,
the store is never changed, bad input is a clear error and writes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import pytest

from curate import export as ex
from curate import review
from curate.cli import main
from curate.errors import ExportError
from curate.store import Store

from review_fixtures import filled_store

datasets.disable_progress_bars()
JSON_FORMATS = ("alpaca", "alpaca-jsonl", "sharegpt", "messages")


@pytest.fixture()
def reviewed(tmp_path):
    """40 synthetic candidates (2 auto-filtered): 4 accepted, 1 edited, 1 rejected, the rest pending."""
    store = filled_store(tmp_path / "c.db", 40)
    ids = [r["id"] for r in store.review_queue(status="pending", limit=10)]
    for i in ids[:4]:
        review.accept(store, i, reviewer="ann")
    review.edit(store, ids[4], reviewer="bob", instruction="Name a colour.", input="", output="Blue.")
    review.reject(store, ids[5], reviewer="bob", reason="wrong")
    yield store, ids
    store.close()


def _expected(store: Store, ids) -> list[dict]:
    """The accepted / edited candidates' reviewed texts, in seq order."""
    rows = [store.get_candidate(i) for i in ids]
    rows = sorted((r for r in rows if r.review_status in ("accepted", "edited")), key=lambda r: r.seq)
    return [r.reviewed.as_dict() for r in rows]


def _as_alpaca(fmt: str, row: dict) -> dict:
    """Back from a chat layout to instruction / input / output (the user turn is instruction[\\n\\ninput])."""
    if fmt in ("alpaca", "alpaca-jsonl", "hf", "parquet"):
        return {k: row[k] for k in ("instruction", "input", "output")}
    turns = row["conversations"] if fmt == "sharegpt" else row["messages"]
    user, answer = (t.get("value", t.get("content")) for t in turns[-2:])
    instruction, _, inp = user.partition("\n\n")
    return {"instruction": instruction, "input": inp, "output": answer}


def _load(fmt: str, out: Path, tmp_path: Path):
    if fmt == "hf":
        return datasets.load_from_disk(str(out))
    kind = "parquet" if fmt == "parquet" else "json"
    return datasets.load_dataset(kind, data_files=str(out / ex.FORMATS[fmt].data_file), split="train",
                                 cache_dir=str(tmp_path / "hf-cache"))


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- round trips ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", tuple(ex.FORMATS))
def test_every_format_loads_back_with_the_accepted_rows(reviewed, tmp_path, fmt):
    store, ids = reviewed
    out = tmp_path / f"export-{fmt}"
    res = ex.export(store, fmt, out)
    want = _expected(store, ids)
    assert res.rows == len(want) == 5 and res.counts == {"accepted": 4, "edited": 1, "passing": 0, "selection": 0}
    assert res.bytes == sum(p.stat().st_size for p in out.iterdir())
    ds = _load(fmt, out, tmp_path)
    columns = {"sharegpt": ["conversations"], "messages": ["messages"]}.get(fmt, ["instruction", "input", "output"])
    assert ds.column_names == columns
    assert [_as_alpaca(fmt, r) for r in ds] == want
    assert (out / "README.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_chat_layouts_put_input_in_the_user_turn_and_take_a_system_prompt(reviewed, tmp_path):
    store, ids = reviewed
    ex.export(store, "sharegpt", tmp_path / "s", system="You are terse.")
    ex.export(store, "messages", tmp_path / "m", system="You are terse.")
    first = store.get_candidate(ids[1])  # the second row
    assert first.final_input  # a type-A candidate: instruction and input
    s = json.loads((tmp_path / "s" / "data.jsonl").read_text().splitlines()[1])
    m = json.loads((tmp_path / "m" / "data.jsonl").read_text().splitlines()[1])
    user = f"{first.final_instruction}\n\n{first.final_input}"
    assert s == {"conversations": [{"from": "system", "value": "You are terse."}, {"from": "human", "value": user},
                                   {"from": "gpt", "value": first.final_output}]}
    assert m == {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": user},
                              {"role": "assistant", "content": first.final_output}]}
    plain = ex.preview(store, "messages", 5)
    assert [t["role"] for t in plain[0]["messages"]] == ["user", "assistant"]
    edited = next(r for r in plain if r["messages"][0]["content"] == "Name a colour.")  # no input: no blank line
    assert edited["messages"][1]["content"] == "Blue."


def test_the_card_points_load_dataset_at_the_data_file(reviewed, tmp_path):
    store, ids = reviewed
    for fmt in ("alpaca", "alpaca-jsonl", "parquet"):
        ex.export(store, fmt, tmp_path / fmt, provenance="sidecar")
        ds = datasets.load_dataset(str(tmp_path / fmt), split="train", cache_dir=str(tmp_path / "hf-cache"))
        assert ds.column_names == ["instruction", "input", "output"], fmt  # the sidecar is not read as data
        assert [dict(r) for r in ds] == _expected(store, ids)


def test_messages_fit_the_smollm2_chat_template(reviewed, tmp_path):
    from transformers import AutoTokenizer

    from curate.lm.registry import ensure_lm_folder
    store, _ = reviewed
    tok = AutoTokenizer.from_pretrained(str(ensure_lm_folder("smollm2-135m-instruct")))
    ex.export(store, "messages", tmp_path / "m", system="You are a careful assistant.")
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "m" / "data.jsonl"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    for row in ds:
        text = tok.apply_chat_template(row["messages"], tokenize=False)
        assert "<|im_start|>system\nYou are a careful assistant.<|im_end|>" in text
        assert f"<|im_start|>user\n{row['messages'][1]['content']}<|im_end|>" in text
        assert text.rstrip().endswith(f"<|im_start|>assistant\n{row['messages'][2]['content']}<|im_end|>")
        ids = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        assert tok.decode(ids) == text


# -- what goes in -----------------------------------------------------------------------------------------
def test_edited_text_wins_rejected_and_pending_stay_out(reviewed, tmp_path):
    store, ids = reviewed
    rows = ex.preview(store, "alpaca-jsonl", 100)
    assert {"instruction": "Name a colour.", "input": "", "output": "Blue."} in rows
    original = store.get_candidate(ids[4])
    assert original.instruction != "Name a colour." and all(r["instruction"] != original.instruction
                                                                for r in rows)
    texts = {r["instruction"] for r in rows}
    assert store.get_candidate(ids[5]).instruction not in texts  # rejected
    assert store.get_candidate(ids[6]).instruction not in texts  # pending
    assert len(rows) == 5


def test_include_passing_adds_unreviewed_passing_candidates_with_the_consensus_choice(reviewed, tmp_path):
    store, ids = reviewed
    tau = 0.01
    res = ex.export(store, "alpaca-jsonl", tmp_path / "p", include=("accepted", "passing"), tau=tau,
                    provenance="field")
    lines = [json.loads(x) for x in (tmp_path / "p" / "data.jsonl").read_text().splitlines()]
    pending_passing = store.count_pending_passing(tau)
    assert pending_passing > 0
    assert res.rows == len(lines) == 5 + pending_passing
    assert res.counts["passing"] == pending_passing
    assert ids[5] not in {r["metadata"]["id"] for r in lines}  # a reviewer's reject wins over passing
    seqs = [r["metadata"]["seq"] for r in lines]
    assert seqs == sorted(seqs)
    for r in lines:
        meta = r["metadata"]
        c = review.candidate(store, meta["id"], tau)
        if meta["review_status"] == "pending":
            assert c["consensus"]["passes"] and meta["included_by"] == ["passing"]
            chosen = c["outputs"][c["consensus"]["chosen_index"]]["text"]
            assert r["output"] == chosen and r["instruction"] == c["instruction"] and r["input"] == c["input"]
        else:
            assert r["output"] == c["final"]["output"]
    only = ex.preview(store, "alpaca-jsonl", 1000, include="passing", tau=tau)
    rejected_passes = review.candidate(store, ids[5], tau)["consensus"]["passes"]
    assert len(only) == store.count_passing(tau)["passing"] - rejected_passes
    stricter = ex.preview(store, "alpaca-jsonl", 1000, include="passing", tau=0.99)
    assert len(stricter) < len(only)


def test_include_selection_takes_a_stored_selection_and_says_what_to_run_without_one(reviewed, tmp_path):
    store, ids = reviewed
    with pytest.raises(ExportError, match=r"no selection stored; run `curate select` first"):
        ex.export(store, "alpaca", tmp_path / "s", include="selection")
    assert not (tmp_path / "s").exists()
    pending = [r["id"] for r in store.review_queue(status="pending", limit=3)]
    picks = [ids[5], pending[2], ids[0], pending[0]]  # the rejected ids[5] stays out
    store.save_selection("older", [{"candidate_id": ids[1], "rank": 0, "gain": 1.0, "score": 1.0}], {"k": 1})
    store.db.execute("UPDATE selections SET created_at = created_at - 10 WHERE name = 'older'")
    store.save_selection("qdit-3", [{"candidate_id": x, "rank": i, "gain": 1.0, "score": 0.5}
                                    for i, x in enumerate(picks)], {"k": 4, "alpha": 0.7})
    res = ex.export(store, "alpaca-jsonl", tmp_path / "s", include="selection", provenance="sidecar")
    assert res.selection == "qdit-3"  # the newest by default
    side = [json.loads(x) for x in (tmp_path / "s" / ex.SIDECAR).read_text().splitlines()]
    want = sorted((ids[0], pending[0], pending[2]), key=lambda i: store.get_candidate(i).seq)
    assert [r["id"] for r in side] == want and all(r["included_by"] == ["selection"] for r in side)
    assert res.counts == {"accepted": 1, "edited": 0, "passing": 0, "selection": 2}
    card = (tmp_path / "s" / "README.md").read_text()
    assert "in the QDIT selection 'qdit-3'" in card and '| QDIT selection \'qdit-3\' (4 picks) | `{"alpha": 0.7' in card
    both = ex.preview(store, "alpaca", 100, include=("accepted", "selection"), selection="older")
    assert len(both) == 5  # ids[1] of "older" is accepted already
    with pytest.raises(ExportError, match=r"no selection 'nope' in .* \(selections: qdit-3, older\)"):
        ex.export(store, "alpaca", tmp_path / "n", include="selection", selection="nope")


# -- provenance -------------------------------------------------------------------------------------------
def test_provenance_field_and_sidecar_carry_the_same_facts(reviewed, tmp_path):
    store, ids = reviewed
    ex.export(store, "alpaca-jsonl", tmp_path / "f", provenance="field")
    ex.export(store, "alpaca-jsonl", tmp_path / "s", provenance="sidecar")
    ex.export(store, "alpaca-jsonl", tmp_path / "n")
    field_rows = [json.loads(x) for x in (tmp_path / "f" / "data.jsonl").read_text().splitlines()]
    side = [json.loads(x) for x in (tmp_path / "s" / ex.SIDECAR).read_text().splitlines()]
    plain = (tmp_path / "n" / "data.jsonl").read_bytes()
    assert (tmp_path / "s" / "data.jsonl").read_bytes() == plain  # the sidecar leaves the data rows alone
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["README.md", "data.jsonl"]
    assert [s.pop("row") for s in side] == list(range(len(field_rows)))
    assert side == [r.pop("metadata") for r in field_rows]
    assert [json.dumps(r, ensure_ascii=False) + "\n" for r in field_rows] == plain.decode().splitlines(True)
    edited = next(s for s in side if s["id"] == ids[4])
    cand = store.get_candidate(ids[4])
    cons = store.get_consensus(ids[4])
    assert edited == {
        "id": ids[4], "seq": cand.seq, "task_type": cand.task_type,
        "generator_model": cand.generator_model, "instruction_model": cand.generator_model,
        "ensemble_models": cons["models"], "consensus_reason": cons["reason"],
        "min_pairwise": cons["min_pairwise"], "chosen_index": cons["chosen_index"],
        "passes_tau": review.candidate(store, ids[4])["consensus"]["passes"], "review_status": "edited",
        "review_action": "edit", "reviewer": "bob", "reviewed_at": ex._iso(cand.reviewed_at),
        "included_by": ["accepted"], "source": None, "source_row": None}  # a generated candidate: no source
    assert edited["reviewed_at"].endswith("Z") and edited["reviewed_at"].startswith("20")


@pytest.mark.parametrize("fmt", ("parquet", "hf"))
def test_provenance_field_is_a_typed_struct_in_arrow_formats(reviewed, tmp_path, fmt):
    store, _ = reviewed
    ex.export(store, fmt, tmp_path / fmt, provenance="field")
    ds = _load(fmt, tmp_path / fmt, tmp_path)
    assert ds.column_names == ["instruction", "input", "output", "metadata"]
    assert ds.features["metadata"]["min_pairwise"].dtype == "float64"
    assert ds.features["metadata"]["seq"].dtype == "int64"
    assert [m["reviewer"] for m in ds["metadata"]] == ["ann"] * 4 + ["bob"]
    assert [m["included_by"] for m in ds["metadata"]] == [["accepted"]] * 5


# -- safety -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", tuple(ex.FORMATS))
def test_the_same_export_twice_is_byte_identical(reviewed, tmp_path, fmt):
    store, _ = reviewed
    kw = {"include": ("accepted", "passing"), "provenance": "sidecar" if fmt != "hf" else "field"}
    ex.export(store, fmt, tmp_path / "a", **kw)
    first = _tree(tmp_path / "a")
    ex.export(store, fmt, tmp_path / "a", force=True, **kw)
    ex.export(store, fmt, tmp_path / "b", **kw)
    assert _tree(tmp_path / "a") == first == _tree(tmp_path / "b")
    assert "README.md" in first and len(first) >= 2


def test_an_export_never_changes_the_store(tmp_path):
    db = tmp_path / "c.db"
    store = filled_store(db, 30)
    for r in store.review_queue(status="pending", limit=5):
        review.accept(store, r["id"], reviewer="ann")
    store.close()  # checkpoints the WAL into the file
    before, log_before = _sha(db), None
    with Store(db) as store:
        log_before = (store.review_counts(), len(store.review_log(limit=10_000)), store.count_candidates(None))
        for fmt in ex.FORMATS:
            ex.export(store, fmt, tmp_path / fmt, include=("accepted", "passing"), provenance="field")
        ex.preview(store, "messages")
        ex.dataset_card(store, "parquet")
        after_counts = (store.review_counts(), len(store.review_log(limit=10_000)), store.count_candidates(None))
    assert after_counts == log_before
    assert _sha(db) == before
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


@pytest.mark.parametrize("fmt", ("alpaca-jsonl", "alpaca", "hf", "parquet"))
def test_an_interrupted_export_leaves_no_partial_output(reviewed, tmp_path, monkeypatch, fmt):
    store, _ = reviewed

    def broken(path, *a, **kw):  # writes half a file, then fails like a full disk or a Ctrl-C
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        (Path(path) / "x" if fmt == "hf" else Path(path)).write_text('{"instruction": "half')
        raise OSError(28, "No space left on device")
    name = {"hf": "_write_hf", "parquet": "_write_parquet"}.get(fmt, "_write_lines")
    monkeypatch.setattr(ex, name, broken)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="No space left on device.*Nothing was written"):
        ex.export(store, fmt, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_replace_keeps_the_previous_export(reviewed, tmp_path, monkeypatch):
    store, _ = reviewed
    out = tmp_path / "out"
    ex.export(store, "alpaca-jsonl", out)
    before = _tree(out)

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "_write_lines", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.export(store, "alpaca-jsonl", out, force=True, include=("accepted", "passing"))
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    ({"fmt": "csv"}, r"unknown export format 'csv'; one of alpaca, alpaca-jsonl, sharegpt, messages, hf, parquet"),
    ({"include": ("accepted", "liked")}, r"unknown include 'liked'; one or more of accepted, passing, selection"),
    ({"include": ()}, r"unknown include \(none\)"),
    ({"provenance": "column"}, r"unknown provenance 'column'; one of none, field, sidecar"),
    ({"tau": 1.5}, r"tau must be a number from 0 to 1"),  # the shared check's words (curate.checks)
    ({"tau": float("nan")}, r"tau must be a number from 0 to 1"),
    ({"fmt": "alpaca", "system": "Be brief."}, r"format 'alpaca' has no system prompt; --system works with "
                                               r"sharegpt, messages"),
])
def test_bad_options_are_errors_that_name_the_choices(reviewed, tmp_path, kw, message):
    store, _ = reviewed
    kw = {"fmt": "messages", **kw}
    with pytest.raises(ExportError, match=message):
        ex.export(store, kw.pop("fmt"), tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_nothing_to_export_is_an_error_and_writes_nothing(tmp_path):
    with filled_store(tmp_path / "c.db", 10) as store:
        with pytest.raises(ExportError, match=r"nothing to export: no candidate is accepted or edited \(review "
                                              r"status: pending 10\); review candidates .*--include passing"):
            ex.export(store, "alpaca", tmp_path / "out")
        with pytest.raises(ExportError, match="no candidate is passing consensus at tau=1"):
            ex.export(store, "alpaca", tmp_path / "out", include="passing", tau=1.0)
        assert ex.preview(store, "alpaca") == []
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_unless_forced_and_foreign_folders_never_replaced(reviewed, tmp_path):
    store, _ = reviewed
    out = tmp_path / "out"
    ex.export(store, "alpaca-jsonl", out)
    with pytest.raises(ExportError, match=r"already holds an export; pass --force"):
        ex.export(store, "messages", out)
    ex.export(store, "messages", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data.jsonl"]
    assert "messages" in (out / "data.jsonl").read_text().splitlines()[0]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"holds files an export does not write \(notes.txt\); it is never"):
        ex.export(store, "alpaca", mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    assert ex.export(store, "alpaca", empty).rows == 5  # an empty folder is fine

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ExportError, match="exists and is not a plain folder"):
        ex.export(store, "alpaca", a_file, force=True)
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    with pytest.raises(ExportError, match="exists and is not a plain folder"):
        ex.export(store, "alpaca", link, force=True)
    with pytest.raises(ExportError, match=r"'.*train.jsonl' looks like a file name. Pass a folder such as"):
        ex.export(store, "alpaca-jsonl", tmp_path / "train.jsonl")


def test_a_relative_out_is_under_the_working_folder(reviewed, tmp_path, monkeypatch):
    store, _ = reviewed
    monkeypatch.chdir(tmp_path)
    res = ex.export(store, "alpaca-jsonl", "rel")
    assert res.path == tmp_path / "rel" and res.data_path == tmp_path / "rel" / "data.jsonl"
    assert len(res.data_path.read_text().splitlines()) == 5


def test_an_unwritable_path_is_a_clear_error(reviewed, tmp_path):
    store, _ = reviewed
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ExportError, match=r"cannot write into .*blocker.*Choose a writable --out"):
        ex.export(store, "alpaca", blocker / "sub" / "out")


def test_invalid_utf8_in_the_store_names_the_candidate_or_is_replaced_when_asked(reviewed, tmp_path, capsys):
    store, ids = reviewed
    seq = store.get_candidate(ids[1]).seq
    # bytes another tool wrote: not valid UTF-8 (Python's sqlite3 cannot even store such text)
    store.db.execute("UPDATE candidates SET final_output = CAST(x'4f6b20ff' AS TEXT) WHERE id = ?", [ids[1]])
    store.db.conn.commit()
    with pytest.raises(ExportError, match=rf"candidate seq {seq} \({ids[1][:10]}\): its output is not valid "
                                          r"UTF-8 \(character 3\).*Pass --invalid-text replace"):
        ex.export(store, "alpaca-jsonl", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    res = ex.export(store, "alpaca-jsonl", tmp_path / "out", invalid_text="replace")
    assert res.rows == 5 and res.repaired == ((seq, "output"),)
    second = (tmp_path / "out" / "data.jsonl").read_text(encoding="utf-8").splitlines()[1]
    assert json.loads(second)["output"] == "Ok \ufffd"
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert f"| invalid UTF-8 replaced with U+FFFD | seq {seq} (output) |" in card
    assert main(["export", "--db", store.path, "--format", "messages", "--out", str(tmp_path / "cli"),
                 "--invalid-text", "replace"]) == 0
    assert f"warning: candidate seq {seq}: invalid UTF-8 in its output replaced with U+FFFD" in capsys.readouterr().err


# -- the dataset card -------------------------------------------------------------------------------------
def test_the_card_has_hub_metadata_counts_models_and_licences(reviewed, tmp_path):
    from huggingface_hub import DatasetCard
    store, _ = reviewed
    store.create_job("generate", {"similarity_threshold": 0.7, "instruction_models": ["gemma3-270m"]},
                     job_id="job1")
    ex.export(store, "parquet", tmp_path / "out", include=("accepted", "passing"))
    card = DatasetCard.load(tmp_path / "out" / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "other" and meta["license_name"] == "gemma-terms-of-use"  # Gemma wrote some rows
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data.parquet"}]}]
    assert meta["size_categories"] == ["n<1K"] and "synthetic" in meta["tags"]
    text = card.text
    passing = store.count_passing(0.01)
    assert f"| passing consensus at tau = 0.01 | {passing['passing']} of {passing['scored']} |" in text
    assert "| review: rejected | 1 |" in text and "| candidates: empty_output | 2 |" in text
    assert "| gemma3-270m | Gemma terms of use |" in text and "| qwen2.5-0.5b-instruct | Apache-2.0 |" in text
    assert "| job1 | generate | queued |" in text
    assert '"similarity_threshold": 0.7' in text
    assert "| ann | 4 | 4 | 4 | 0 | 0 | 0 |" in text and "| bob | 2 | 2 | 0 | 1 | 1 | 0 |" in text
    assert "Gemma Terms of Use" in text and "Self-Instruct" in text
    assert card.text == ex.dataset_card(store, "parquet", include=("accepted", "passing")).split("---\n", 2)[2]


def test_the_card_says_apache_when_every_model_and_seed_is(tmp_path):
    from curate.seeds import load_seeds
    store = filled_store(tmp_path / "c.db", 6, generators=("smollm2-135m-instruct",),
                         ensemblers=("qwen2.5-0.5b-instruct", "smollm2-135m-instruct"))
    store.add_seeds(load_seeds())
    review.accept(store, store.review_queue(limit=1)[0]["id"], reviewer="ann")
    card = ex.dataset_card(store, "hf")
    assert "\nlicense: apache-2.0\n" in card and "license_name" not in card
    assert "| self_instruct_seed_tasks.jsonl | A | 125 | Apache-2.0 (Self-Instruct" in card
    assert "path: data-*.arrow" in card
    store.close()


# -- the command ------------------------------------------------------------------------------------------
def test_cli_export_prints_what_it_wrote(reviewed, tmp_path, capsys):
    store, _ = reviewed
    db = store.path
    out = tmp_path / "cli"
    assert main(["export", "--db", db, "--format", "sharegpt", "--out", str(out), "--include", "accepted",
                 "passing", "--tau", "0.2", "--system", "Be brief.", "--provenance", "sidecar"]) == 0
    printed = capsys.readouterr().out
    rows = len((out / "data.jsonl").read_text().splitlines())
    assert f"wrote {rows} rows (accepted 4, edited 1, passing {rows - 5}) as sharegpt to {out}" in printed
    for name in ("data.jsonl", "README.md", ex.SIDECAR):
        assert f"{(out / name).stat().st_size:,} bytes" in printed
    assert rows == 5 + store.count_pending_passing(0.2)

    assert main(["export", "--db", db, "--format", "sharegpt", "--out", str(out)]) == 2
    assert "already holds an export; pass --force" in capsys.readouterr().err
    assert main(["export", "--db", db, "--format", "alpaca", "--out", str(tmp_path / "x"), "--system", "s"]) == 2
    assert "has no system prompt" in capsys.readouterr().err
    assert main(["export", "--db", db, "--format", "alpaca", "--out", str(tmp_path / "x"), "--include",
                 "selection"]) == 2
    assert "curate: error: no selection stored; run `curate select` first" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_export_of_a_missing_store_creates_nothing(tmp_path, capsys):
    rc = main(["export", "--db", str(tmp_path / "none.db"), "--format", "alpaca", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no store at" in err and "none.db" in err and "curate generate" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_includes_match_the_store():
    assert ex.INCLUDES == Store.EXPORT_INCLUDES
