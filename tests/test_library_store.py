"""Library: add/search, duplicates, novelty, persistence, corruption detection, atomic save, threads, export."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from amr_dspy.errors import ConfigError, LibraryError
from amr_dspy.library import (
    MINILM_NAME,
    HashingEmbedder,
    IndexParams,
    Library,
    ModuleRecord,
    Provenance,
    Verification,
)
from amr_dspy.library import store as store_module

TOPICS = {
    "is_prime": ("n > 1 and all(n % d for d in range(2, n))", "Check whether a number is prime."),
    "reverse_string": ("s[::-1]", "Reverse the characters of a string."),
    "fibonacci": ("n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)", "Return the n-th Fibonacci number."),
    "flatten": ("[y for x in s for y in x]", "Flatten a list of lists into one list."),
    "count_vowels": ("sum(c in 'aeiou' for c in s)", "Count the vowels in a string."),
}


def record(name: str, body: str, description: str, *, param: str = "s", passed: bool = True) -> ModuleRecord:
    code = f"def {name}({param}):\n    return {body}\n"
    return ModuleRecord.model_validate(
        {
            "name": name,
            "signature": f"def {name}({param}):",
            "description": description,
            "code": code,
            "provenance": {"source": "test", "task_id": f"T/{name}"},
            "verification": {"method": "unit_tests", "passed": passed, "n_tests": 3},
        }
    )


def topic_records() -> list[ModuleRecord]:
    return [record(name, body, text, param="n" if name in ("is_prime", "fibonacci") else "s")
            for name, (body, text) in TOPICS.items()]


def numbered(i: int) -> ModuleRecord:
    return record(f"func_{i}", f"s + {i}", f"Add the number {i} to the value; variant {i} of many alpha{i} beta{i}.")


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    library = Library.create(tmp_path / "lib", HashingEmbedder(64))
    library.add(topic_records())
    library.save()
    return library


def test_create_writes_an_empty_valid_library(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "new", HashingEmbedder(32))
    assert sorted(os.listdir(tmp_path / "new")) == ["index.faiss", "manifest.json", "modules.jsonl"]
    reopened = Library.open(tmp_path / "new")
    assert len(reopened) == 0 and reopened.dim == 32 and reopened.embedding_model == "hashing-32"
    assert reopened.search("anything", k=3) == [[]]
    with pytest.raises(LibraryError, match="already exists"):
        Library.create(tmp_path / "new", HashingEmbedder(32))
    assert library.stats().count == 0


def test_search_returns_k_hits_best_first_for_each_query(lib: Library) -> None:
    results = lib.search(["Reverse the characters of a string.", "n-th Fibonacci number"], k=3)
    assert [len(hits) for hits in results] == [3, 3]
    assert results[0][0].record.name == "reverse_string"
    assert results[0][0].score > results[0][1].score
    assert results[1][0].record.name == "fibonacci"
    for hits in results:
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(lib.search("prime", k=50)[0]) == len(TOPICS)  # never more than the library holds
    with pytest.raises(ConfigError, match="k must be >= 1"):
        lib.search("prime", k=0)


def test_persistence_round_trip_keeps_records_and_search(lib: Library) -> None:
    before = lib.search("Count the vowels in a string.", k=2)
    reopened = Library.open(lib.directory)
    assert [r.model_dump() for r in reopened.records] == [r.model_dump() for r in lib.records]
    after = reopened.search("Count the vowels in a string.", k=2)
    assert [(h.record.id, round(h.score, 5)) for h in after[0]] == [(h.record.id, round(h.score, 5)) for h in before[0]]
    manifest = json.loads((lib.directory / "manifest.json").read_text())
    assert manifest["count"] == len(TOPICS) and manifest["dim"] == 64
    assert manifest["embedding_model"] == "hashing-64" and manifest["index_type"] == "flat"
    for name in ("index.faiss", "modules.jsonl"):
        assert manifest["files"][name]["sha256"] == hashlib.sha256((lib.directory / name).read_bytes()).hexdigest()
    assert all(r.embedding_model == "hashing-64" for r in reopened.records)


def test_duplicates_by_normalized_code_are_rejected(lib: Library) -> None:
    original = lib.records[1]
    reformatted = record("reverse_string", "s[ : : -1]  # same thing", "A different description entirely.")
    assert reformatted.code_hash == original.code_hash
    assert lib.add([reformatted]) == []
    twice = numbered(7)
    assert lib.add([twice, twice.model_copy(update={"id": "other-id"})]) == [twice.id]
    assert len(lib) == len(TOPICS) + 1


def test_unverified_records_and_id_collisions_are_refused(lib: Library) -> None:
    with pytest.raises(LibraryError, match=r"refusing unverified module 'x-"):
        lib.add([record("x", "s", "Identity.", passed=False)])
    clash = record("other", "s * 2", "Double.").model_copy(update={"id": lib.records[0].id})
    with pytest.raises(LibraryError, match="already names a different module"):
        lib.add([clash])
    assert len(lib) == len(TOPICS)


def test_incremental_add_then_search_finds_the_new_record(lib: Library) -> None:
    new = record("merge_dicts", "{**s[0], **s[1]}", "Merge two dictionaries into one dictionary.")
    assert lib.add([new]) == [new.id]
    assert lib.search("Merge two dictionaries into one dictionary.", k=1)[0][0].record.id == new.id
    assert lib.stats().unsaved == 1
    lib.save()
    reopened = Library.open(lib.directory)
    assert len(reopened) == len(TOPICS) + 1 and reopened.stats().unsaved == 0
    assert reopened.search("merge two dictionaries", k=1)[0][0].record.id == new.id


def test_novelty_checks_code_hash_then_similarity(lib: Library) -> None:
    prime = lib.records[0]
    same_code = 'def is_prime(n):\n    """doc"""\n    return (n > 1 and all(n % d for d in range(2, n)))\n'
    assert not lib.is_novel(same_code, "something unrelated about trees")
    new_code = "def is_prime2(n):\n    return n > 1 and not any(n % d == 0 for d in range(2, n))\n"
    assert not lib.is_novel(new_code, prime.embedding_text)  # near-identical text: similarity 1.0
    assert lib.is_novel(new_code, prime.embedding_text, threshold=1.01)
    assert lib.is_novel(new_code, "zeta quantum harmonica lattice")
    assert Library.create(lib.directory.parent / "empty", HashingEmbedder(64)).is_novel(new_code, "anything")


def test_stats_counts_sources_and_methods(lib: Library) -> None:
    lib.add([record("manual_one", "s", "Identity.").model_copy(update={
        "provenance": Provenance(source="manual"), "verification": Verification(method="manual", passed=True)})])
    info = lib.stats()
    assert info.count == len(TOPICS) + 1 and info.unsaved == 1
    assert info.by_source == {"test": len(TOPICS), "manual": 1}
    assert info.by_verification == {"unit_tests": len(TOPICS), "manual": 1}


# ---------------------------------------------------------------------- corruption


def reopen_error(directory: Path) -> str:
    with pytest.raises(LibraryError) as caught:
        Library.open(directory)
    message = str(caught.value)
    assert "\n" not in message and str(directory) in message
    return message


def rewrite_digest(directory: Path, name: str) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    data = (directory / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_truncated_index_is_detected(lib: Library) -> None:
    index = lib.directory / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])
    assert "index.faiss does not match manifest.json (100 bytes" in reopen_error(lib.directory)


def test_unreadable_index_is_detected_even_with_a_matching_digest(lib: Library) -> None:
    (lib.directory / "index.faiss").write_bytes(b"not a faiss index at all")
    rewrite_digest(lib.directory, "index.faiss")
    assert "index.faiss is unreadable" in reopen_error(lib.directory)


def test_edited_modules_file_is_detected(lib: Library) -> None:
    modules = lib.directory / "modules.jsonl"
    modules.write_text(modules.read_text().replace("Reverse the characters", "Reverse the letters"))
    assert "modules.jsonl does not match manifest.json" in reopen_error(lib.directory)


def test_invalid_record_line_is_named(lib: Library) -> None:
    modules = lib.directory / "modules.jsonl"
    lines = modules.read_text().splitlines(keepends=True)
    lines[1] = '{"id": "broken"}\n'
    modules.write_text("".join(lines))
    rewrite_digest(lib.directory, "modules.jsonl")
    assert "modules.jsonl:2: invalid record" in reopen_error(lib.directory)


def test_missing_record_is_a_count_mismatch(lib: Library) -> None:
    modules = lib.directory / "modules.jsonl"
    modules.write_text("".join(modules.read_text().splitlines(keepends=True)[:-1]))
    rewrite_digest(lib.directory, "modules.jsonl")
    message = reopen_error(lib.directory)
    assert f"modules.jsonl holds {len(TOPICS) - 1} records, manifest says {len(TOPICS)}" in message


def test_wrong_dim_is_detected(lib: Library) -> None:
    manifest = json.loads((lib.directory / "manifest.json").read_text())
    manifest["dim"] = 128
    (lib.directory / "manifest.json").write_text(json.dumps(manifest))
    assert "index.faiss has dim 64, manifest says 128" in reopen_error(lib.directory)


def test_embedder_of_another_model_or_dim_is_refused(lib: Library, tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="built with embedding model 'hashing-64', not 'hashing-32'"):
        Library.open(lib.directory, HashingEmbedder(32))
    custom = Library.create(tmp_path / "custom", RandomEmbedder(8))
    assert custom.embedding_model == "RandomEmbedder" and custom.dim == 8  # dim probed from one call
    changed = Library.open(tmp_path / "custom", RandomEmbedder(16))  # same name, the model's output changed
    with pytest.raises(LibraryError, match=r"returned vectors of shape \(1, 16\), expected \(n, 8\)"):
        changed.search("anything")


class RandomEmbedder:
    """A stand-in for a remote model: a plain callable without ``name`` or ``dim``."""

    def __init__(self, dim: int) -> None:
        self.width = dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.random.default_rng(len(texts)).standard_normal((len(texts), self.width))


def toy_embed(texts: list[str]) -> np.ndarray:
    return HashingEmbedder(16)(texts)


def test_library_built_with_an_unknown_model_needs_its_embedder(tmp_path: Path) -> None:
    import dspy

    library = Library.create(tmp_path / "custom", dspy.Embedder(toy_embed, caching=False))
    assert library.embedding_model == "toy_embed" and library.dim == 16
    library.add(topic_records()[:2])
    library.save()
    reopened = Library.open(tmp_path / "custom")
    assert len(reopened) == 2
    with pytest.raises(LibraryError, match="built with embedding model 'toy_embed'; pass an embedder for it"):
        reopened.search("prime")
    again = Library.open(tmp_path / "custom", dspy.Embedder(toy_embed, caching=False))
    assert again.search("Check whether a number is prime.")[0][0].record.name == "is_prime"


def test_missing_directory_is_not_a_library(tmp_path: Path) -> None:
    assert "not a function-module library (directory does not exist)" in reopen_error(tmp_path / "nowhere")


# ---------------------------------------------------------------------- atomic save


def test_crash_before_the_commit_point_keeps_the_previous_state(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    lib.add([numbered(1)])
    real_write = store_module._write_synced

    def crash_on_modules(path: Path, data: bytes) -> None:
        if path.name == "modules.jsonl":
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(store_module, "_write_synced", crash_on_modules)
    with pytest.raises(OSError, match="disk full"):
        lib.save()
    assert (lib.directory / ".staging").exists()
    reopened = Library.open(lib.directory)
    assert len(reopened) == len(TOPICS)
    assert sorted(os.listdir(lib.directory)) == ["index.faiss", "manifest.json", "modules.jsonl"]


def test_crash_after_the_commit_point_finishes_on_open(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    lib.add([numbered(1), numbered(2)])
    real_replace = os.replace
    calls: list[str] = []

    def crash_on_third(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 3:  # staging -> .commit, index.faiss moved, then the modules move dies
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_third)
    with pytest.raises(OSError, match="power cut"):
        lib.save()
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls == [".commit", "index.faiss", "modules.jsonl"]
    reopened = Library.open(lib.directory)
    assert len(reopened) == len(TOPICS) + 2
    assert reopened.search(numbered(2).embedding_text)[0][0].record.name == "func_2"
    assert not (lib.directory / ".commit").exists()


# ---------------------------------------------------------------------- index type, threads, export


def test_library_switches_to_hnsw_past_the_threshold_and_persists_it(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "big", HashingEmbedder(64), params=IndexParams(hnsw_threshold=20))
    library.add([numbered(i) for i in range(15)])
    assert library.stats().index_type == "flat"
    library.add([numbered(i) for i in range(15, 40)])
    assert library.stats().index_type == "hnsw"
    library.save()
    reopened = Library.open(tmp_path / "big")
    assert reopened.stats().index_type == "hnsw" and len(reopened) == 40
    assert json.loads((tmp_path / "big" / "manifest.json").read_text())["index_params"]["hnsw_threshold"] == 20
    for i in (0, 17, 39):
        assert reopened.search(numbered(i).embedding_text)[0][0].record.name == f"func_{i}"


def test_concurrent_searches_while_adding(lib: Library) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> int:
        done = 0
        while not stop.is_set():
            try:
                hits = lib.search("Reverse the characters of a string.", k=3)[0]
                assert hits[0].record.name == "reverse_string" and len(hits) == 3
                done += 1
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)
                return done
        return done

    with ThreadPoolExecutor(max_workers=6) as pool:  # room for the 4 searchers and both adders
        futures = [pool.submit(searcher) for _ in range(4)]
        adders = [pool.submit(lib.add, [numbered(i) for i in range(start, start + 10)]) for start in (0, 100)]
        added = [f.result() for f in adders]
        lib.save()
        stop.set()
        searches = sum(f.result() for f in futures)
    assert not errors, errors[0]
    assert searches > 0 and sum(len(a) for a in added) == 20
    assert len(Library.open(lib.directory)) == len(TOPICS) + 20


def test_export_jsonl_and_parquet(lib: Library, tmp_path: Path) -> None:
    out = lib.export(tmp_path / "out" / "modules.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["name"] for r in rows] == list(TOPICS)
    assert rows[0]["provenance"]["task_id"] == "T/is_prime"
    table = pq.read_table(lib.export(tmp_path / "modules.parquet", fmt="parquet"))
    assert table.num_rows == len(TOPICS)
    assert {"code", "code_hash", "provenance_source", "verification_method"} <= set(table.column_names)
    with pytest.raises(ConfigError, match="unknown export format 'csv'"):
        lib.export(tmp_path / "x.csv", fmt="csv")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the real embedder


def test_minilm_library_retrieves_by_meaning(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "minilm")  # default: bundled all-MiniLM-L6-v2, offline
    assert library.embedding_model == MINILM_NAME and library.dim == 384
    assert library.add(topic_records()) == [r.id for r in topic_records()]
    queries = [
        "is_prime_number: def is_prime_number(k: int) -> bool:\n"
        "Tell if an integer has no divisors other than 1 and itself.",
        "Turn nested lists into a single flat list",
        "how many a, e, i, o, u letters does a text contain",
    ]
    tops = [hits[0] for hits in library.search(queries, k=2)]
    assert [h.record.name for h in tops] == ["is_prime", "flatten", "count_vowels"]
    assert all(0.3 < h.score <= 1.0001 for h in tops)
    new_prime = "def prime_check(k: int) -> bool:\n    return k > 1 and all(k % d for d in range(2, int(k**0.5) + 1))\n"
    assert library.is_novel(new_prime, "Sort a list of strings by their length.")
    assert not library.is_novel(new_prime, library.records[0].embedding_text)
    library.save()
    reopened = Library.open(tmp_path / "minilm")
    assert reopened.embedding_model == MINILM_NAME and len(reopened) == len(TOPICS)
