"""The vector index: exact while small, HNSW past the threshold with recall close to exact search."""

from __future__ import annotations

import faiss
import numpy as np

from amr_dspy.library import IndexParams, VectorIndex, l2_normalize


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int, noise: float) -> np.ndarray:
    """Points scattered around random cluster centers, like embeddings of related texts."""
    picks = centers[rng.integers(0, len(centers), n)]
    jitter = rng.standard_normal((n, centers.shape[1])).astype(np.float32) * noise / np.sqrt(centers.shape[1])
    return l2_normalize(picks + jitter)


def test_small_index_is_exact_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    vectors = l2_normalize(rng.standard_normal((300, 32)))
    index = VectorIndex(32, IndexParams(hnsw_threshold=1000))
    index.add(vectors[:100])
    index.add(vectors[100:])
    assert index.kind == "flat" and len(index) == 300
    scores, positions = index.search(vectors[[5, 250]], 3)
    assert positions[:, 0].tolist() == [5, 250]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    expected = vectors @ vectors[5]
    np.testing.assert_allclose(scores[0], np.sort(expected)[::-1][:3], atol=1e-5)
    again = VectorIndex.deserialize(index.serialize())
    assert again.kind == "flat" and again.search(vectors[[5]], 3)[1].tolist() == positions[:1].tolist()


def test_hnsw_recall_against_exact_on_50k_vectors() -> None:
    rng = np.random.default_rng(0)
    dim, n = 384, 50_000
    centers = l2_normalize(rng.standard_normal((500, dim)))
    library = clustered(rng, centers, n, noise=1.5)
    queries = clustered(rng, centers, 400, noise=1.5)

    index = VectorIndex(dim)  # default threshold 20k: the first batches are exact, then it converts
    for start in range(0, n, 10_000):
        index.add(library[start : start + 10_000])
        assert index.kind == ("flat" if start + 10_000 <= 20_000 else "hnsw")
    assert len(index) == n

    exact = faiss.IndexFlatIP(dim)
    exact.add(library)
    _, truth = exact.search(queries, 5)
    _, found = index.search(queries, 5)
    recall_at_1 = float(np.mean(found[:, 0] == truth[:, 0]))
    recall_at_5 = float(np.mean([len(set(f) & set(t)) / 5 for f, t in zip(found, truth, strict=True)]))
    print(f"HNSW on {n}x{dim}: recall@1={recall_at_1:.3f} recall@5={recall_at_5:.3f}")
    assert recall_at_1 >= 0.95
    assert recall_at_5 >= 0.95

    restored = VectorIndex.deserialize(index.serialize(), index.params)
    assert restored.kind == "hnsw" and restored.faiss_index.hnsw.efSearch == index.params.ef_search
    assert restored.search(queries[:20], 5)[1].tolist() == found[:20].tolist()
