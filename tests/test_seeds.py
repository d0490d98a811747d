"""Seed files: the shipped Self-Instruct seeds, Alpaca JSON/JSONL, and every way a seed file can be wrong."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

import curate.seeds as seeds_module
from curate.errors import SeedFileError
from curate.seeds import (
    DEFAULT_SEED_FILE,
    MAX_REPORTED,
    Instance,
    SeedTask,
    load_seeds,
    seed_summary,
    split_by_type,
)

DATA = Path(__file__).parent / "data"
ENSEMBLE_INSTRUCT = Path("/work/shared/data/ensemble-instruct")
SHIPPED_SHA256 = "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48"  # seeds/README.md

# One valid Self-Instruct line of each type, for building files.
TASK_A = {
    "id": "t_a",
    "name": "antonyms",
    "instruction": "Give the antonym.",
    "instances": [{"input": "hot", "output": "cold"}],
    "is_classification": False,
}
TASK_B = {
    "id": "t_b",
    "name": "joke",
    "instruction": "Tell a joke.",
    "instances": [{"input": "", "output": "Why did the chicken cross the road?"}],
    "is_classification": False,
}


def task(**changes) -> dict:
    """TASK_A with some fields changed; a value of ``...`` deletes the field."""
    record = {**TASK_A, **changes}
    return {k: v for k, v in record.items() if v is not ...}


def jsonl(*records) -> str:
    """JSON Lines text: dicts are dumped, strings are written as they are (for broken lines)."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def load_error(path: Path) -> str:
    """The message of the SeedFileError that loading ``path`` must raise; it always names the file."""
    with pytest.raises(SeedFileError) as info:
        load_seeds(path)
    message = str(info.value)
    assert str(path) in message
    return message


# --- the shipped seeds ------------------------------------------------------------------------------------


def test_shipped_file_loads_175_tasks_125_a_50_b():
    tasks = load_seeds()

    assert DEFAULT_SEED_FILE.name == "self_instruct_seed_tasks.jsonl"
    assert len(tasks) == 175
    assert len({t.id for t in tasks}) == 175
    assert seed_summary(tasks) == {"total": 175, "A": 125, "B": 50, "classification": 26}
    assert [t.line for t in tasks] == list(range(1, 176))
    assert {t.source for t in tasks} == {"self_instruct_seed_tasks.jsonl"}
    assert tasks[0].id == "seed_task_0" and tasks[0].name == "breakfast_suggestion"


def test_shipped_file_is_self_instructs_file_byte_for_byte():
    assert hashlib.sha256(DEFAULT_SEED_FILE.read_bytes()).hexdigest() == SHIPPED_SHA256


def test_shipped_folder_has_licence_and_attribution():
    folder = DEFAULT_SEED_FILE.parent
    assert "Apache License" in (folder / "LICENSE").read_text()
    readme = (folder / "README.md").read_text()
    for needle in ("yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23", "Apache", "125", "50"):
        assert needle in readme


def ensemble_instruct_split(name: str) -> list[dict]:
    path = ENSEMBLE_INSTRUCT / name
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: this test compares our A/B split with Ensemble-Instruct's split files, "
            "which live in the shared data folder (see /work/shared/data/SOURCES.md)."
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_split_is_ensemble_instructs_split():
    split = split_by_type(load_seeds())
    reference = {
        "A": ensemble_instruct_split("seed_tasks_typeA_with_input.jsonl"),
        "B": ensemble_instruct_split("seed_tasks_typeB_no_input.jsonl"),
    }
    for task_type in ("A", "B"):
        assert {t.id for t in split[task_type]} == {r["id"] for r in reference[task_type]}
        assert [t.to_record() for t in split[task_type]] == reference[task_type]
    assert len(split["A"]) == 125 and len(split["B"]) == 50


# --- the task-type rule -----------------------------------------------------------------------------------


def make_task(*inputs: str) -> SeedTask:
    instances = tuple(Instance(text, "out") for text in inputs)
    return SeedTask("x", "x", "Do it.", instances, False, "f.jsonl", 1)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (("some input",), "A"),
        (("",), "B"),
        ((" ",), "A"),  # whitespace-only input: the reference compares with "" exactly
        (("\n",), "A"),
        (("", "later input"), "B"),  # only instances[0] counts
        (("first", ""), "A"),
    ],
)
def test_task_type_is_instances_0_input_not_empty(inputs, expected):
    assert make_task(*inputs).task_type == expected


def test_fields_are_not_stripped_on_load(tmp_path):
    record = task(instruction="  Pad me. ", instances=[{"input": " ", "output": " x\n"}])
    path = write(tmp_path, "s.jsonl", jsonl(record))
    [loaded] = load_seeds(path)
    assert loaded.instruction == "  Pad me. "
    assert loaded.instances == (Instance(" ", " x\n"),)
    assert loaded.task_type == "A"


def test_split_by_type_keeps_order_and_always_has_both_keys():
    a1, b1, a2 = make_task("in"), make_task(""), make_task("in2")
    assert split_by_type([a1, b1, a2]) == {"A": [a1, a2], "B": [b1]}
    assert split_by_type([]) == {"A": [], "B": []}
    assert split_by_type([b1]) == {"A": [], "B": [b1]}
    assert seed_summary([]) == {"total": 0, "A": 0, "B": 0, "classification": 0}


def test_seed_task_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_task("x").instruction = "changed"


# --- good files -------------------------------------------------------------------------------------------


def test_alpaca_json_array():
    tasks = load_seeds(DATA / "alpaca_good.json")

    assert [t.id for t in tasks] == ["alpaca_0", "alpaca_1", "alpaca_2"]
    assert [t.line for t in tasks] == [2, 7, 12]
    assert [t.task_type for t in tasks] == ["B", "A", "B"]
    assert tasks[1].instances == (Instance("Twitter, Instagram, Telegram", "Telegram"),)
    assert tasks[2].instances == (Instance("", "Red"),)  # input is optional
    assert all(t.name == t.id and t.is_classification is False for t in tasks)
    assert {t.source for t in tasks} == {"alpaca_good.json"}


def test_alpaca_jsonl_skips_blank_lines_and_ignores_extra_keys():
    tasks = load_seeds(DATA / "alpaca_good.jsonl")

    assert [t.id for t in tasks] == ["alpaca_1", "alpaca_3", "alpaca_5"]
    assert [t.line for t in tasks] == [1, 3, 5]
    assert [t.task_type for t in tasks] == ["A", "B", "A"]
    assert tasks[1].instances[0].output.count("\n") == 2


def test_format_comes_from_the_content_not_the_extension(tmp_path):
    lines_in_json = write(tmp_path, "lines.json", jsonl(TASK_A, TASK_B))
    array_in_jsonl = write(tmp_path, "array.jsonl", json.dumps([TASK_A, TASK_B], indent=2))
    no_extension = write(tmp_path, "seeds", jsonl({"instruction": "Say hi.", "output": "hi"}))

    assert [t.id for t in load_seeds(lines_in_json)] == ["t_a", "t_b"]
    assert [(t.id, t.line) for t in load_seeds(array_in_jsonl)] == [("t_a", 2), ("t_b", 14)]
    assert [t.id for t in load_seeds(no_extension)] == ["alpaca_1"]


def test_self_instruct_defaults_and_several_instances(tmp_path):
    instances = [{"input": "", "output": "a"}, {"input": "x", "output": "b"}]
    record = {"id": "t", "instruction": "Do.", "instances": instances}
    [loaded] = load_seeds(write(tmp_path, "s.jsonl", jsonl(record)))
    assert loaded.name == "t" and loaded.is_classification is False
    assert loaded.instances == (Instance("", "a"), Instance("x", "b"))
    assert loaded.task_type == "B"


def test_crlf_bom_and_line_separators_inside_strings(tmp_path):
    # U+2028 is legal inside a JSON string; str.splitlines() would split there, JSON Lines must not.
    record = task(instruction="First\u2028second\u0085third")
    text = "\ufeff" + jsonl(record, TASK_B).replace("\n", "\r\n")
    path = write(tmp_path, "s.jsonl", text)

    first, second = load_seeds(path)
    assert first.instruction == "First\u2028second\u0085third"
    assert (first.line, second.line) == (1, 2)


def test_to_record_round_trips(tmp_path):
    shipped = load_seeds()
    path = write(tmp_path, "copy.jsonl", jsonl(*(t.to_record() for t in shipped)))
    again = load_seeds(path)
    assert [t.to_record() for t in again] == [t.to_record() for t in shipped]
    assert [(t.line, t.source) for t in again] == [(t.line, "copy.jsonl") for t in shipped]


# --- bad files: one problem each --------------------------------------------------------------------------

BAD_FILES = [
    pytest.param(
        jsonl(TASK_A, TASK_B, '{"id": "t_c", "instruction": "x" "instances": []}'),
        "line 3, column 34: invalid JSON: Expecting ',' delimiter",
        id="bad-json-line-3",
    ),
    pytest.param(
        jsonl(TASK_B, task(instruction=...)), "line 2: missing field 'instruction'", id="missing-instruction"
    ),
    pytest.param(jsonl(TASK_B, task(instances=...)), "line 2: missing field 'instances'", id="missing-instances"),
    pytest.param(jsonl(TASK_B, task(id=...)), "line 2: missing field 'id'", id="missing-id"),
    pytest.param(
        jsonl(TASK_B, task(instances=[{"input": "hot"}])),
        "line 2: instances[0] is missing 'output'",
        id="instance-missing-output",
    ),
    pytest.param(
        jsonl(TASK_B, task(instances=[{"output": "cold"}])),
        "line 2: instances[0] is missing 'input' (use \"\" for a task without input)",
        id="instance-missing-input",
    ),
    pytest.param(
        jsonl(TASK_B, task(instances=[{"input": "hot", "output": ""}])),
        "line 2: instances[0].output is empty",
        id="empty-output",
    ),
    pytest.param(jsonl(TASK_B, task(instruction="")), "line 2: 'instruction' is empty", id="empty-instruction"),
    pytest.param(
        jsonl(TASK_B, task(instruction=" \t\n")),
        "line 2: 'instruction' is only whitespace",
        id="blank-instruction",
    ),
    pytest.param(
        jsonl(TASK_B, task(instances=[])),
        "line 2: 'instances' is empty (a seed task needs at least one instance)",
        id="no-instances",
    ),
    pytest.param(
        jsonl(TASK_A, TASK_B, task(id="t_x"), task()),
        "line 4: duplicate id 't_a' (first on line 1)",
        id="duplicate-id",
    ),
    pytest.param(jsonl(TASK_B, "[1, 2]"), "line 2: the record is an array, not an object", id="array-record"),
    pytest.param(jsonl(TASK_B, '"text"'), "line 2: the record is a string, not an object", id="string-record"),
    pytest.param(
        jsonl(TASK_B, task(instances={"input": "hot", "output": "cold"})),
        "line 2: 'instances' must be an array of {\"input\", \"output\"} objects, not an object",
        id="instances-not-a-list",
    ),
    pytest.param(
        jsonl(TASK_B, task(instruction=["Give", "the antonym"])),
        "line 2: 'instruction' must be a string, not an array",
        id="instruction-not-a-string",
    ),
    pytest.param(
        jsonl(TASK_B, task(instances=["hot -> cold"])),
        "line 2: instances[0] must be an object, not a string",
        id="instance-not-an-object",
    ),
    pytest.param(
        jsonl(TASK_B, task(instances=[{"input": None, "output": "cold"}])),
        "line 2: instances[0].input must be a string, not null",
        id="input-null",
    ),
    pytest.param(
        jsonl(TASK_B, task(id=7)),
        'line 2: \'id\' must be a string, not a number (write ids as strings, e.g. "id": "7")',
        id="id-number",
    ),
    pytest.param(jsonl(TASK_B, task(id="")), "line 2: 'id' is empty", id="empty-id"),
    pytest.param(
        jsonl(TASK_B, task(is_classification="yes")),
        "line 2: 'is_classification' must be true or false, not a string",
        id="is-classification-not-bool",
    ),
    pytest.param(jsonl(TASK_B, task(name=3)), "line 2: 'name' must be a string, not a number", id="name-number"),
    pytest.param(
        jsonl({"instruction": "Hi.", "output": "Hello"}, {"instruction": "Hi."}),
        "line 2: missing field 'output'",
        id="alpaca-missing-output",
    ),
    pytest.param(
        jsonl({"instruction": "Hi.", "output": "Hello"}, {"instruction": "Add.", "input": 2, "output": "4"}),
        "line 2: 'input' must be a string, not a number (use \"\" for no input)",
        id="alpaca-input-number",
    ),
    pytest.param(
        '[\n  {"instruction": "Hi.", "output": "Hello"},\n  {"instruction": "Bye."}\n]\n',
        "record index 1 (line 3): missing field 'output'",
        id="array-missing-output",
    ),
    pytest.param(
        '[\n  {"instruction": "Hi.", "output": "Hello"},\n  {"instruction": "", "output": "x"}\n]',
        "record index 1 (line 3): 'instruction' is empty",
        id="array-empty-instruction",
    ),
    pytest.param(
        '[\n  {"instruction": "Hi.", "output": "Hello"},\n\n  5\n]',
        "record index 1 (line 4): the record is a number, not an object",
        id="array-number-record",
    ),
    pytest.param(
        '[\n  {"instruction": "Hi.", "output": "Hello"},\n  {"instruction": "Bye." "output": "x"}\n]',
        "line 3, column 26: invalid JSON: Expecting ',' delimiter",
        id="array-bad-json",
    ),
    pytest.param(
        '[\n  {"instruction": "Hi.", "output": "Hello"},\n]',
        "line 3, column 1: invalid JSON: ",  # the JSON message itself differs between Python versions
        id="array-trailing-comma",
    ),
    pytest.param(
        json.dumps({**TASK_A, "tags": [1, 2]}, indent=2),
        "the file holds one JSON value spread over several lines, not one object per line",
        id="pretty-printed-object",
    ),
    pytest.param(
        json.dumps([TASK_A, TASK_B]) + "\n" + json.dumps([TASK_A]),
        "line 2, column 1: invalid JSON: Extra data",
        id="two-arrays",
    ),
]


@pytest.mark.parametrize(("content", "expected"), BAD_FILES)
def test_bad_file_names_file_line_and_problem(tmp_path, content, expected):
    message = load_error(write(tmp_path, "seeds.jsonl", content))
    assert expected in message
    assert message.splitlines()[0].endswith(": 1 problem, so no seed task was loaded (fix them all, then load again):")


def test_duplicate_id_names_both_places_in_an_array(tmp_path):
    path = write(tmp_path, "s.json", "[\n" + ",\n".join(json.dumps(r) for r in (TASK_A, TASK_B, TASK_A)) + "\n]")
    assert "record index 2 (line 4): duplicate id 't_a' (first on record index 0 (line 2))" in load_error(path)


def test_duplicate_of_an_invalid_record_is_still_reported(tmp_path):
    path = write(tmp_path, "s.jsonl", jsonl(task(instruction=""), TASK_A))
    message = load_error(path)
    assert "line 1: 'instruction' is empty" in message
    assert "line 2: duplicate id 't_a' (first on line 1)" in message


def test_file_that_is_not_a_seed_file_says_which_fields_it_lacks(tmp_path):
    records = [{"question_id": 1, "text": "Why?"}, {"question_id": 2, "text": "How?"}]
    message = load_error(write(tmp_path, "q.jsonl", jsonl(*records)))
    assert "no record has 'instruction', 'output', which Alpaca records need (their keys: question_id, text)" in (
        message
    )
    assert "line 1: missing field 'instruction'" in message


@pytest.mark.parametrize("content", [b"", b"\n\n   \n", b"\xef\xbb\xbf", b"\t"])
def test_empty_file(tmp_path, content):
    assert "the file is empty (no seed tasks)" in load_error(write(tmp_path, "empty.jsonl", content))


def test_empty_json_array(tmp_path):
    assert "no seed task in the file (an empty JSON array)" in load_error(write(tmp_path, "e.json", " [\n] \n"))


def test_invalid_utf8_names_the_byte_offset_and_line(tmp_path):
    good = jsonl(TASK_A).encode()
    bad = b'{"instruction": "caf\xe9", "output": "x"}\n'
    message = load_error(write(tmp_path, "latin1.jsonl", good + bad))
    offset = len(good) + bad.index(b"\xe9")
    assert f"not UTF-8 text: byte 0xe9 at byte offset {offset} (line 2)" in message
    assert "Save the file as UTF-8" in message


def test_invalid_utf8_offset_counts_the_byte_order_mark(tmp_path):
    message = load_error(write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf{\xff}"))
    assert "byte 0xff at byte offset 4 (line 1)" in message


def test_missing_file_says_how_to_pass_one(tmp_path):
    path = tmp_path / "nope" / "seeds.jsonl"
    message = load_error(path)
    assert message.startswith(f"seed file not found: {path}")
    assert "--seeds PATH" in message


def test_missing_file_given_as_str(tmp_path):
    with pytest.raises(SeedFileError, match="seed file not found"):
        load_seeds(str(tmp_path / "missing.json"))


def test_folder_instead_of_file(tmp_path):
    assert "is a folder, not a seed file" in load_error(tmp_path)


def test_missing_shipped_file_says_to_install_editable(tmp_path, monkeypatch):
    monkeypatch.setattr(seeds_module, "DEFAULT_SEED_FILE", tmp_path / "seeds" / "gone.jsonl")
    with pytest.raises(SeedFileError) as info:
        load_seeds()
    assert "the shipped seed file is missing" in str(info.value)
    assert "pip install -e ." in str(info.value) and "--seeds PATH" in str(info.value)


# --- bad files: all problems at once, nothing loaded ------------------------------------------------------


def test_several_problems_are_reported_together_in_line_order(tmp_path):
    content = jsonl(
        TASK_A,  # 1: fine
        task(id="t_2", instruction=""),  # 2
        "{not json",  # 3
        task(id="t_4", instances=...),  # 4
        "",  # 5: blank, skipped
        TASK_A,  # 6: duplicate
    )
    message = load_error(write(tmp_path, "many.jsonl", content))
    lines = message.splitlines()

    header = "4 problems, so no seed task was loaded (fix them all, then load again):"
    assert lines[0] == f"{tmp_path / 'many.jsonl'}: {header}"
    assert lines[1:] == [
        "  line 2: 'instruction' is empty",
        "  line 3, column 2: invalid JSON: Expecting property name enclosed in double quotes",
        "  line 4: missing field 'instances'",
        "  line 6: duplicate id 't_a' (first on line 1)",
    ]


def test_one_record_can_have_several_problems(tmp_path):
    record = {"id": 5, "instruction": 3, "instances": {}, "is_classification": "no"}
    message = load_error(write(tmp_path, "s.jsonl", jsonl(record)))
    assert "4 problems" in message
    for problem in ("'id' must be", "'instruction' must be", "'instances' must be", "'is_classification' must be"):
        assert f"line 1: {problem}" in message


def test_at_most_max_reported_problems_are_listed(tmp_path):
    records = [task(id=f"t{i}", instruction="") for i in range(MAX_REPORTED + 7)]
    message = load_error(write(tmp_path, "s.jsonl", jsonl(*records)))
    lines = message.splitlines()

    assert lines[0].startswith(f"{tmp_path / 's.jsonl'}: {MAX_REPORTED + 7} problems")
    assert len(lines) == 1 + MAX_REPORTED + 1
    assert lines[MAX_REPORTED] == f"  line {MAX_REPORTED}: 'instruction' is empty"
    assert lines[-1] == "  ... and 7 more"


def test_99_good_lines_and_1_bad_load_nothing(tmp_path):
    records = [task(id=f"t{i}") for i in range(100)]
    records[56] = task(id="t56", instances=[{"input": "x"}])  # line 57
    path = write(tmp_path, "s.jsonl", jsonl(*records))

    with pytest.raises(SeedFileError) as info:
        load_seeds(path)
    assert str(info.value).splitlines() == [
        f"{path}: 1 problem, so no seed task was loaded (fix them all, then load again):",
        "  line 57: instances[0] is missing 'output'",
    ]


def test_array_record_lines_with_tricky_strings_and_layout(tmp_path):
    # Strings holding brackets, commas, quotes and escaped newlines must not confuse the record positions.
    records = [
        {"instruction": 'Find "[x, y]", then }{ ,', "input": "a\nb", "output": "[1, [2, 3]]"},
        {"instruction": "Second", "output": "\\\\\"]", "extra": [[], {}, [{"k": ","}]]},
        {"instruction": "Third", "output": "ok"},
    ]
    text, expected_lines = "\n  [", []
    for i, record in enumerate(records):
        text += "\n" * i + (" , " if i else " ")
        expected_lines.append(text.count("\n") + 1)
        text += json.dumps(record, indent=i or None)
    text += "\n\n]\n\n"
    tasks = load_seeds(write(tmp_path, "tricky.json", text))
    assert [t.line for t in tasks] == expected_lines
    assert [t.instruction for t in tasks] == [r["instruction"] for r in records]
