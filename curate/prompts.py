"""Few-shot prompts built from the seed tasks at run time (Ensemble-Instruct's simplified prompts).

Instruction prompt (docs/ARCHITECTURE.md, "Instruction generation")::

    Come up with a series of tasks:
    1. <instruction> |EoS|
    ...
    k. <instruction> |EoS|
    k+1.

k = 24 demos for type A and 10 for type B; at most 4 of them are previously kept machine instructions of
the same type, the rest random seed instructions of that type; shuffled with a seedable RNG. Each demo is
put on one line as the reference does (whitespace collapsed, a trailing ":" removed), so a seed like
``"Question: …\\nAnswer:"`` cannot break the numbered list.

Instance prompt ("Instance generation" there): a header per type, then demos ``instruction: …\\ninput: …\\noutput: …\\n|EoS|``
(type B without the input line) separated by blank lines, ending with ``instruction: {new}\\n``; an
instruction is one line there (whitespace collapsed).
18 demos for A and 15 for B by default (the paper's numbers; the reference code uses 19 / 15). Blank lines
inside a demo's fields are closed up, because a blank line is where instance generation stops.

The zero-shot prompt of the ensembling models and of a student reading a teacher's response is
:func:`reference_prompt`: ``instruction + "\\n" + input`` (a chat model may wrap it in its chat template).

When a prompt does not fit the model's context, demos are dropped from the end (the list is already
shuffled) until it does, never below one; :class:`Prompt` says how many were dropped and whether the
result fits, so the caller can report the trimming or refuse a model whose context is too small.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import CurateError
from .seeds import SeedTask

EOS = "|EoS|"
INSTRUCTION_HEADER = "Come up with a series of tasks:\n"
INSTANCE_HEADERS = {
    "A": ("Generate examples for the following instructions. The instruction requires input and output "
          "instances. And you have to generate both input and output."),
    "B": ("Generate examples for the instructions. The instruction does not require input and generate "
          "the output only."),
}
DEFAULT_INSTRUCTION_DEMOS = {"A": 24, "B": 10}
DEFAULT_INSTANCE_DEMOS = {"A": 18, "B": 15}
MAX_MACHINE_DEMOS = 4

_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")

Fits = Callable[[str], bool]
"""``fits(prompt_text)``: whether the prompt leaves room for the completion in the model's context."""


class PromptError(CurateError, ValueError):
    """A prompt cannot be built (no seed task of the requested type, a demo count below 1)."""


@dataclass(frozen=True)
class Prompt:
    text: str
    demos: int            # demos actually in the prompt
    requested_demos: int  # demos the caller asked for
    dropped: int = 0      # demos removed so the prompt fits the model's context
    fits: bool = True     # False: even with a single demo the prompt is too long for the context

    @property
    def hash(self) -> str:
        return prompt_hash(self.text)

    @property
    def trimmed(self) -> bool:
        """Whether demos were dropped to fit the model's context."""
        return self.dropped > 0


def prompt_hash(text: str) -> str:
    """The first 16 hex digits of the prompt's sha256 (stored with every row made from it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def one_line(text: str) -> str:
    """A demo instruction as the reference writes it: whitespace collapsed, stripped, trailing ':' removed."""
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _field(text: str) -> str:
    """A demo's input/output: stripped, blank lines closed up (a blank line ends a generated example)."""
    return _BLANK_LINES.sub("\n", text.strip())


def _fit(build: Callable[[int], str], n: int, requested: int, fits: Fits | None) -> Prompt:
    """The prompt with the most demos (at most ``n``, at least 1) for which ``fits(text)``.

    Binary search over the demo count (the text only grows with it); when even one demo does not fit,
    the one-demo prompt is returned with ``fits=False``.
    """
    text = build(n)
    if fits is None or fits(text):
        return Prompt(text, n, requested)
    lo, hi = 1, n - 1  # the answer is the largest k in [lo, hi] that fits, if any
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        t = build(mid)
        if fits(t):
            best, lo = (mid, t), mid + 1
        else:
            hi = mid - 1
    if best is None:
        return Prompt(build(1), 1, requested, dropped=n - 1, fits=False)
    k, text = best
    return Prompt(text, k, requested, dropped=n - k)


def instruction_prompt(
    seed_instructions: Sequence[str],
    machine_instructions: Sequence[str],
    rng: random.Random,
    *,
    demos: int,
    max_machine: int = MAX_MACHINE_DEMOS,
    fits: Fits | None = None,
) -> Prompt:
    """The instruction-generation prompt for one task type.

    Takes ``min(max_machine, len(machine_instructions))`` random kept machine instructions and fills up to
    ``demos`` with random seed instructions (fewer when the seeds run out), shuffled; all randomness comes
    from ``rng``, so the same seed gives the same prompt.
    Raises PromptError when there are no seed instructions of this type or ``demos < 1``.
    """
    if not seed_instructions:
        raise PromptError("no seed instructions of this task type: add seed tasks of this type or "
                          "choose the other type (--type A|B)")
    if demos < 1:
        raise PromptError(f"an instruction prompt needs at least 1 demo (got {demos})")
    n_machine = min(max(max_machine, 0), len(machine_instructions), demos)
    chosen = rng.sample(list(machine_instructions), n_machine)
    chosen += rng.sample(list(seed_instructions), min(demos - n_machine, len(seed_instructions)))
    rng.shuffle(chosen)
    chosen = [one_line(c) for c in chosen]

    def build(k: int) -> str:
        lines = [INSTRUCTION_HEADER]
        lines += [f"{i}. {inst} {EOS}\n" for i, inst in enumerate(chosen[:k], start=1)]
        lines.append(f"{k + 1}.")
        return "".join(lines)

    return _fit(build, len(chosen), demos, fits)


def instance_demo(instruction: str, input: str, output: str, task_type: str) -> str:
    """One demo block: ``instruction: …\\ninput: …\\noutput: …\\n|EoS|`` (type B: no input line)."""
    if task_type == "A":
        return f"instruction: {_collapse(instruction)}\ninput: {_field(input)}\noutput: {_field(output)}\n{EOS}"
    return f"instruction: {_collapse(instruction)}\noutput: {_field(output)}\n{EOS}"


def instance_prompt(
    instruction: str,
    task_type: str,
    seeds: Sequence[SeedTask],
    rng: random.Random,
    *,
    demos: int,
    fits: Fits | None = None,
) -> Prompt:
    """The instance-generation prompt for a new ``instruction`` of ``task_type`` ("A" or "B").

    Demos are the first instance of ``demos`` random seed tasks of that type (fewer if there are fewer).
    Raises PromptError for an unknown type, ``demos < 1``, or when no seed task of that type exists.
    """
    if task_type not in INSTANCE_HEADERS:
        raise PromptError(f"unknown task type {task_type!r}: 'A' (with input) or 'B' (output only)")
    if demos < 1:
        raise PromptError(f"an instance prompt needs at least 1 demo (got {demos})")
    pool = [s for s in seeds if s.task_type == task_type]
    if not pool:
        raise PromptError(f"no type-{task_type} seed tasks to build instance demos from: add seed tasks "
                          f"of type {task_type} or generate the other type")
    picked = rng.sample(pool, min(demos, len(pool)))
    blocks = [instance_demo(s.instruction, s.instances[0].input, s.instances[0].output, task_type)
              for s in picked]
    new = f"instruction: {_collapse(instruction)}\n"

    def build(k: int) -> str:
        return "\n\n".join([INSTANCE_HEADERS[task_type], *blocks[:k], new])

    return _fit(build, len(blocks), demos, fits)


def reference_prompt(instruction: str, input: str) -> str:
    """The reference zero-shot prompt (Ensemble-Instruct's output ensembling): ``instruction + "\\n" + input``."""
    return instruction + "\n" + input
