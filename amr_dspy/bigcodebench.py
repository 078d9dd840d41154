"""BigCodeBench (Apache-2.0) as project tasks: ``bigcodebench[:split][@subset]`` and ``bigcodebench-complete``.

Rows come from the offline copy ``BigCodeBench-hf.jsonl.gz`` (``$BIGCODEBENCH_OVERRIDE_PATH`` first, as the
``bigcodebench`` package reads it, then ``$AMR_DSPY_DATA`` and ``../shared/data`` next to the project). A task's
instruction is ``instruct_prompt`` (prose; ``bigcodebench-complete``: ``complete_prompt``, the stub with its
docstring, which the programs frame as a completion), its entry point ``task_func``, its canonical solution
``code_prompt + canonical_solution`` and its hidden test the ``test`` module (``class TestCases``), run as one
:class:`~amr_dspy.testcases.UnitTestModule`: a task passes when every test method passes (BigCodeBench's pass@1).

Splits, fixed by N in ``BigCodeBench/N``: **train** N mod 10 in {0, 1, 2, 3}, **dev** N mod 10 = 4, **test**
N mod 10 in {5, ..., 9}. Subsets, by the task's ``libs``: **stdlib** only the standard library
(``sys.stdlib_module_names``), **core** the standard library plus numpy, pandas, matplotlib (with its
``mpl_toolkits``), scipy and sklearn, **full** everything (the default).

``amr_dspy/data/bigcodebench_exclusions.json`` maps task ids to the reason their canonical solution cannot pass
here for reasons outside the answer (network, changed library behaviour, the sandbox's limits); evaluation leaves
them out of scoring and reports them as excluded. A library that is merely not installed is not listed there:
its tasks are reported as skipped at run time, and count again once it is installed.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.testcases import UnitTestModule

if TYPE_CHECKING:
    from amr_dspy.tasks import Task

__all__ = [
    "BIGCODEBENCH_NAMES",
    "BIGCODEBENCH_SPECS",
    "CORE_LIBRARIES",
    "TIME_LIMIT_S",
    "BigCodeBenchRow",
    "Subset",
    "bigcodebench_split",
    "bigcodebench_subset",
    "bigcodebench_tasks",
    "calibration",
    "data_file",
    "exclusions",
    "parse_spec",
    "imported_modules",
]

BIGCODEBENCH_NAMES = ("bigcodebench", "bigcodebench-complete")
Subset = Literal["stdlib", "core", "full"]
Split = Literal["train", "dev", "test"]
BIGCODEBENCH_SPECS = tuple(
    f"{name}{split}{subset}"
    for name in BIGCODEBENCH_NAMES
    for split in ("", ":train", ":dev", ":test")
    for subset in ("", "@stdlib", "@core", "@full")
)

TIME_LIMIT_S = 60.0  # the whole test module: several seconds go to importing pandas, matplotlib and sklearn
CORE_LIBRARIES = frozenset({"numpy", "pandas", "matplotlib", "mpl_toolkits", "scipy", "sklearn"})  # import names
_FILE = "BigCodeBench-hf.jsonl.gz"
_EXCLUSIONS = "bigcodebench_exclusions.json"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


class BigCodeBenchRow(BaseModel):
    """One row of the BigCodeBench release (the fields the project reads)."""

    model_config = ConfigDict(extra="ignore")

    task_id: str
    instruct_prompt: str
    complete_prompt: str
    code_prompt: str
    canonical_solution: str
    test: str
    entry_point: str
    libs: str  # a Python list literal of import names, e.g. "['random', 'itertools']"

    def libraries(self) -> list[str]:
        try:
            value = ast.literal_eval(self.libs)
        except (SyntaxError, ValueError) as exc:
            raise DataError(f"{self.task_id}: libs is not a list literal ({self.libs[:60]!r})") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DataError(f"{self.task_id}: libs is not a list of names ({self.libs[:60]!r})")
        return value


def parse_spec(spec: str) -> tuple[str, Split | None, Subset]:
    """``bigcodebench-complete:dev@core`` -> (``bigcodebench-complete``, ``dev``, ``core``); ConfigError if unknown."""
    base, _, subset = spec.strip().partition("@")
    name, _, split = base.partition(":")
    if name not in BIGCODEBENCH_NAMES:
        raise ConfigError(f"unknown benchmark {spec!r}: expected one of {', '.join(BIGCODEBENCH_NAMES)}")
    if split and split not in get_args(Split):
        raise ConfigError(f"unknown split in benchmark {spec!r}: expected one of {', '.join(get_args(Split))}")
    if subset and subset not in get_args(Subset):
        raise ConfigError(f"unknown subset in benchmark {spec!r}: expected one of {', '.join(get_args(Subset))}")
    return name, (split or None), (subset or "full")  # type: ignore[return-value]


def bigcodebench_split(task_id: str) -> Split:
    """The split of ``BigCodeBench/N``: train N mod 10 in 0-3, dev 4, test 5-9."""
    try:
        n = int(task_id.rsplit("/", 1)[-1])
    except ValueError as exc:
        raise DataError(f"{task_id!r}: not a BigCodeBench task id (BigCodeBench/N)") from exc
    digit = n % 10
    return "train" if digit <= 3 else "dev" if digit == 4 else "test"


def bigcodebench_subset(libraries: list[str]) -> Subset:
    """The smallest subset a task with these ``libs`` belongs to."""
    if all(lib in sys.stdlib_module_names for lib in libraries):
        return "stdlib"
    if all(lib in sys.stdlib_module_names or lib in CORE_LIBRARIES for lib in libraries):
        return "core"
    return "full"


def _in_subset(task_subset: Subset, wanted: Subset) -> bool:
    order = get_args(Subset)
    return order.index(task_subset) <= order.index(wanted)


def imported_modules(source: str) -> list[str]:
    """The top-level modules a test module imports (absolute imports anywhere in it)."""
    try:
        with warnings.catch_warnings():  # test modules write regexes like '\d' in plain strings
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            tree = ast.parse(source)
    except SyntaxError:
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(names)


def bigcodebench_tasks(spec: str) -> Iterator[Task]:
    """The tasks of ``bigcodebench[-complete][:split][@subset]``, in the release's order."""
    from amr_dspy.tasks import Task

    name, split, subset = parse_spec(spec)
    excluded = exclusions()
    for row in _rows(data_file()):
        libraries = row.libraries()
        task_split = bigcodebench_split(row.task_id)
        if (split is not None and task_split != split) or not _in_subset(bigcodebench_subset(libraries), subset):
            continue
        test = UnitTestModule(name="TestCases", source=row.test, time_limit_s=TIME_LIMIT_S,
                              libraries=sorted(set(libraries) | set(imported_modules(row.test))),
                              prelude=calibration(row.code_prompt))  # fmt: skip
        yield Task(
            task_id=row.task_id,
            instruction=row.complete_prompt if name == "bigcodebench-complete" else row.instruct_prompt,
            entry_point=row.entry_point,
            tests=[test],
            dataset="bigcodebench",
            source=name,
            split=task_split,
            canonical_solution=row.code_prompt + row.canonical_solution,
            excluded=excluded.get(row.task_id),
        )


def calibration(code_prompt: str) -> str:
    """What the reference harness runs before a solution by default (``evaluate --calibrated``): the code prompt
    with ``pass`` as ``task_func``'s body, so the prompt's imports and constants are defined for every answer."""
    return code_prompt + "\n    pass\n"


@cache
def exclusions() -> dict[str, str]:
    """Task id -> why its canonical solution cannot pass here (``amr_dspy/data/bigcodebench_exclusions.json``)."""
    text = resources.files("amr_dspy").joinpath("data", _EXCLUSIONS).read_text(encoding="utf-8")
    try:
        table = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"amr_dspy/data/{_EXCLUSIONS}: invalid JSON ({exc.msg})") from exc
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise DataError(f"amr_dspy/data/{_EXCLUSIONS}: expected an object of task id -> reason")
    return table


def data_file() -> Path:
    """The release file: ``$BIGCODEBENCH_OVERRIDE_PATH``, else the first ``BigCodeBench-hf.jsonl.gz`` found."""
    override = os.environ.get("BIGCODEBENCH_OVERRIDE_PATH")
    if override:
        if not Path(override).is_file():
            raise DataError(f"BIGCODEBENCH_OVERRIDE_PATH={override}: no such file")
        return Path(override)
    dirs = [Path(d) for d in [os.environ.get("AMR_DSPY_DATA")] if d] + [_PROJECT_ROOT.parent / "shared" / "data"]
    found = next((d / _FILE for d in dirs if (d / _FILE).is_file()), None)
    if found is None:
        raise DataError(
            f"bigcodebench: {_FILE} not found in {', '.join(str(d) for d in dirs)}; "
            "set BIGCODEBENCH_OVERRIDE_PATH to a local copy (JSONL, optionally gzipped)"
        )
    return found


def _rows(path: Path) -> Iterator[BigCodeBenchRow]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip():
                    yield _row(line, f"{path}:{lineno}")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read BigCodeBench ({type(exc).__name__}: {exc})") from exc


def _row(line: str, where: str) -> BigCodeBenchRow:
    try:
        return BigCodeBenchRow.model_validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise DataError(f"{where}: not a BigCodeBench row ({field}: {first['msg']})") from exc
