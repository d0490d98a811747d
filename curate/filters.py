"""Instruction filters (docs/ARCHITECTURE.md, "Instruction generation"), applied in order; the first that rejects gives the reason.

1. ``length``       word count ≤ 3 or > 150
2. ``keyword``      contains, as a whole word and case-insensitive, image(s), graph(s), picture(s),
                    file(s), map(s), draw, plot or "go to"
3. ``starts_with``  starts with "Write a program" (case-sensitive, as the reference's ``str.startswith``)
4. ``punctuation``  starts with a punctuation character
5. ``non_ascii``    starts with a non-ASCII character
6. ``too_similar``  max Rouge-L F1 (rouge-score tokenizer, no stemmer) against all seeds and all kept
                    instructions is > 0.7; the detail names the most similar text and its score

Every rejection is returned with its reason and detail so the caller stores it; nothing is dropped silently.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from .rouge import NoveltyIndex

SIMILARITY_THRESHOLD = 0.7
MIN_WORDS, MAX_WORDS = 3, 150
BLOCKED_WORDS = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                 "map", "maps", "draw", "plot", "go to")
# The reference's find_word_in_string: r"\b(word)\b", case-insensitive ("mapping" passes, "Map" does not).
_BLOCKED = re.compile(r"\b(" + "|".join(r"\s+".join(map(re.escape, w.split())) for w in BLOCKED_WORDS) + r")\b",
                      re.IGNORECASE)
REASONS = ("length", "keyword", "starts_with", "punctuation", "non_ascii", "too_similar")


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None = None
    detail: dict = field(default_factory=dict)


def clean_instruction(text: str) -> str:
    """Collapse whitespace and strip (the reference's ``re.sub(r"\\s+", " ", text).strip()``)."""
    return " ".join(text.split())


def static_verdict(text: str) -> Verdict:
    """Filters 1–5, which need no index. ``text`` should already be cleaned (:func:`clean_instruction`)."""
    words = len(text.split())
    if words <= MIN_WORDS or words > MAX_WORDS:
        return Verdict(False, "length", {"words": words})
    m = _BLOCKED.search(text)
    if m:
        return Verdict(False, "keyword", {"keyword": " ".join(m.group(0).lower().split())})
    if text.startswith("Write a program"):
        return Verdict(False, "starts_with", {"prefix": "Write a program"})
    if text[0] in string.punctuation:
        return Verdict(False, "punctuation", {"char": text[0]})
    if not text[0].isascii():
        return Verdict(False, "non_ascii", {"char": text[0]})
    return Verdict(True)


def instruction_verdict(text: str, index: NoveltyIndex,
                        threshold: float = SIMILARITY_THRESHOLD) -> Verdict:
    """All six filters in order; the first that rejects gives the reason.

    ``too_similar`` means ``max Rouge-L F1 > threshold`` (strictly: a score of exactly 0.7 is kept); its
    detail is ``{"score": …, "most_similar": …}``. Does not add ``text`` to the index (the caller does,
    when it keeps it).
    """
    v = static_verdict(text)
    if not v.keep:
        return v
    if index.exceeds(text, threshold):
        score, similar = index.max_similarity(text)
        return Verdict(False, "too_similar", {"score": score, "most_similar": similar})
    return v
