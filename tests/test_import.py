"""Bring your own data (curate.importer, curate.readers): every format and mapping on small files written here,
re-import, --as-outputs matching, the whole pipeline over imported candidates, every kind of bad input, and a
real kill -9 mid-import."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlite_utils.utils import hash_record

from curate import export as ex
from curate import importer, jobs, review
from curate.cli import main
from curate.ensemble import EnsembleConfig, run_ensemble
from curate.errors import SourceError, Stopped
from curate.lm.scripted import ScriptedLM
from curate.mixture import ModelPool
from curate.readers import open_source
from curate.select import find_duplicates, run_selection
from curate.stage import StageContext
from curate.store import Store, content_id

from test_select import CountingEmbedder

ROOT = Path(__file__).resolve().parents[1]
ALPACA = [
    {"instruction": "Name the capital of France.", "input": "", "output": "Paris."},
    {"instruction": "Add the two numbers.", "input": "2, 3", "output": "5"},
    {"instruction": "Translate the word to German.", "input": "cat", "output": "Katze", "category": "mt"},
]


def write_jsonl(path: Path, rows, raw: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + raw)
    return path


def run_import(store: Store, **config) -> dict:
    """Start and run an import job; returns the job row (state, error, progress.result)."""
    return jobs.run_job(store, jobs.start_job(store, "import", config))


def imported(store: Store) -> list[tuple]:
    """(seq, generator, task type, instruction, input, o0) of every candidate, in seq order."""
    return [(r["seq"], r["generator_model"], r["task_type"], r["instruction"], r["input"], r["output"])
            for r in store.review_queue(status=None, limit=10_000, snippet=10_000)]


@pytest.fixture
def store():
    st = Store(":memory:")
    yield st
    st.close()


# -- formats and mappings ---------------------------------------------------------------------------------------
def test_alpaca_jsonl_becomes_candidates_with_o0_type_and_provenance(tmp_path, store):
    f = write_jsonl(tmp_path / "alpaca.jsonl", ALPACA)
    job = run_import(store, source=str(f), license="CC-BY-NC-4.0")
    assert job["state"] == "done", job["error"]
    r = job["progress"]["result"]
    assert (r["source"], r["format"], r["read"], r["added"], r["duplicates"]) == ("alpaca", "alpaca", 3, 3, 0)
    assert imported(store) == [(1, "alpaca", "B", "Name the capital of France.", "", "Paris."),
                               (2, "alpaca", "A", "Add the two numbers.", "2, 3", "5"),
                               (3, "alpaca", "A", "Translate the word to German.", "cat", "Katze")]
    cid = store.review_queue(status=None, limit=3)[2]["id"]
    outs = store.outputs_for(cid)
    assert [(o.position, o.model_id, o.prompt_style, o.text) for o in outs] == [(0, "alpaca", "generator", "Katze")]
    prov = store.provenance_for(cid)
    assert (prov["source"], prov["license"], prov["location"], prov["row"], prov["line"], prov["format"]) == (
        "alpaca", "CC-BY-NC-4.0", str(f), 2, 3, "alpaca")
    assert prov["extra"] == {"category": "mt"}  # the columns the mapping did not use
    assert review.candidate(store, cid)["source"]["row"] == 2
    # imported instructions are not generated ones: no demos, no novelty filter, not in the generation counts
    assert store.kept_instruction_texts() == [] and store.stats()["instructions"] == {}
    assert store.stats()["imported"] == {"alpaca": {"candidates": 3, "outputs": 0}}


def test_json_array_csv_tsv_parquet_and_datasets_folder_read_the_same_rows(tmp_path, store):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{k: r[k] for k in ("instruction", "input", "output")} for r in ALPACA]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "one_line.json").write_text(json.dumps(rows))  # a minified array: one line
    for name, delim in (("c.csv", ","), ("t.tsv", "\t")):
        with open(tmp_path / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"], delimiter=delim)
            w.writeheader()
            w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "folder"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])}
                         ).save_to_disk(str(tmp_path / "dict"))
    want = [(r["instruction"], r["input"], r["output"]) for r in rows]
    for i, (source, extra) in enumerate([("a.json", {}), ("one_line.json", {}), ("c.csv", {}), ("t.tsv", {}),
                                         ("p.parquet", {}), ("folder", {}), ("dict", {"split": "train"})]):
        st = Store(":memory:")
        job = run_import(st, source=str(tmp_path / source), **extra)
        assert job["state"] == "done", (source, job["error"])
        assert [(x[3], x[4], x[5]) for x in imported(st)] == want, source
        reader = open_source(str(tmp_path / source), extra.get("split")).kind
        assert reader == ["json", "json", "csv", "csv", "parquet", "datasets", "datasets"][i]
        st.close()
    with pytest.raises(SourceError, match="has the splits train, test: pass --split"):
        open_source(str(tmp_path / "dict"))
    with pytest.raises(SourceError, match="--split applies to datasets folders and Hub ids"):
        open_source(str(tmp_path / "a.json"), "train")


def test_csv_with_embedded_newlines_quotes_and_a_bom(tmp_path, store):
    f = tmp_path / "multi.csv"
    f.write_bytes("\ufeffinstruction,input,output\r\n"
                  '"Write a haiku\nabout rain.",,"Drops fall,\r\nsoft and slow."\r\n'
                  '"Say ""hi"".",x,hi\r\n'.encode())
    job = run_import(store, source=str(f))
    assert job["state"] == "done", job["error"]
    assert [x[3:] for x in imported(store)] == [("Write a haiku\nabout rain.", "", "Drops fall,\r\nsoft and slow."),
                                                ('Say "hi".', "x", "hi")]
    cands = store.review_queue(status=None)
    assert [store.provenance_for(c["id"])["line"] for c in cands] == [2, 5]  # the line each record starts on


def test_dolly_and_gpteacher_columns_are_detected_and_map_overrides(tmp_path, store):
    dolly = write_jsonl(tmp_path / "dolly.jsonl", [
        {"instruction": "Why is the sky blue?", "context": "", "response": "Rayleigh scattering.", "category": "qa"},
        {"instruction": "Summarise.", "context": "A long text.", "response": "Short.", "category": "sum"}])
    p = importer.preview(str(dolly))
    assert p["format"] == "alpaca" and p["mapping"] == "instruction=instruction,input=context,output=response"
    assert p["columns"] == ["instruction", "context", "response", "category"]
    assert [r["input"] for r in p["rows"]] == ["", "A long text."]
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"q": "Name a colour.", "ctx": "x", "a": "Red.", "prompt": "no"}])
    job = run_import(store, source=str(odd), mapping={"instruction": "q", "input": "", "output": "a"},
                     name="odd-set")
    assert job["state"] == "done", job["error"]
    assert imported(store) == [(1, "odd-set", "B", "Name a colour.", "", "Red.")]  # input= : no input column
    assert store.provenance_for(store.review_queue(status=None)[0]["id"])["extra"] == {"ctx": "x", "prompt": "no"}


def test_conversations_first_exchange_system_turn_and_cut_turns(tmp_path, store):
    share = write_jsonl(tmp_path / "share.jsonl", [
        {"conversations": [{"from": "system", "value": "Be terse."}, {"from": "human", "value": "Hi there?"},
                           {"from": "gpt", "value": "Hello."}, {"from": "human", "value": "More?"},
                           {"from": "gpt", "value": "No."}]},
        {"conversations": [{"from": "human", "value": "One question."}, {"from": "gpt", "value": "One answer."}]}])
    job = run_import(store, source=str(share))
    assert job["state"] == "done", job["error"]
    r = job["progress"]["result"]
    assert (r["format"], r["multi_turn_cut"], r["added"]) == ("sharegpt", 1, 2)
    assert [x[3:] for x in imported(store)] == [("Hi there?", "", "Hello."), ("One question.", "", "One answer.")]
    first = store.provenance_for(store.review_queue(status=None)[0]["id"])
    assert first["system"] == "Be terse." and first["extra"] == {"turns_cut": 2}
    msgs = write_jsonl(tmp_path / "msgs.jsonl", [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Part one, "},
                                                   {"type": "text", "text": "part two."}]},
                      {"role": "assistant", "content": "Answered."}, {"role": "tool", "content": "{}"}]}])
    job = run_import(store, source=str(msgs))
    r = job["progress"]["result"]
    assert (job["state"], r["format"], r["multi_turn_cut"]) == ("done", "messages", 1)
    assert imported(store)[-1][3:] == ("Part one, part two.", "", "Answered.")
    guanaco = write_jsonl(tmp_path / "chinkara.jsonl", [
        {"text": "### Human: Who wrote Hamlet? ### Assistant: Shakespeare."},
        {"text": "### Human: 2+2? ### Assistant: 4 ### Human: and 3+3? ### Assistant: 6"}])
    job = run_import(store, source=str(guanaco))
    r = job["progress"]["result"]
    assert (job["state"], r["format"], r["multi_turn_cut"]) == ("done", "guanaco", 1)
    assert [x[3:] for x in imported(store)[-2:]] == [("Who wrote Hamlet?", "", "Shakespeare."), ("2+2?", "", "4")]


def test_explicit_format_with_a_mapped_conversation_column(tmp_path, store):
    f = write_jsonl(tmp_path / "chats.jsonl", [{"id": 1, "dialog": [{"role": "user", "content": "Q?"},
                                                                    {"role": "assistant", "content": "A."}]}])
    with pytest.raises(SourceError, match=r"cannot tell the format .*columns found: id, dialog"):
        jobs.start_job(store, "import", {"source": str(f)})
    job = run_import(store, source=str(f), format="messages", mapping={"conversations": "dialog"})
    assert job["state"] == "done" and imported(store)[0][3:] == ("Q?", "", "A.")


# -- re-import and duplicates ---------------------------------------------------------------------------------
def test_reimport_adds_nothing_and_duplicates_in_a_file_are_counted_once(tmp_path, store):
    f = write_jsonl(tmp_path / "d.jsonl", ALPACA + [ALPACA[0], ALPACA[1]])
    r = run_import(store, source=str(f))["progress"]["result"]
    assert (r["read"], r["added"], r["duplicates"]) == (5, 3, 2)
    before = (imported(store), store.count_outputs())
    again = run_import(store, source=str(f))["progress"]["result"]
    assert again["already_imported"] and (imported(store), store.count_outputs()) == before
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))  # the same content, a changed file: read again
    touched = run_import(store, source=str(f))["progress"]["result"]
    assert not touched["already_imported"] and (touched["added"], touched["existing"]) == (0, 3)
    assert (imported(store), store.count_outputs()) == before
    copy = tmp_path / "copy" / "d.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(f.read_bytes())
    assert run_import(store, source=str(copy))["progress"]["result"]["added"] == 0  # same name, same rows
    renamed = run_import(store, source=str(copy), name="other")["progress"]["result"]
    assert renamed["added"] == 3  # another source: its own candidates


def test_limit_reads_only_the_first_rows(tmp_path, store):
    f = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    r = run_import(store, source=str(f), limit=2)["progress"]["result"]
    assert r["read"] == 2 and len(imported(store)) == 2


def test_licence_is_kept_per_source_and_a_different_one_refused(tmp_path, store):
    f = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    run_import(store, source=str(f), license="CC-BY-4.0")
    with pytest.raises(SourceError, match="imported before under the licence CC-BY-4.0"):
        jobs.start_job(store, "import", {"source": str(f), "license": "MIT"})
    with pytest.raises(ValueError, match="SPDX licence id"):
        jobs.start_job(store, "import", {"source": str(f), "license": "my licence"})
    assert store.source_licence("d") == "CC-BY-4.0"


# -- other models' outputs ----------------------------------------------------------------------------------
def test_as_outputs_attaches_outputs_by_instruction_and_input_and_reports_the_rest(tmp_path, store):
    run_import(store, source=str(write_jsonl(tmp_path / "base.jsonl", ALPACA)))
    evals = tmp_path / "model_outputs.json"  # AlpacaEval's shape: a generator column, no input column
    evals.write_text(json.dumps([
        {"instruction": "Name the capital of France.", "output": "Paris", "generator": "gpt4", "dataset": "x"},
        {"instruction": "Name the capital of France.", "output": "It is Paris.", "generator": "llama"},
        {"instruction": "Nothing like this is stored.", "output": "?", "generator": "gpt4"},
        {"instruction": "Add the two numbers.", "output": "five", "generator": "gpt4"}]))  # input "" ≠ "2, 3"
    job = run_import(store, source=str(evals), as_outputs=True)
    assert job["state"] == "done", job["error"]
    r = job["progress"]["result"]
    assert (r["kind"], r["read"], r["matched"], r["added"], r["unmatched"]) == ("outputs", 4, 2, 2, 2)
    paris = store.review_queue(status=None)[0]["id"]
    outs = store.outputs_for(paris)
    assert [(o.model_id, o.prompt_style, o.text) for o in outs] == [
        ("base", "generator", "Paris."), ("gpt4", "imported", "Paris"), ("llama", "imported", "It is Paris.")]
    assert json.loads(outs[1].params) == {"source": "model_outputs", "import": r["import_id"], "row": 0, "line": 1}
    rejects = store.import_rejects(source="model_outputs")
    assert [(x["row"], x["kind"]) for x in rejects] == [(2, "unmatched"), (3, "unmatched")]
    assert "no candidate has this instruction and input" in rejects[0]["reason"]
    # --model names them all; the same rows again add nothing
    more = write_jsonl(tmp_path / "mistral.jsonl", [{"instruction": "Add the two numbers.", "input": "2, 3",
                                                     "output": "5"}])
    r2 = run_import(store, source=str(more), as_outputs=True, model="mistral")["progress"]["result"]
    assert (r2["added"], r2["unmatched"]) == (1, 0)
    assert run_import(store, source=str(more), as_outputs=True, model="mistral")["progress"]["result"][
        "already_imported"]
    # the candidate's own generator again would fake agreement: skipped and counted
    own = run_import(store, source=str(more), as_outputs=True, model="base", name="self")["progress"]["result"]
    assert (own["own_generator"], own["added"]) == (1, 0)
    # consensus over the stored outputs, no model run
    prog = run_ensemble(store, EnsembleConfig(models=["never-loaded"], consensus_only=True), ModelPool({}))
    assert sum(prog.consensus.values()) == 2 and store.get_consensus(paris)["k"] == 3
    assert any("1 candidate has only one output" in w for w in prog.warnings)


def test_outputs_need_a_model_name_candidates_and_a_match(tmp_path, store):
    rows = write_jsonl(tmp_path / "o.jsonl", [{"instruction": "Name the capital of France.", "output": "Paris"}])
    with pytest.raises(SourceError, match="no candidates to attach outputs to"):
        jobs.start_job(store, "import", {"source": str(rows), "as_outputs": True, "model": "m"})
    run_import(store, source=str(write_jsonl(tmp_path / "base.jsonl", ALPACA[1:])))
    with pytest.raises(SourceError, match="need the name of the model .* pass --model NAME"):
        jobs.start_job(store, "import", {"source": str(rows), "as_outputs": True})
    with pytest.raises(ValueError, match="use it with --as-outputs"):
        jobs.start_job(store, "import", {"source": str(rows), "model": "m"})
    job = run_import(store, source=str(rows), as_outputs=True, model="m")
    assert job["state"] == "failed" and "none of the 1 rows matches a stored candidate" in job["error"]
    assert "line 1: no candidate has this instruction and input" in job["error"]
    assert store.count_outputs() == 2 and store.list_imports()[0]["kind"] == "candidates"  # nothing left behind


# -- every later stage on imported candidates -------------------------------------------------------------------
def test_imported_set_goes_through_ensemble_score_teachers_select_review_and_export(tmp_path):
    import datasets
    st = Store(tmp_path / "p.db")
    rows = [{"instruction": f"Describe item number {i} in one line.", "input": "" if i % 2 else f"item {i}",
             "output": f"Item {i} is a small round thing."} for i in range(12)]
    run_import(st, source=str(write_jsonl(tmp_path / "mine.jsonl", rows)), license="CC-BY-4.0")
    write_jsonl(tmp_path / "other.jsonl", [{**r, "output": f"It is a small round thing, item {i}."}
                                           for i, r in enumerate(rows)])
    assert run_import(st, source=str(tmp_path / "other.jsonl"), as_outputs=True, model="other-model",
                      license="CC-BY-4.0")["state"] == "done"
    lm = ScriptedLM("scripted:e1", lambda p: "A small round thing.")
    prog = run_ensemble(st, EnsembleConfig(models=["scripted:e1"], batch_size=5), ModelPool({"scripted:e1": lm}))
    assert prog.outputs == {"scripted:e1": 12} and sum(prog.consensus.values()) == 12
    assert lm.calls[0][0][0] == "Describe item number 0 in one line.\nitem 0"  # the reference prompt
    cid = st.review_queue(status=None, limit=1)[0]["id"]
    assert st.get_consensus(cid)["models"] == ["mine", "other-model", "scripted:e1"]  # position 1: by name
    assert jobs.run_job(st, jobs.start_job(st, "score", {}))["state"] == "done"
    teach = jobs.run_job(st, jobs.start_job(st, "teachers", {"student": "scripted:s"}),
                         pool=ModelPool({"scripted:s": ScriptedLM("scripted:s")}))
    assert teach["state"] == "done", teach["error"]
    from curate.teachers import teacher_ranking
    assert {r["model"] for r in teacher_ranking(st, "scripted:s", "proxy:consensus", 1.0)} == {
        "mine", "scripted:e1", "other-model"}  # each output's generator is a teacher
    sel = run_selection(st, k=4, alpha=0.5, source="all", embedder=CountingEmbedder(), name="pick")
    assert len(sel.result.indices) == 4
    assert find_duplicates(st, 0.999, embedder=CountingEmbedder()) == []
    assert [m for _, m in review.generator_choices(st)] == ["mine"]
    assert review.generator_choices(st) == [("mine (imported)", "mine")]
    page = review.queue_page(st, review.QueueFilter(model="mine", status=None))
    assert page["total"] == 12
    for r in page["rows"][:6]:
        review.accept(st, r["id"], reviewer="ann")
    res = ex.export(st, "hf", tmp_path / "out", include=("accepted", "selection"), selection="pick",
                    provenance="field")
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert len(ds) == res.rows >= 6
    assert {m["source"] for m in ds["metadata"]} == {"mine"}
    assert {m["source_row"] for m in ds["metadata"]} <= set(range(12))
    card = (tmp_path / "out" / "README.md").read_text()
    assert "\nlicense: cc-by-4.0\n" in card  # every source and (non-scripted) model here is CC-BY-4.0 …
    assert "| mine | CC-BY-4.0 |" in card and "mine.jsonl" in card and "imported from `mine`" in card
    assert "| other-model | CC-BY-4.0 |" in card  # … the imported outputs' model takes its source's licence
    ex.export(st, "alpaca-jsonl", tmp_path / "json", include=("accepted",))
    assert len(datasets.load_dataset(str(tmp_path / "json"), split="train")) == 6
    st.close()


def test_the_card_licence_is_unknown_without_a_licence_and_other_when_they_differ(tmp_path):
    st = Store(":memory:")
    run_import(st, source=str(write_jsonl(tmp_path / "a.jsonl", ALPACA[:1])))
    run_import(st, source=str(write_jsonl(tmp_path / "b.jsonl", ALPACA[1:])), license="MIT")
    for r in st.review_queue(status=None):
        review.accept(st, r["id"], reviewer="ann")
    card = ex.dataset_card(st)
    assert "\nlicense: unknown\n" in card and "- a (imported data): unknown — pass --license SPDX" in card
    st.db.execute("UPDATE sources SET license = 'CC-BY-4.0' WHERE name = 'a'")
    assert "\nlicense: other\nlicense_name: mixed\n" in ex.dataset_card(st)


# -- bad input -------------------------------------------------------------------------------------------------
def test_malformed_lines_import_nothing_and_list_every_line(tmp_path, store):
    f = write_jsonl(tmp_path / "bad.jsonl", ALPACA, raw=b'{"instruction": "x", "output": \n[1, 2]\n'
                                                         b'{"instruction": "", "output": "y"}\n'
                                                         b'{"instruction": "z", "output": "  "}\n'
                                                         b'{"instruction": "w"}\n{"instruction": 5, "output": "v"}\n'
                                                         b'{"instruction": "bytes \xff\xfe", "output": "u"}\n')
    job = run_import(store, source=str(f), batch_size=2)
    assert job["state"] == "failed"
    err = job["error"]
    assert f"{f}: 7 bad rows of 10, so nothing was imported" in err and "--skip-bad" in err
    for line, what in ((4, "column 32: invalid JSON: Expecting value"), (5, "the line holds an array, not a JSON object"),
                       (6, "instruction is empty"), (7, "output is only whitespace"), (8, "output is missing"),
                       (9, "instruction must be a string, not a number"), (10, "column 24: not UTF-8 (byte 0xff")):
        assert f"line {line}: {what}" in err, (line, err)
    assert imported(store) == [] and store.list_imports() == [] and store.count_outputs() == 0
    assert store._one("SELECT COUNT(*) FROM import_staging") == 0
    # --skip-bad: the good rows, and the rejects with their reasons
    job = run_import(store, source=str(f), skip_bad=True, batch_size=2)
    r = job["progress"]["result"]
    assert (job["state"], r["added"], r["rejected"]) == ("done", 3, 7)
    rejects = store.import_rejects(source="bad")
    assert [x["line"] for x in rejects] == [4, 5, 6, 7, 8, 9, 10] and rejects[0]["raw"].startswith('{"instruction": "x"')
    assert rejects[-1]["reason"].startswith("line 10: column 24: not UTF-8")


def test_many_bad_rows_are_listed_up_to_a_limit(tmp_path, store):
    f = write_jsonl(tmp_path / "many.jsonl", [{"instruction": "", "output": "x"}] * 30)
    err = run_import(store, source=str(f))["error"]
    assert "30 bad rows of 30" in err and "line 20: instruction is empty" in err and "... and 10 more" in err
    assert "line 21:" not in err


def test_missing_columns_list_the_columns_found_and_suggest_map(tmp_path, store):
    f = write_jsonl(tmp_path / "cols.jsonl", [{"instruction": "Say hi.", "reply": "hi", "meta": 1}])
    with pytest.raises(SourceError) as e:
        jobs.start_job(store, "import", {"source": str(f)})
    assert "no column for 'output'" in str(e.value) and "columns found: instruction, reply, meta" in str(e.value)
    assert "--map output=reply" in str(e.value)
    with pytest.raises(SourceError, match=r"--map output=answer: there is no column 'answer' \(columns found"):
        jobs.start_job(store, "import", {"source": str(f), "mapping": {"output": "answer"}})
    assert store.list_jobs() == []  # refused before any job row


@pytest.mark.parametrize("content, match", [
    (b"", "the file is empty (0 bytes)"),
    (b"\x00\x01\x02binary", "looks like a binary file (a NUL byte at byte offset 0)"),
    (b"\x1f\x8b\x08\x00gz", "gzip-compressed"),
    (b"PK\x03\x04zip", "a zip archive"),
    ("\ufeff{}".encode("utf-16"), "UTF-16 text"),
    (b"   \n\n", "no records"),
    (b"[]", "no records"),
    (b'[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]', "line 2, column 22: invalid JSON"),
    (b'[{"instruction": "a", "output": "b"},]', "a trailing comma"),
    (b'[{"instruction": "a", "output": "b"}', "the file ends inside the array"),
    (b'{\n"data": [1]\n}\n', "one JSON object spread over several lines"),
])
def test_bad_files_are_refused_before_a_job_with_the_place_and_the_fix(tmp_path, store, content, match):
    f = tmp_path / "x.json"
    f.write_bytes(content)
    with pytest.raises(SourceError, match=re.escape(match)):
        jobs.start_job(store, "import", {"source": str(f)})
    assert store.list_jobs() == [] and store.list_imports() == []


def test_a_json_array_broken_after_its_first_records_fails_the_job_and_stores_nothing(tmp_path, store):
    good = ",\n".join(json.dumps({"instruction": f"Say {i}.", "output": str(i)}) for i in range(150))
    f = tmp_path / "late.json"
    f.write_text("[" + good + ",\n{broken}\n]")
    job = run_import(store, source=str(f), batch_size=20)
    assert job["state"] == "failed" and "line 151, column 2: invalid JSON" in job["error"]
    assert imported(store) == [] and store._one("SELECT COUNT(*) FROM import_staging") == 0


def test_csv_rows_with_wrong_field_counts_and_bad_bytes(tmp_path, store):
    f = tmp_path / "bad.csv"
    f.write_bytes(b"instruction,input,output\nok,,fine\ntoo,many,fields,here\nbad \xff,,x\n\"open,,quote\n")
    with pytest.raises(SourceError, match="line 5: not valid CSV .* a quoted field may be left open"):
        run_import(store, source=str(f), skip_bad=True)  # an unclosed quote runs to the end: seen up front
    f.write_bytes(b"instruction,input,output\nok,,fine\ntoo,many,fields,here\nbad \xff,,x\n")
    job = run_import(store, source=str(f), skip_bad=True)
    assert job["state"] == "done"
    assert [x["reason"] for x in store.import_rejects(source="bad")] == [
        "line 3: 4 fields, but the header row names 3 columns",
        "line 4: column 'instruction': not UTF-8; save the file as UTF-8"]


def test_a_missing_path_and_a_hub_id_offline_fail_at_once(tmp_path, store, monkeypatch):
    with pytest.raises(SourceError, match="no such file or folder: .*nope.jsonl"):
        jobs.start_job(store, "import", {"source": str(tmp_path / "nope.jsonl")})
    monkeypatch.setenv("CURATE_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(SourceError, match="taken as a Hub dataset id, and curate runs offline"):
        jobs.start_job(store, "import", {"source": "some-owner/some-dataset", "split": "train"})
    assert time.perf_counter() - t0 < 30  # no network wait (the message says how to go online)
    assert store.list_jobs() == []


# -- stopping, resuming, kill -9 -------------------------------------------------------------------------------
def _snapshot(db: Path) -> dict:
    """Everything an import writes, without times and job ids: candidates, instructions, outputs, provenance."""
    con = sqlite3.connect(db)
    q = lambda sql: sorted(con.execute(sql).fetchall())  # noqa: E731
    snap = {"candidates": q("SELECT id, seq, instruction_id, task_type, input, output, generator_model, status"
                            " FROM candidates"),
            "instructions": q("SELECT id, seq, text, task_type, origin FROM instructions"),
            "outputs": q("SELECT id, candidate_id, position, model_id, prompt_style, text FROM outputs"),
            "import_rows": q("SELECT candidate_id, source, row, line FROM import_rows"),
            "staging": q("SELECT COUNT(*) FROM import_staging"),
            "imports": q("SELECT id, state, rows_read FROM imports")}
    con.close()
    return snap


def test_a_stopped_import_resumes_to_exactly_the_rows_of_a_clean_one(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"Task {i}.", "output": f"Answer {i}."} for i in range(50)]
                    + ALPACA)
    clean = tmp_path / "clean.db"
    with Store(clean) as st:
        run_import(st, source=str(f), batch_size=7)
    db = tmp_path / "stopped.db"
    with Store(db) as st:
        jid = jobs.start_job(st, "import", {"source": str(f), "batch_size": 7})
        calls = {"n": 0}
        ctx = StageContext(job_id=jid, should_stop=lambda: (calls.__setitem__("n", calls["n"] + 1) or calls["n"] > 3))
        with pytest.raises(Stopped):
            importer.run(st, importer.ImportConfig(source=str(f), batch_size=7), ctx)
        assert st.count_candidates() == 0 and st.list_imports()[0]["rows_read"] == 21  # 3 batches staged, none shown
        st.update_job(jid, state="paused")  # what run_job records for a stage that stopped
        run_import(st, source=str(f), batch_size=7)
    assert _snapshot(db) == _snapshot(clean)


def test_kill_9_mid_import_then_a_rerun_gives_exactly_one_clean_import(tmp_path):
    n = 40_000
    f = write_jsonl(tmp_path / "big.jsonl", [{"instruction": f"Instruction number {i} of the big file.",
                                              "input": "" if i % 3 else f"input {i}", "output": f"Output {i}."}
                                             for i in range(n)])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "curate.cli", "import", str(f), "--db", str(db), "--batch-size", "500"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    read = 0
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                read = con.execute("SELECT MAX(rows_read) FROM imports").fetchone()[0] or 0
                con.close()
            except sqlite3.Error:
                read = 0
            if 0 < read < n // 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None and 0 < read < n, "the import ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    after_kill = _snapshot(db)
    assert after_kill["candidates"] == [] and after_kill["outputs"] == []  # nothing half-imported is visible
    assert after_kill["staging"][0][0] > 0 and after_kill["imports"][0][1] == "staging"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n:,} rows read, {n:,} candidates added" in rerun.stdout
    clean = tmp_path / "clean.db"
    with Store(clean) as st:
        run_import(st, source=str(f), batch_size=500)
    assert _snapshot(db) == _snapshot(clean)
    assert len(_snapshot(db)["candidates"]) == n


# -- the command line and the app ------------------------------------------------------------------------------
def test_cli_import_imports_ensemble_no_generate_and_prints_what_it_did(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    f = write_jsonl(tmp_path / "alpaca.jsonl", ALPACA + [ALPACA[0]])
    assert main(["import", str(f), "--db", db, "--license", "CC-BY-4.0"]) == 0
    out = capsys.readouterr().out
    assert "imported 'alpaca': 4 rows read, 3 candidates added (1 duplicate rows in the file, stored once)" in out
    assert "format alpaca, --map instruction=instruction,input=input,output=output" in out
    o = write_jsonl(tmp_path / "gpt.jsonl", [{"prompt": r["instruction"], "ctx": r["input"], "answer": r["output"]}
                                             for r in ALPACA] + [{"prompt": "zzz", "ctx": "", "answer": "z"}])
    assert main(["import", str(o), "--db", db, "--as-outputs", "--model", "gpt", "--map",
                 "instruction=prompt,input=ctx", "--map", "output=answer"]) == 0
    out = capsys.readouterr().out
    assert "imported outputs of gpt from 'gpt': 4 rows read, 3 match a candidate, 3 outputs added" in out
    assert "unmatched: line 4: no candidate has this instruction and input" in out
    assert main(["ensemble", "--no-generate", "--db", db]) == 0
    assert "consensus: 3 of 3 scored candidates pass" in capsys.readouterr().out
    assert main(["imports", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "alpaca  licence CC-BY-4.0: 3 candidates, 0 outputs" in listed and "gpt  licence unknown" in listed
    assert main(["imports", "--rejects", "gpt", "--db", db]) == 0
    assert "unmatched line 4: no candidate has this instruction and input" in capsys.readouterr().out
    assert main(["stats", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == {"alpaca": {"candidates": 3, "outputs": 0},
                                                                "gpt": {"candidates": 0, "outputs": 3}}


def test_cli_errors_name_the_place_and_exit_nonzero(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert main(["import", str(empty), "--db", db]) == 2
    assert "empty.jsonl: the file is empty (0 bytes)" in capsys.readouterr().err
    assert main(["import", str(empty), "--db", db, "--map", "output"]) == 2
    assert "--map: 'output' is not FIELD=COLUMN" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", ALPACA, raw=b"{oops\n")
    assert main(["import", str(bad), "--db", db]) == 1
    err = capsys.readouterr().err
    assert "1 bad row of 4, so nothing was imported" in err and "line 4: column 2: invalid JSON" in err


def test_the_import_tab_previews_adjusts_the_mapping_and_imports_in_the_background(tmp_path):
    from curate.settings import load_settings
    from curate.ui import Handlers
    db = tmp_path / "ui.db"
    f = write_jsonl(tmp_path / "dolly.jsonl", [{"instruction": "<b>Why?</b>", "context": "", "response": "Because."},
                                               {"instruction": "", "context": "", "response": "x"}])
    runner = jobs.JobRunner(str(db))
    h = Handlers(load_settings(None, db=str(db)), runner).imports
    form = dict(file=None, path=str(f), fmt="auto", mapping="", split="", as_outputs=False, model="", name="",
                license="CC-BY-SA-3.0", limit=None, skip_bad=True)
    p = h.ui_preview(**form)
    assert "format alpaca" in p["imp_detected"] and p["imp_map"] == "instruction=instruction,input=context,output=response"
    assert p["imp_rows"]["instruction"].tolist() == ["<b>Why?</b>"]  # untrusted text, shown as text
    assert "line 2: instruction is empty" in p["imp_problems"]
    uploaded = tmp_path / "gradio-tmp" / "my data.jsonl"  # an upload: the file's own name names the source
    uploaded.parent.mkdir()
    uploaded.write_bytes(f.read_bytes())
    out = h.ui_import(**{**form, "file": str(uploaded), "path": "", "mapping": p["imp_map"]})
    runner.join(60)
    status = h.ui_status(out["imp_job"])
    assert status["imp_state"] == "done" and status["imp_sources"]["source"].tolist() == ["my data"]
    assert status["imp_imports"]["rejected"].tolist() == ["1"]
    with pytest.raises(Exception, match="Upload a file, or type a path"):
        h.ui_import(**{**form, "path": ""})
    assert h.config(**{**form, "file": str(uploaded)}).source == str(f)  # a typed path wins over an old upload
    assert h.ui_upload(**{**form, "file": str(uploaded)})["imp_path"] == ""  # an upload clears the path
    with pytest.raises(Exception, match="needs a column name"):
        h.ui_preview(**{**form, "mapping": "output="})


def test_content_id_equals_hash_record_on_random_parts():
    rng = random.Random(0)
    alphabet = "ab é\u2028\"\\\n{}😀"
    for _ in range(500):
        parts = {rng.choice("xyz") + str(i): rng.choice([
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))), rng.randint(-5, 5), None,
            rng.random(), [1, "a"], {"k": "v"}]) for i in range(rng.randint(1, 5))}
        assert content_id(**parts) == hash_record(parts)
    assert hashlib.sha1(b"{}").hexdigest() == content_id()


def test_a_hub_id_is_read_through_datasets_load_dataset_when_online(monkeypatch, store):
    """No network here: datasets.load_dataset stands in, returning a streaming dataset as the Hub would."""
    import datasets
    calls = []

    def load_dataset(name, split=None, streaming=False):
        calls.append((name, split, streaming))
        return datasets.Dataset.from_list([{k: r[k] for k in ("instruction", "input", "output")} for r in ALPACA]
                                          ).to_iterable_dataset()
    monkeypatch.setenv("CURATE_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    job = run_import(store, source="someone/alpaca-like", split="train", license="CC-BY-4.0")
    assert job["state"] == "done", job["error"]
    assert calls[0] == ("someone/alpaca-like", "train", True)
    assert [x[1:] for x in imported(store)][0] == ("alpaca-like", "B", "Name the capital of France.", "", "Paris.")
    assert store.list_imports()[0]["location"] == "someone/alpaca-like"


def test_a_source_name_may_not_be_a_generating_models_and_a_published_import_takes_no_more_rows(tmp_path, store):
    from factories import make_candidate
    make_candidate(store)  # generated by model "m"
    f = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    with pytest.raises(SourceError, match="'m' is the name of a model that generated candidates"):
        jobs.start_job(store, "import", {"source": str(f), "name": "m"})
    run_import(store, source=str(f))
    imp = store.list_imports()[0]
    with pytest.raises(Exception, match="is no longer staging"):
        store.stage_rows(imp["id"], [], [], rows_read=1, counts={})
