"""Benchmark tasks and plain instruction sets, loaded into one ``Task`` record.

MBPP+ and HumanEval+ come through evalplus's own loaders and ground-truth machinery, so the hidden
tests (inputs, expected outputs, tolerances and time limits) are exactly those ``evalplus.evaluate``
uses and pass@1 agrees with it. ``mbpp+stub`` is MBPP+ with each prompt rewritten as a completion-style
stub (``amr_dspy.stubs``): the same tasks, ids and hidden tests, asked the way HumanEval+ asks. Plain files
(JSONL, JSON list, parquet) and ``hf:`` datasets give instruction-only tasks without tests.

``bigcodebench[:split][@subset]`` (prose ``instruct_prompt``) and ``bigcodebench-complete[:split][@subset]``
(the ``complete_prompt`` stub) are BigCodeBench, one unittest module per task (``amr_dspy.bigcodebench``).
Its splits are fixed by N in ``BigCodeBench/N``: train N mod 10 in {0, 1, 2, 3}, dev N mod 10 = 4, test N mod 10
in {5, ..., 9}; its subsets by the task's libraries: ``stdlib``, ``core`` (the standard library plus numpy, pandas,
matplotlib, scipy, sklearn) and ``full`` (all, the default).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from amr_dspy.bigcodebench import BIGCODEBENCH_NAMES, BIGCODEBENCH_SPECS
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.rows import check_unique_id, file_rows, hf_rows, instruction_row
from amr_dspy.stubs import mbpp_stub
from amr_dspy.testcases import CallTest, Dataset, TestCase

__all__ = [
    "Dataset",
    "Task",
    "FieldMap",
    "load_tasks",
    "load_instructions",
    "mbpp_split",
    "evalplus_problems",
    "hidden_test_set",
    "benchmark_name",
    "BENCHMARK_NAMES",
    "BENCHMARK_SPECS",
]

Split = Literal["train", "dev", "test"]

BENCHMARK_NAMES = ("mbpp+", "mbpp+stub", "humaneval+", *BIGCODEBENCH_NAMES)
BENCHMARK_SPECS = (
    *(f"{name}{split}" for name in ("mbpp+", "mbpp+stub") for split in ("", ":train", ":dev", ":test")),
    "humaneval+",
    *BIGCODEBENCH_SPECS,
)

_MBPP_FILE = "MbppPlus-v0.2.0.jsonl.gz"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Task(BaseModel):
    """One coding task; ``tests`` and ``canonical_solution`` are hidden from the teacher."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_id: str
    instruction: str  # the raw prompt, all the teacher may see; programs frame a bare stub (amr_dspy.framing)
    entry_point: str | None = None
    tests: list[TestCase] = Field(default_factory=list, repr=False)
    dataset: Dataset | None = None  # selects evalplus's per-dataset comparison special cases
    source: str  # "mbpp+", "mbpp+stub", "humaneval+", "bigcodebench[-complete]", a file path or "hf:NAME"
    split: str | None = None
    # The program evalplus runs for ground truth (for HumanEval+ the prompt plus the body).
    canonical_solution: str | None = Field(default=None, repr=False)
    excluded: str | None = None  # why scoring leaves this task out (amr_dspy/data/bigcodebench_exclusions.json)

    @property
    def base_tests(self) -> list[TestCase]:
        return [t for t in self.tests if not t.plus]

    @property
    def plus_tests(self) -> list[TestCase]:
        return [t for t in self.tests if t.plus]


class FieldMap(BaseModel):
    """Where a plain instruction file keeps each field (column names)."""

    instruction_field: str = "instruction"
    input_field: str | None = "input"  # appended to the instruction when present and non-empty (Alpaca style)
    id_field: str | None = None  # default: "<file stem>/<row index>"
    solution_field: str | None = None
    entry_point_field: str | None = None


def mbpp_split(task_id: str) -> Split:
    """The split of an MBPP+ task, by the original MBPP id in ``Mbpp/N``."""
    n = int(task_id.rsplit("/", 1)[-1])
    if n <= 10 or n >= 601:
        return "train"
    return "dev" if n >= 511 else "test"


def hidden_test_set(spec: str) -> str:
    """The benchmark spec whose tasks and hidden tests ``spec`` uses: ``mbpp+stub:dev`` -> ``mbpp+:dev``,
    ``bigcodebench-complete:dev@core`` -> ``bigcodebench:dev@core``.

    Runs with the same hidden test set are paired task by task, whichever way the instructions were written.
    """
    name, sep, split = spec.strip().partition(":")
    base, at, subset = name.partition("@")
    prose = {"mbpp+stub": "mbpp+", "bigcodebench-complete": "bigcodebench"}.get(base, base)
    return f"{prose}{at}{subset}{sep}{split}"


def benchmark_name(spec: str) -> str | None:
    """The benchmark a spec names (``bigcodebench:dev@core`` -> ``bigcodebench``); None for files and ``hf:``."""
    name = spec.strip().partition(":")[0].partition("@")[0]
    return name if name in BENCHMARK_NAMES else None


def load_tasks(
    spec: str,
    *,
    limit: int | None = None,
    field_map: FieldMap | dict[str, Any] | None = None,
    **fields: str | None,
) -> list[Task]:
    """Load ``mbpp+[stub][:train|dev|test]``, ``humaneval+``, ``bigcodebench[-complete][:split][@subset]``,
    ``hf:NAME[:SPLIT]`` or a plain instruction file.

    ``fields`` (``instruction_field=...``, ``id_field=...``, ...) override ``field_map`` for plain files.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    fmap = _field_map(field_map, fields)
    spec = spec.strip()
    name, _, split = spec.partition(":")
    if benchmark_name(spec) in BIGCODEBENCH_NAMES:
        from amr_dspy.bigcodebench import bigcodebench_tasks

        tasks: Iterable[Task] = bigcodebench_tasks(spec)
    elif name in BENCHMARK_NAMES:
        tasks = _benchmark_tasks(name, split or None, spec)
    elif spec.startswith("hf:"):
        tasks = _hf_tasks(spec[3:], fmap)
    elif Path(spec).is_file():
        tasks = _file_tasks(Path(spec), fmap)
    else:
        raise ConfigError(
            f"unknown benchmark {spec!r}: expected mbpp+[:train|dev|test], mbpp+stub[:train|dev|test], humaneval+, "
            "bigcodebench[:train|dev|test][@stdlib|core|full], bigcodebench-complete[:train|dev|test]"
            "[@stdlib|core|full], hf:NAME[:SPLIT] or an existing file"
        )
    out = list(tasks)
    return out if limit is None else out[:limit]


def _field_map(field_map: FieldMap | dict[str, Any] | None, fields: dict[str, str | None]) -> FieldMap:
    base = field_map.model_dump() if isinstance(field_map, FieldMap) else dict(field_map or {})
    unknown = sorted(set(base) - set(FieldMap.model_fields)) + sorted(set(fields) - set(FieldMap.model_fields))
    if unknown:
        raise ConfigError(f"unknown field mapping option {unknown[0]!r}; known: {', '.join(FieldMap.model_fields)}")
    return FieldMap.model_validate({**base, **fields})


# --------------------------------------------------------------------------------------------
# evalplus benchmarks


def evalplus_problems(
    dataset: Literal["mbpp", "humaneval"],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """evalplus's problems and ground truth (``get_groundtruth``, cached where evalplus caches it)."""
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.evaluate import get_groundtruth

    problems, digest = _evalplus_problem_set(dataset)
    not_none = MBPP_OUTPUT_NOT_NONE_TASKS if dataset == "mbpp" else []
    try:
        # get_groundtruth prints progress lines; they would corrupt --json output.
        with contextlib.redirect_stdout(io.StringIO()):
            truth = get_groundtruth(problems, digest, not_none)
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise DataError(f"{dataset}+: cannot load the evalplus dataset ({type(exc).__name__}: {exc})") from exc
    return problems, truth


def _evalplus_problem_set(dataset: Literal["mbpp", "humaneval"]) -> tuple[dict[str, dict[str, Any]], str]:
    _point_evalplus_at_data()
    from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash, get_mbpp_plus, get_mbpp_plus_hash

    try:
        if dataset == "mbpp":
            return get_mbpp_plus(), get_mbpp_plus_hash()
        return get_human_eval_plus(), get_human_eval_plus_hash()
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise DataError(f"{dataset}+: cannot load the evalplus dataset ({type(exc).__name__}: {exc})") from exc


def load_instructions(spec: str) -> dict[str, str]:
    """Task id → instruction of a benchmark or file, as ``load_tasks`` words them, without computing evalplus's
    ground truth (minutes on a fresh machine) when only the instructions are wanted."""
    name, _, split = spec.strip().partition(":")
    if name not in BENCHMARK_NAMES or benchmark_name(spec) in BIGCODEBENCH_NAMES:
        return {t.task_id: t.instruction for t in load_tasks(spec)}
    dataset = _evalplus_dataset(name, split or None, spec)
    problems, _ = _evalplus_problem_set(dataset)
    return {task_id: _instruction(name, problem) for task_id, problem in problems.items()
            if split in ("", _split_of(dataset, task_id))}  # fmt: skip


def _evalplus_dataset(name: str, split: str | None, spec: str) -> Literal["mbpp", "humaneval"]:
    dataset: Literal["mbpp", "humaneval"] = "humaneval" if name == "humaneval+" else "mbpp"
    valid = ("train", "dev", "test") if dataset == "mbpp" else ("test",)
    if split is not None and split not in valid:
        raise ConfigError(f"unknown split in benchmark {spec!r}: expected one of {', '.join(valid)}")
    return dataset


def _split_of(dataset: Literal["mbpp", "humaneval"], task_id: str) -> str:
    return mbpp_split(task_id) if dataset == "mbpp" else "test"


def _instruction(name: str, problem: dict[str, Any]) -> str:
    """evalplus's raw prompt, ``task["prompt"].strip() + "\n"``; for HumanEval+ a bare stub, which the programs
    frame as evalplus's chat code generation does (an instruction line, the stub in a fenced block)."""
    if name == "mbpp+stub":  # the same task asked completion-style, from the solution's own signature
        return mbpp_stub(problem["prompt"], problem["canonical_solution"], problem["entry_point"])
    return str(problem["prompt"]).strip() + "\n"


def _benchmark_tasks(name: str, split: str | None, spec: str) -> Iterator[Task]:
    dataset = _evalplus_dataset(name, split, spec)
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT

    problems, truth = evalplus_problems(dataset)
    for task_id, problem in problems.items():
        task_split = _split_of(dataset, task_id)
        if split is not None and task_split != split:
            continue
        oracle = truth[task_id]
        tests: list[TestCase] = []
        for kind in ("base", "plus"):
            for i, (inp, expected, ref_s) in enumerate(
                zip(problem[f"{kind}_input"], oracle[kind], oracle[f"{kind}_time"], strict=True)
            ):
                limit_s = max(DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR * ref_s)
                tests.append(
                    CallTest(
                        name=f"{kind}_{i}",
                        inputs=list(inp),
                        expected=expected,
                        atol=float(problem["atol"]),
                        time_limit_s=limit_s,
                        plus=kind == "plus",
                    )
                )
        solution = problem["canonical_solution"]
        yield Task(
            task_id=task_id,
            instruction=_instruction(name, problem),
            entry_point=problem["entry_point"],
            tests=tests,
            dataset=dataset,
            source=name,
            split=task_split,
            canonical_solution=problem["prompt"] + solution if dataset == "humaneval" else solution.strip() + "\n",
        )


def _point_evalplus_at_data() -> None:
    """Resolve MBPP_OVERRIDE_PATH / HUMANEVAL_OVERRIDE_PATH now (evalplus reads them only at import time)."""
    mbpp = os.environ.get("MBPP_OVERRIDE_PATH") or _local_copy(_MBPP_FILE)
    humaneval = os.environ.get("HUMANEVAL_OVERRIDE_PATH") or None
    for var, value in (("MBPP_OVERRIDE_PATH", mbpp), ("HUMANEVAL_OVERRIDE_PATH", humaneval)):
        if value:
            os.environ[var] = value  # before the first evalplus import, and for its subprocesses
    import evalplus.data.humaneval
    import evalplus.data.mbpp

    evalplus.data.mbpp.MBPP_OVERRIDE_PATH = mbpp
    evalplus.data.humaneval.HUMANEVAL_OVERRIDE_PATH = humaneval


def _local_copy(filename: str) -> str | None:
    """An offline copy of an evalplus release under $AMR_DSPY_DATA or ../shared/data next to the project."""
    dirs = [Path(d) for d in [os.environ.get("AMR_DSPY_DATA")] if d] + [_PROJECT_ROOT.parent / "shared" / "data"]
    return next((str(d / filename) for d in dirs if (d / filename).is_file()), None)


# --------------------------------------------------------------------------------------------
# plain instruction sets


def _file_tasks(path: Path, fmap: FieldMap) -> Iterator[Task]:
    return _rows_to_tasks(file_rows(path), fmap, source=str(path), stem=path.stem)


def _hf_tasks(ref: str, fmap: FieldMap) -> Iterator[Task]:
    name, _, split = ref.partition(":")
    if not name:
        raise ConfigError("hf: benchmark needs a dataset name, as in hf:NAME[:SPLIT]")
    split = split or "train"
    stem = name.rstrip("/").rsplit("/", 1)[-1]
    return _rows_to_tasks(hf_rows(name, split), fmap, source=f"hf:{name}", stem=stem, split=split)


def _rows_to_tasks(
    rows: Iterable[tuple[str, Any]], fmap: FieldMap, *, source: str, stem: str, split: str | None = None
) -> Iterator[Task]:
    seen: set[str] = set()
    for index, (where, row) in enumerate(rows):
        task_id, instruction = instruction_row(where, index, row, stem=stem, instruction_field=fmap.instruction_field,
                                               input_field=fmap.input_field, id_field=fmap.id_field)  # fmt: skip
        check_unique_id(seen, where, task_id)
        yield Task(
            task_id=task_id,
            instruction=instruction,
            entry_point=_optional_str(row, fmap.entry_point_field),
            source=source,
            split=split,
            canonical_solution=_optional_str(row, fmap.solution_field),
        )


def _optional_str(row: dict[str, Any], field: str | None) -> str | None:
    value = row.get(field) if field else None
    return value if isinstance(value, str) and value else None
