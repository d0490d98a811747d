"""Few-shot prompts (docs/ARCHITECTURE.md, instruction and instance generation): exact format, demo counts, machine demos, seeds, trimming."""

from __future__ import annotations

import random
import re

import pytest

from curate import prompts
from curate.errors import CurateError
from curate.prompts import (
    DEFAULT_INSTANCE_DEMOS,
    DEFAULT_INSTRUCTION_DEMOS,
    EOS,
    INSTANCE_HEADERS,
    PromptError,
    instance_prompt,
    instruction_prompt,
    prompt_hash,
)
from curate.seeds import Instance, SeedTask, load_seeds, split_by_type

SEEDS = load_seeds()
BY_TYPE = split_by_type(SEEDS)
DEMO_LINE = re.compile(r"^(\d+)\. (.+) \|EoS\|$")


def task(instruction: str, input: str, output: str, key: str = "t") -> SeedTask:
    return SeedTask(id=key, name=key, instruction=instruction, instances=(Instance(input, output),),
                    is_classification=False, source="test", line=1)


def demo_lines(text: str) -> list[str]:
    return [m.group(2) for m in map(DEMO_LINE.match, text.splitlines()) if m]


# -- instruction prompt ------------------------------------------------------------------------------------
def test_instruction_prompt_exact_format():
    rng = random.Random(0)
    p = instruction_prompt(["Tell a joke.", "Name a colour.", "Add two numbers."], [], rng, demos=3)
    order = random.Random(0)
    chosen = order.sample(["Tell a joke.", "Name a colour.", "Add two numbers."], 3)
    order.shuffle(chosen)
    expected = ("Come up with a series of tasks:\n"
                + "".join(f"{i}. {c} |EoS|\n" for i, c in enumerate(chosen, start=1)) + "4.")
    assert p.text == expected
    assert (p.demos, p.requested_demos, p.dropped, p.fits, p.trimmed) == (3, 3, 0, True, False)
    assert p.hash == prompt_hash(expected) and len(p.hash) == 16


def test_default_demo_counts_are_24_and_10():
    assert DEFAULT_INSTRUCTION_DEMOS == {"A": 24, "B": 10}
    assert DEFAULT_INSTANCE_DEMOS == {"A": 18, "B": 15}
    for t, k in (("A", 24), ("B", 10)):
        p = instruction_prompt([s.instruction for s in BY_TYPE[t]], [], random.Random(1), demos=k)
        lines = p.text.split("\n")
        assert lines[0] == "Come up with a series of tasks:"
        assert [int(DEMO_LINE.match(x).group(1)) for x in lines[1:-1]] == list(range(1, k + 1))
        assert lines[-1] == f"{k + 1}."
        assert p.demos == k


def test_demos_are_seed_instructions_of_the_type_on_one_line():
    seeds = [s.instruction for s in BY_TYPE["A"]]
    p = instruction_prompt(seeds, [], random.Random(2), demos=24)
    normalised = {prompts.one_line(s) for s in seeds}
    assert set(demo_lines(p.text)) <= normalised and len(set(demo_lines(p.text))) == 24
    # the reference's normalisation: whitespace collapsed, trailing ':' removed
    assert prompts.one_line("Question: in which year did Yao Ming retire?\nAnswer:") == \
        "Question: in which year did Yao Ming retire? Answer"


def test_at_most_four_machine_demos_of_the_same_type():
    machine = [f"Machine task number {i} about something" for i in range(10)]
    seeds = [s.instruction for s in BY_TYPE["B"]]
    for seed in range(5):
        p = instruction_prompt(seeds, machine, random.Random(seed), demos=10)
        lines = demo_lines(p.text)
        assert len(lines) == 10
        assert sum(x in machine for x in lines) == 4
    p = instruction_prompt(seeds, machine[:2], random.Random(0), demos=10)
    assert sum(x in machine for x in demo_lines(p.text)) == 2 and p.demos == 10
    p = instruction_prompt(seeds, machine, random.Random(0), demos=10, max_machine=0)
    assert not any(x in machine for x in demo_lines(p.text))


def test_machine_demos_are_shuffled_in():
    machine = [f"Machine task number {i} about something" for i in range(4)]
    seeds = [s.instruction for s in BY_TYPE["A"]]
    first_positions = set()
    for seed in range(20):
        lines = demo_lines(instruction_prompt(seeds, machine, random.Random(seed), demos=24).text)
        first_positions.add(min(i for i, x in enumerate(lines) if x in machine))
    assert len(first_positions) > 3


def test_same_seed_same_prompt_other_seed_other_prompt():
    seeds = [s.instruction for s in BY_TYPE["A"]]
    machine = ["Machine one is here today", "Machine two is here today", "Machine three is here"]
    a = instruction_prompt(seeds, machine, random.Random(42), demos=24)
    b = instruction_prompt(seeds, machine, random.Random(42), demos=24)
    c = instruction_prompt(seeds, machine, random.Random(43), demos=24)
    assert a == b and a.text != c.text


def test_fewer_seeds_than_demos_uses_them_all():
    p = instruction_prompt(["Tell a joke.", "Name a colour."], [], random.Random(0), demos=10)
    assert p.demos == 2 and p.requested_demos == 10 and p.text.endswith("\n3.")


def test_no_seed_of_the_type_is_a_clear_error():
    with pytest.raises(PromptError, match="no seed instructions of this task type") as e:
        instruction_prompt([], ["Machine task number one here"], random.Random(0), demos=10)
    assert isinstance(e.value, CurateError) and isinstance(e.value, ValueError)
    only_a = [task("Give the antonym of the word.", "hot", "cold")]
    with pytest.raises(PromptError, match="no type-B seed tasks"):
        instance_prompt("Tell me a joke about cats please", "B", only_a, random.Random(0), demos=15)


def test_bad_demo_counts_are_errors():
    with pytest.raises(PromptError, match="at least 1 demo"):
        instruction_prompt(["Tell a joke."], [], random.Random(0), demos=0)
    with pytest.raises(PromptError, match="unknown task type"):
        instance_prompt("x", "C", SEEDS, random.Random(0), demos=3)


# -- trimming to the context -------------------------------------------------------------------------------
def test_instruction_prompt_trimmed_to_fit_reports_the_count():
    seeds = [s.instruction for s in BY_TYPE["A"]]
    full = instruction_prompt(seeds, [], random.Random(5), demos=24)
    budget = len(full.text.split()) // 2

    def fits(text: str) -> bool:
        return len(text.split()) <= budget

    p = instruction_prompt(seeds, [], random.Random(5), demos=24, fits=fits)
    assert p.trimmed and p.fits and p.requested_demos == 24
    assert p.demos + p.dropped == 24 and 1 <= p.demos < 24
    assert fits(p.text)
    # the most demos that fit: the same demos in the same order, cut after p.demos, and one more does not fit
    assert demo_lines(p.text) == demo_lines(full.text)[: p.demos] and p.text.endswith(f"\n{p.demos + 1}.")
    longer = "".join([prompts.INSTRUCTION_HEADER] + [f"{i}. {d} {EOS}\n" for i, d in
                                                      enumerate(demo_lines(full.text)[: p.demos + 1], 1)])
    assert not fits(longer + f"{p.demos + 2}.")


def test_a_prompt_that_fits_is_not_trimmed():
    p = instruction_prompt(["Tell a joke."] * 3, [], random.Random(0), demos=3, fits=lambda t: True)
    assert not p.trimmed and p.dropped == 0


def test_nothing_fits_gives_one_demo_and_says_so():
    p = instruction_prompt([s.instruction for s in BY_TYPE["B"]], [], random.Random(0), demos=10,
                           fits=lambda t: False)
    assert (p.demos, p.dropped, p.fits) == (1, 9, False)


def test_instance_prompt_trimmed_to_fit():
    full = instance_prompt("Summarise the paragraph below in one line", "A", SEEDS, random.Random(3), demos=18)
    budget = len(full.text) // 3
    p = instance_prompt("Summarise the paragraph below in one line", "A", SEEDS, random.Random(3), demos=18,
                        fits=lambda t: len(t) <= budget)
    assert p.trimmed and p.fits and len(p.text) <= budget and p.demos + p.dropped == 18
    assert p.text.endswith("\n\ninstruction: Summarise the paragraph below in one line\n")
    assert full.text.startswith(p.text.rsplit("\n\ninstruction: Summarise", 1)[0])


# -- instance prompt ---------------------------------------------------------------------------------------
def test_instance_prompt_exact_format_type_a():
    seeds = [task("Give the antonym of the word.", "hot", "cold", "a1"),
             task("Translate to French.", "cat", "chat", "a2"),
             task("Tell a joke.", "", "Why did the chicken cross the road?", "b1")]
    p = instance_prompt("Sort the numbers  ascending.", "A", seeds, random.Random(0), demos=18)
    picked = random.Random(0).sample(seeds[:2], 2)
    blocks = [f"instruction: {s.instruction}\ninput: {s.instances[0].input}\n"
              f"output: {s.instances[0].output}\n|EoS|" for s in picked]
    assert p.text == "\n\n".join([INSTANCE_HEADERS["A"], *blocks, "instruction: Sort the numbers ascending.\n"])
    assert p.demos == 2 and p.requested_demos == 18
    assert INSTANCE_HEADERS["A"] == ("Generate examples for the following instructions. The instruction requires "
                                     "input and output instances. And you have to generate both input and output.")


def test_instance_prompt_exact_format_type_b():
    seeds = [task("Tell a joke.", "", "Why did the chicken cross the road?", "b1"),
             task("Give the antonym of the word.", "hot", "cold", "a1")]
    p = instance_prompt("Name three rivers in Europe.", "B", seeds, random.Random(0), demos=15)
    assert p.text == (INSTANCE_HEADERS["B"] + "\n\n"
                      "instruction: Tell a joke.\noutput: Why did the chicken cross the road?\n|EoS|\n\n"
                      "instruction: Name three rivers in Europe.\n")
    assert INSTANCE_HEADERS["B"] == ("Generate examples for the instructions. The instruction does not require "
                                     "input and generate the output only.")


@pytest.mark.parametrize("t, k", [("A", 18), ("B", 15)])
def test_instance_prompt_default_demo_counts(t, k):
    p = instance_prompt("Do something useful with the text", t, SEEDS, random.Random(7), demos=k)
    assert p.demos == k
    assert p.text.count("\n|EoS|") == k
    assert p.text.count("\ninput: ") == (k if t == "A" else 0)
    blocks = p.text.split("\n\n")
    assert blocks[0] == INSTANCE_HEADERS[t]


def test_instance_demos_close_up_blank_lines_and_use_the_first_instance():
    seeds = [SeedTask(id="m", name="m", instruction="List\ntwo fruits.",
                      instances=(Instance("", "apple\n\n\nbanana  \n"), Instance("", "not this one")),
                      is_classification=False, source="test", line=1)]
    p = instance_prompt("List two vegetables.", "B", seeds, random.Random(0), demos=15)
    assert "instruction: List two fruits.\noutput: apple\nbanana\n|EoS|" in p.text
    assert "not this one" not in p.text


def test_instance_prompt_is_reproducible():
    a = instance_prompt("Explain the rule of thirds", "B", SEEDS, random.Random(9), demos=15)
    b = instance_prompt("Explain the rule of thirds", "B", SEEDS, random.Random(9), demos=15)
    c = instance_prompt("Explain the rule of thirds", "B", SEEDS, random.Random(10), demos=15)
    assert a == b and a.text != c.text
