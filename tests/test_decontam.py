"""Decontamination: n-gram overlap with prompts and solutions, embedding similarity, the judge band, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amr_dspy.decontam import BenchmarkItem, DecontamConfig, Decontaminator, load_benchmark_items, word_ngrams
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.library import CallableEmbedder, HashingEmbedder

ITEMS = [
    BenchmarkItem(
        id="Bench/1",
        prompt="Write a function to find the shared elements from the given two lists of integers.",
        solution="def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), key=lambda v: (v % 7, v)))\n",
    ),
    BenchmarkItem(
        id="Bench/2",
        prompt="Write a python function to count the number of rotations required to generate a sorted array.",
        solution="def count_rotation(arr):\n    for i in range(1, len(arr)):\n        if arr[i] < arr[i - 1]:\n"
        "            return i\n    return 0\n",
    ),
    BenchmarkItem(
        id="Bench/3",
        prompt="Write a function that checks whether every word of a sentence is a palindrome.",
        solution="def all_palindromes(s):\n    for i in range(1, len(arr)):\n        if arr[i] < arr[i - 1]:\n"
        "            return False\n    return all(w == w[::-1] for w in s.split())\n",
    ),
]


def checker(**config: object) -> Decontaminator:
    settings = {"embedding_threshold": None} | config
    return Decontaminator(ITEMS, DecontamConfig(**settings), embedder=HashingEmbedder(256))


def test_word_ngrams_are_lowercase_word_windows() -> None:
    assert word_ngrams("Sort THE list, then return it!", 3) == ["sort the list", "the list then", "list then return",
                                                                "then return it"]  # fmt: skip
    assert word_ngrams("too short", 3) == []


def test_an_instruction_sharing_a_10_gram_with_a_prompt_is_dropped() -> None:
    dec = checker()
    [hit, miss] = dec.check_instructions([
        "Please write a function to find the shared elements from the given two lists, fast.",
        "Write a function to find the shared items of two given lists of integers.",  # reworded: no 10-gram
    ])  # fmt: skip
    assert hit.contaminated and hit.method == "ngram" and hit.benchmark_id == "Bench/1"
    assert hit.ngram == "write a function to find the shared elements from the"
    assert not miss.contaminated and miss.method is None


def test_n_is_configurable() -> None:
    text = "Write a function to find the shared items of two given lists of integers."
    assert not checker(ngram=10).check_instructions([text])[0].contaminated
    assert checker(ngram=5).check_instructions([text])[0].method == "ngram"  # "write a function to find"


def test_responses_are_checked_against_solutions_but_not_generic_idioms() -> None:
    dec = checker()
    leaked = f"Here:\n```python\n{ITEMS[0].solution}```"
    # The loop below appears in two benchmark solutions: an idiom, not a leak.
    idiom = ("```python\ndef first_drop(xs):\n    for i in range(1, len(arr)):\n        if arr[i] < arr[i - 1]:\n"
             "            return None\n```")
    verdict = dec.check_response(leaked)
    assert verdict.contaminated and verdict.field == "response" and verdict.benchmark_id == "Bench/1"
    assert not dec.check_response(idiom).contaminated
    assert not checker(check_responses=False).check_response(leaked).contaminated


def test_embedding_similarity_drops_near_duplicates_and_reports_the_nearest_items() -> None:
    dec = checker(ngram=None, embedding_threshold=0.8, top_k=2)
    near, far = dec.check_instructions([
        "write a python function to count the number of rotations required to generate a sorted array",
        "Parse an ISO date string and return the weekday name in French.",
    ])  # fmt: skip
    assert near.contaminated and near.method == "embedding" and near.benchmark_id == "Bench/2"
    assert near.similarity is not None and near.similarity >= 0.8
    assert [n.benchmark_id for n in near.nearest][0] == "Bench/2" and len(near.nearest) == 2
    assert near.nearest[0].score >= near.nearest[1].score
    assert not far.contaminated and far.similarity is not None and far.similarity < 0.8


def test_the_judge_decides_only_the_borderline_band() -> None:
    asked: list[tuple[str, str]] = []

    def judge(instruction: str, prompt: str) -> bool:
        asked.append((instruction, prompt))
        return "yes" in instruction

    config = DecontamConfig(ngram=None, embedding_threshold=0.99, judge_threshold=0.5)
    dec = Decontaminator(ITEMS, config, embedder=HashingEmbedder(256), judge=judge)
    texts = [
        "yes: write a python function to count the rotations required to generate a sorted array",
        "no: write a python function to count the rotations required to generate a sorted array",
        "Parse an ISO date string and return the weekday name in French.",
    ]
    same, different, unrelated = dec.check_instructions(texts)
    assert same.contaminated and same.method == "judge" and same.judged is True
    assert not different.contaminated and different.judged is False
    assert unrelated.judged is None and not unrelated.contaminated
    assert [a[0] for a in asked] == texts[:2] and asked[0][1] == ITEMS[1].prompt


def test_a_failing_judge_drops_the_borderline_instruction() -> None:
    def judge(instruction: str, prompt: str) -> bool:
        raise RuntimeError("teacher gone")

    config = DecontamConfig(ngram=None, embedding_threshold=0.99, judge_threshold=0.5)
    dec = Decontaminator(ITEMS, config, embedder=HashingEmbedder(256), judge=judge)
    text = "write a python function to count rotations required to generate a sorted array"
    [verdict] = dec.check_instructions([text])
    assert verdict.contaminated and verdict.method == "judge"


def test_thresholds_are_validated() -> None:
    with pytest.raises(ConfigError, match="must be below"):
        DecontamConfig(embedding_threshold=0.9, judge_threshold=0.95)
    with pytest.raises(ConfigError, match="needs the embedding check"):
        DecontamConfig(embedding_threshold=None, judge_threshold=0.5)
    with pytest.raises(ConfigError, match="needs a judge"):
        Decontaminator(ITEMS, DecontamConfig(judge_threshold=0.5), embedder=HashingEmbedder(64))


def test_the_benchmark_matrix_is_computed_once_and_cached(tmp_path: Path) -> None:
    calls: list[int] = []
    base = HashingEmbedder(64)

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return base(texts)

    config = DecontamConfig(ngram=None, embedding_threshold=0.9)
    first = Decontaminator(ITEMS, config, embedder=CallableEmbedder(embed, name="counting-64"), cache_dir=tmp_path)
    assert calls == [3] and len(list(tmp_path.glob("counting-64-*.npy"))) == 1
    second = Decontaminator(ITEMS, config, embedder=CallableEmbedder(embed, name="counting-64"), cache_dir=tmp_path)
    assert calls == [3]  # read from the cache
    text = ["Write a function that checks whether every word of a sentence is a palindrome."]
    assert first.check_instructions(text)[0].similarity == second.check_instructions(text)[0].similarity
    changed = [*ITEMS[:2], ITEMS[2].model_copy(update={"prompt": "Something else entirely."})]
    Decontaminator(changed, config, embedder=CallableEmbedder(embed, name="counting-64"), cache_dir=tmp_path)
    assert calls[-1] == 3 and len(calls) == 4  # different texts, different key (plus the query above)


def test_benchmark_files_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "bench.jsonl"
    good.write_text(json.dumps({"id": "X/1", "prompt": "p", "solution": "s"}) + "\n\n"
                    + json.dumps({"id": 2, "prompt": "q"}) + "\n")
    assert [(i.id, i.solution) for i in load_benchmark_items([str(good)])] == [("X/1", "s"), ("2", "")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "X/1", "prompt": "p"}) + "\n" + json.dumps({"prompt": "no id"}) + "\n")
    with pytest.raises(DataError, match=f"{bad}:2: expected a JSON object with 'id' and 'prompt'"):
        load_benchmark_items([str(bad)])
    with pytest.raises(ConfigError, match="unknown decontamination benchmark 'apps'"):
        load_benchmark_items(["apps"])


def test_real_humaneval_and_mbpp_catch_their_own_prompts() -> None:
    items = load_benchmark_items(["humaneval", "mbpp+"])
    ids = {i.id for i in items}
    assert len(ids) == 164 + 378 and "HumanEval/0" in ids and "Mbpp/2" in ids
    dec = Decontaminator(items, DecontamConfig(embedding_threshold=None))
    mbpp, humaneval, fresh = dec.check_instructions([
        "Write a function to find the shared elements from the given two lists.",  # Mbpp/2, verbatim
        "Check if in given list of numbers, are any two numbers closer to each other than given threshold.",
        "Write a function that renders a Markdown table from a list of dictionaries with aligned columns.",
    ])  # fmt: skip
    assert mbpp.contaminated and mbpp.benchmark_id == "Mbpp/2"
    assert humaneval.contaminated and humaneval.benchmark_id == "HumanEval/0"
    assert not fresh.contaminated


def test_minilm_similarity_ranks_a_paraphrase_first(tmp_path: Path) -> None:
    config = DecontamConfig(ngram=None, embedding_threshold=0.75)
    dec = Decontaminator(ITEMS, config, cache_dir=tmp_path)  # the bundled all-MiniLM-L6-v2
    paraphrase, unrelated = dec.check_instructions([
        "Write code that tells how many times a sorted array was rotated.",
        "Send an HTTP GET request and print the status code.",
    ])  # fmt: skip
    assert paraphrase.nearest[0].benchmark_id == "Bench/2"
    assert paraphrase.similarity is not None and unrelated.similarity is not None
    assert paraphrase.similarity > unrelated.similarity + 0.2
    assert not unrelated.contaminated


def test_the_teacher_judge_asks_the_configured_lm() -> None:
    import dspy

    from amr_dspy.decontam import teacher_judge
    from tests.fake_openai_server import FakeOpenAI

    with FakeOpenAI() as fake, dspy.context(lm=fake.lm(), adapter=dspy.ChatAdapter()):
        judge = teacher_judge()
        assert judge("Count rotations of a sorted array. SAME_TASK", ITEMS[1].prompt) is True
        assert judge("Count rotations of a sorted array.", ITEMS[1].prompt) is False
    assert len(fake.requests) == 2 and fake.requests[0]["instruction"].startswith("Count rotations")
