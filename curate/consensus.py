"""The output-consensus rule of Ensemble-Instruct (docs/ARCHITECTURE.md, "Output ensembling and consensus"),
as pure functions.

Given the outputs o0 (the generator's) ... o(k-1) (the ensemblers') of one instance, :func:`consensus` decides
which output to keep, if any, and returns everything it computed (the whole pairwise Rouge-L matrix) so a store
can re-threshold later without recomputing: a row is kept at threshold tau iff :func:`passes` says so.

:func:`consensus_reference3` is a plain transcription of the reference code (IBM/ensemble-instruct,
``ensemble_output.py``) for k = 3; the tests hold :func:`consensus` against it. Where the two differ, on
purpose, is listed in its docstring.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rouge_score import rouge_scorer

from curate.rouge import pairwise_rouge_l_tokens, tokenize

__all__ = [
    "EXACT_REASONS",
    "REASONS",
    "THRESHOLD_REASONS",
    "ConsensusResult",
    "consensus",
    "consensus_jsonl",
    "consensus_many",
    "consensus_reference3",
    "normalise",
    "passes",
]

#: Every reason :func:`consensus` gives. ``consensus_jsonl`` adds ``"invalid: <what is wrong>"``.
REASONS = ("exact_o0", "exact_others", "rouge", "below_threshold", "empty")
#: Reasons of the exact-match branches: kept whatever the threshold (when the chosen text is non-empty).
EXACT_REASONS = ("exact_o0", "exact_others")
#: Reasons of the Rouge-L branch: kept iff ``min_pairwise`` is above the threshold (and the chosen text is
#: non-empty). "empty" (the chosen normalised text is empty) and "invalid: …" rows are never kept.
THRESHOLD_REASONS = ("rouge", "below_threshold")

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_UNICODE_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class ConsensusResult:
    """What :func:`consensus` decided and everything it computed.

    * ``chosen_index``: the output the rule picks (exact-match index, or largest sum of Rouge-L to the others,
      ties to the lowest index). Always set by :func:`consensus`, also when ``keep`` is False, so that a lower
      threshold can keep the row later; ``None`` only on invalid JSONL lines.
    * ``keep``: whether the chosen output is kept at the threshold given.
    * ``pairwise``: ``pairwise[i][j]`` = Rouge-L F1 (stemmer) of normalised outputs i and j; symmetric; the
      diagonal is 1.0 for an output with tokens, 0.0 for one without.
    * ``scores``: ``scores[i]`` = mean of ``pairwise[i][j]`` over j != i (agreement of output i).
    * ``min_pairwise``: min of ``pairwise[i][j]`` over i < j.
    * ``reason``: one of :data:`REASONS`.
    * ``tokenizer``: ``"rouge"`` (rouge-score's, with stemmer) or ``"unicode"`` (the non-Latin fallback).
    """

    chosen_index: int | None
    keep: bool
    pairwise: list[list[float]]
    scores: list[float]
    min_pairwise: float
    reason: str
    tokenizer: str


def normalise(text: str) -> str:
    """Lowercase, remove ``string.punctuation``, collapse whitespace runs to one space, strip
    (the reference's ``normalize_answer``).

    Raises TypeError if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalise() needs a str, got {type(text).__name__}")
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def passes(result_reason: str, min_pairwise: float, chosen_nonempty: bool, threshold: float) -> bool:
    """The single definition of "is this row kept at ``threshold``", from stored fields only: the chosen
    output's normalised text is non-empty, and

    * ``reason`` is in :data:`EXACT_REASONS` (exact matches do not depend on the threshold), or
    * ``reason`` is in :data:`THRESHOLD_REASONS` and ``min_pairwise > threshold`` (strictly greater).

    Any other reason (``"empty"``, ``"invalid: ..."``) is never kept. ``chosen_nonempty`` is whether the
    chosen output's *normalised* text is non-empty (False for every row with reason ``"empty"``). The store's
    ``PASSING_SQL`` is built from the same two constants, and a test holds the two equal on many random rows.
    """
    if not chosen_nonempty:
        return False
    if result_reason in EXACT_REASONS:
        return True
    return result_reason in THRESHOLD_REASONS and min_pairwise > threshold


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    return float(threshold)


def _check_outputs(outputs: Sequence[str]) -> list[str]:
    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, Sequence):
        raise ValueError(f"outputs must be a list of strings, got {type(outputs).__name__}")
    if len(outputs) < 2:
        raise ValueError(f"consensus needs at least 2 outputs (the generator's first), got {len(outputs)}")
    for i, o in enumerate(outputs):
        if not isinstance(o, str):
            raise ValueError(f"outputs[{i}] is {type(o).__name__}, not str")
    return list(outputs)


def _tokens(norm: list[str]) -> tuple[list[list[str]], str]:
    """Token lists of the normalised outputs, and which tokenizer made them.

    rouge-score's tokenizer (with stemmer) keeps only ``[a-z0-9]`` runs. If at least two outputs have a
    non-empty normalised text that still gives no token (non-Latin scripts), the whole row uses the Unicode
    tokenizer ``re.findall(r"\\w+", text.lower())`` instead, without stemmer.
    """
    toks = [tokenize(t, stem=True) for t in norm]
    lost = sum(1 for t, tk in zip(norm, toks) if t and not tk)
    if lost >= 2:
        return [_UNICODE_WORD.findall(t.lower()) for t in norm], "unicode"
    return toks, "rouge"


def _exact_match(norm: list[str]) -> tuple[int, str] | None:
    """(chosen index, reason) of the exact-match branches, or None."""
    if any(norm[0] == o for o in norm[1:]):
        return 0, "exact_o0"
    seen: set[str] = set()
    # the lowest i >= 1 with an equal later j: scan right to left, remember the last hit
    first = None
    for i in range(len(norm) - 1, 0, -1):
        if norm[i] in seen:
            first = i
        seen.add(norm[i])
    return (first, "exact_others") if first is not None else None


def consensus(outputs: Sequence[str], threshold: float = 0.01) -> ConsensusResult:
    """Apply the consensus rule to ``outputs`` (o0 = the generator's, then the ensemblers').

    1. normalise each output (:func:`normalise`);
    2. if o0 equals any other -> choose 0 (``"exact_o0"``); else if two others are equal -> choose the first
       of them, i.e. the lowest i >= 1 with an equal j > i (``"exact_others"``); kept iff the chosen normalised
       text is non-empty (reason ``"empty"`` otherwise);
    3. else choose the output with the largest sum of Rouge-L F1 to the others (ties -> lowest index); kept
       iff ``min_pairwise > threshold`` and the chosen normalised text is non-empty (reasons ``"rouge"``,
       ``"below_threshold"``, ``"empty"``).

    Rouge-L is rouge-score's (stemmer on) over the normalised texts, for every pair, in every branch. Non-Latin
    fallback: rouge-score's tokenizer drops non-ASCII letters, so when at least two outputs have a non-empty
    normalised text yet no rouge-score token, the whole row is scored with the Unicode tokenizer
    ``re.findall(r"\\w+", text.lower())`` (no stemmer) and ``tokenizer="unicode"``.

    For k = 3 this is the reference rule (:func:`consensus_reference3`) except for the differences listed
    there. ``keep == passes(reason, min_pairwise, chosen normalised text != "", threshold)`` always.

    Raises ValueError if ``outputs`` is not a sequence of at least 2 strings or ``threshold`` is not a number.
    """
    outputs = _check_outputs(outputs)
    threshold = _check_threshold(threshold)
    k = len(outputs)
    # 1) normalise, tokenize, score every pair
    norm = [normalise(o) for o in outputs]
    toks, tokenizer = _tokens(norm)
    pairwise = pairwise_rouge_l_tokens(toks)
    sums = [sum(pairwise[i][j] for j in range(k) if j != i) for i in range(k)]
    scores = [s / (k - 1) for s in sums]
    min_pairwise = min(pairwise[i][j] for i in range(k) for j in range(i + 1, k))
    # 2) exact matches
    exact = _exact_match(norm)
    if exact is not None:
        chosen, reason = exact
        if not norm[chosen]:
            reason = "empty"
    # 3) Rouge-L agreement
    else:
        chosen = max(range(k), key=lambda i: (sums[i], -i))
        if not norm[chosen]:
            reason = "empty"
        elif min_pairwise > threshold:
            reason = "rouge"
        else:
            reason = "below_threshold"
    keep = passes(reason, min_pairwise, bool(norm[chosen]), threshold)
    return ConsensusResult(chosen, keep, pairwise, scores, min_pairwise, reason, tokenizer)


def consensus_many(outputs: Sequence[Sequence[str]], threshold: float = 0.01) -> list[ConsensusResult]:
    """:func:`consensus` of each list of outputs, in order: one call per batch for a process pool
    (curate.ensemble.compute_consensus)."""
    return [consensus(o, threshold) for o in outputs]


def consensus_reference3(o0: str, o1: str, o2: str, threshold: float = 0.01) -> tuple[bool, str | None]:
    """Plain transcription of the reference rule for three outputs (IBM/ensemble-instruct
    ``ensemble_output.py``): ``(written?, the output it writes)``. The reference strips each output when it
    reads it; pass them stripped to compare.

    It differs from :func:`consensus` in three places, each on purpose (docs/ARCHITECTURE.md, "Output ensembling and consensus"):

    * o1 == o2 (normalised) but o0 differs: the reference writes **o0**; :func:`consensus` chooses o1, the
      output the two ensemblers agree on.
    * exact matches of empty normalised texts: the reference writes them; :func:`consensus` drops them
      (reason ``"empty"``).
    * non-Latin rows: the reference scores them 0 (no rouge-score token) and drops them; :func:`consensus`
      falls back to the Unicode tokenizer.
    """
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def rouge(prediction: str, ground_truth: str) -> float:
        return scorer.score(target=ground_truth, prediction=prediction)["rougeL"].fmeasure

    n0, n1, n2 = normalise(o0), normalise(o1), normalise(o2)
    em01, em02, em12 = n0 == n1, n0 == n2, n1 == n2
    r01, r02, r12 = rouge(n0, n1), rouge(n0, n2), rouge(n1, n2)
    if em01 or em02:
        return True, o0
    if em12:
        return True, o0  # sic: the reference writes the generator's output here
    worst = min(r01, r02, r12)
    s0, s1, s2 = r01 + r02, r01 + r12, r02 + r12
    if s0 >= s1 and s0 >= s2:
        best = o0
    elif s1 >= s0 and s1 >= s2:
        best = o1
    else:
        best = o2
    if worst > threshold and best != "":
        return True, best
    return False, None


# ----------------------------------------------------------------------------------------------------------
# JSONL in, JSONL out
# ----------------------------------------------------------------------------------------------------------


def _parse_record(raw: bytes) -> tuple[dict | None, str | None]:
    """(record, None) for a valid line, (whatever could be read or None, what is wrong) otherwise."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 ({e.reason} at byte {e.start})"
    except json.JSONDecodeError as e:
        return None, f"bad JSON ({e.msg} at column {e.colno})"
    if not isinstance(rec, dict):
        return None, f"a line must be a JSON object, got {type(rec).__name__}"
    for field in ("instruction", "input", "outputs"):
        if field not in rec:
            return rec, f"missing field {field!r}"
    for field in ("instruction", "input"):
        if not isinstance(rec[field], str):
            return rec, f"field {field!r} is {type(rec[field]).__name__}, not str"
    outs = rec["outputs"]
    if not isinstance(outs, list):
        return rec, f"field 'outputs' is {type(outs).__name__}, not a list"
    if len(outs) < 2:
        return rec, f"'outputs' has {len(outs)} element(s), needs at least 2"
    for i, o in enumerate(outs):
        if not isinstance(o, str):
            return rec, f"outputs[{i}] is {type(o).__name__}, not str"
    return rec, None


def _result_fields(rec: dict, res: ConsensusResult) -> dict:
    return {
        **rec,
        "keep": res.keep,
        "chosen_index": res.chosen_index,
        "output": rec["outputs"][res.chosen_index],
        "min_pairwise": res.min_pairwise,
        "pairwise": res.pairwise,
        "scores": res.scores,
        "reason": res.reason,
        "tokenizer": res.tokenizer,
    }


def _invalid_fields(rec: dict | None, raw: bytes, line_no: int, problem: str) -> dict:
    base = dict(rec) if rec is not None else {"raw": raw.decode("utf-8", errors="replace").rstrip("\r\n")}
    return {
        **base,
        "keep": False,
        "chosen_index": None,
        "output": None,
        "min_pairwise": None,
        "pairwise": None,
        "scores": None,
        "reason": f"invalid: {problem}",
        "tokenizer": None,
        "error": f"line {line_no}: {problem}",
    }


def consensus_jsonl(in_path: str | os.PathLike, out_path: str | os.PathLike, threshold: float = 0.01) -> dict:
    """Run :func:`consensus` over a JSONL file of ``{"instruction", "input", "outputs": [o0, o1, ...]}`` lines.

    Each output line repeats the input record (all its fields) and adds ``keep``, ``chosen_index``,
    ``output`` (the chosen output as given, un-normalised; also when ``keep`` is false, so a lower threshold
    can use it), ``min_pairwise``, ``pairwise``, ``scores``, ``reason``, ``tokenizer``.

    A bad line (not UTF-8, bad JSON, not an object, a missing or mistyped field, fewer than 2 outputs) does
    not stop the file: it is written with ``keep: false``, ``reason: "invalid: <what is wrong>"``,
    ``error: "line <n>: <what is wrong>"`` (1-based line number), nulls for the computed fields, and the
    record's fields (or ``raw``: the line's text when it is not a JSON object). Blank lines are skipped.

    The output is written to a temporary file beside ``out_path`` and renamed over it at the end, so readers
    never see a half-written file (``in_path`` may equal ``out_path``).

    Returns counts: ``{"lines", "kept", "invalid", "exact_o0", "exact_others", "rouge", "below_threshold",
    "empty"}`` (``lines`` counts non-blank input lines).

    Raises ValueError if ``threshold`` is not a number; OSError if ``in_path`` cannot be read or
    ``out_path``'s folder cannot be written.
    """
    threshold = _check_threshold(threshold)
    out_path = Path(out_path)
    counts = {"lines": 0, "kept": 0, "invalid": 0, **{r: 0 for r in REASONS}}
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600: give it the mode of the file it replaces, or rw-r--r--
        os.chmod(tmp, out_path.stat().st_mode & 0o777 if out_path.exists() else 0o644)
        with open(in_path, "rb") as src, os.fdopen(fd, "w", encoding="utf-8") as dst:
            for line_no, raw in enumerate(src, start=1):
                if not raw.strip():
                    continue
                counts["lines"] += 1
                rec, problem = _parse_record(raw)
                if problem is None:
                    res = consensus(rec["outputs"], threshold)
                    row = _result_fields(rec, res)
                    counts[res.reason] += 1
                    counts["kept"] += res.keep
                else:
                    row = _invalid_fields(rec, raw, line_no, problem)
                    counts["invalid"] += 1
                dst.write(json.dumps(row) + "\n")
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts
