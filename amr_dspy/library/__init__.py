"""The function-module library of AMR-Evol: verified modules retrieved by similarity for the teacher's context.

``Library`` stores ``ModuleRecord``s with their embeddings (bundled all-MiniLM-L6-v2 by default) in a FAISS
index; ``split_modules`` cuts code into top-level function modules; ``seed_from_tasks`` fills a library
from verified canonical solutions of training tasks (``verify_seed_tasks`` in ``amr_dspy.library.verify`` runs
them), recording per-source ``SourceCounts`` in the manifest.
"""

from __future__ import annotations

from amr_dspy.library.counts import SourceCounts
from amr_dspy.library.embedding import (
    MINILM_NAME,
    CallableEmbedder,
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    as_embedder,
    l2_normalize,
    resolve_embedder,
)
from amr_dspy.library.index import IndexKind, IndexParams, VectorIndex
from amr_dspy.library.modules import FunctionModule, describe, describe_from_signature, split_modules
from amr_dspy.library.records import Hit, ModuleRecord, Provenance, Verification, code_hash, module_text, normalize_code
from amr_dspy.library.seed import SeedReport, record_from_module, seed_from_tasks
from amr_dspy.library.standalone import unresolved_names
from amr_dspy.library.store import Library, LibraryStats, Manifest

__all__ = [
    "Library",
    "LibraryStats",
    "Manifest",
    "ModuleRecord",
    "Provenance",
    "Verification",
    "Hit",
    "code_hash",
    "normalize_code",
    "module_text",
    "FunctionModule",
    "split_modules",
    "describe",
    "describe_from_signature",
    "seed_from_tasks",
    "unresolved_names",
    "SourceCounts",
    "record_from_module",
    "SeedReport",
    "Embedder",
    "MiniLMEmbedder",
    "CallableEmbedder",
    "HashingEmbedder",
    "MINILM_NAME",
    "as_embedder",
    "resolve_embedder",
    "l2_normalize",
    "VectorIndex",
    "IndexParams",
    "IndexKind",
]
