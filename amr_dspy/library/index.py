"""A cosine-similarity vector index: exact (``IndexFlatIP``) while small, HNSW past a size threshold.

Vectors must be L2-normalized, so inner product is cosine similarity. Not thread-safe on its own:
``Library`` serializes ``add`` against ``search``.
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel, Field

__all__ = ["IndexParams", "IndexKind", "VectorIndex"]

IndexKind = Literal["flat", "hnsw"]


class IndexParams(BaseModel):
    """When to switch to HNSW and how to build and search it."""

    hnsw_threshold: int = Field(default=20_000, ge=1)  # switch once the index holds more vectors than this
    hnsw_m: int = Field(default=32, ge=4)
    ef_construction: int = Field(default=80, ge=8)
    ef_search: int = Field(default=128, ge=1)


class VectorIndex:
    """Position ``i`` in the index is the ``i``-th vector ever added (no removal)."""

    def __init__(self, dim: int, params: IndexParams | None = None, *, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.params = params or IndexParams()
        self._index = index if index is not None else faiss.IndexFlatIP(dim)
        if self.kind == "hnsw":
            self._hnsw().hnsw.efSearch = self.params.ef_search

    @property
    def kind(self) -> IndexKind:
        return "hnsw" if isinstance(self._index, faiss.IndexHNSW) else "flat"

    @property
    def faiss_index(self) -> faiss.Index:
        return self._index

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; crossing ``hnsw_threshold`` rebuilds the exact index as HNSW once."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.kind == "flat" and len(self) + len(vectors) > self.params.hnsw_threshold:
            existing = self._index.reconstruct_n(0, len(self)) if len(self) else np.empty((0, self.dim), np.float32)
            self._index = self._new_hnsw()
            if len(existing):
                self._index.add(existing)
        self._index.add(vectors)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (cosine) and positions, best first; rows are padded with position -1 when fewer than ``k`` exist."""
        return self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def serialize(self) -> bytes:
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def deserialize(cls, data: bytes, params: IndexParams | None = None) -> VectorIndex:
        """Raises RuntimeError (faiss) when ``data`` is not a readable index."""
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        known = isinstance(index, (faiss.IndexFlatIP, faiss.IndexHNSWFlat))
        if not known or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise RuntimeError(f"unexpected index type {type(index).__name__} (metric {index.metric_type})")
        return cls(index.d, params, index=index)

    def _new_hnsw(self) -> faiss.IndexHNSWFlat:
        index = faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.params.ef_construction
        index.hnsw.efSearch = self.params.ef_search
        return index

    def _hnsw(self) -> faiss.IndexHNSW:
        assert isinstance(self._index, faiss.IndexHNSW)
        return self._index
