"""Pass@1 by instruction complexity: does a variant's gain over the baseline grow with what an instruction asks?

AMR-Evol's claim is that modular evolution matters most for complex instructions. Two measures, both read from
the instruction alone so that they apply to every benchmark: the libraries it imports (a BigCodeBench instruct
prompt ends with the code to start from, whose imports are the libraries the task uses; an MBPP+ prompt imports
none, so that measure is left out there) and its length in words. Tasks are cut at the tertiles of a measure
(tied values stay together, so a measure with few distinct values gives fewer groups); each stratum shows every
variant's pass@1 (base+plus) and its paired difference to the baseline on the stratum's tasks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Literal

from pydantic import BaseModel

from amr_dspy.stats import PairedTest, paired_test

__all__ = [
    "Measure",
    "StratumCell",
    "Stratum",
    "ComplexitySplit",
    "imported_libraries",
    "word_count",
    "complexity_splits",
]

Measure = Literal["libraries", "words"]

_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_ALIASED = rf"{_NAME}(?:[ \t]+as[ \t]+\w+)?"
# whole import statements on their own line, so that prose like "import the rows from a file" is not one
_FROM = rf"from[ \t]+({_NAME})[ \t]+import[ \t]+[\w(*]"
_PLAIN = rf"import[ \t]+({_ALIASED}(?:[ \t]*,[ \t]*{_ALIASED})*)[ \t]*$"
_IMPORT = re.compile(rf"^[ \t>]*(?:{_FROM}|{_PLAIN})", re.M)
_ALIAS = re.compile(r"[ \t]+as[ \t]+\w+")


class StratumCell(BaseModel):
    """One variant on one stratum's tasks."""

    label: str
    passed: int  # tasks passing base+plus
    vs_baseline: PairedTest | None = None  # None for the baseline itself


class Stratum(BaseModel):
    name: str  # e.g. "2–3 libraries", "41–62 words"
    low: int
    high: int
    task_ids: list[str]
    cells: list[StratumCell]

    @property
    def n(self) -> int:
        return len(self.task_ids)


class ComplexitySplit(BaseModel):
    measure: Measure
    strata: list[Stratum]


def imported_libraries(instruction: str) -> set[str]:
    """The top-level modules an instruction's code imports (``import a.b as c, d`` → {a, d}; ``from e.f`` → {e})."""
    found: set[str] = set()
    for match in _IMPORT.finditer(instruction):
        if match.group(1):
            found.add(match.group(1).split(".")[0])
            continue
        for name in _ALIAS.sub("", match.group(2)).split(","):
            if name.strip():
                found.add(name.strip().split(".")[0])
    return found


def word_count(instruction: str) -> int:
    return len(instruction.split())


_MEASURES: dict[Measure, Callable[[str], int]] = {
    "libraries": lambda text: len(imported_libraries(text)),
    "words": word_count,
}


def complexity_splits(
    instructions: Mapping[str, str],
    outcomes: Sequence[tuple[str, Mapping[str, bool]]],
    *,
    baseline: str,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> list[ComplexitySplit]:
    """Each measure's strata over the tasks of ``instructions`` (task id → instruction).

    ``outcomes``: per variant (label, task id → passed base+plus), the baseline among them. A measure that puts
    every task in one stratum (no MBPP+ prompt imports a library) is left out.
    """
    by_label = dict(outcomes)
    if baseline not in by_label:
        raise ValueError(f"baseline {baseline!r} is not among the variants: {', '.join(by_label)}")
    test = partial(paired_test, confidence=confidence, resamples=resamples, seed=seed)
    splits = []
    for measure, score in _MEASURES.items():
        values = {task_id: score(text) for task_id, text in instructions.items()}
        groups = _tertiles(values)
        if len(groups) < 2:
            continue
        strata = [_stratum(ids, values, measure, outcomes, baseline, by_label[baseline], test) for ids in groups]
        splits.append(ComplexitySplit(measure=measure, strata=strata))
    return splits


def _tertiles(values: Mapping[str, int]) -> list[list[str]]:
    """Task ids cut at the values of the 1/3 and 2/3 quantiles (``v <= q1``, ``q1 < v <= q2``, ``v > q2``)."""
    if not values:
        return []
    ordered = sorted(values.values())
    q1, q2 = (ordered[math.ceil(len(ordered) * k / 3) - 1] for k in (1, 2))
    bounds = [(-math.inf, q1), (q1, q2), (q2, math.inf)]
    groups = [[t for t, v in values.items() if low < v <= high] for low, high in bounds]
    return [g for g in groups if g]


def _stratum(
    task_ids: list[str],
    values: Mapping[str, int],
    unit: str,
    outcomes: Sequence[tuple[str, Mapping[str, bool]]],
    baseline: str,
    reference: Mapping[str, bool],
    test: Callable[[Sequence[bool], Sequence[bool]], PairedTest],
) -> Stratum:
    low, high = min(values[t] for t in task_ids), max(values[t] for t in task_ids)
    name = f"{low} {unit}" if low == high else f"{low}–{high} {unit}"
    base = [reference[t] for t in task_ids]
    cells = [
        StratumCell(
            label=label,
            passed=sum(passed[t] for t in task_ids),
            vs_baseline=None if label == baseline else test(base, [passed[t] for t in task_ids]),
        )
        for label, passed in outcomes
    ]
    return Stratum(name=name, low=low, high=high, task_ids=task_ids, cells=cells)
