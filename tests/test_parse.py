"""Parsing completions: numbered instruction lists, instance fields, extra candidates, and real messy output
saved from the embedded models (tests/data/completions/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.parse import REASONS, ParsedInstance, instruction_pieces, parse_instances, split_instructions

FIXTURES = Path(__file__).parent / "data" / "completions"


# -- instruction completions -------------------------------------------------------------------------------
def test_a_single_instruction_is_stripped():
    assert split_instructions(" Name three rivers in Europe. ") == ["Name three rivers in Europe."]


def test_numbered_continuation_is_split_on_the_designs_regex():
    text = (" Tell a joke about cats. |EoS|\n26. Name a famous painter.\n27 . Sort these numbers."
            "\n28.No space after the dot stays.\n 29. Leading space stays too\n30.  two spaces split")
    assert split_instructions(text) == [
        "Tell a joke about cats.",
        "Name a famous painter.",
        "Sort these numbers.\n28.No space after the dot stays.\n 29. Leading space stays too",
        " two spaces split".strip(),
    ]


def test_eos_ends_each_piece():
    text = "Write a haiku. |EoS| and some junk after it\n26. Translate hello |EoS|"
    assert split_instructions(text) == ["Write a haiku.", "Translate hello"]


def test_empty_and_eos_only_completions_give_empty_pieces():
    assert split_instructions("") == [""]
    assert split_instructions(" |EoS|") == [""]
    assert split_instructions("\n26. \n27. Real one here") == ["", "", "Real one here"]


def test_pieces_say_whether_eos_closed_them():
    assert instruction_pieces(" A b c d |EoS|\n26. E f g h |EoS|\n27. What is the") == [
        ("A b c d", True), ("E f g h", True), ("What is the", False)]
    assert instruction_pieces(" A b c d") == [("A b c d", False)]           # a backend that honours the stop
    assert instruction_pieces(" A b c d |EoS|\n3") == [("A b c d", True)]  # "3" is chatter after the marker
    assert instruction_pieces(" A b c d |Eo") == [("A b c d", True)]        # a marker cut off at the end


def test_a_cut_off_end_marker_is_removed_but_a_table_pipe_stays():
    assert split_instructions(" Name a river |EoS") == ["Name a river"]
    assert split_instructions(" Name a river |E \n") == ["Name a river"]
    p = parse_instances("output: | a | b |", "B")[0]
    assert p.output == "| a | b |"


def test_multiline_instruction_piece_is_kept_for_cleaning():
    assert split_instructions(" Rewrite this text\nin the passive voice.") == [
        "Rewrite this text\nin the passive voice."]


# -- instance completions ----------------------------------------------------------------------------------
def one(text: str, t: str) -> ParsedInstance:
    items = parse_instances(text, t)
    assert items[0].instruction is None
    return items[0]


def test_type_a_needs_input_and_output():
    p = one("input: hot\noutput: cold", "A")
    assert (p.ok, p.input, p.output, p.task_type, p.reason) == (True, "hot", "cold", "A", None)


def test_type_b_needs_output_only():
    p = one("output: Why did the chicken cross the road?", "B")
    assert (p.ok, p.input, p.output, p.task_type) == (True, "", "Why did the chicken cross the road?", "B")


def test_type_b_drops_an_invented_input():
    p = one("input: something\noutput: an answer", "B")
    assert p.ok and p.input == "" and p.output == "an answer"


def test_multiline_fields_are_kept_whole():
    text = ("input: def f(x):\n    return x\n\nprint(f(2))\noutput: 2\nThe function returns its argument.\n"
            "  indented line")
    p = one(text, "A")
    assert p.ok
    assert p.input == "def f(x):\n    return x\n\nprint(f(2))"
    assert p.output == "2\nThe function returns its argument.\n  indented line"


def test_eos_and_labels_are_stripped():
    p = one("input: a b c\noutput: c b a |EoS|", "A")
    assert (p.input, p.output) == ("a b c", "c b a")
    p = one("output: 42\n|EoS|\n", "B")
    assert p.output == "42"


@pytest.mark.parametrize("text", [
    "Input: hot\nOutput: cold",
    "INPUT: hot\nOUTPUT: cold",
    "  input :hot\n\toutput  :   cold  ",
    "**Input:** hot\n**Output:** cold",
    "**Input**: hot\n**Output**: cold",
    "- input: hot\n- output: cold",
    "### Input: hot\n### Output: cold",
])
def test_labels_in_odd_case_and_spacing(text):
    p = one(text, "A")
    assert (p.ok, p.input, p.output) == (True, "hot", "cold")


def test_emphasis_inside_a_field_is_kept():
    p = one("output: **bold** claim\n_and_ more", "B")
    assert p.output == "**bold** claim\n_and_ more"


def test_a_label_must_start_a_line():
    p = one("input: the word output: is here\noutput: done", "A")
    assert (p.input, p.output) == ("the word output: is here", "done")
    p = one("output: see input: below", "B")
    assert p.output == "see input: below"


def test_words_starting_with_a_label_are_not_labels():
    p = one("input: x\noutputs: not a label\noutput: y\nInput_text: also not", "A")
    assert (p.input, p.output) == ("x\noutputs: not a label", "y\nInput_text: also not")


@pytest.mark.parametrize("text, t, reason", [
    ("", "A", "empty"),
    ("   \n ", "B", "empty"),
    ("I am a helpful assistant. Here is an example.", "A", "no_fields"),
    ("input: hot", "A", "no_output"),
    ("input: hot\noutput:", "A", "empty_output"),
    ("input: hot\noutput:   \n  ", "A", "empty_output"),
    ("output: |EoS|", "B", "empty_output"),
    ("output: cold", "A", "no_input"),
    ("input:\noutput: cold", "A", "empty_input"),
    ("input: x", "B", "no_output"),
])
def test_unusable_instances_have_a_reason(text, t, reason):
    p = one(text, t)
    assert not p.ok and p.reason == reason
    assert reason in REASONS


def test_a_repeated_label_keeps_the_first_example():
    p = one("input: one\noutput: first\ninput: two\noutput: second", "A")
    assert (p.input, p.output) == ("one", "first")


def test_text_after_eos_without_an_instruction_is_ignored():
    p = parse_instances("output: answer\n|EoS|\nSome chatter after the example.\noutput: other", "B")
    assert len(p) == 1 and p[0].output == "answer"


def test_an_example_cut_off_by_max_new_tokens_is_truncated():
    assert one("output: a story that never en", "B").ok
    p = parse_instances("output: a story that never en", "B", cut_off=True)[0]
    assert (p.ok, p.reason, p.output) == (False, "truncated", "a story that never en")
    assert parse_instances("output: a finished story |EoS", "B", cut_off=True)[0].ok      # marker cut, not text
    assert parse_instances("output: done |EoS|\nsome chatter", "B", cut_off=True)[0].ok
    items = parse_instances("output: done |EoS|\ninstruction: Explain the tides of the sea please.\noutput: b",
                            "B", cut_off=True)
    assert [(i.ok, i.reason) for i in items] == [(True, None), (False, "truncated")]
    assert parse_instances("input: x", "A", cut_off=True)[0].reason == "no_output"  # its own reason stays


# -- extra candidates --------------------------------------------------------------------------------------
def test_a_later_block_with_its_own_long_instruction_is_an_extra_candidate():
    text = ("input: hot\noutput: cold\n|EoS|\n\n"
            "instruction: Give the synonym of the given word please.\ninput: big\noutput: large\n|EoS|\n"
            "instruction: Write a limerick about a cat who loves\n   lasagna.\noutput: There once was a cat\n"
            "who ate lasagna flat")
    items = parse_instances(text, "A")
    assert [(i.instruction, i.task_type, i.ok, i.input, i.output) for i in items] == [
        (None, "A", True, "hot", "cold"),
        ("Give the synonym of the given word please.", "A", True, "big", "large"),
        ("Write a limerick about a cat who loves lasagna.", "B", True, "",
         "There once was a cat\nwho ate lasagna flat"),
    ]


def test_an_extra_instruction_of_five_words_or_fewer_is_not_a_candidate():
    text = ("output: first\n|EoS|\ninstruction: Name five big cities.\noutput: x\n|EoS|\n"   # 4 words
            "instruction: Name five big world cities.\noutput: y\n|EoS|\n"                    # 5 words
            "instruction: Name five big world cities now.\noutput: z")                         # 6 words
    items = parse_instances(text, "B")
    assert [i.instruction for i in items] == [None, "Name five big world cities now."]


def test_an_extra_candidate_without_output_is_returned_with_its_reason():
    text = "output: first\ninstruction: Describe the water cycle in simple words.\ninput: for kids"
    items = parse_instances(text, "B")
    assert items[1].instruction == "Describe the water cycle in simple words."
    assert (items[1].ok, items[1].reason, items[1].task_type) == (False, "no_output", "A")


def test_an_instruction_block_without_eos_still_splits():
    items = parse_instances("output: a\ninstruction: Explain how tides are caused by the moon.\noutput: b", "B")
    assert [(i.instruction, i.output) for i in items] == [
        (None, "a"), ("Explain how tides are caused by the moon.", "b")]


def test_a_completion_that_starts_with_an_instruction_has_no_instance_for_the_prompt():
    items = parse_instances("instruction: Tell me a story about a brave small mouse.\noutput: Once...", "B")
    assert (items[0].ok, items[0].reason) == (False, "no_fields")
    assert items[1].instruction == "Tell me a story about a brave small mouse." and items[1].ok


# -- real completions from the embedded models -------------------------------------------------------------
def _fixtures() -> list[dict]:
    out = []
    for f in sorted(FIXTURES.glob("*.json")):
        for i, rec in enumerate(json.loads(f.read_text(encoding="utf-8"))["completions"]):
            out.append(pytest.param(rec, id=f"{f.stem}-{i}-{rec['stage']}{rec['task_type']}"))
    return out


REAL = _fixtures()


def test_there_are_real_fixtures_of_both_stages_and_models():
    recs = [p.values[0] for p in REAL]
    assert {r["model"] for r in recs} >= {"smollm2-135m-instruct", "gemma3-270m"}
    assert {(r["stage"], r["task_type"]) for r in recs} == {
        ("instruction", "A"), ("instruction", "B"), ("instance", "A"), ("instance", "B")}


@pytest.mark.parametrize("rec", REAL)
def test_real_completion_parses_as_annotated(rec):
    expect = rec["expected"]
    cut_off = rec["finish_reason"] in ("length", "repetition")  # as the generator passes it
    if rec["stage"] == "instruction":
        pieces = [(" ".join(p.split()), closed) for p, closed in instruction_pieces(rec["text"])]
        assert [p for p, _ in pieces if p] == expect["instructions"]
        assert (cut_off and not pieces[-1][1]) == expect["last_cut_off"]
        return
    items = parse_instances(rec["text"], rec["task_type"], cut_off=cut_off)
    got = [{"instruction": i.instruction, "ok": i.ok, "reason": i.reason, "input": i.input, "output": i.output}
           for i in items]
    assert got == expect["items"]
    for g in got:  # never a stray label or end marker in a field
        for field in ("input", "output"):
            assert "|EoS" not in g[field]
            assert not g[field].lower().startswith(("input:", "output:", "instruction:"))
