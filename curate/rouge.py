"""Exact Rouge-L F1 (the numbers of ``rouge-score``) made fast, and the novelty index.

Every score here equals, bit for bit,
``rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem).score(target, prediction)["rougeL"].fmeasure``:

* tokens come from rouge-score's own tokenizer (``rouge_score.tokenize.tokenize`` through
  ``tokenizers.DefaultTokenizer``); the only change is that the Porter stemmer's answers are memoised;
* the F1 is computed from the LCS length exactly as ``rouge_scorer._score_lcs`` does:
  ``precision = lcs / len(prediction)``, ``recall = lcs / len(target)``, ``scoring.fmeasure(precision, recall)``,
  and 0.0 when either token list is empty.

That F1 is symmetric bit for bit (``2*p*r/(p+r)``: doubling is exact and ``*``, ``+`` commute), so
``rouge_l(a, b) == rouge_l(b, a)``.

Speed comes from two exact tricks:

1. the LCS length by bit-parallel dynamic programming (Allison-Dix / Hyyro), with Python ints as bit
   vectors: one ``&``, ``+``, ``-``, ``|`` per token of the shorter text instead of a row of the DP table;
2. in :class:`NoveltyIndex`, an upper bound ``LCS <= |bag(a) & bag(b)|`` (multiset intersection of token
   counts) computed for the whole pool at once with per-token inverted lists and ``numpy.bincount``. Pairs
   whose bound cannot reach the threshold (or the best score so far) are never aligned.

The plain twins (``rouge_l_reference``, ``NoveltyIndex.max_similarity_reference``) sit beside the fast paths
and the tests hold one against the other.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np
from rouge_score import scoring, tokenizers

__all__ = [
    "NoveltyIndex",
    "f1_from_lcs",
    "lcs_length",
    "lcs_length_reference",
    "pairwise_rouge_l",
    "pairwise_rouge_l_tokens",
    "rouge_l",
    "rouge_l_reference",
    "rouge_l_tokens",
    "tokenize",
]

# Margin for the float upper bound: the exact F1 of a pair is at most its bound (2*inter/(m+n)) plus a few
# ulps, far below this. A pair is skipped only when its bound is below the target by more than EPS.
_EPS = 1e-9
# How many texts of largest bound max_similarity aligns first, to get a good lower bound to prune with.
_SEED = 8


# ----------------------------------------------------------------------------------------------------------
# Tokenizer: rouge-score's own, with a memoised Porter stemmer
# ----------------------------------------------------------------------------------------------------------


class _MemoStemmer:
    """Wraps nltk's PorterStemmer (a pure function of the word) with a bounded cache."""

    def __init__(self, stemmer):
        self.stem = functools.lru_cache(maxsize=200_000)(stemmer.stem)


@functools.lru_cache(maxsize=2)
def _tokenizer(stem: bool) -> tokenizers.DefaultTokenizer:
    tok = tokenizers.DefaultTokenizer(use_stemmer=stem)
    if stem and getattr(tok, "_stemmer", None) is not None:
        tok._stemmer = _MemoStemmer(tok._stemmer)
    return tok


def tokenize(text: str, *, stem: bool = False) -> list[str]:
    """Tokens of ``text`` exactly as rouge-score makes them (lowercase ``[a-z0-9]+`` runs; with ``stem``,
    Porter stems of tokens longer than 3 characters). Non-ASCII letters are separators, so a text in a
    non-Latin script tokenizes to ``[]``.

    Raises TypeError if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize() needs a str, got {type(text).__name__}")
    return _tokenizer(bool(stem)).tokenize(text)


# ----------------------------------------------------------------------------------------------------------
# LCS length and F1: plain twin and bit-parallel fast path
# ----------------------------------------------------------------------------------------------------------


def f1_from_lcs(lcs: int, n_target: int, n_prediction: int) -> float:
    """Rouge-L F1 from an LCS length, computed as ``rouge_scorer._score_lcs`` does (same float operations).

    0.0 when either length is 0.
    """
    if n_target == 0 or n_prediction == 0:
        return 0.0
    precision = lcs / n_prediction
    recall = lcs / n_target
    return float(scoring.fmeasure(precision, recall))


def lcs_length_reference(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``: the textbook O(len(a)*len(b)) DP."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def _match_masks(tokens: Sequence[Hashable]) -> dict[Hashable, int]:
    """``masks[t]`` has bit i set iff ``tokens[i] == t``."""
    masks: dict[Hashable, int] = {}
    bit = 1
    for t in tokens:
        masks[t] = masks.get(t, 0) | bit
        bit <<= 1
    return masks


def _lcs_bits(masks: dict[Hashable, int], m: int, other: Iterable[Hashable]) -> int:
    """LCS length of the m-token sequence described by ``masks`` and the sequence ``other``.

    Bit-parallel row update (Hyyro 2004): V starts all ones; for each token y of ``other`` with match mask M,
    ``U = V & M; V = (V + U) | (V - U)``. The LCS length is the number of zero bits among the low m bits.
    Carries beyond bit m never flow back down, so they are simply masked off at the end.
    """
    full = (1 << m) - 1
    v = full
    get = masks.get
    for y in other:
        mk = get(y)
        if mk:
            u = v & mk
            v = (v + u) | (v - u)
    return m - (v & full).bit_count()


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (bit-parallel; equals
    :func:`lcs_length_reference`). Cost: len(shorter) word-vector steps over len(longer) bits."""
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a  # bit vectors over the longer, iterate over the shorter
    return _lcs_bits(_match_masks(a), len(a), b)


def rouge_l_tokens(target: Sequence[Hashable], prediction: Sequence[Hashable]) -> float:
    """Rouge-L F1 of two token sequences (``_score_lcs(target, prediction).fmeasure``, bit for bit)."""
    if not target or not prediction:
        return 0.0
    return f1_from_lcs(lcs_length(target, prediction), len(target), len(prediction))


def rouge_l(a: str, b: str, *, stem: bool = False) -> float:
    """Rouge-L F1 with ``a`` the target and ``b`` the prediction; equals
    ``RougeScorer(["rougeL"], use_stemmer=stem).score(a, b)["rougeL"].fmeasure`` bit for bit.

    Raises TypeError if ``a`` or ``b`` is not a ``str``.
    """
    return rouge_l_tokens(tokenize(a, stem=stem), tokenize(b, stem=stem))


def rouge_l_reference(a: str, b: str, *, stem: bool = False) -> float:
    """Plain twin of :func:`rouge_l`: same tokens, textbook DP for the LCS, same F1 formula.

    Raises TypeError if ``a`` or ``b`` is not a ``str``.
    """
    ta, tb = tokenize(a, stem=stem), tokenize(b, stem=stem)
    if not ta or not tb:
        return 0.0
    return f1_from_lcs(lcs_length_reference(ta, tb), len(ta), len(tb))


def pairwise_rouge_l_tokens(token_lists: Sequence[Sequence[Hashable]]) -> list[list[float]]:
    """Symmetric k x k matrix with ``res[i][j] = rouge_l_tokens(token_lists[i], token_lists[j])``.

    The diagonal is what that formula gives: 1.0 for a non-empty token list, 0.0 for an empty one.
    Each list's match masks are built once.
    """
    k = len(token_lists)
    masks = [_match_masks(t) for t in token_lists]
    res = [[0.0] * k for _ in range(k)]
    for i in range(k):
        ti = token_lists[i]
        if ti:
            res[i][i] = 1.0
        for j in range(i + 1, k):
            tj = token_lists[j]
            if not ti or not tj:
                continue  # 0.0
            if len(ti) >= len(tj):
                lcs = _lcs_bits(masks[i], len(ti), tj)
            else:
                lcs = _lcs_bits(masks[j], len(tj), ti)
            res[i][j] = res[j][i] = f1_from_lcs(lcs, len(ti), len(tj))
    return res


def pairwise_rouge_l(texts: Sequence[str], *, stem: bool = False) -> list[list[float]]:
    """Symmetric k x k matrix with ``res[i][j] = rouge_l(texts[i], texts[j], stem=stem)``, each text
    tokenized once.

    Diagonal: ``rouge_l(t, t)``, i.e. 1.0 when ``t`` has at least one token and 0.0 when it tokenizes to
    nothing (empty, punctuation-only or non-Latin text), the same 0 rouge-score gives for empty token lists.

    Raises TypeError if an element of ``texts`` is not a ``str``.
    """
    return pairwise_rouge_l_tokens([tokenize(t, stem=stem) for t in texts])


# ----------------------------------------------------------------------------------------------------------
# Novelty index
# ----------------------------------------------------------------------------------------------------------


class _Postings:
    """Inverted list of one token: ids of the texts holding it and its count in each.

    Appends go to Python lists; :meth:`arrays` folds them into the numpy arrays when a query needs them
    (one concatenate per stale token per query, so alternating ``add`` / query stays cheap).
    """

    __slots__ = ("docs", "counts", "_new_docs", "_new_counts")

    def __init__(self) -> None:
        self.docs = np.empty(0, dtype=np.int64)
        self.counts = np.empty(0, dtype=np.int64)
        self._new_docs: list[int] = []
        self._new_counts: list[int] = []

    def append(self, doc: int, count: int) -> None:
        self._new_docs.append(doc)
        self._new_counts.append(count)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._new_docs:
            self.docs = np.concatenate([self.docs, np.array(self._new_docs, dtype=np.int64)])
            self.counts = np.concatenate([self.counts, np.array(self._new_counts, dtype=np.int64)])
            self._new_docs, self._new_counts = [], []
        return self.docs, self.counts


class NoveltyIndex:
    """The texts seen so far, and the maximum Rouge-L F1 of a new text against all of them.

    ``max_similarity`` and ``exceeds`` give exactly the answers of scoring the new text against every indexed
    text with rouge-score (same tokenizer, same floats); they only skip the pairs that cannot matter:

    1. bound: for the query's distinct tokens, gather their inverted lists and add
       ``min(count in query, count in text)`` per text with one ``numpy.bincount``. That is the size of the
       bag-of-words intersection, an upper bound of the LCS, so ``bound = 2*inter/(m+n) >= F1`` for every text;
    2. visit texts by decreasing bound (ties: earliest added first) and align only those whose bound is within
       ``_EPS`` of the threshold (``exceeds``) or of the best F1 so far (``max_similarity``, seeded with the
       ``_SEED`` texts of largest bound), with the bit-parallel LCS; decide with the exact F1.

    On 11.6K instructions (bench/novelty.py) a query costs about a millisecond, against seconds for
    rouge-score over the pool, with identical decisions and maxima.

    Not thread-safe: guard ``add`` with a lock when several threads share an index.
    """

    def __init__(self, texts: Iterable[str] = (), *, stem: bool = False):
        """Index ``texts`` (in order; see :meth:`add`).

        Raises TypeError if an element of ``texts`` is not a ``str``.
        """
        self.stem = bool(stem)
        self._vocab: dict[str, int] = {}
        self._texts: list[str] = []
        self._ids: list[tuple[int, ...]] = []  # token ids per text
        self._masks: list[dict[int, int]] = []  # match masks per text
        self._lengths: list[int] = []
        self._lengths_np = np.empty(0, dtype=np.int64)  # numpy copy of _lengths, refreshed by queries
        self._postings: dict[int, _Postings] = {}
        for t in texts:
            self.add(t)

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> list[str]:
        """The indexed texts, in the order they were added (a copy)."""
        return list(self._texts)

    def add(self, text: str) -> None:
        """Index ``text`` (duplicates are kept; ties resolve to the earliest added).

        Raises TypeError if ``text`` is not a ``str``.
        """
        tokens = tokenize(text, stem=self.stem)
        vocab = self._vocab
        ids = tuple(vocab.setdefault(t, len(vocab)) for t in tokens)
        doc = len(self._texts)
        self._texts.append(text)
        self._ids.append(ids)
        self._masks.append(_match_masks(ids))
        self._lengths.append(len(ids))
        for tid, count in Counter(ids).items():
            post = self._postings.get(tid)
            if post is None:
                post = self._postings[tid] = _Postings()
            post.append(doc, count)

    # -- the fast path -----------------------------------------------------------------------------------

    def _query(self, text: str) -> tuple[list[int], dict[int, int]]:
        """Token ids of ``text`` (-1 for tokens never indexed: they match nothing) and its match masks."""
        tokens = tokenize(text, stem=self.stem)
        ids = [self._vocab.get(t, -1) for t in tokens]
        return ids, _match_masks(ids)

    def _bounds(self, ids: list[int]) -> np.ndarray:
        """``bounds[d] >= F1(query, text d)`` for every indexed text d: ``2*|bag(q) & bag(d)| / (m + n_d)``."""
        n_docs = len(self._texts)
        # 1) per distinct known query token: its inverted list, counts capped at the query's count
        docs, weights = [], []
        for tid, c in Counter(i for i in ids if i >= 0).items():
            post_docs, post_counts = self._postings[tid].arrays()
            docs.append(post_docs)
            weights.append(np.minimum(post_counts, c) if c > 1 else np.ones(len(post_docs)))
        if not docs:
            return np.zeros(n_docs)
        # 2) bag-of-words intersection size per text, then the F1 it allows
        inter = np.bincount(np.concatenate(docs), weights=np.concatenate(weights), minlength=n_docs)
        if len(self._lengths_np) != n_docs:
            self._lengths_np = np.concatenate(
                [self._lengths_np, np.array(self._lengths[len(self._lengths_np) :], dtype=np.int64)]
            )
        denom = np.maximum(len(ids) + self._lengths_np, 1)
        return 2.0 * inter / denom

    def _f1(self, doc: int, ids: list[int], masks: dict[int, int]) -> float:
        """Exact F1 of the query against text ``doc`` (bit vectors over the longer, loop over the shorter)."""
        d_ids = self._ids[doc]
        m, n = len(ids), len(d_ids)
        if m == 0 or n == 0:
            return 0.0
        if n >= m:
            lcs = _lcs_bits(self._masks[doc], n, ids)
        else:
            lcs = _lcs_bits(masks, m, d_ids)
        return f1_from_lcs(lcs, m, n)

    def max_similarity(self, text: str) -> tuple[float, str | None]:
        """``(max_d F1(text, d), the d attaining it)`` over the indexed texts d; ties -> the earliest added;
        an empty index -> ``(0.0, None)``.

        Raises TypeError if ``text`` is not a ``str``.
        """
        if not self._texts:
            tokenize(text, stem=self.stem)  # type check
            return 0.0, None
        ids, masks = self._query(text)
        bounds = self._bounds(ids)
        positive = np.flatnonzero(bounds > 0.0)
        if len(positive) == 0:
            # no indexed text shares a token with the query: every F1 is exactly 0 -> the earliest text
            return 0.0, self._texts[0]
        # 1) seed the best F1 with the few texts of largest bound
        k = min(_SEED, len(positive))
        seed = positive[np.argpartition(-bounds[positive], k - 1)[:k]]
        best_f, best_d = -1.0, -1
        seed = seed.tolist()
        for d in seed:
            f = self._f1(d, ids, masks)
            if f > best_f or (f == best_f and d < best_d):
                best_f, best_d = f, d
        # 2) the texts that could still reach it (bound within _EPS), best bound first, earliest first among
        # equal bounds; best_f > 0 here, so texts with no shared token (bound 0) never qualify
        cand = positive[bounds[positive] >= best_f - _EPS]
        cand = cand[np.argsort(-bounds[cand], kind="stable")]
        done = set(seed)
        for d, b in zip(cand.tolist(), bounds[cand].tolist()):
            if b < best_f - _EPS:
                break  # 3) no remaining text can reach the best F1
            if d in done:
                continue
            f = self._f1(d, ids, masks)
            if f > best_f or (f == best_f and d < best_d):
                best_f, best_d = f, d
        return best_f, self._texts[best_d]

    def exceeds(self, text: str, threshold: float) -> bool:
        """True iff some indexed text has Rouge-L F1 with ``text`` strictly greater than ``threshold``
        (``max_similarity(text)[0] > threshold``), stopping at the first such text.

        Raises TypeError if ``text`` is not a ``str``; ValueError if ``threshold`` is NaN.
        """
        threshold = float(threshold)
        if math.isnan(threshold):
            raise ValueError("exceeds(): threshold is NaN")
        if not self._texts:
            tokenize(text, stem=self.stem)
            return False
        ids, masks = self._query(text)
        bounds = self._bounds(ids)
        # 1) only texts whose bound could exceed the threshold, best bound first
        cand = np.flatnonzero(bounds > threshold - _EPS)
        cand = cand[np.argsort(-bounds[cand], kind="stable")]
        # 2) align them one by one; decide with the exact F1
        for d in cand.tolist():
            if self._f1(d, ids, masks) > threshold:
                return True
        return False

    # -- the plain twin ----------------------------------------------------------------------------------

    def max_similarity_reference(self, text: str) -> tuple[float, str | None]:
        """Plain twin of :meth:`max_similarity`: :func:`rouge_l_reference` against every text in order.

        Raises TypeError if ``text`` is not a ``str``.
        """
        best_f, best_t = 0.0, None
        for t in self._texts:
            f = rouge_l_reference(t, text, stem=self.stem)
            if best_t is None or f > best_f:
                best_f, best_t = f, t
        return best_f, best_t
