"""ANN retrieval (echotune_mcp/recommend/ann.py) against the exact reference: agreement, exclusion, edges, refusals.
No timings here; speed is measured by tools/bench_recommend.py."""

import numpy as np
import pytest

from echotune_mcp.recommend.ann import MAX_OVERFETCH, ItemIndex, exact_top_k


def clustered(n, dim=32, centres=64, seed=0):
    """Item vectors around a few taste centres (like ALS factors), and queries drawn the same way."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    items = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    queries = c[rng.integers(0, centres, 50)] + 0.5 * rng.standard_normal((50, dim)).astype(np.float32)
    return items, queries


@pytest.fixture(scope="module")
def data():
    items, queries = clustered(4000)
    return items, queries, ItemIndex(items, backend="ann")


def test_ann_agrees_with_exact_top_k(data):
    items, queries, index = data
    assert index.backend == "ann"
    ref, _ = exact_top_k(items, queries, 20)
    recall = []
    for q, r in zip(queries, ref):
        res = index.search(q, 20)
        assert res.path == "ann" and res.items.size == 20
        np.testing.assert_allclose(res.scores, items[res.items] @ q, rtol=1e-5)  # true scores, best first
        assert (np.diff(res.scores) <= 0).all()
        recall.append(len(set(res.items.tolist()) & set(r.tolist())) / 20)
    assert np.mean(recall) >= 0.95


def test_exact_path_matches_a_full_sort():
    items, queries = clustered(3000, seed=1)
    index = ItemIndex(items)  # small catalogue: auto picks exact
    assert index.backend == "exact"
    for q in queries[:10]:
        res = index.search(q, 15)
        full = np.argsort(-(items @ q), kind="stable")[:15]
        assert res.items.tolist() == full.tolist()
    # chunked batch path agrees with one big matmul
    got, _ = exact_top_k(items, queries, 10)
    want = np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :10]
    assert (got == want).all()


def test_known_items_excluded_on_both_paths(data):
    items, queries, index = data
    exact_index = ItemIndex(items, backend="exact")
    q = queries[0]
    top = exact_index.search(q, 50).items
    known = top[:30]  # the user's best 30 are already known
    for idx in (index, exact_index):
        res = idx.search(q, 20, exclude=known)
        assert res.items.size == 20
        assert not set(res.items.tolist()) & set(known.tolist())
    assert set(index.search(q, 20, exclude=known).items.tolist()) & set(top[30:].tolist())


def test_more_known_items_than_the_overfetch_bound_falls_back_to_exact():
    items, queries = clustered(MAX_OVERFETCH + 1000, seed=4)
    index = ItemIndex(items, backend="ann")
    known = np.arange(0, MAX_OVERFETCH + 10)  # more than the over-fetch bound
    res = index.search(queries[0], 20, exclude=known)
    assert res.path == "exact"
    assert res.items.size == 20 and res.items.min() >= MAX_OVERFETCH + 10
    assert res.items.tolist() == exact_top_k(items, queries[:1], 20, [known])[0][0].tolist()
    assert index.search(queries[0], 20, exclude=known[:100]).path == "ann"


def test_k_larger_than_catalogue_returns_every_unknown_item():
    items, queries = clustered(30, seed=2)
    for backend in ("exact", "ann"):
        index = ItemIndex(items, backend=backend)
        res = index.search(queries[0], 100)
        assert sorted(res.items.tolist()) == list(range(30))
        res = index.search(queries[0], 100, exclude=[0, 1, 2])
        assert sorted(res.items.tolist()) == list(range(3, 30))
        assert index.search(queries[0], 5, exclude=range(30)).items.size == 0
    items_ref, _ = exact_top_k(items, queries[:2], 100)
    assert items_ref.shape == (2, 30)


def test_build_is_deterministic():
    items, _ = clustered(2000, seed=3)
    a = ItemIndex(items, backend="ann").index.save()
    b = ItemIndex(items, backend="ann").index.save()
    assert bytes(a) == bytes(b)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k_refused(data, k):
    items, queries, index = data
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(queries[0], k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        exact_top_k(items, queries, k)


def test_dim_mismatch_refused(data):
    items, queries, index = data
    with pytest.raises(ValueError, match="query dim 31 does not match the index dim 32"):
        index.search(queries[0][:31], 5)
    with pytest.raises(ValueError, match="query dim 31 does not match the item dim 32"):
        exact_top_k(items, queries[:, :31], 5)
    with pytest.raises(ValueError, match="vectors must be 2-D"):
        exact_top_k(items[0], queries, 5)
    with pytest.raises(ValueError, match="one vector"):
        index.search(queries[:2], 5)


def test_bad_vectors_and_exclusions_refused(data):
    items, queries, index = data
    with pytest.raises(ValueError, match="non-empty 2-D"):
        ItemIndex(np.zeros((0, 8)))
    with pytest.raises(ValueError, match="finite"):
        ItemIndex(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="backend must be one of"):
        ItemIndex(items, backend="faiss")
    with pytest.raises(ValueError, match="exclude holds item indices outside 0..3999"):
        index.search(queries[0], 5, exclude=[4000])
