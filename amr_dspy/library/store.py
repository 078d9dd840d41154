"""The function-module library: verified modules, their embeddings in a FAISS index, and atomic persistence.

On disk a library is a directory holding ``index.faiss``, ``modules.jsonl`` (line ``i`` is the record at
index position ``i``) and ``manifest.json`` (count, dim, embedding model, index type and parameters, and the
sha256 of the two other files). ``save`` writes a complete new set into ``.staging/``, renames that to
``.commit/`` (the commit point) and then moves the files into place, manifest last. A library seeded by
``library build`` also keeps, in its manifest, how each source benchmark seeded it (``seed``). ``open`` finishes a
committed save that was interrupted and discards an uncommitted one, so a crash leaves either the
previous state or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from amr_dspy.errors import ConfigError, DataError, LibraryError
from amr_dspy.library.counts import SourceCounts
from amr_dspy.library.embedding import Embedder, as_embedder, l2_normalize, resolve_embedder
from amr_dspy.library.index import IndexKind, IndexParams, VectorIndex
from amr_dspy.library.records import Hit, ModuleRecord, Provenance, code_hash

__all__ = ["Library", "LibraryStats", "Manifest", "FileDigest", "INDEX_FILE", "MODULES_FILE", "MANIFEST_FILE"]

INDEX_FILE, MODULES_FILE, MANIFEST_FILE = "index.faiss", "modules.jsonl", "manifest.json"
_STAGING, _COMMIT = ".staging", ".commit"
_FORMAT_VERSION = 1
ExportFormat = Literal["jsonl", "parquet"]


class FileDigest(BaseModel):
    sha256: str
    bytes: int


class Manifest(BaseModel):
    format_version: int = _FORMAT_VERSION
    count: int = Field(ge=0)
    dim: int = Field(ge=1)
    embedding_model: str
    index_type: IndexKind
    index_params: IndexParams
    files: dict[str, FileDigest]
    updated_at: datetime
    seed: list[SourceCounts] = Field(default_factory=list)  # per source benchmark; empty unless seeded by build


class LibraryStats(BaseModel):
    directory: str
    count: int
    dim: int
    embedding_model: str
    index_type: IndexKind
    hnsw_threshold: int
    unsaved: int  # records added since the last save
    by_source: dict[str, int]
    by_verification: dict[str, int]
    seed: list[SourceCounts] = Field(default_factory=list)


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers so ``add`` cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting_writers)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class Library:
    """Verified function modules searchable by cosine similarity of their name + signature + description.

    ``search``, ``is_novel`` and ``stats`` may run concurrently from many threads; ``add`` and ``save``
    are serialized with each other and exclude searches only while the index is being changed.
    """

    def __init__(
        self,
        directory: Path,
        *,
        embedder: Embedder | None,
        embedding_model: str,
        index: VectorIndex,
        records: list[ModuleRecord],
        saved_count: int,
        seed: Sequence[SourceCounts] = (),
    ) -> None:
        self.directory = directory
        self.embedding_model = embedding_model
        self._embedder = embedder
        self._index = index
        self._records = records
        self._hashes = {r.code_hash for r in records}
        self._ids = {r.id for r in records}
        self._saved_count = saved_count
        self._seed = list(seed)
        self._write_lock = threading.Lock()
        self._rw = _RWLock()

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        embedder: Embedder | Callable[[list[str]], Any] | None = None,
        *,
        params: IndexParams | None = None,
    ) -> Library:
        """A new, empty library saved at ``directory`` (default embedder: the bundled all-MiniLM-L6-v2)."""
        path = Path(directory)
        if (path / MANIFEST_FILE).exists():
            raise LibraryError(f"library {path}: already exists (open it with Library.open)")
        emb = as_embedder(embedder)
        dim = emb.dim or l2_normalize(emb(["probe"]), label=f"embedder {emb.name!r}").shape[1]
        path.mkdir(parents=True, exist_ok=True)
        library = cls(
            path, embedder=emb, embedding_model=emb.name, index=VectorIndex(dim, params), records=[], saved_count=0
        )
        library.save()
        return library

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        embedder: Embedder | Callable[[list[str]], Any] | None = None,
        *,
        params: IndexParams | None = None,
    ) -> Library:
        """Load and check a saved library; LibraryError (one line naming the directory) when anything disagrees.

        Without ``embedder`` the model named in the manifest is used when this package can build it
        (MiniLM, hashing); otherwise ``search`` and ``add`` need one passed here.
        """
        path = Path(directory)
        _recover(path)
        manifest = _read_manifest(path)
        emb = as_embedder(embedder) if embedder is not None else resolve_embedder(manifest.embedding_model)
        if emb is not None and emb.name != manifest.embedding_model:
            raise LibraryError(
                f"library {path}: built with embedding model {manifest.embedding_model!r}, not {emb.name!r}"
            )
        index_bytes = _checked_bytes(path, INDEX_FILE, manifest)
        modules_bytes = _checked_bytes(path, MODULES_FILE, manifest)
        try:
            index = VectorIndex.deserialize(index_bytes, params or manifest.index_params)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise LibraryError(f"library {path}: {INDEX_FILE} is unreadable ({reason})") from None
        records = _parse_records(path, modules_bytes)
        _check_consistency(path, manifest, index, records)
        if emb is not None and emb.dim is not None and emb.dim != manifest.dim:
            raise LibraryError(f"library {path}: dim {manifest.dim} but embedder {emb.name!r} has dim {emb.dim}")
        return cls(
            path,
            embedder=emb,
            embedding_model=manifest.embedding_model,
            index=index,
            records=records,
            saved_count=len(records),
            seed=manifest.seed,
        )

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._records)

    @property
    def dim(self) -> int:
        return self._index.dim

    @property
    def seed(self) -> tuple[SourceCounts, ...]:
        """How each source benchmark seeded this library (``library build``); empty when it was not seeded."""
        return tuple(self._seed)

    @property
    def records(self) -> tuple[ModuleRecord, ...]:
        with self._rw.read():
            return tuple(self._records)

    def get(self, record_id: str) -> ModuleRecord:
        with self._rw.read():
            for record in self._records:
                if record.id == record_id:
                    return record
        raise LibraryError(f"library {self.directory}: no module with id {record_id!r}")

    def search(self, query: str | Sequence[str], k: int = 1) -> list[list[Hit]]:
        """For each query text, the ``k`` most similar modules, best first (fewer when the library is smaller)."""
        queries = [query] if isinstance(query, str) else list(query)
        if not queries:
            return []
        return self.search_vectors(self._embed(queries), k)

    def search_vectors(self, vectors: np.ndarray, k: int = 1) -> list[list[Hit]]:
        """Like ``search`` for already-embedded queries (rows are normalized here)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        vectors = l2_normalize(vectors, dim=self.dim, label="query vectors")
        with self._rw.read():
            if not self._records:
                return [[] for _ in range(len(vectors))]
            scores, positions = self._index.search(vectors, min(k, len(self._records)))
            return [
                [Hit(record=self._records[p], score=float(s)) for s, p in zip(row_s, row_p, strict=True) if p >= 0]
                for row_s, row_p in zip(scores, positions, strict=True)
            ]

    def has_code(self, code: str) -> bool:
        """Whether a module with the same normalized code is already in the library."""
        digest = code_hash(code)
        with self._rw.read():
            return digest in self._hashes

    def is_novel(self, code: str, text: str, threshold: float = 0.95) -> bool:
        """False when the normalized code is already here or the nearest module is at least ``threshold`` similar."""
        if self.has_code(code):
            return False
        hits = self.search(text, k=1)[0]
        return not hits or hits[0].score < threshold

    def stats(self) -> LibraryStats:
        with self._rw.read():
            records = list(self._records)
            kind = self._index.kind
        return LibraryStats(
            directory=str(self.directory),
            count=len(records),
            dim=self.dim,
            embedding_model=self.embedding_model,
            index_type=kind,
            hnsw_threshold=self._index.params.hnsw_threshold,
            unsaved=len(records) - self._saved_count,
            by_source=dict(Counter(r.provenance.source for r in records).most_common()),
            by_verification=dict(Counter(r.verification.method for r in records).most_common()),
            seed=list(self._seed),
        )

    # ------------------------------------------------------------------ writing

    def add(self, records: Iterable[ModuleRecord]) -> list[str]:
        """Embed and append verified records; returns the ids added (a record whose code is already here is skipped)."""
        with self._write_lock:
            fresh: list[ModuleRecord] = []
            hashes, ids = set(self._hashes), set(self._ids)
            for record in records:
                if not record.verification.passed:
                    raise LibraryError(
                        f"library {self.directory}: refusing unverified module {record.id!r} "
                        "(verification.passed is false)"
                    )
                if record.code_hash in hashes:
                    continue
                if record.id in ids:
                    raise LibraryError(f"library {self.directory}: id {record.id!r} already names a different module")
                hashes.add(record.code_hash)
                ids.add(record.id)
                fresh.append(record.model_copy(update={"embedding_model": self.embedding_model}))
            if not fresh:
                return []
            vectors = self._embed([r.embedding_text for r in fresh])
            with self._rw.write():
                self._index.add(vectors)
                self._records.extend(fresh)
                self._hashes, self._ids = hashes, ids
            return [r.id for r in fresh]

    def record_seed(self, counts: Sequence[SourceCounts]) -> None:
        """Keep how each source seeded the library; the next ``save`` writes it into the manifest."""
        with self._write_lock:
            self._seed = list(counts)

    def save(self) -> Path:
        """Write the library to its directory atomically (see the module docstring); returns the directory."""
        with self._write_lock:
            _recover(self.directory)
            with self._rw.read():
                index_bytes = self._index.serialize()
                lines = [r.model_dump_json() + "\n" for r in self._records]
                kind, params, count = self._index.kind, self._index.params, len(self._records)
            modules_bytes = "".join(lines).encode()
            manifest = Manifest(
                count=count,
                dim=self.dim,
                embedding_model=self.embedding_model,
                index_type=kind,
                index_params=params,
                files={INDEX_FILE: _digest(index_bytes), MODULES_FILE: _digest(modules_bytes)},
                updated_at=datetime.now(UTC),
                seed=self._seed,
            )
            staging = self.directory / _STAGING
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            _write_synced(staging / INDEX_FILE, index_bytes)
            _write_synced(staging / MODULES_FILE, modules_bytes)
            _write_synced(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
            _fsync_dir(staging)
            os.replace(staging, self.directory / _COMMIT)
            _fsync_dir(self.directory)
            _recover(self.directory)
            self._saved_count = count
            return self.directory

    def export(self, path: str | os.PathLike[str], fmt: ExportFormat = "jsonl") -> Path:
        """Write every record (no vectors) to ``path`` as JSON lines or parquet (nested fields flattened)."""
        out = Path(path)
        records = self.records
        tmp = out.with_name(f".{out.name}.tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            tmp.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
        elif fmt == "parquet":
            _write_parquet(tmp, records)
        else:
            raise ConfigError(f"unknown export format {fmt!r}: expected jsonl or parquet")
        os.replace(tmp, out)
        return out

    # ------------------------------------------------------------------ internals

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            raise LibraryError(
                f"library {self.directory}: built with embedding model {self.embedding_model!r}; "
                "pass an embedder for it to Library.open"
            )
        vectors = self._embedder(texts)
        label = f"embedder {self.embedding_model!r} for library {self.directory}"
        vectors = l2_normalize(vectors, dim=self.dim, label=label)
        if len(vectors) != len(texts):
            raise LibraryError(f"{label} returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors


# ---------------------------------------------------------------------- persistence helpers


def _recover(directory: Path) -> None:
    """Finish a committed save (move what is left of ``.commit/`` into place, manifest last); drop ``.staging/``."""
    commit = directory / _COMMIT
    if commit.is_dir():
        for name in (INDEX_FILE, MODULES_FILE, MANIFEST_FILE):
            if (commit / name).exists():
                os.replace(commit / name, directory / name)
        shutil.rmtree(commit)
        _fsync_dir(directory)
    shutil.rmtree(directory / _STAGING, ignore_errors=True)


def _read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST_FILE
    if not file.is_file():
        what = "directory does not exist" if not path.exists() else f"{MANIFEST_FILE} is missing"
        raise LibraryError(f"library {path}: not a function-module library ({what})")
    try:
        manifest = Manifest.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise LibraryError(f"library {path}: {MANIFEST_FILE} is invalid at {where}: {first['msg']}") from None
    if manifest.format_version != _FORMAT_VERSION:
        raise LibraryError(f"library {path}: format version {manifest.format_version}, expected {_FORMAT_VERSION}")
    return manifest


def _checked_bytes(path: Path, name: str, manifest: Manifest) -> bytes:
    file = path / name
    expected = manifest.files.get(name)
    if expected is None:
        raise LibraryError(f"library {path}: {MANIFEST_FILE} has no digest for {name}")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise LibraryError(f"library {path}: cannot read {name} ({exc.strerror or exc})") from None
    if len(data) != expected.bytes or hashlib.sha256(data).hexdigest() != expected.sha256:
        raise LibraryError(
            f"library {path}: {name} does not match {MANIFEST_FILE} "
            f"({len(data)} bytes, expected {expected.bytes}; changed or truncated since the last save)"
        )
    return data


def _parse_records(path: Path, data: bytes) -> list[ModuleRecord]:
    records = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ModuleRecord.model_validate_json(line))
        except (ValidationError, DataError) as exc:
            reason = _first_error(exc)
            raise LibraryError(f"library {path}: {MODULES_FILE}:{number}: invalid record ({reason})") from None
    return records


def _check_consistency(path: Path, manifest: Manifest, index: VectorIndex, records: list[ModuleRecord]) -> None:
    problems = []
    if index.dim != manifest.dim:
        problems.append(f"{INDEX_FILE} has dim {index.dim}, manifest says {manifest.dim}")
    if len(index) != manifest.count:
        problems.append(f"{INDEX_FILE} holds {len(index)} vectors, manifest says {manifest.count}")
    if len(records) != manifest.count:
        problems.append(f"{MODULES_FILE} holds {len(records)} records, manifest says {manifest.count}")
    if index.kind != manifest.index_type:
        problems.append(f"{INDEX_FILE} is {index.kind}, manifest says {manifest.index_type}")
    models = {r.embedding_model for r in records} - {manifest.embedding_model}
    if models:
        problems.append(
            f"{MODULES_FILE} has records embedded with {sorted(models)[0]!r}, "
            f"manifest says {manifest.embedding_model!r}"
        )
    duplicates = [h for h, n in Counter(r.code_hash for r in records).items() if n > 1]
    if duplicates:
        problems.append(f"{MODULES_FILE} has {len(duplicates)} duplicate code hash(es)")
    if problems:
        raise LibraryError(f"library {path}: inconsistent: {'; '.join(problems)}")


def _first_error(exc: ValidationError | DataError) -> str:
    if isinstance(exc, DataError):
        return str(exc)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _digest(data: bytes) -> FileDigest:
    return FileDigest(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_parquet(path: Path, records: Sequence[ModuleRecord]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Explicit types, so a column that happens to be all null (e.g. teacher) is still a string column.
    strings = ["id", "name", "signature", "description", "code", "created_at", "embedding_model", "code_hash"]
    strings += [f"provenance_{k}" for k in Provenance.model_fields]
    schema = pa.schema(
        [(name, pa.string()) for name in strings]
        + [
            ("verification_method", pa.string()),
            ("verification_passed", pa.bool_()),
            ("verification_n_tests", pa.int64()),
            ("verification_details", pa.string()),
        ]
    )
    rows = []
    for record in records:
        row = record.model_dump(mode="json", exclude={"provenance", "verification"})
        row.update({f"provenance_{k}": v for k, v in record.provenance.model_dump(mode="json").items()})
        row.update({f"verification_{k}": v for k, v in record.verification.model_dump(mode="json").items()})
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
