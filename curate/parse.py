"""Parsing raw completions into instructions and instances.

Instruction completions (docs/ARCHITECTURE.md, "Instruction generation"): the model continues ``k+1.``; the text is split on
``\\n\\d+\\s?\\. `` so a model that goes on numbering yields several instructions; each piece ends at its
first ``|EoS|`` (a backend that ignores the stop sequence leaves it in) and is stripped.
:func:`instruction_pieces` also says whether each piece was closed by ``|EoS|``, so the caller can tell
an instruction cut off by ``max_new_tokens`` from a finished one.

Instance completions ("Instance generation" there): the model continues after ``instruction: {new}\\n`` with ``input: …``
(type A) and ``output: …``. Labels are matched at the start of a line in any case, with spaces before the
colon (``Output :``) and simple Markdown emphasis (``**Output:**``). A field runs to the next label, so
multi-line fields are kept whole (the reference parser kept only the first line). ``|EoS|`` ends an example:
text after it counts only if it opens a new block with its own ``instruction:`` line; such a block of more
than 5 words becomes an extra candidate (the caller runs it through the instruction filters). A marker cut
off at the very end by ``max_new_tokens`` (``"|EoS"``, ``"|Eo"``, ``"|E"``) is removed too, and so is a
marker fragment the model wrote instead of the marker (``"EoS|"``, seen as an output ``"3\nEoS|"``) or an
end-of-text token written out as text (``"<|endoftext|"``).

Reasons an instance is not usable: ``empty`` (blank completion), ``no_fields`` (no label at all),
``no_output``, ``empty_output``, for type A ``no_input``, ``empty_input``, and ``truncated`` (the
completion was cut off by ``max_new_tokens`` inside the example).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .prompts import EOS

_NUMBERED = re.compile(r"\n\d+\s?\. ")
# A label at the start of a line: optional Markdown emphasis / heading / bullet, the name, optional spaces
# and emphasis, the colon, then emphasis closing after the colon ("**Output:**").
_LABEL = re.compile(
    r"^[ \t]*(?:[#>*_-]+[ \t]*)?(?P<name>instruction|input|output)[ \t]*(?:[*_]+[ \t]*)?:"
    r"(?:[ \t]*[*_]{2}(?=\s|$))?[ \t]?",
    re.IGNORECASE | re.MULTILINE)
MIN_EXTRA_INSTRUCTION_WORDS = 6  # "more than 5 words"
REASONS = ("empty", "no_fields", "no_output", "empty_output", "no_input", "empty_input", "truncated")


# A fragment of an end marker ending a completion: ``EoS|`` / ``EoS`` with its leading pipe lost (the model
# wrote "3\nEoS|"), ``| EoS |``, or an end-of-text token written out as text, whole or cut off
# (``<|endoftext|``, ``<|im_end``, ``<end_of_turn``). A bare ``EoS`` (spelled so) counts only as a word of its own.
_END_FRAGMENT = re.compile(
    r"(?:\|?[ \t]?EoS[ \t]?\||(?<![A-Za-z0-9])\|?EoS"
    r"|(?i:<\|(?:endoftext|im_end|eot_id|end_of_text|end)(?:\|>?)?|<end_of_turn>?))$")


def _partial_eos_at_end(text: str) -> int:
    """Length of an end-marker fragment ending ``text`` (after trailing whitespace), else 0: a cut-off
    ``"|EoS"``, ``"|Eo"``, ``"|E"``, or a fragment of :data:`_END_FRAGMENT` (``"EoS|"``, ``"<|endoftext|"``).
    A lone ``"|"`` does not count (a table row ends so)."""
    body = text.rstrip()
    m = _END_FRAGMENT.search(body)
    if m:
        return len(body) - m.start()
    return next((k for k in range(len(EOS) - 1, 1, -1) if body.endswith(EOS[:k])), 0)


def strip_partial_eos(text: str) -> str:
    """``text`` without a cut-off end marker at its very end, which a completion stopped by
    ``max_new_tokens`` can end with."""
    k = _partial_eos_at_end(text)
    return text.rstrip()[:-k] if k else text


def instruction_pieces(completion: str) -> list[tuple[str, bool]]:
    """(instruction text, closed) per piece of an instruction-prompt completion, in order; ``closed`` says
    the piece ended with ``|EoS|`` (or a cut-off marker). Texts are stripped and may be empty."""
    cut = _partial_eos_at_end(completion)
    parts = _NUMBERED.split(strip_partial_eos(completion))
    out = [(p.split(EOS, 1)[0].strip(), EOS in p) for p in parts]
    if cut:
        out[-1] = (out[-1][0], True)
    return out


def split_instructions(completion: str) -> list[str]:
    """The instruction texts in an instruction-prompt completion, in order (may contain empty strings)."""
    return [text for text, _ in instruction_pieces(completion)]


@dataclass(frozen=True)
class ParsedInstance:
    instruction: str | None   # None: the instruction the prompt asked for; else an extra candidate's
    input: str
    output: str
    task_type: str            # "A" or "B"
    ok: bool
    reason: str | None = None


def _labels(text: str, name: str | None = None) -> list[re.Match]:
    return [m for m in _LABEL.finditer(text) if name is None or m.group("name").lower() == name]


def _fields(block: str) -> dict[str, str]:
    """Label → text for one block; text runs to the next label (multi-line kept whole). A label repeated
    inside one block (a second example for the same instruction) does not replace the first."""
    marks = _labels(block)
    out: dict[str, str] = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        label = m.group("name").lower()
        end = nxt.start() if nxt is not None else len(block)
        if label not in out:
            out[label] = block[m.end():end].strip()
    return out


def _blocks(completion: str) -> list[tuple[bool, str, bool]]:
    """(has its own instruction, text, at the end) per block. Block 0 is the text before any
    ``instruction:`` line of the first ``|EoS|``-delimited segment; every ``instruction:`` line opens a
    block. "At the end": the last block of the last segment, which nothing after it closed."""
    blocks: list[tuple[bool, str, bool]] = []
    segments = completion.split(EOS)
    for i, segment in enumerate(segments):
        starts = [m.start() for m in _labels(segment, "instruction")]
        last = i == len(segments) - 1
        if i == 0:
            blocks.append((False, segment[: starts[0] if starts else len(segment)], last and not starts))
        ends = starts[1:] + [len(segment)]
        for j, (a, b) in enumerate(zip(starts, ends)):
            blocks.append((True, segment[a:b], last and j == len(starts) - 1))
    return blocks


def parse_instances(completion: str, task_type: str, *, cut_off: bool = False) -> list[ParsedInstance]:
    """Instances in an instance completion of ``task_type`` ("A" or "B").

    The first item is always the prompted instruction's instance (``instruction=None``), ok or not, with
    its reason; then one item per later block whose own instruction has more than 5 words (whitespace
    collapsed; type A when the block has a non-empty input, else B). With ``cut_off`` (the completion
    was stopped by ``max_new_tokens``), a usable last example that no ``|EoS|`` closed is reported as
    ``truncated``.
    """
    if not completion.strip():
        return [ParsedInstance(None, "", "", task_type, False, "empty")]
    text = strip_partial_eos(completion)
    cut_off = cut_off and text == completion  # a cut-off end marker closed the last example after all
    results: list[ParsedInstance] = []
    for own, block, at_end in _blocks(text):
        f = _fields(block)
        if not own:
            item = _validate(None, f, task_type)
        else:
            extra = " ".join(f.pop("instruction", "").split())
            if len(extra.split()) < MIN_EXTRA_INSTRUCTION_WORDS:
                continue
            item = _validate(extra, f, "A" if f.get("input", "").strip() else "B")
        if cut_off and at_end and item.ok:
            item = ParsedInstance(item.instruction, item.input, item.output, item.task_type, False, "truncated")
        results.append(item)
    return results


def _validate(instruction: str | None, f: dict[str, str], task_type: str) -> ParsedInstance:
    inp, out = f.get("input"), f.get("output")

    def bad(reason: str) -> ParsedInstance:
        return ParsedInstance(instruction, inp or "", out or "", task_type, False, reason)

    if not f:
        return bad("no_fields")
    if out is None:
        return bad("no_output")
    if not out:
        return bad("empty_output")
    if task_type == "A":
        if inp is None:
            return bad("no_input")
        if not inp:
            return bad("empty_input")
        return ParsedInstance(instruction, inp, out, task_type, True)
    # type B is output only: an input the model invented is not part of the task
    return ParsedInstance(instruction, "", out, task_type, True)
