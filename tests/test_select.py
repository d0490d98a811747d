"""QDIT selection and near-duplicates: the lazy greedy equals its dense twin exactly, the objective's
properties, the store's embedding cache and named selections, the CLI end to end, bad input."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from curate import select
from curate.cli import main
from curate.errors import SelectionError
from curate.select import (embed_pool, facility_location, find_duplicates, load_pool, minmax_scale,
                           near_duplicates, near_duplicates_naive, pca_2d, qdit, qdit_naive, qdit_select,
                           qdit_select_naive, run_selection, selection_report)
from curate.store import Store
from curate.ui.synthetic import fill


class CountingEmbedder:
    """A deterministic stand-in for a SentenceTransformer: a hash of the text → a unit vector; counts texts."""

    def __init__(self, dim: int = 24):
        self.dim, self.texts = dim, []

    def encode(self, texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True):
        self.texts.extend(texts)
        raw = np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:self.dim], dtype=np.uint8)
                        for t in texts], dtype=np.float64) - 127.5
        return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng, n, d, clusters, spread=0.5):
    centres = rng.standard_normal((clusters, d))
    return centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d))


def random_case(rng):
    n = int(rng.integers(1, 70))
    d = int(rng.integers(1, 16))
    e = clustered(rng, n, d, int(rng.integers(1, 6)), float(rng.choice([0.05, 0.5, 2.0])))
    if n > 2 and rng.random() < 0.5:  # duplicated rows force exact ties in the gains
        src = rng.integers(0, n, size=n // 2)
        e[rng.integers(0, n, size=n // 2)] = e[src]
    q = None
    if rng.random() < 0.8:
        q = rng.random(n)
        if rng.random() < 0.4:  # few distinct values: ties in quality
            q = np.round(q * 2) / 2
    k = int(rng.integers(1, n + 1))
    alpha = float(rng.choice([0.0, 1.0, rng.random(), 0.5]))
    return e, q, k, alpha


# -- the lazy greedy equals the dense greedy ----------------------------------------------------------------

def test_fast_equals_naive_on_many_random_cases():
    rng = np.random.default_rng(20261130)
    for case in range(400):
        e, q, k, alpha = random_case(rng)
        n = e.shape[0]
        cache = int(rng.choice([0, 2 * n * max(1, n // 4), 1 << 30]))  # no / partial (FIFO) / full row cache
        fast = qdit_select(e, q, k, alpha, batch=int(rng.integers(1, 40)), cache_bytes=cache)
        slow = qdit_select_naive(e, q, k, alpha)
        assert fast.indices == slow.indices, (case, e.shape, k, alpha, cache)
        assert fast.gains == slow.gains and fast.scores == slow.scores and fast.quality == slow.quality
        assert len(set(fast.indices)) == k


def test_fast_equals_naive_across_blocks_and_with_far_fewer_evaluations(monkeypatch):
    monkeypatch.setattr(select, "_BLOCK_ELEMENTS", 2000)  # many row blocks even at n = 600
    rng = np.random.default_rng(7)
    for alpha in (0.0, 0.3, 0.7, 1.0):
        e = clustered(rng, 600, 32, 12, 0.6)
        q = rng.random(600)
        slow = qdit_select_naive(e, q, 120, alpha)
        for cache in (0, 2 * 600 * 50, 1 << 30):
            fast = qdit_select(e, q, 120, alpha, cache_bytes=cache)
            assert fast.indices == slow.indices and fast.gains == slow.gains
            assert fast.evaluations < slow.evaluations / 20  # the naive one does n per pick


# -- the stochastic greedy (opt-in, approximate) ------------------------------------------------------------

def test_stochastic_fast_equals_its_naive_twin_on_many_random_cases():
    """The lazy stochastic greedy picks exactly what the dense greedy picks from the same samples."""
    rng = np.random.default_rng(20261202)
    for case in range(300):
        e, q, k, alpha = random_case(rng)
        n = e.shape[0]
        eps, seed = float(rng.choice([0.001, 0.05, 0.3, 0.9])), int(rng.integers(0, 1000))
        cache = int(rng.choice([0, 2 * n * max(1, n // 4), 1 << 30]))
        fast = qdit_select(e, q, k, alpha, epsilon=eps, seed=seed, batch=int(rng.integers(1, 40)),
                           cache_bytes=cache)
        slow = qdit_select_naive(e, q, k, alpha, epsilon=eps, seed=seed)
        assert fast.indices == slow.indices, (case, e.shape, k, alpha, eps, seed, cache)
        assert fast.gains == slow.gains and fast.scores == slow.scores and fast.quality == slow.quality
        assert len(set(fast.indices)) == k and fast.approximate and fast.epsilon == eps and fast.seed == seed


def test_stochastic_samples_are_the_papers_size_and_the_seed_decides_them(monkeypatch):
    monkeypatch.setattr(select, "_BLOCK_ELEMENTS", 3000)
    rng = np.random.default_rng(11)
    e, q = clustered(rng, 500, 16, 20, 0.7), rng.random(500)
    n, k, eps = 500, 40, 0.05
    size = math.ceil(n / k * math.log(1 / eps))  # Mirzasoleiman et al. 2015: (n / k) · ln(1 / ε)
    slow = qdit_select_naive(e, q, k, 0.5, epsilon=eps, seed=3)
    assert slow.evaluations == k * size  # the naive twin evaluates every member of every sample
    fast = qdit_select(e, q, k, 0.5, epsilon=eps, seed=3)
    assert fast.indices == slow.indices and fast.evaluations < slow.evaluations / 3  # lazy within a sample
    assert qdit_select(e, q, k, 0.5, epsilon=eps, seed=3).indices == fast.indices  # same seed, same pick
    others = {tuple(qdit_select(e, q, k, 0.5, epsilon=eps, seed=s).indices) for s in range(4, 8)}
    assert len(others | {tuple(fast.indices)}) > 1  # the seed changes the samples
    exact = qdit_select(e, q, k, 0.5)
    assert not exact.approximate and exact.epsilon is None and fast.indices != exact.indices


def test_stochastic_with_samples_as_large_as_the_pool_is_the_exact_greedy():
    rng = np.random.default_rng(12)
    e, q = clustered(rng, 60, 8, 5), rng.random(60)
    # (60 / 6) · ln(10^6) ≈ 138 ≥ 60: every draw is the whole remaining pool
    assert qdit_select(e, q, 6, 0.3, epsilon=1e-6).indices == qdit_select(e, q, 6, 0.3).indices


def test_stochastic_objective_stays_close_to_the_exact_greedy():
    """(1 − 1/e − ε) is the guarantee against the optimum; on clustered pools it is far closer to the exact
    greedy's objective than that (the bench reports the gap at 30,000 and 100,000)."""
    rng = np.random.default_rng(13)
    for trial in range(3):
        e, q = clustered(rng, 800, 24, 40, 0.8), rng.random(800)
        exact = sum(qdit_select(e, q, 60, 0.5).scores)
        approx = [sum(qdit_select(e, q, 60, 0.5, epsilon=0.01, seed=s).scores) for s in range(3)]
        assert min(approx) >= 0.9 * exact and max(approx) <= exact * (1 + 1e-9)


@pytest.mark.parametrize("eps", [0, 1, 1.5, -0.1, True, "0.1", float("nan")])
def test_stochastic_epsilon_outside_zero_one_is_refused(eps):
    e = np.eye(4)
    for fn in (qdit_select, qdit_select_naive):
        with pytest.raises(SelectionError, match=r"epsilon must be in \(0, 1\)"):
            fn(e, None, 2, 0.5, epsilon=eps)
    with pytest.raises(SelectionError, match="seed must be an integer"):
        qdit_select(e, None, 2, 0.5, epsilon=0.1, seed=1.5)


def test_qdit_returns_the_indices_of_the_select_result():
    rng = np.random.default_rng(3)
    e, q = rng.standard_normal((40, 5)), rng.random(40)
    assert qdit(e, q, 12, 0.4) == qdit_select(e, q, 12, 0.4).indices == qdit_naive(e, q, 12, 0.4)


# -- properties of the objective ----------------------------------------------------------------------------

def test_alpha_one_is_quality_order_with_ties_to_the_lowest_index():
    rng = np.random.default_rng(11)
    e = rng.standard_normal((50, 6))
    q = np.round(rng.random(50) * 4) / 4  # many ties
    expected = sorted(range(50), key=lambda i: (-q[i], i))
    for k in (1, 17, 50):
        assert qdit(e, q, k, 1.0) == expected[:k]


def test_alpha_zero_is_greedy_facility_location():
    rng = np.random.default_rng(5)
    e = clustered(rng, 60, 8, 5)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = unit @ unit.T
    picked = qdit_select(e, rng.random(60), 15, 0.0)  # quality plays no part at alpha = 0
    assert picked.indices == qdit(e, None, 15, 0.0)
    cover, total = np.zeros(60), 0.0
    for a, gain in zip(picked.indices, picked.gains):
        gains = np.maximum(sims - cover, 0).sum(axis=1)  # F(A + a) - F(A), plain float, F(empty) = 0
        assert gains[a] == pytest.approx(gains.max(), abs=1e-6) and gain == pytest.approx(gains[a], abs=1e-5)
        cover = np.maximum(cover, sims[a])
        total += gain
    assert total == pytest.approx(facility_location(e, picked.indices), abs=1e-5)
    assert all(g1 >= g2 for g1, g2 in zip(picked.gains, picked.gains[1:]))  # submodular: gains shrink


def test_negative_cosines_are_no_coverage():
    # two opposite vectors: F({a}) counts a itself (1) and not its opposite (-1 clipped to 0)
    e = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert facility_location(e, [0]) == pytest.approx(1.0)
    assert qdit_select(e, None, 1, 0.0).gains == [pytest.approx(1.0)]


def test_report_compares_with_random_and_quality_only_baselines():
    rng = np.random.default_rng(9)
    e = clustered(rng, 400, 16, 20, 0.3)
    q = rng.random(400)
    rep = selection_report(e, q, qdit(e, q, 40, 0.0), seed=1)
    rows = {r["method"]: r for r in rep["rows"]}
    assert (rep["n"], rep["k"]) == (400, 40) and set(rows) == {"qdit", "random", "quality-only"}
    assert rows["qdit"]["coverage"] > rows["random"]["coverage"]
    assert rows["qdit"]["coverage"] > rows["quality-only"]["coverage"]
    assert rows["quality-only"]["mean_quality"] == pytest.approx(np.sort(q)[-40:].mean())
    sel = e[qdit(e, q, 40, 0.0)] / np.linalg.norm(e[qdit(e, q, 40, 0.0)], axis=1, keepdims=True)
    pair = sel @ sel.T
    assert rows["qdit"]["mean_pairwise"] == pytest.approx((pair.sum() - np.trace(pair)) / (40 * 39))
    assert [r["method"] for r in selection_report(e, None, [0, 1])["rows"]] == ["qdit", "random"]


def test_minmax_scale():
    assert minmax_scale([2.0, 4.0, 3.0]).tolist() == [0.0, 1.0, 0.5]
    assert minmax_scale([5, 5]).tolist() == [0.0, 0.0]
    with pytest.raises(SelectionError, match="NaN"):
        minmax_scale([1.0, float("nan")])


def test_pca_2d_projects_on_the_principal_axes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    xy = pca_2d(x)
    assert xy.shape == (300, 2)
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(np.abs(xy), np.abs(centred @ vt[:2].T), atol=1e-8)
    assert xy[:, 0].var() > xy[:, 1].var() > 0
    assert np.array_equal(pca_2d(x), xy)  # deterministic signs


# -- near-duplicates ------------------------------------------------------------------------------------------

def test_near_duplicates_equal_the_dense_twin(monkeypatch):
    monkeypatch.setattr(select, "_BLOCK_ELEMENTS", 500)
    rng = np.random.default_rng(17)
    for _ in range(60):
        n, d = int(rng.integers(2, 80)), int(rng.integers(2, 10))
        e = clustered(rng, n, d, int(rng.integers(1, 8)), float(rng.choice([0.02, 0.2, 1.0])))
        q = rng.random(n) if rng.random() < 0.7 else None
        for t in (0.5, 0.9, 0.99, 1.0):
            assert near_duplicates(e, t, q) == near_duplicates_naive(e, t, q)


def test_near_duplicate_groups_keep_the_best_scored():
    base = np.eye(4)
    e = np.vstack([base, base[0] + 0.01 * np.array([0, 1, 0, 0]), base[0] + 0.02 * np.array([0, 0, 1, 0])])
    q = np.array([0.1, 0.5, 0.5, 0.5, 0.9, np.nan])
    (g,) = near_duplicates(e, 0.99, q)
    assert g.members == [0, 4, 5] and g.keep == 4
    assert near_duplicates(e, 0.99)[0].keep == 0  # no quality: the lowest index
    assert near_duplicates(e, 1.0) == []


# -- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "at least 1"), ({"k": -3}, "at least 1"), ({"k": 11}, "larger than the pool"),
    ({"k": 2.5}, "integer"), ({"alpha": -0.1}, r"\[0, 1\]"), ({"alpha": 1.5}, r"\[0, 1\]"),
    ({"quality": [0.5] * 9 + [float("nan")]}, "NaN"), ({"quality": [2.0] * 10}, "minmax_scale"),
    ({"quality": [0.5] * 3}, "align"),
])
def test_bad_arguments_raise_selection_errors(kwargs, match):
    args = {"embeddings": np.random.default_rng(0).standard_normal((10, 3)), "quality": None, "k": 3,
            "alpha": 0.5, **kwargs}
    for fn in (qdit, qdit_naive):
        with pytest.raises(SelectionError, match=match):
            fn(**args)


def test_bad_embeddings_and_empty_pool():
    with pytest.raises(SelectionError, match="empty"):
        qdit(np.zeros((0, 4)), None, 1, 0.5)
    with pytest.raises(SelectionError, match="all zeros"):
        qdit(np.array([[1.0, 0], [0, 0]]), None, 1, 0.5)
    with pytest.raises(SelectionError, match="NaN or infinity"):
        qdit(np.array([[1.0, np.nan]]), None, 1, 0.5)
    with pytest.raises(SelectionError, match="2-D"):
        qdit(np.ones(4), None, 1, 0.5)
    with pytest.raises(SelectionError, match=r"\(0, 1\]"):
        near_duplicates(np.eye(3), 1.5)


# -- the store: pool, embedding cache, selections ------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "curate.db")
    fill(st, 30)
    yield st
    st.close()


def test_migration_adds_the_selection_tables(store):
    assert "m003_selection" in store.applied_migrations()
    assert {"embeddings", "selections"} <= set(store.table_names())


def test_embeddings_are_cached_and_an_edited_instruction_is_re_embedded(store):
    emb = CountingEmbedder()
    pool = load_pool(store, "all", quality="none")
    e1, st1 = embed_pool(store, pool, embedder=emb)
    assert st1 == {"cached": 0, "computed": len(pool.ids), "model": "all-minilm-l6-v2"}
    e2, st2 = embed_pool(store, load_pool(store, "all", quality="none"), embedder=emb)
    assert st2["computed"] == 0 and len(emb.texts) == len(pool.ids) and np.array_equal(e1, e2)
    assert e1.dtype == np.float32 and np.allclose(np.linalg.norm(e1, axis=1), 1, atol=1e-6)
    edited = pool.ids[3]
    store.review(edited, "edit", reviewer="ann", instruction="A brand new instruction about tides.")
    pool3 = load_pool(store, "all", quality="none")
    e3, st3 = embed_pool(store, pool3, embedder=emb)
    assert st3["computed"] == 1 and emb.texts[-1] == pool3.texts[3]
    assert pool3.texts[3].startswith("A brand new instruction about tides.")
    assert not np.array_equal(e3[3], e1[3]) and np.array_equal(np.delete(e3, 3, 0), np.delete(e1, 3, 0))
    with pytest.raises(SelectionError, match="curate embed --model all-mpnet-base-v2"):
        embed_pool(store, pool3, "all-mpnet-base-v2", compute=False)


def test_embedded_text_is_instruction_then_input(store):
    pool = load_pool(store, "all", quality="none")
    row = next(r for r in pool.rows if r["input"])
    assert pool.texts[pool.rows.index(row)] == f"{row['instruction'].strip()}\n{row['input'].strip()}"
    assert select.embedding_text("Say hi.", "  ") == "Say hi."


def test_run_selection_stores_a_named_selection_and_replaces_it(store):
    emb = CountingEmbedder()
    run = run_selection(store, k=6, alpha=0.5, source="passing", embedder=emb, name="first")
    pool = load_pool(store, "passing")
    q = minmax_scale(pool.quality)
    e, _ = embed_pool(store, pool, embedder=emb)
    assert run.result.indices == qdit(e, q, 6, 0.5)  # the stored pick is the library's pick on the pool
    rows = store.get_selection("first")
    assert [r["rank"] for r in rows] == list(range(6)) and [r["candidate_id"] for r in rows] == run.ids
    assert rows[0]["params"]["alpha"] == 0.5 and rows[0]["params"]["pool"] == len(pool.ids)
    assert rows[0]["quality"] == pytest.approx(q[run.result.indices[0]])
    run_selection(store, k=3, alpha=1.0, source="passing", embedder=emb, name="first")
    assert len(store.get_selection("first")) == 3
    assert [s["name"] for s in store.list_selections()] == ["first"]
    with pytest.raises(Exception, match="no selection 'nope'.*first"):
        store.get_selection("nope")


def test_quality_from_the_scores_table(store):
    pool = load_pool(store, "all", quality="none")
    # a per-output score on the chosen output of some candidates, a candidate-level one on another
    chosen = {}
    for cid in pool.ids:
        c = store.get_consensus(cid)
        if c and c["chosen_index"] is not None:
            chosen[cid] = c["output_ids"][c["chosen_index"]]
    ids = list(chosen)
    store.set_scores([{"subject_id": chosen[cid], "scorer": "rm:x:y", "name": "reward", "value": float(i)}
                      for i, cid in enumerate(ids)])
    store.set_scores([{"subject_id": ids[0], "scorer": "rm:x:y", "name": "reward", "value": 99.0}])
    scored = load_pool(store, "all", quality="rm:x:y:reward")
    by_id = dict(zip(scored.ids, scored.quality))
    assert by_id[ids[0]] == 99.0 and by_id[ids[1]] == 1.0
    assert "rm:x:y:reward" in store.quality_sources()
    with pytest.raises(SelectionError, match="no quality 'other:reward'.*rm:x:y:reward"):
        run_selection(store, k=2, alpha=0.5, quality="other:reward", embedder=CountingEmbedder())


def test_store_level_bad_input(store, tmp_path):
    emb = CountingEmbedder()
    with pytest.raises(SelectionError, match="--from accepted is empty.*accept some"):
        run_selection(store, k=2, alpha=0.5, source="accepted", embedder=emb)
    with pytest.raises(SelectionError, match="larger than the pool"):
        run_selection(store, k=10_000, alpha=0.5, embedder=emb)
    assert emb.texts == []  # k is checked before anything is embedded
    with pytest.raises(SelectionError, match="unknown quality"):
        run_selection(store, k=2, alpha=0.5, quality="bogus", embedder=emb)
    with Store(tmp_path / "empty.db") as empty:
        with pytest.raises(SelectionError, match="curate generate"):
            run_selection(empty, k=1, alpha=0.5, source="all", embedder=emb)


def test_find_duplicates_over_the_store(tmp_path):
    with Store(tmp_path / "d.db") as st:
        same = {"instruction": "Describe the harbor at dawn.", "input": ""}
        fill(st, 12, texts={2: same, 7: same, 9: same}, rejected_every=0)
        groups = find_duplicates(st, 0.999, embedder=CountingEmbedder())
        assert len(groups) == 1
        members = groups[0]["members"]
        assert [m["seq"] for m in members] == [3, 8, 10]
        best = max(members, key=lambda m: (m["quality"], -m["seq"]))
        assert groups[0]["keep"] == best["id"] and sum(m["keep"] for m in members) == 1


# -- the CLI with the real default embedder -----------------------------------------------------------------

@pytest.mark.slow
def test_cli_select_embed_and_dups_end_to_end(tmp_path, capsys):
    db = str(tmp_path / "cli.db")
    with Store(db) as st:
        same = {"instruction": "Summarize the lecture on glaciers.", "input": "The glacier moved."}
        fill(st, 40, texts={4: same, 30: same})
        passing = st.count_passing(0.01)["passing"]
    assert main(["select", "--k", "8", "--alpha", "0.7", "--name", "pick", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "selection 'pick': 8 of" in out and f"of {passing} candidates" in out
    for method in ("qdit", "random", "quality-only"):
        assert method in out
    with Store(db) as st:
        rows = st.get_selection("pick")
        assert len(rows) == 8 and rows[0]["params"]["model"] == "all-minilm-l6-v2"
        assert st.count_embeddings("all-minilm-l6-v2") == passing
        e, _ = embed_pool(st, load_pool(st, "passing"), compute=False)
        assert e.shape == (passing, 384)
    assert main(["embed", "--from", "passing", "--db", db]) == 0
    assert f"0 embedded now, {passing} were cached" in capsys.readouterr().out
    assert main(["dups", "--threshold", "0.99", "--json", "--db", db]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert any(sorted(m["seq"] for m in g["members"]) == [5, 31] for g in groups)
    assert main(["select", "--k", "0", "--alpha", "0.7", "--db", db]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["select", "--k", "3", "--alpha", "2", "--db", db]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert main(["select", "--k", "5", "--stochastic", "0.1", "--seed", "4", "--name", "fast", "--db", db]) == 0
    assert "APPROXIMATE: stochastic greedy, epsilon=0.1, seed=4" in capsys.readouterr().out
    with Store(db) as st:
        params = st.get_selection("fast")[0]["params"]
        assert params["greedy"] == "stochastic (approximate)" and params["epsilon"] == 0.1 and params["seed"] == 4
        assert st.get_selection("pick")[0]["params"]["greedy"] == "exact"
    assert main(["select", "--k", "5", "--stochastic", "1", "--name", "fast", "--db", db]) == 2
    assert "epsilon must be in (0, 1)" in capsys.readouterr().err
    with Store(db) as st:
        assert len(st.get_selection("fast")) == 5  # the refused run left the stored selection as it was


# -- the torch bound pass and the row cache ------------------------------------------------------------------

def test_torch_bound_pass_is_an_upper_bound_and_a_tight_one():
    """The float32 torch pass (chunked float32 row sums, 300 and 1,000 columns: a partial chunk too) bounds
    the exact integer gains from above against random coverages, and by little."""
    rng = np.random.default_rng(5)
    for n in (3, 300, 1000):
        e = select.normalise_rows(clustered(rng, n, 48, 7, 0.4))
        qz = select._quantise(e)
        dev = select._Device(qz, "cpu")
        rows = np.arange(n)
        for trial in range(4):
            picked = rng.choice(n, size=min(n, trial * 5), replace=False)
            cover = np.zeros(n, dtype=np.int64)
            for a in picked:
                np.maximum(cover, select._exact_sims(qz, [a])[0], out=cover)
            exact = select._exact_gains(select._exact_sims(qz, rows), cover) * qz.scale
            cover32 = (cover.astype(np.float64) * qz.scale).astype(np.float32)
            kept = {}
            bound = select._bound_gains(dev, rows, cover32, lambda r, up: kept.update(up=up.copy()))
            assert (bound >= exact).all()
            assert (bound - exact).max() <= 1e-3 * n
            # the grid rows for the cache bound every similarity from above, by at most two grid steps
            sims = select._exact_sims(qz, rows) * qz.scale
            grid = kept["up"].astype(np.float64) * 2.0 ** -select._GRID_BITS
            assert (grid >= sims).all() and (grid - sims).max() <= 2 * 2.0 ** -select._GRID_BITS
            # the work buffers are reused: a smaller call after a bigger one gives the same bounds
            few = rows[: max(1, n // 3)]
            assert (select._bound_gains(dev, few, cover32) == bound[few]).all()


def test_row_cache_put_equals_the_plain_fifo_loop():
    """The vectorised put against the row-by-row FIFO it replaced, on random sequences of puts of rows not
    cached yet (how the greedy calls it); with cached rows among them, the cache stays consistent."""
    class PlainCache(select._RowCache):
        def put(self, rows, up):
            for i, row in zip(np.atleast_1d(np.arange(len(self.slot_of))[rows]), up):
                if self.cap == 0 or self.slot_of[i] >= 0:
                    continue
                slot = self.next
                if self.owner[slot] >= 0:
                    self.slot_of[self.owner[slot]] = -1
                self.rows[slot], self.owner[slot], self.slot_of[i] = row, i, slot
                self.next = (slot + 1) % self.cap

    rng = np.random.default_rng(11)
    for case in range(200):
        n = int(rng.integers(1, 40))
        max_bytes = int(rng.integers(0, 2 * n * n + 1))
        fast, plain = select._RowCache(n, max_bytes), PlainCache(n, max_bytes)
        last = {}
        for _ in range(int(rng.integers(1, 8))):
            free = np.flatnonzero(plain.slot_of < 0)
            if free.size == 0:
                break
            rows = np.sort(rng.choice(free, size=int(rng.integers(1, free.size + 1)), replace=False))
            up = rng.integers(-5, 5, size=(rows.size, n)).astype(np.int16)
            fast.put(rows, up)
            plain.put(rows, up)
            assert fast.next == plain.next, case
            assert (fast.slot_of == plain.slot_of).all() and (fast.owner == plain.owner).all(), case
            used = plain.owner >= 0
            assert (fast.rows[used] == plain.rows[used]).all(), case
        for _ in range(5):  # any rows, cached or not: slots and owners agree, rows hold what was put
            rows = np.sort(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
            up = rng.integers(-5, 5, size=(rows.size, n)).astype(np.int16)
            before = fast.slot_of.copy()
            fast.put(rows, up)
            for j, i in enumerate(rows):
                if before[i] < 0:
                    last[int(i)] = up[j]
            for slot, owner in enumerate(fast.owner):
                if owner >= 0:
                    assert fast.slot_of[owner] == slot
            for i, row in last.items():
                if fast.slot_of[i] >= 0:
                    assert fast.owner[fast.slot_of[i]] == i and (fast.rows[fast.slot_of[i]] == row).all(), case


def test_device_choice():
    rng = np.random.default_rng(2)
    e, q = rng.standard_normal((50, 6)), rng.random(50)
    assert qdit_select(e, q, 10, 0.5, device="cpu").indices == qdit_naive(e, q, 10, 0.5)
    with pytest.raises(SelectionError, match="'auto', 'cpu' or 'cuda'"):
        qdit_select(e, q, 10, 0.5, device="tpu")
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(SelectionError, match="no CUDA GPU"):
            qdit_select(e, q, 10, 0.5, device="cuda")
    else:
        assert qdit_select(e, q, 10, 0.5, device="cuda").indices == qdit_naive(e, q, 10, 0.5)
