"""Quality-diversity selection (QDIT) and near-duplicate finding over instruction embeddings
(docs/ARCHITECTURE.md, "Quality-diversity selection (QDIT)").

Objective. Embeddings e are L2-normalised rows, sim(a, v) = e_a · e_v (cosine). Diversity is the facility
location function over the pool V::

    F(A) = Σ_v max(0, max_{a ∈ A} sim(a, v)),        F(∅) = 0

i.e. the max over the empty set is 0 and a negative cosine never counts as coverage. With that definition F
is monotone and submodular, which is what makes lazy greedy exact. Greedy QDIT repeatedly adds::

    argmax_a  (1 − α) · [F(A ∪ {a}) − F(A)] + α · q(a)        (ties to the lowest index)

with q the quality scaled to [0, 1] (:func:`minmax_scale`) and α ∈ [0, 1]. F is the plain sum of the spec, so
the diversity gain is in "pool members covered" units: early gains are large next to q ≤ 1 and fall as the
pool gets covered; α = 1 is quality order, α = 0 pure facility location.

Exactness. :func:`qdit` (lazy greedy, blocked) returns the same sequence as :func:`qdit_naive` (dense greedy)
bit for bit: both work on the embeddings rounded to integers (``_quantise``: 2^-b steps, b ≈ 22), so every
similarity is an exact integer in float64 whatever order BLAS sums in, and every gain is an exact int64 sum.
Scores are then formed by the same ``_score`` in both. Lazy greedy keeps upper bounds in a heap (submodular
gains only shrink). Bounds come in two cheap kinds, both rigorous: a blocked float32 pass with a rounding
margin (a torch matmul: CUDA when present, else the CPU's threads; every candidate once at the start; later any
candidate not cached), and a row cache of similarity
upper bounds on a 2^-14 grid in int16 (up to 1 GiB; FIFO), re-checked against the current coverage in one
elementwise pass. Only candidates whose bound reaches the top get the exact evaluation, over just the columns
where their cached bound exceeds the coverage (elsewhere the gain term is 0). A candidate is taken when its
exact, current score is at the top of the heap ordered by (−score, index), so ties resolve to the lowest index
exactly as the dense argmax does. Memory: O(block · n + n · d) plus the cache (at most 1 GiB: the whole
n × n int16 grid only while it fits, about n ≤ 23,000); never a float n × n matrix.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from . import checks
from .errors import InputError, NotEmbedded, SelectionError

__all__ = ["embedding_text", "QditResult", "DuplicateGroup", "qdit", "qdit_naive", "qdit_select", "qdit_select_naive",
           "minmax_scale", "normalise_rows", "facility_location", "selection_report", "pca_2d",
           "near_duplicates", "near_duplicates_naive", "Pool", "SelectionRun", "QUALITY_HELP",
           "parse_quality", "load_pool", "scaled_quality", "embedder_key", "embed_pool", "run_selection",
           "find_duplicates"]

_U32 = 2.0 ** -24  # unit roundoff of float32
_BLOCK_ELEMENTS = 1 << 25  # elements of one similarity block (≈ 128 MiB float32): bounds memory at any n


def embedding_text(instruction: str, input: str = "") -> str:
    """What is embedded for a candidate: its instruction, then its input on the next line when it has one
    (the task as the model sees it; outputs are left out so the map shows task diversity, not answer style)."""
    instruction, input = (instruction or "").strip(), (input or "").strip()
    return f"{instruction}\n{input}" if input else instruction


# -- input checks and scaling -------------------------------------------------------------------------------

def normalise_rows(embeddings) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64). Raises SelectionError for a non-2-D, non-finite or zero row."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] == 0:
        raise SelectionError(f"embeddings must be a 2-D array (n, d); got shape {e.shape}. "
                             "Embed the pool first (`curate embed`).")
    if not np.isfinite(e).all():
        raise SelectionError("embeddings contain NaN or infinity: re-embed the pool (`curate embed`).")
    norms = np.linalg.norm(e, axis=1)
    if e.shape[0] and norms.min() == 0:
        raise SelectionError(f"embedding row {int(np.argmin(norms))} is all zeros: it has no direction to "
                             "compare; re-embed it or leave it out of the pool.")
    return e / norms[:, None] if e.shape[0] else e


def minmax_scale(values) -> np.ndarray:
    """(v − min) / (max − min) over the pool, in [0, 1]; all zeros when every value is equal.
    Raises SelectionError on NaN (the message says how to find the missing scores)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(v).any():
        raise SelectionError(f"quality has {int(np.isnan(v).sum())} NaN value(s) (first at position "
                             f"{int(np.argmax(np.isnan(v)))}): score those candidates first, or pick another "
                             "--quality, or leave them out of the pool.")
    if not np.isfinite(v).all():
        raise SelectionError("quality has an infinite value; fix the scores or pick another --quality.")
    if v.size == 0:
        return v
    lo, hi = v.min(), v.max()
    return np.zeros_like(v) if hi == lo else (v - lo) / (hi - lo)


def _check(embeddings, quality, k: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    e = normalise_rows(embeddings)
    n = e.shape[0]
    if n == 0:
        raise SelectionError("the pool is empty: nothing to select. Widen --from (accepted / passing / all) "
                             "or generate and ensemble more candidates first.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise SelectionError(f"k must be an integer; got {k!r}")
    if k <= 0:
        raise SelectionError(f"k must be at least 1; got {k}. Pass --k between 1 and the pool size ({n}).")
    if k > n:
        raise SelectionError(f"k = {k} is larger than the pool ({n} candidates). Pass --k {n} or less, or widen "
                             "the pool with --from passing / all.")
    if not isinstance(alpha, (int, float, np.floating)) or not (0.0 <= float(alpha) <= 1.0):
        raise SelectionError(f"alpha must be in [0, 1] (0 = pure diversity, 1 = pure quality); got {alpha!r}")
    if quality is None:
        q = np.zeros(n)
    else:
        q = np.asarray(quality, dtype=np.float64).reshape(-1)
        if q.shape[0] != n:
            raise SelectionError(f"quality has {q.shape[0]} values for {n} embeddings; they must align.")
        if np.isnan(q).any():
            raise SelectionError(f"quality has NaN at position {int(np.argmax(np.isnan(q)))}: score that "
                                 "candidate first, pick another --quality, or leave it out of the pool.")
        if q.min() < 0 or q.max() > 1:
            raise SelectionError(f"quality must be scaled to [0, 1] (got {q.min():g} … {q.max():g}); "
                                 "use curate.select.minmax_scale.")
    return e, q


# -- exact arithmetic shared by the fast and the naive greedy ----------------------------------------------

@dataclass(frozen=True)
class _Quantised:
    """Embeddings rounded to integers ``round(e · 2^b)``: q64 (float64) and q32 (float32) hold the same
    integers exactly (|q| ≤ 2^b ≤ 2^24). A dot product of two rows is an integer ≤ 2^(2b)(1 + tiny) < 2^53,
    so float64 matmul is exact in any summation order; gains are int64 sums ≤ 2n · 2^(2b) < 2^62."""
    q64: np.ndarray
    q32: np.ndarray
    bits: int

    @property
    def scale(self) -> float:  # integer similarity → cosine
        return 2.0 ** (-2 * self.bits)


def _quantise(e: np.ndarray) -> _Quantised:
    n = e.shape[0]
    bits = min(24, (61 - math.ceil(math.log2(n + 1))) // 2)
    q64 = np.rint(e * 2.0 ** bits)
    return _Quantised(q64, q64.astype(np.float32), bits)


def _exact_sims(qz: _Quantised, rows) -> np.ndarray:
    """Integer similarities of ``rows`` to every pool member: (len(rows), n) int64, exact."""
    return (qz.q64[rows] @ qz.q64.T).astype(np.int64)


def _exact_gains(sims: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """gain[r] = Σ_v max(sims[r, v] − cover[v], 0), exact int64 (cover ≥ 0 is the current coverage)."""
    return np.maximum(sims, cover[None, :]).sum(axis=1) - cover.sum()


def _score(gains: np.ndarray, q: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    """(1 − α) · gain · 2^(-2b) + α · q, float64, elementwise (the same expression in both greedies)."""
    return (1.0 - alpha) * (np.asarray(gains, dtype=np.float64) * scale) + alpha * q


_GRID_BITS = 14  # cached rows: similarity upper bounds on a 2^-14 grid, int16


class _Device:
    """The float32 copy of the quantised rows as a torch tensor on the device the bound passes run on (the
    CPU with all of torch's threads, or CUDA when present): the n × n similarity blocks are torch matmuls.
    On the CPU the tensor shares the numpy array's memory."""

    def __init__(self, qz: _Quantised, device: str = "auto"):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise SelectionError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise SelectionError("device='cuda' but no CUDA GPU is visible to torch; use device='auto' or 'cpu'")
        self.torch, self.device = torch, torch.device(device)
        self.q32 = torch.from_numpy(qz.q32).to(self.device)
        self.qz = qz
        self._sims = self._up = self._grid = None

    def buffers(self, rows: int):
        """(rows, n) work tensors (float32 similarities, float32 and int16 grid bounds), reused from call to
        call: a fresh block of this size is fresh pages (≈ 40 ms of page faults per 128 MiB on the CPU, as much
        as a fifth of the matmul)."""
        n, torch = self.q32.shape[0], self.torch
        if self._sims is None or self._sims.shape[0] < rows:
            self._sims = self._up = self._grid = None
            self._sims = torch.empty((rows, n), dtype=torch.float32, device=self.device)
            self._up = torch.empty((rows, n), dtype=torch.float32, device=self.device)
            self._grid = torch.empty((rows, n), dtype=torch.int16, device=self.device)
        return self._sims[:rows], self._up[:rows], self._grid[:rows]


def _bound_gains(dev: _Device, rows, cover_real32: np.ndarray, keep=None) -> np.ndarray:
    """Upper bounds (cosine units, float64) of the gains of ``rows`` from a float32 pass (a torch matmul).

    float32 dot products of the (exactly representable) quantised rows are within γ_d of the exact value
    (any summation order, so any BLAS, thread count or GPU kernel; TF32 is switched off for it); the float32
    cover and the subtraction add a few more unit roundoffs. Each term gets that margin, the float64 row sum
    a relative one, so bound ≥ exact gain always. ``keep(rows, up)`` receives the rows' similarity upper
    bounds on the 2^-14 grid (int16) for the row cache.
    """
    torch, qz = dev.torch, dev.qz
    d = qz.q32.shape[1]
    gamma = d * _U32 / (1 - d * _U32)
    eps = float(np.float32(1.01 * gamma + 8 * _U32))
    idx = torch.as_tensor(np.atleast_1d(np.arange(qz.q32.shape[0])[rows]), device=dev.device)
    sims, up, grid = dev.buffers(idx.shape[0])
    with _fp32_matmul(torch):
        torch.matmul(dev.q32[idx], dev.q32.T, out=sims)  # ≈ integer sims · 2^(2b), float32, (rows, n)
    sims *= float(qz.scale)  # exact power-of-two scaling (no underflow: |sims| ≥ 2^-49 or 0)
    sims += eps  # from here on: the similarity plus its margin, ≥ the exact similarity
    if keep is not None:  # ceil((s + ε) · 2^14 + 10^-3): ≥ the exact similarity on the grid
        torch.mul(sims, float(2 ** _GRID_BITS), out=up)
        up += 1e-3  # covers the rounding of this addition (≤ 2^14 · u < 10^-3)
        up.ceil_()
        grid.copy_(up)
        keep(rows, grid.cpu().numpy())
    if cover_real32.any():  # s + ε − cover: ε also covers the cover's and the subtraction's rounding
        sims -= torch.from_numpy(cover_real32).to(dev.device)[None, :]
    sims.clamp_(min=0)
    return _row_sums(torch, sims) * (1 + 1e-9) + 1e-12


_SUM_CHUNK = 256  # float32 partial sums of this many terms, then a float64 sum of the partials


def _row_sums(torch, x) -> np.ndarray:
    """Upper bounds of the exact row sums of ``x`` (float32, ≥ 0), float64: chunks of 256 are summed in
    float32 (relative error ≤ γ_255 < 1.6e-5 for non-negative terms, any order) and scaled up by that, the
    partials summed in float64 (converting the whole block to float64 costs more than the matmul)."""
    B, n = x.shape
    m = n // _SUM_CHUNK * _SUM_CHUNK
    head = x[:, :m].reshape(B, -1, _SUM_CHUNK).sum(dim=2).sum(dim=1, dtype=torch.float64)
    gamma = (_SUM_CHUNK - 1) * _U32 / (1 - (_SUM_CHUNK - 1) * _U32)
    total = head * (1 + gamma)
    if m < n:
        total += x[:, m:].sum(dim=1, dtype=torch.float64)
    return total.cpu().numpy()


class _fp32_matmul:
    """Full float32 matmuls (no TF32 / bf16 shortcuts) inside the block, the setting restored after."""

    def __init__(self, torch):
        self.torch = torch

    def __enter__(self):
        self.before = self.torch.get_float32_matmul_precision()
        if self.before != "highest":
            self.torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc):
        if self.before != "highest":
            self.torch.set_float32_matmul_precision(self.before)


class _RowCache:
    """Similarity upper bounds of whole rows on the 2^-14 grid (int16), FIFO up to ``max_bytes``: a cached
    candidate's bound is an elementwise pass over n int16 instead of an n × d product."""

    def __init__(self, n: int, max_bytes: int = 1 << 30):
        self.cap = int(min(n, max_bytes // (2 * n)))
        self.rows = np.empty((self.cap, n), dtype=np.int16)
        self.slot_of = np.full(n, -1, dtype=np.int64)
        self.owner = np.full(self.cap, -1, dtype=np.int64)
        self.next = 0

    def put(self, rows, up: np.ndarray) -> None:
        """Cache the rows not cached yet (FIFO: the oldest slots are reused), in vectorised steps. Rows
        cached when the call starts keep their slot (this call's new rows may evict them)."""
        if self.cap == 0:
            return
        ids = np.atleast_1d(np.arange(len(self.slot_of))[rows])
        new = np.flatnonzero(self.slot_of[ids] < 0)
        start, total = self.next, new.size
        if new.size > self.cap:  # only the last cap rows survive the FIFO, in the slots they would reach
            start, new = (start + new.size - self.cap) % self.cap, new[-self.cap:]
        if new.size == 0:
            return
        slots = (start + np.arange(new.size)) % self.cap
        old = self.owner[slots]
        self.slot_of[old[old >= 0]] = -1
        self.rows[slots] = up[new]
        self.owner[slots] = ids[new]
        self.slot_of[ids[new]] = slots
        self.next = int((self.next + total) % self.cap)

    def bounds(self, idx: list[int], cover_down: np.ndarray) -> np.ndarray:
        """Σ_v max(up[i, v] − floor(cover_v), 0) · 2^-14 ≥ the exact gains (cosine units), for cached ``idx``."""
        block = self.rows[self.slot_of[idx]]
        total = np.maximum(block, cover_down[None, :]).sum(axis=1, dtype=np.int64) - cover_down.sum(dtype=np.int64)
        return total.astype(np.float64) * 2.0 ** -_GRID_BITS * (1 + 1e-12) + 1e-12


# -- greedy QDIT ----------------------------------------------------------------------------------------------

@dataclass
class QditResult:
    """A greedy selection, in pick order: ``indices``; ``gains`` = F(A ∪ {a}) − F(A) at pick time (cosine
    units); ``quality`` = q(a) (the scaled quality used); ``scores`` = the objective value that won;
    ``evaluations`` = exact gain evaluations done (the naive greedy does n per pick)."""
    indices: list[int] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    evaluations: int = 0
    bound_evaluations: int = 0
    epsilon: float | None = None  # None: the exact greedy; else the stochastic greedy's ε (approximate)
    seed: int | None = None  # the stochastic greedy's sampling seed

    @property
    def approximate(self) -> bool:
        return self.epsilon is not None


def qdit_select_naive(embeddings, quality, k: int, alpha: float, *, epsilon: float | None = None,
                      seed: int = 0) -> QditResult:
    """The plain dense greedy: an n × n similarity matrix, every gain recomputed at every pick.
    O(n²) memory; for tests and the benchmark. Same definitions and arithmetic as :func:`qdit_select`.
    With ``epsilon``, each pick is the best of the stochastic greedy's sample (the same draws)."""
    e, q = _check(embeddings, quality, k, alpha)
    draws = _Draws(e.shape[0], k, epsilon, seed)
    qz = _quantise(e)
    n = e.shape[0]
    sims = _exact_sims(qz, slice(None))  # (n, n)
    cover = np.zeros(n, dtype=np.int64)
    taken = draws.taken
    out = QditResult(epsilon=epsilon, seed=seed if epsilon is not None else None)
    for _ in range(k):
        if epsilon is None:
            gains = _exact_gains(sims, cover)
            scores = _score(gains, q, float(alpha), qz.scale)
            scores[taken] = -np.inf
            a = int(np.argmax(scores))  # first maximum: ties to the lowest index
            out.evaluations += n
        else:
            sample = draws.draw()  # sorted: the first maximum is the lowest index
            gains = np.zeros(n, dtype=np.int64)
            gains[sample] = _exact_gains(sims[sample], cover)
            scores = np.full(n, -np.inf)
            scores[sample] = _score(gains[sample], q[sample], float(alpha), qz.scale)
            a = int(sample[int(np.argmax(scores[sample]))])
            out.evaluations += sample.size
        out.indices.append(a); out.gains.append(float(gains[a]) * qz.scale)
        out.quality.append(float(q[a])); out.scores.append(float(scores[a]))
        taken[a] = True
        np.maximum(cover, sims[a], out=cover)
    return out


def qdit_naive(embeddings, quality, k: int, alpha: float) -> list[int]:
    """Indices picked by :func:`qdit_select_naive`."""
    return qdit_select_naive(embeddings, quality, k, alpha).indices


def qdit_select(embeddings, quality, k: int, alpha: float, *, batch: int = 32,
                cache_bytes: int = 1 << 30, device: str = "auto", epsilon: float | None = None,
                seed: int = 0) -> QditResult:
    """Greedy QDIT by lazy greedy over blocked similarities; equals :func:`qdit_select_naive` exactly.

    ``embeddings``: (n, d) array (rows are normalised here); ``quality``: (n,) in [0, 1] or None (zeros:
    pure diversity); ``k``: 1 … n; ``alpha`` ∈ [0, 1]. Raises SelectionError on bad input (empty pool,
    k out of range, alpha outside [0, 1], NaN or unscaled quality, non-finite or zero embeddings, ε outside
    (0, 1)). ``device``: where the similarity blocks are multiplied: ``"auto"`` (CUDA when present, else the
    CPU), ``"cpu"`` or ``"cuda"``; the sequence is the same on every device.

    ``epsilon``: None (default) is the exact greedy. A number in (0, 1) is the APPROXIMATE stochastic greedy
    of Mirzasoleiman et al. 2015 ("Lazier than lazy greedy"): each pick is the best of a random sample of
    ⌈(n / k) · ln(1 / ε)⌉ candidates not taken yet (drawn with ``seed``), which in expectation reaches
    (1 − 1/e − ε) of the optimum instead of the exact greedy's (1 − 1/e). It is still exact *within* each
    sample (the same lazy bounds, the same result as :func:`qdit_select_naive` with the same ε and seed),
    and costs about one similarity pass over the pool instead of the exact greedy's several.
    """
    e, q = _check(embeddings, quality, k, alpha)
    draws = _Draws(e.shape[0], k, epsilon, seed)
    alpha = float(alpha)
    qz = _quantise(e)
    dev = _Device(qz, device)
    (n, d), e = e.shape, None  # from here on only the integer copies are used
    rows_per_block = max(1, min(n, _BLOCK_ELEMENTS // n))
    out = QditResult(epsilon=epsilon, seed=seed if epsilon is not None else None)
    cache = _RowCache(n, max_bytes=cache_bytes)
    g = _Greedy(dev, q, alpha, batch, out, rows_per_block, cache)

    # small products (pool ≲ 20,000 × 384): BLAS threads only add synchronisation; large ones keep them
    with threadpool_limits(limits=1 if n * d < 8_000_000 else None, user_api="blas"):
        if epsilon is None:
            heap = g.initial_heap()
            for pick in range(k):
                g.take(*g.best(heap, pick))
        else:
            # a sample's stale keys are refreshed 16 at a time from the start: on the CPU a pass over the
            # pool's rows costs about as much for 1 row as for 16 (memory-bound), and most picks refresh more
            g.first_round = min(16, batch)
            for pick in range(k):
                sample = draws.draw()
                g.refresh_new(sample, pick)
                heap = [(-float(g.keys[i]), int(i)) for i in sample]
                heapq.heapify(heap)
                a = g.take(*g.best(heap, pick))
                draws.taken[a] = True
    return out


class _Draws:
    """The random samples of the stochastic greedy (Mirzasoleiman et al. 2015): each pick draws
    ⌈(n / k) · ln(1 / ε)⌉ of the candidates not taken yet (all of them once fewer remain), without replacement,
    sorted, from ``numpy.random.default_rng(seed)``; both greedies draw through this, so they see the same
    samples. With ε None, ``draw()`` is every candidate not taken (the exact greedy)."""

    def __init__(self, n: int, k: int, epsilon: float | None, seed: int):
        if epsilon is not None:
            if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) \
                    or not 0.0 < float(epsilon) < 1.0:
                raise SelectionError(f"epsilon must be in (0, 1) for the stochastic greedy (e.g. 0.01); got "
                                     f"{epsilon!r}. Leave it out for the exact greedy.")
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise SelectionError(f"seed must be an integer; got {seed!r}")
        self.size = n if epsilon is None else max(1, math.ceil(n / k * math.log(1.0 / float(epsilon))))
        self.rng = np.random.default_rng(seed)
        self.taken = np.zeros(n, dtype=bool)

    def draw(self) -> np.ndarray:
        remaining = np.flatnonzero(~self.taken)
        if remaining.size <= self.size:
            return remaining
        return np.sort(remaining[self.rng.choice(remaining.size, self.size, replace=False)])


class _Greedy:
    """The state of one lazy greedy run over the integer similarities: per candidate its last key (an upper
    bound of its score, or its exact score), the pick that key was computed at and whether it is exact; the
    coverage in exact integers and in the float32 / grid copies the bounds use."""

    def __init__(self, dev: _Device, q: np.ndarray, alpha: float, batch: int, out: QditResult,
                 rows_per_block: int, cache: _RowCache):
        n = q.shape[0]
        self.dev, self.qz, self.q, self.alpha, self.out, self.cache = dev, dev.qz, q, alpha, out, cache
        self.batch, self.rows_per_block = batch, rows_per_block
        self.exact_batch = max(1, min(batch, rows_per_block))
        self.keys = np.full(n, np.inf)  # the key each candidate was last pushed with (+inf: never bounded)
        self.when = np.full(n, -1, dtype=np.int64)  # the pick its key was computed at (-1: never)
        self.exact = np.zeros(n, dtype=bool)
        self.exact_gain = np.zeros(n, dtype=np.int64)
        self.cover = np.zeros(n, dtype=np.int64)
        self.cover32 = np.zeros(n, dtype=np.float32)
        self.cover_down = np.zeros(n, dtype=np.int16)  # floor(cover) on the 2^-14 grid
        self.shift = 2 * self.qz.bits - _GRID_BITS
        self.best_found = None  # lowest (−score, index) evaluated exactly in this pick: (key, columns, sims)
        self.first_round = 1  # entries refreshed in a pick's first round (16 for the stochastic greedy)

    def _bounds(self, rows: np.ndarray, pick: int, keep) -> None:
        """Float32-pass bounds of ``rows`` against the current coverage, in blocks; they become their keys."""
        for start in range(0, rows.size, self.rows_per_block):
            part = rows[start:start + self.rows_per_block]
            self.keys[part] = _score(_bound_gains(self.dev, part, self.cover32, keep), self.q[part], self.alpha, 1.0)
            self.when[part], self.exact[part] = pick, False
        self.out.bound_evaluations += rows.size

    def initial_heap(self) -> list:
        """Bounds of every candidate for the empty selection (one blocked pass, caching what fits) as a heap."""
        n, cache = self.q.shape[0], self.cache
        self._bounds(np.arange(n), 0, cache.put if cache.cap == n else None)
        if 0 < cache.cap < n:  # warm the cache with the rows of the best initial bounds (cap / n of a pass)
            top = np.sort(np.argsort(-self.keys, kind="stable")[:cache.cap])
            for start in range(0, top.size, self.rows_per_block):
                _bound_gains(self.dev, top[start:start + self.rows_per_block], self.cover32, cache.put)
        heap = [(-float(self.keys[i]), i) for i in range(n)]
        heapq.heapify(heap)
        return heap

    def refresh_new(self, rows: np.ndarray, pick: int) -> None:
        """Bound the ``rows`` that were never bounded, together (one blocked pass, not many small ones)."""
        new = rows[self.when[rows] < 0]
        if new.size:
            self._bounds(new, pick, self.cache.put)

    def _push(self, heap: list, i: int, key: float) -> None:
        self.keys[i] = key
        heapq.heappush(heap, (-key, i))

    def best(self, heap: list, pick: int) -> tuple[int, float]:
        """Pop until the top of ``heap`` is an exact score computed against the current selection; pops and
        returns it (index, score). Keys are refreshed in rounds of 1, 2, 4 … ``batch`` entries: cheap when the
        top holds, amortised when it does not."""
        qz, cache, q, alpha, out = self.qz, self.cache, self.q, self.alpha, self.out
        when, exact = self.when, self.exact
        size = self.first_round
        while True:
            top_key, top = heap[0]
            if when[top] == pick and exact[top]:
                break
            stale, to_exact = [], []
            while heap and len(stale) + len(to_exact) < size:
                _, i = heap[0]
                if when[i] == pick and exact[i]:
                    break
                heapq.heappop(heap)
                (to_exact if when[i] == pick else stale).append(i)
            if stale:  # bounds against the current coverage: from cached rows, else a float32 pass
                hit = [i for i in stale if cache.slot_of[i] >= 0]
                miss = [i for i in stale if cache.slot_of[i] < 0]
                for part, b in ((hit, cache.bounds(hit, self.cover_down) if hit else None),
                                (miss, _bound_gains(self.dev, np.array(miss), self.cover32, cache.put)
                                 if miss else None)):
                    if not part:
                        continue
                    out.bound_evaluations += len(part)
                    for i, key in zip(part, _score(b, q[part], alpha, 1.0)):
                        when[i], exact[i] = pick, False
                        self._push(heap, i, float(key))
            # exact integer gains: a cached candidate only over the columns its bound row says can gain
            # (up > floor(cover) there; elsewhere sim ≤ cover adds 0), others over whole rows
            found: list[tuple[int, int, np.ndarray | None, np.ndarray]] = []  # (i, gain, columns, sims)
            for i in [i for i in to_exact if cache.slot_of[i] >= 0]:
                cols = np.flatnonzero(cache.rows[cache.slot_of[i]] > self.cover_down)
                sims = (qz.q64[cols] @ qz.q64[i]).astype(np.int64)
                found.append((i, int(np.maximum(sims - self.cover[cols], 0).sum()), cols, sims))
            full = [i for i in to_exact if cache.slot_of[i] < 0]
            for s in range(0, len(full), self.exact_batch):
                part = full[s:s + self.exact_batch]
                sims = _exact_sims(qz, part)
                gains = _exact_gains(sims, self.cover)
                found.extend((i, int(gains[j]), None, sims[j]) for j, i in enumerate(part))
            out.evaluations += len(found)
            for (i, g, cols, sims), key in zip(found, _score(np.array([f[1] for f in found], dtype=np.int64),
                                                             q[[f[0] for f in found]], alpha, qz.scale)):
                when[i], exact[i], self.exact_gain[i] = pick, True, g
                self._push(heap, i, float(key))
                if self.best_found is None or (-float(key), i) < self.best_found[0]:
                    self.best_found = ((-float(key), i), cols, sims)
            size = min(self.batch, 2 * size)
        _, a = heapq.heappop(heap)
        assert self.best_found is not None and self.best_found[0][1] == a  # the top is this pick's best
        return a, -top_key

    def take(self, a: int, score: float) -> int:
        """Add ``a`` to the selection (its record in ``out``) and update the coverage; returns ``a``."""
        out, qz = self.out, self.qz
        out.indices.append(a); out.gains.append(float(self.exact_gain[a]) * qz.scale)
        out.quality.append(float(self.q[a])); out.scores.append(score)
        _, cols, sims = self.best_found
        if cols is None:
            np.maximum(self.cover, sims, out=self.cover)
        else:
            self.cover[cols] = np.maximum(self.cover[cols], sims)
        self.cover32 = (self.cover.astype(np.float64) * qz.scale).astype(np.float32)
        self.cover_down = (self.cover >> self.shift).astype(np.int16)
        self.best_found = None
        return a


def qdit(embeddings, quality, k: int, alpha: float) -> list[int]:
    """Indices of the greedy QDIT selection, in pick order (see :func:`qdit_select`)."""
    return qdit_select(embeddings, quality, k, alpha).indices


# -- measures for reports and the app ----------------------------------------------------------------------

def _blocks(n: int, m: int):
    rows = max(1, _BLOCK_ELEMENTS // max(1, m))
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))


def facility_location(embeddings, indices: Sequence[int]) -> float:
    """F(A) = Σ_v max(0, max_{a ∈ A} cos(a, v)) over the whole pool (0 for an empty A), blocked."""
    e = normalise_rows(embeddings)
    idx = np.asarray(list(indices), dtype=np.int64)
    if idx.size == 0:
        return 0.0
    cover = np.zeros(e.shape[0])
    for blk in _blocks(idx.size, e.shape[0]):
        np.maximum(cover, (e[idx[blk]] @ e.T).max(axis=0), out=cover)
    return float(cover.sum())


def _mean_pairwise(e: np.ndarray, idx: np.ndarray) -> float | None:
    """Mean cosine over the distinct pairs of the selection (lower = more spread out)."""
    k = idx.size
    if k < 2:
        return None
    sel = e[idx]
    total = sum(float((sel[blk] @ sel.T).sum()) for blk in _blocks(k, k))
    return (total - float((sel * sel).sum())) / (k * (k - 1))


def selection_report(embeddings, quality, indices: Sequence[int], *, seed: int = 0) -> dict:
    """The selection against two baselines of the same size: a random sample (``seed``) and the top-k by
    quality (ties to the lowest index). Per method: mean_quality (of the scaled quality; None without one),
    coverage = F(A) / n (mean over the pool of the clipped cosine to the nearest selected member: higher =
    the pool is better represented) and mean_pairwise (mean cosine within the selection: lower = more
    diverse). Returns {"n", "k", "rows": [{"method", "mean_quality", "coverage", "mean_pairwise"}, ...]}."""
    e = normalise_rows(embeddings)
    n, idx = e.shape[0], np.asarray(list(indices), dtype=np.int64)
    k = idx.size
    if k == 0 or k > n:
        raise SelectionError(f"a report needs between 1 and {n} selected indices; got {k}")
    q = None if quality is None else np.asarray(quality, dtype=np.float64)
    methods = {"qdit": idx, "random": np.random.default_rng(seed).choice(n, size=k, replace=False)}
    if q is not None:
        methods["quality-only"] = np.argsort(-q, kind="stable")[:k]
    rows = []
    for method, sel in methods.items():
        rows.append({"method": method, "mean_quality": None if q is None else float(q[sel].mean()),
                     "coverage": facility_location(e, sel) / n, "mean_pairwise": _mean_pairwise(e, sel)})
    return {"n": n, "k": k, "rows": rows}


def pca_2d(embeddings) -> np.ndarray:
    """(n, 2) coordinates on the two principal axes of the (centred) embeddings, for the 2-D map.
    Deterministic: each axis is signed so that its largest loading is positive."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise SelectionError(f"pca_2d needs a non-empty (n, d) array; got shape {x.shape}")
    x = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
    axes = vecs[:, ::-1][:, :2]
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((axes.shape[0], 2 - axes.shape[1]))])
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), range(2)])
    signs[signs == 0] = 1
    return x @ (axes * signs)


# -- near-duplicates ---------------------------------------------------------------------------------------

@dataclass
class DuplicateGroup:
    """Pool indices whose instructions are near-duplicates (connected by cosine ≥ threshold), ascending;
    ``keep``: the best-scored member (ties and no quality: the lowest index)."""
    members: list[int]
    keep: int


def _dup_threshold(qz: _Quantised, threshold: float) -> int:
    return math.ceil(threshold * 2.0 ** (2 * qz.bits))  # exact: power-of-two scaling


def _groups(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray, quality) -> list[DuplicateGroup]:
    """Connected components (union-find) of the pairs; singletons left out; ordered by first member."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for a, b in zip(pairs_i.tolist(), pairs_j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for a in sorted(set(pairs_i.tolist()) | set(pairs_j.tolist())):
        comps.setdefault(find(a), []).append(a)
    q = None if quality is None else np.nan_to_num(np.asarray(quality, dtype=np.float64), nan=-np.inf)
    out = []
    for members in sorted(comps.values()):
        keep = members[0] if q is None else max(members, key=lambda m: (q[m], -m))
        out.append(DuplicateGroup(members, keep))
    return out


def _check_dups(embeddings, threshold: float) -> np.ndarray:
    e = normalise_rows(embeddings)
    if not isinstance(threshold, (int, float, np.floating)) or not (0.0 < float(threshold) <= 1.0):
        raise SelectionError(f"the near-duplicate threshold is a cosine in (0, 1]; got {threshold!r} "
                             "(0.95 is a good start)")
    return e


def near_duplicates(embeddings, threshold: float = 0.95, quality=None) -> list[DuplicateGroup]:
    """Groups of near-duplicates: components of the graph "cos(a, b) ≥ threshold", blocked (a float32 pass
    with a rounding margin finds candidate pairs; each is confirmed on the exact integer similarities that
    :func:`near_duplicates_naive` uses). ``quality`` (raw or scaled; NaN = worst) picks the member to keep.
    Raises SelectionError for a threshold outside (0, 1] or bad embeddings."""
    e = _check_dups(embeddings, threshold)
    n = e.shape[0]
    if n < 2:
        return []
    qz = _quantise(e)
    t_int = _dup_threshold(qz, float(threshold))
    d = qz.q32.shape[1]
    margin = np.float32((1.01 * d * _U32 / (1 - d * _U32) + 4 * _U32) * 2.0 ** (2 * qz.bits))
    found_i, found_j = [], []
    for blk in _blocks(n, n):
        sims = qz.q32[blk] @ qz.q32.T  # ≈ integer similarities (float32)
        ii, jj = np.nonzero(sims >= np.float32(t_int) - margin)
        ii += blk.start
        upper = jj > ii
        ii, jj = ii[upper], jj[upper]
        if ii.size:
            exact = np.einsum("ij,ij->i", qz.q64[ii], qz.q64[jj]).astype(np.int64)  # exact integers
            keep = exact >= t_int
            found_i.append(ii[keep]); found_j.append(jj[keep])
    if not found_i:
        return []
    return _groups(n, np.concatenate(found_i), np.concatenate(found_j), quality)


def near_duplicates_naive(embeddings, threshold: float = 0.95, quality=None) -> list[DuplicateGroup]:
    """The plain O(n²) twin of :func:`near_duplicates`: the dense exact similarity matrix, every pair."""
    e = _check_dups(embeddings, threshold)
    n = e.shape[0]
    if n < 2:
        return []
    qz = _quantise(e)
    sims = _exact_sims(qz, slice(None))
    ii, jj = np.nonzero(np.triu(sims >= _dup_threshold(qz, float(threshold)), k=1))
    return _groups(n, ii, jj, quality)


# -- over the store: pool, cached embeddings, named selections ---------------------------------------------

QUALITY_HELP = ("consensus (default; PROXY: consensus agreement of the chosen output, its mean Rouge-L to the "
                "other outputs), consensus:min_pairwise (PROXY), SCORER:NAME (a scores-table row of the "
                "candidate or of its chosen output, e.g. from `curate score`), or none (pure diversity)")


@dataclass
class Pool:
    """Candidates a selection draws from (store order): ids, embedded texts, raw quality (NaN = missing)."""
    ids: list[str]
    texts: list[str]
    quality: np.ndarray
    quality_label: str
    source: str
    rows: list[dict]


def parse_quality(spec: str | None) -> tuple[str, str | None, str | None]:
    """``--quality`` → (kind, scorer, name) for Store.selection_pool. SCORER:NAME splits on the last colon
    (scorer names may contain colons, e.g. ``rm:some/model:reward``)."""
    spec = (spec or "consensus").strip()
    if spec in ("consensus", "consensus:agreement"):
        return "consensus", None, None
    if spec == "consensus:min_pairwise":
        return "min_pairwise", None, None
    if spec == "none":
        return "none", None, None
    scorer, sep, name = spec.rpartition(":")
    if not sep or not scorer or not name:
        raise SelectionError(f"unknown quality {spec!r}: use {QUALITY_HELP}")
    return "score", scorer, name


def load_pool(store, source: str = "passing", *, tau: float = 0.01, quality: str | None = "consensus") -> Pool:
    """The pool of ``source`` (accepted / passing / all) with its quality (see :data:`QUALITY_HELP`).
    Raises SelectionError when the pool is empty (naming how to fill it)."""
    kind, scorer, name = parse_quality(quality)
    if source not in store.SELECTION_SOURCES:
        raise SelectionError(f"unknown pool {source!r}: use one of {', '.join(store.SELECTION_SOURCES)}")
    try:
        tau = checks.tau(tau, "the selection pool")
    except InputError as e:
        raise SelectionError(str(e)) from None
    rows = store.selection_pool(source, tau=tau, quality=kind, scorer=scorer, name=name)
    if not rows:
        fix = {"accepted": "accept some candidates in the app, or use --from passing / all",
               "passing": f"run `curate ensemble` first, lower --tau (now {tau}), or use --from all",
               "all": "run `curate generate` first"}[source]
        raise SelectionError(f"the pool --from {source} is empty in {store.path}: {fix}.")
    label = {"consensus": "consensus agreement of the chosen output (PROXY)",
             "min_pairwise": "consensus min pairwise Rouge-L (PROXY)", "none": "none (pure diversity)",
             "score": f"{scorer}:{name}"}[kind]
    q = np.array([np.nan if r["quality"] is None else r["quality"] for r in rows], dtype=np.float64)
    return Pool([r["id"] for r in rows], [embedding_text(r["instruction"], r["input"]) for r in rows], q,
                label, source, rows)


def scaled_quality(store, pool: Pool) -> np.ndarray:
    """The pool's quality min-max scaled to [0, 1]. Raises SelectionError when some are missing."""
    missing = np.isnan(pool.quality)
    if missing.any():
        avail = ", ".join(store.quality_sources()) or "none"
        raise SelectionError(
            f"{int(missing.sum())} of {len(pool.ids)} candidates have no quality '{pool.quality_label}' "
            f"(first: {pool.ids[int(np.argmax(missing))][:12]}). Score them first, pick another --quality "
            f"(scores in the store: {avail}; or consensus / none), or narrow the pool (--from passing).")
    return minmax_scale(pool.quality)


def embedder_key(model: str) -> str:
    """The name embeddings are cached under: the embedded model's name, a local folder's resolved path, or
    the Hugging Face id as given."""
    from pathlib import Path

    from .lm.registry import EMBEDDED
    spec = EMBEDDED.get(model) or EMBEDDED.get(model.lower())
    if spec is not None:
        if spec.role != "embedding":
            names = ", ".join(s.name for s in EMBEDDED.values() if s.role == "embedding")
            raise SelectionError(f"{model!r} is a language model, not an embedding model; use one of {names}")
        return spec.name
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _text_hash(text: str) -> str:
    import hashlib
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def embed_pool(store, pool: Pool, model: str | None = None, *, embedder=None, compute: bool = True,
               batch_size: int = 64, progress=None, engine=None) -> tuple[np.ndarray, dict]:
    """(n, d) float32 normalised embeddings of the pool's texts, from the store's cache; the missing ones
    (new candidates, or edited since they were embedded) are computed with ``embedder`` (default: loaded
    with :func:`curate.lm.registry.load_embedder`) and cached. ``compute=False`` raises SelectionError
    instead of computing. ``progress(done, total)`` is called after each stored chunk. ``engine``
    (:mod:`curate.engine`; default: this process) runs the embedding calls, several chunks in flight on Ray.
    Returns (embeddings, {"cached": …, "computed": …, "model": key})."""
    from .lm.registry import DEFAULT_EMBEDDER
    key = embedder_key(model or DEFAULT_EMBEDDER)
    hashes = [_text_hash(t) for t in pool.texts]
    cached = store.embeddings_for(key, list(zip(pool.ids, hashes)))
    missing = [i for i, cid in enumerate(pool.ids) if cid not in cached]
    if missing and not compute:
        raise NotEmbedded(f"{len(missing)} of {len(pool.ids)} candidates have no '{key}' embedding of their "
                          f"current text: run `curate embed --model {model or DEFAULT_EMBEDDER} "
                          f"--from {pool.source}` first.", missing=len(missing), total=len(pool.ids),
                          model=model or DEFAULT_EMBEDDER, source=pool.source)
    if missing:
        from .engine import LocalEngine, ordered
        name = model or DEFAULT_EMBEDDER
        if engine is None:
            engine = LocalEngine(None, embedders={name: embedder} if embedder is not None else None)
        chunk = max(batch_size, 512)
        starts = iter(range(0, len(missing), chunk))

        def next_job(in_flight: int):
            start = next(starts, None)
            if start is None:
                return None
            part = missing[start:start + chunk]
            return (start, part), lambda: engine.submit_encode(name, [pool.texts[i] for i in part], batch_size)

        for (start, part), call in ordered(engine, next_job):
            vecs = call.result()
            store.save_embeddings(key, [{"candidate_id": pool.ids[i], "text_hash": hashes[i],
                                         "dim": vecs.shape[1], "vector": vecs[j].tobytes()}
                                        for j, i in enumerate(part)])
            for j, i in enumerate(part):
                cached[pool.ids[i]] = (vecs.shape[1], vecs[j].tobytes())
            if progress:
                progress(min(start + chunk, len(missing)), len(missing))
    dims = {cached[cid][0] for cid in pool.ids}
    if len(dims) != 1:
        raise SelectionError(f"cached '{key}' embeddings have mixed sizes {sorted(dims)}: the model changed "
                             "under the same name; embed with another --model name.")
    e = np.stack([np.frombuffer(cached[cid][1], dtype="<f4") for cid in pool.ids])
    return e, {"cached": len(pool.ids) - len(missing), "computed": len(missing), "model": key}


@dataclass
class SelectionRun:
    """What :func:`run_selection` did: the stored name, the pool, the greedy result (indices into the pool),
    the report against the baselines (:func:`selection_report`), the params stored with it and the pool's
    embeddings (n, d) the selection ran on."""
    name: str
    pool: Pool
    result: QditResult
    report: dict
    params: dict
    embedding_stats: dict
    embeddings: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [self.pool.ids[i] for i in self.result.indices]


def run_selection(store, *, k: int, alpha: float, source: str = "passing", tau: float = 0.01,
                  quality: str | None = "consensus", name: str = "qdit", model: str | None = None,
                  embedder=None, compute: bool = True, seed: int = 0, epsilon: float | None = None,
                  progress=None) -> SelectionRun:
    """Select ``k`` candidates of the pool by greedy QDIT, store them as the selection ``name`` (replacing
    one of that name) and report them against a random and a quality-only baseline. ``epsilon``: the
    approximate stochastic greedy (:func:`qdit_select`; its samples drawn with ``seed``), stored in the params.
    Raises SelectionError (bad k / alpha / epsilon, empty pool, missing quality or embeddings)."""
    if not name or not str(name).strip():
        raise SelectionError("a selection needs a name (--name)")
    pool = load_pool(store, source, tau=tau, quality=quality)
    q = scaled_quality(store, pool)
    # check k and alpha before embedding anything (embedding can take minutes)
    _check(np.ones((len(pool.ids), 1)), q, k, alpha)
    _Draws(len(pool.ids), k, epsilon, seed)
    e, stats = embed_pool(store, pool, model, embedder=embedder, compute=compute, progress=progress)
    result = qdit_select(e, q, k, alpha, epsilon=epsilon, seed=seed)
    params = {"k": k, "alpha": alpha, "source": source, "tau": tau, "quality": pool.quality_label,
              "model": stats["model"], "pool": len(pool.ids),
              "greedy": "exact" if epsilon is None else "stochastic (approximate)"}
    if epsilon is not None:
        params.update(epsilon=epsilon, seed=seed)
    store.save_selection(name, [{"candidate_id": pool.ids[a], "rank": r, "gain": g, "quality": qa, "score": s}
                                for r, (a, g, qa, s) in enumerate(zip(result.indices, result.gains,
                                                                      result.quality, result.scores))], params)
    report = selection_report(e, q, result.indices, seed=seed)
    return SelectionRun(name, pool, result, report, params, stats, e)


def find_duplicates(store, threshold: float = 0.95, *, source: str = "all", tau: float = 0.01,
                    quality: str | None = "consensus", model: str | None = None, embedder=None,
                    compute: bool = True) -> list[dict]:
    """Near-duplicate groups of the pool (:func:`near_duplicates`), keeping the best-scored member
    (missing quality counts as worst). Each group: {"keep": id, "members": [{id, seq, instruction, input,
    quality, keep}]}, members in store order."""
    pool = load_pool(store, source, tau=tau, quality=quality)
    e, _ = embed_pool(store, pool, model, embedder=embedder, compute=compute)
    out = []
    for g in near_duplicates(e, threshold, pool.quality):
        members = [{"id": pool.ids[m], "seq": pool.rows[m]["seq"], "instruction": pool.rows[m]["instruction"],
                    "input": pool.rows[m]["input"], "quality": pool.rows[m]["quality"], "keep": m == g.keep}
                   for m in g.members]
        out.append({"keep": pool.ids[g.keep], "members": members})
    return out
