"""Decontamination: the evaluation-split policy, normalized code n-grams (copies caught, idioms not), prompt
substrings, embedding similarity, the judge band, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amr_dspy.decontam import (
    BenchmarkItem,
    DecontamConfig,
    Decontaminator,
    code_tokens,
    load_benchmark_items,
    prompt_sentences,
    word_ngrams,
)
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

# An evaluation solution with a generic dynamic-programming loop inside specific code.
STAIRS = '''def count_stairs(n, banned):
    """Ways to climb n stairs with steps of 1, 2 or 3, never landing on a banned stair."""
    dp = [0] * (n + 1)
    for i in range(1, n + 1):
        if i in banned:
            continue
        dp[i] = (i <= 3) + sum(dp[i - step] for step in (1, 2, 3) if i - step > 0)
    return dp[n] % 1_000_007
'''
RENAMED_STAIRS = '''def ways(total, blocked):
    table = [0] * (total + 1)
    for k in range(1, total + 1):
        if k in blocked:
            continue
        table[k] = (k <= 3) + sum(table[k - jump] for jump in (1, 2, 3) if k - jump > 0)
    return table[total] % 1_000_007
'''
TRAIN_SOLUTION = '''def digit_histogram(values):
    counts = {}
    for value in values:
        for digit in str(abs(value)):
            counts[digit] = counts.get(digit, 0) + 1
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
'''
DEV_SOLUTION = '''def zigzag_merge(left, right):
    merged = []
    while left or right:
        if left:
            merged.append(left.pop(0))
        if right:
            merged.append(right.pop())
    return merged[::-1] if len(merged) % 2 else merged
'''
SPLIT_ITEMS = [
    BenchmarkItem(id="Mbpp/3", prompt="Write a function to list the digits of a list of numbers by frequency.",
                  solution=TRAIN_SOLUTION, split="train", benchmark="mbpp+"),
    BenchmarkItem(id="Mbpp/520", prompt="Write a function to merge two lists taking from the front and the back.",
                  solution=DEV_SOLUTION, split="dev", benchmark="mbpp+"),
    BenchmarkItem(id="Mbpp/77", prompt="Write a function to count the ways to climb stairs avoiding banned ones.",
                  solution=STAIRS, split="test", benchmark="mbpp+"),
]  # fmt: skip


def answer(code: str) -> str:
    return f"Here is the function.\n\n```python\n{code}```\n\nIt runs in linear time.\n"


def checker(items: list[BenchmarkItem] | None = None, **config: object) -> Decontaminator:
    settings = {"embedding_threshold": None} | config
    return Decontaminator(items or ITEMS, DecontamConfig(**settings), embedder=HashingEmbedder(256))


# ------------------------------------------------------------------------------------------------ normalization


def test_code_tokens_drop_names_literals_comments_and_layout() -> None:
    code = "def f(xs):\n    total = 0  # running sum\n    for v in xs:\n        total += len(v.split(',')) * 2.5\n"
    assert code_tokens(code) == [
        "def", "ID", "(", "ID", ")", ":", "ID", "=", "NUM", "for", "ID", "in", "ID", ":",
        "ID", "+=", "len", "(", "ID", ".", "split", "(", "STR", ")", ")", "*", "NUM",
    ]  # fmt: skip
    assert code_tokens(code, keep_names=False).count("ID") == 9  # builtins and attributes too
    assert code_tokens("x = (1,\n") == ["ID", "=", "(", "NUM", ","]  # untokenizable text: the regex lexer
    assert code_tokens(code) == code_tokens(code.replace("total", "acc").replace("    ", "  "))


def test_prompt_sentences_keep_prose_and_leave_code_out() -> None:
    humaneval = ('from typing import List\n\n\ndef close(numbers: List[float], threshold: float) -> bool:\n'
                 '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
                 '    given threshold.\n    >>> close([1.0, 2.0, 3.0], 0.5)\n    False\n    """\n')  # fmt: skip
    assert prompt_sentences(humaneval) == ["check if in given list of numbers are any two numbers closer to each "
                                           "other than given threshold"]  # fmt: skip
    mbpp = '"""\nWrite a function to find the shared elements.\nassert f((1, 2), (2,)) == (2,)\n"""\n'
    assert prompt_sentences(mbpp) == ["write a function to find the shared elements"]


def test_word_ngrams_are_lowercase_word_windows() -> None:
    assert word_ngrams("Sort THE list, then return it!", 3) == ["sort the list", "the list then", "list then return",
                                                                "then return it"]  # fmt: skip
    assert word_ngrams("too short", 3) == []


# ------------------------------------------------------------------------------------------------ the policy


def test_a_copy_of_a_train_solution_is_not_flagged_but_dev_and_test_copies_are() -> None:
    dec = checker(SPLIT_ITEMS)
    assert [i.id for i in dec.items] == ["Mbpp/520", "Mbpp/77"]  # the train item is not indexed
    assert not dec.check_response(answer(TRAIN_SOLUTION)).contaminated
    dev, test = dec.check_response(answer(DEV_SOLUTION)), dec.check_response(answer(STAIRS))
    assert dev.contaminated and dev.method == "ngram" and dev.overlap == "code-ngram" and dev.benchmark_id == "Mbpp/520"
    assert test.contaminated and test.benchmark_id == "Mbpp/77" and test.code_overlap == 1.0
    [train_prompt, dev_prompt] = dec.check_instructions([SPLIT_ITEMS[0].prompt, SPLIT_ITEMS[1].prompt])
    assert not train_prompt.contaminated
    assert dev_prompt.contaminated and dev_prompt.overlap == "prompt-substring"
    everything = checker(SPLIT_ITEMS, splits=["train", "dev", "test"])  # the former policy, on request
    assert everything.check_response(answer(TRAIN_SOLUTION)).benchmark_id == "Mbpp/3"


def test_the_policy_names_the_checked_and_unchecked_splits() -> None:
    policy = checker(SPLIT_ITEMS, benchmarks=["humaneval+", "mbpp+", "bigcodebench"]).policy()
    assert [(b.name, b.checked, b.unchecked, b.items) for b in policy.benchmarks] == [
        ("humaneval", ["test"], [], 0), ("mbpp+", ["dev", "test"], ["train"], 2),
        ("bigcodebench", ["dev", "test"], ["train"], 0)]  # fmt: skip
    default = DecontamConfig().policy()
    assert [b.name for b in default.benchmarks] == ["humaneval", "mbpp+", "bigcodebench"]
    assert default.code_ngram == DecontamConfig().ngram and default.word_ngram is None
    assert "evaluation splits" in default.rule and default.benchmarks[0].items is None


def test_benchmark_files_carry_splits_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "bench.jsonl"
    good.write_text(json.dumps({"id": "X/1", "prompt": "p", "solution": "s"}) + "\n\n"
                    + json.dumps({"id": 2, "prompt": "q"}) + "\n"
                    + json.dumps({"id": "X/3", "prompt": "r", "split": "train"}) + "\n")  # fmt: skip
    assert [(i.id, i.solution, i.split) for i in load_benchmark_items([str(good)])] == [("X/1", "s", "test"),
                                                                                        ("2", "", "test")]  # fmt: skip
    assert len(load_benchmark_items([str(good)], splits=["train", "dev", "test"])) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "X/1", "prompt": "p"}) + "\n" + json.dumps({"prompt": "no id"}) + "\n")
    with pytest.raises(DataError, match=f"{bad}:2: expected a JSON object with 'id' and 'prompt'"):
        load_benchmark_items([str(bad)])
    with pytest.raises(ConfigError, match="unknown decontamination benchmark 'apps'"):
        load_benchmark_items(["apps"])
    with pytest.raises(ConfigError, match="at least one benchmark item of the splits dev, test"):
        checker([SPLIT_ITEMS[0]])


# ------------------------------------------------------------------------------------------------ code n-grams


def test_generic_idioms_are_not_flagged_where_the_former_word_check_was() -> None:
    dec = checker(SPLIT_ITEMS)
    dp_loop = answer("def climb(n):\n    dp = [0] * (n + 1)\n    for i in range(1, n + 1):\n"
                     "        dp[i] = dp[i - 1] + i\n    return dp[n]\n")  # fmt: skip
    repeat = answer("def repeat(n, f):\n    out = []\n    for _ in range(n):\n        out.append(f())\n"
                    "    return out\n")  # fmt: skip
    assert not dec.check_response(dp_loop).contaminated and not dec.check_response(repeat).contaminated
    former = checker(SPLIT_ITEMS, ngram=None, min_prompt_chars=None, word_ngram=10)
    hit = former.check_response(dp_loop)  # "dp 0 n 1 for i in range 1 n": a 10-word window of STAIRS
    assert hit.contaminated and hit.overlap == "word-ngram" and hit.benchmark_id == "Mbpp/77"


def test_planted_copies_are_caught_verbatim_renamed_and_embedded() -> None:
    dec = checker(SPLIT_ITEMS)
    embedded = answer("import logging\n\n\ndef report(message):\n    logging.info(message)\n\n\n" + RENAMED_STAIRS
                      + "\n\nif __name__ == '__main__':\n    report(ways(10, {3}))\n")  # fmt: skip
    for text in (answer(STAIRS), answer(RENAMED_STAIRS), embedded, RENAMED_STAIRS):
        verdict = dec.check_response(text)
        assert verdict.contaminated and verdict.benchmark_id == "Mbpp/77", text
    half = "\n".join(STAIRS.splitlines()[:5]) + "\n"  # the generic head of the solution only
    assert not dec.check_response(answer(half)).contaminated


def test_overlap_share_and_n_are_configurable() -> None:
    head = "\n".join(STAIRS.splitlines()[:6]) + "\n"  # up to the loop's first branch: a third of its n-grams
    assert not checker(SPLIT_ITEMS).check_response(answer(head)).contaminated
    loose = checker(SPLIT_ITEMS, min_code_overlap=0.3).check_response(answer(head))
    assert loose.contaminated and loose.code_overlap is not None and 0.3 <= loose.code_overlap < 0.5
    assert not checker(SPLIT_ITEMS, ngram=200).check_response(answer(STAIRS)).contaminated  # longer than it
    assert not checker(SPLIT_ITEMS, check_responses=False).check_response(answer(STAIRS)).contaminated


def test_n_grams_shared_by_two_solutions_do_not_count() -> None:
    dec = checker(ngram=10)
    # The loop appears in two benchmark solutions: an idiom, not a leak.
    idiom = ("```python\ndef first_drop(xs):\n    for i in range(1, len(arr)):\n        if arr[i] < arr[i - 1]:\n"
             "            return None\n```")  # fmt: skip
    assert not dec.check_response(idiom).contaminated
    verdict = dec.check_response(f"Here:\n```python\n{ITEMS[0].solution}```")
    assert verdict.contaminated and verdict.field == "response" and verdict.benchmark_id == "Bench/1"


# ------------------------------------------------------------------------------------------------ prompt substrings


def test_an_instruction_holding_a_prompt_sentence_is_dropped() -> None:
    dec = checker()
    [hit, miss] = dec.check_instructions([
        "Please WRITE a function to find the shared elements from the given two lists of integers!  Be fast.",
        "Write a function to find the shared items of two given lists of integers.",  # reworded
    ])  # fmt: skip
    assert hit.contaminated and hit.method == "ngram" and hit.overlap == "prompt-substring"
    assert hit.benchmark_id == "Bench/1"
    assert hit.ngram == "write a function to find the shared elements from the given two lists of integers"
    assert not miss.contaminated and miss.method is None


def test_short_or_shared_prompt_sentences_are_not_used() -> None:
    items = [BenchmarkItem(id=f"B/{i}", prompt=f"The function should output with: a list. Task {i} sorts {i} ways.")
             for i in range(2)]  # fmt: skip
    dec = checker(items, min_prompt_chars=20)
    assert not dec.check_instructions(["The function should output with: a list."])[0].contaminated  # shared
    assert dec.check_instructions(["Sure. Task 1 sorts 1 ways."])[0].contaminated is False  # under 20 chars
    text = "Write a function to find the shared elements from the given two lists of integers."
    assert not checker(min_prompt_chars=100).check_instructions([text])[0].contaminated


# ------------------------------------------------------------------------------------------------ embeddings


def test_embedding_similarity_drops_near_duplicates_and_reports_the_nearest_items() -> None:
    dec = checker(ngram=None, min_prompt_chars=None, embedding_threshold=0.8, top_k=2)
    near, far = dec.check_instructions([
        "write a python function to count the number of rotations required to generate a sorted array",
        "Parse an ISO date string and return the weekday name in French.",
    ])  # fmt: skip
    assert near.contaminated and near.method == "embedding" and near.benchmark_id == "Bench/2"
    assert near.similarity is not None and near.similarity >= 0.8
    assert near.nearest[0].benchmark_id == "Bench/2" and len(near.nearest) == 2
    assert near.nearest[0].score >= near.nearest[1].score
    assert not far.contaminated and far.similarity is not None and far.similarity < 0.8


def test_the_judge_decides_only_the_borderline_band() -> None:
    asked: list[tuple[str, str]] = []

    def judge(instruction: str, prompt: str) -> bool:
        asked.append((instruction, prompt))
        return "yes" in instruction

    config = DecontamConfig(ngram=None, min_prompt_chars=None, embedding_threshold=0.99, judge_threshold=0.5)
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

    config = DecontamConfig(ngram=None, min_prompt_chars=None, embedding_threshold=0.99, judge_threshold=0.5)
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


def test_minilm_flags_a_paraphrased_prompt_and_ranks_it_first(tmp_path: Path) -> None:
    config = DecontamConfig(ngram=None, min_prompt_chars=None)  # the default threshold, the bundled MiniLM
    dec = Decontaminator(ITEMS, config, cache_dir=tmp_path)
    flagged, ranked, unrelated = dec.check_instructions([
        "Write a Python function that counts how many rotations are required to generate a sorted array.",
        "Write code that tells how many times a sorted array was rotated.",
        "Send an HTTP GET request and print the status code.",
    ])  # fmt: skip
    assert flagged.contaminated and flagged.method == "embedding" and flagged.benchmark_id == "Bench/2"
    assert ranked.nearest[0].benchmark_id == "Bench/2"
    assert ranked.similarity is not None and unrelated.similarity is not None
    assert ranked.similarity > unrelated.similarity + 0.2
    assert not unrelated.contaminated


# ------------------------------------------------------------------------------------------------ real benchmarks


def test_real_benchmarks_check_evaluation_splits_only() -> None:
    assert len(load_benchmark_items(["humaneval", "mbpp+"])) == 164 + 263  # MBPP+ dev 39 and test 224
    items = load_benchmark_items(["humaneval", "mbpp+"], splits=["train", "dev", "test"])
    by_id = {i.id: i for i in items}
    assert len(by_id) == 164 + 378
    assert [by_id[k].split for k in ("Mbpp/2", "Mbpp/12", "Mbpp/20", "Mbpp/555")] == ["train", "test", "test", "dev"]
    dec = Decontaminator(items, DecontamConfig(embedding_threshold=None))
    train, test, humaneval, fresh = dec.check_instructions([
        "Write a function to find the shared elements from the given two lists.",  # Mbpp/2
        "Write a function to sort a given matrix in ascending order according to the sum of its rows.",  # Mbpp/12
        "Check if in given list of numbers, are any two numbers closer to each other than given threshold.",
        "Write a function that renders a Markdown table from a list of dictionaries with aligned columns.",
    ])  # fmt: skip
    assert not train.contaminated and not fresh.contaminated
    assert test.contaminated and test.benchmark_id == "Mbpp/12"
    assert humaneval.contaminated and humaneval.benchmark_id == "HumanEval/0"
    for task_id in ("Mbpp/20", "Mbpp/555"):
        verdict = dec.check_response(answer(by_id[task_id].solution.strip() + "\n"))
        assert verdict.contaminated and verdict.benchmark_id == task_id
    assert not dec.check_response(answer(by_id["Mbpp/2"].solution.strip() + "\n")).contaminated


def test_the_teacher_judge_asks_the_configured_lm() -> None:
    import dspy

    from amr_dspy.decontam import teacher_judge
    from tests.fake_openai_server import FakeOpenAI

    with FakeOpenAI() as fake, dspy.context(lm=fake.lm(), adapter=dspy.ChatAdapter()):
        judge = teacher_judge()
        assert judge("Count rotations of a sorted array. SAME_TASK", ITEMS[1].prompt) is True
        assert judge("Count rotations of a sorted array.", ITEMS[1].prompt) is False
    assert len(fake.requests) == 2 and fake.requests[0]["instruction"].startswith("Count rotations")
