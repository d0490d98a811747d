"""The instruction filters (docs/ARCHITECTURE.md, "Instruction generation"): each filter, their order, and every boundary."""

from __future__ import annotations

import pytest

from curate.filters import (
    BLOCKED_WORDS,
    REASONS,
    SIMILARITY_THRESHOLD,
    clean_instruction,
    instruction_verdict,
    static_verdict,
)
from curate.rouge import NoveltyIndex, rouge_l

OK = "Summarise the following paragraph in two sentences"


def words(n: int) -> str:
    return " ".join(["Explain"] + [f"w{i}" for i in range(n - 1)])


def reason(text: str, index: NoveltyIndex | None = None) -> str | None:
    return instruction_verdict(text, index if index is not None else NoveltyIndex()).reason


def test_reasons_are_the_designs_in_order():
    assert REASONS == ("length", "keyword", "starts_with", "punctuation", "non_ascii", "too_similar")
    assert SIMILARITY_THRESHOLD == 0.7


def test_a_plain_instruction_is_kept():
    v = instruction_verdict(OK, NoveltyIndex())
    assert v.keep and v.reason is None


# -- 1. length ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, keep", [(0, False), (1, False), (3, False), (4, True), (150, True), (151, False)])
def test_length_boundaries(n, keep):
    text = words(n) if n else ""
    v = static_verdict(text)
    assert v.keep is keep
    if not keep:
        assert v.reason == "length" and v.detail == {"words": n}


def test_length_counts_whitespace_separated_words():
    assert static_verdict("Sort these numbers, ascending.").keep is True   # 4 words
    assert static_verdict("Sort these numbers.").reason == "length"       # 3 words


# -- 2. keyword --------------------------------------------------------------------------------------------
def test_blocked_words_are_exactly_the_designs():
    assert BLOCKED_WORDS == ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                             "map", "maps", "draw", "plot", "go to")


@pytest.mark.parametrize("word", ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                                  "map", "maps", "draw", "plot"])
def test_each_blocked_word_is_rejected(word):
    v = static_verdict(f"Describe the {word} shown in the example")
    assert v.reason == "keyword" and v.detail == {"keyword": word}


@pytest.mark.parametrize("text, keyword", [
    ("Map the following cities to their countries", "map"),
    ("Describe this IMAGES collection in detail", "images"),
    ("Explain what a Plot twist is in literature", "plot"),
    ("Read the file-based config and summarise it", "file"),     # a hyphen is a word boundary
    ("Tell me where I should go to eat tonight", "go to"),
    ("Tell me where I should Go  To eat tonight", "go to"),       # any case, any spacing
])
def test_keywords_match_whole_words_case_insensitively(text, keyword):
    v = static_verdict(text)
    assert v.reason == "keyword" and v.detail == {"keyword": keyword}


@pytest.mark.parametrize("text", [
    "Create a mapping from each letter to its position",
    "Explain the difference between imagery and metaphor",
    "List the tasks the drawer of a cabinet can hold",
    "Describe the plotting of a novel in three steps",
    "Summarise the graphic novel's main storyline briefly",
    "Update your profile description to sound friendlier",
    "Let us go together and write a travel itinerary",
    "Two years ago to the day, describe what happened",
])
def test_words_containing_a_keyword_pass(text):
    assert static_verdict(text).keep is True


# -- 3. starts with "Write a program" ----------------------------------------------------------------------
def test_write_a_program_is_rejected():
    v = static_verdict("Write a program that reverses a string")
    assert v.reason == "starts_with" and v.detail == {"prefix": "Write a program"}


def test_write_a_program_is_case_sensitive_and_only_at_the_start():
    # the reference uses str.startswith("Write a program")
    assert static_verdict("write a program that reverses a string").keep is True
    assert static_verdict("Please Write a program that reverses a string").keep is True
    assert static_verdict("Write a programme that reverses a string").reason == "starts_with"


# -- 4. punctuation, 5. non-ASCII --------------------------------------------------------------------------
@pytest.mark.parametrize("first", ['"', "(", "-", "*", "#", "'", "["])
def test_starting_with_punctuation_is_rejected(first):
    v = static_verdict(f"{first}Explain how rainbows form after rain")
    assert v.reason == "punctuation" and v.detail == {"char": first}


def test_starting_with_a_digit_is_not_punctuation():
    assert static_verdict("3 ways to explain recursion to children").keep is True


@pytest.mark.parametrize("text", ["Écris une phrase en français sur la mer",
                                  "¿Cómo se dice hello en español?",
                                  "日本語 で 自己紹介 を 書いて ください"])
def test_starting_with_non_ascii_is_rejected(text):
    v = static_verdict(text)
    assert v.reason == "non_ascii" and v.detail == {"char": text[0]}


def test_non_ascii_after_the_first_character_passes():
    assert static_verdict("Explain café culture in Paris briefly").keep is True


# -- 6. too similar ----------------------------------------------------------------------------------------
A10 = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
AT_07 = "alpha bravo charlie delta echo foxtrot golf kilo lima mike"        # LCS 7 of 10 and 10: F1 = 0.7
ABOVE = "alpha bravo charlie delta echo foxtrot golf kilo lima"            # 7 of 10 and 9: F1 = 0.737


def test_similarity_exactly_at_the_threshold_is_kept():
    assert rouge_l(A10, AT_07) == 0.7
    assert instruction_verdict(AT_07, NoveltyIndex([A10])).keep is True


def test_similarity_above_the_threshold_is_rejected_with_the_most_similar_text():
    other = "alpha bravo zulu yankee xray whiskey"
    index = NoveltyIndex([other, A10, "completely unrelated words in this one"])
    v = instruction_verdict(ABOVE, index)
    assert v.reason == "too_similar"
    assert v.detail["most_similar"] == A10
    assert v.detail["score"] == pytest.approx(14 / 19) and v.detail["score"] == rouge_l(A10, ABOVE)


def test_the_threshold_is_a_setting():
    assert instruction_verdict(AT_07, NoveltyIndex([A10]), threshold=0.69).reason == "too_similar"
    assert instruction_verdict(ABOVE, NoveltyIndex([A10]), threshold=0.75).keep is True


def test_an_exact_copy_scores_one():
    v = instruction_verdict(OK, NoveltyIndex([OK]))
    assert v.reason == "too_similar" and v.detail == {"score": 1.0, "most_similar": OK}


def test_the_verdict_does_not_add_to_the_index():
    index = NoveltyIndex([A10])
    instruction_verdict(OK, index)
    assert index.texts == [A10]


# -- order -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Draw a map", "length"),                                        # length before keyword
    ("Write a program that plots a graph of sales", "keyword"),      # keyword before starts_with
    ('"Draw the map of this town for me"', "keyword"),               # keyword before punctuation
    ("Écris un programme qui dessine une map", "keyword"),           # keyword before non_ascii
    ("Write a program to sort a list quickly", "starts_with"),       # starts_with before too_similar
    ("(" + A10, "punctuation"),                                      # punctuation before too_similar
    ("Ünïcode " + A10, "non_ascii"),                                 # non_ascii before too_similar
    (A10, "too_similar"),
])
def test_the_first_failing_filter_gives_the_reason(text, expected):
    index = NoveltyIndex([A10, "Write a program to sort a list quickly", "Draw a map"])
    assert reason(text, index) == expected


def test_clean_instruction_collapses_whitespace():
    assert clean_instruction("  Explain\tthe\n\n difference  ") == "Explain the difference"
    assert clean_instruction(" \n ") == ""
