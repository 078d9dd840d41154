"""How many samples selection needs: the pass rate of the chosen answer as a function of N, from one run.

A direct-select or amr-select run records its whole candidate pool per task (``selection`` in predictions.jsonl):
every candidate's code and what it did on the instruction's examples and the teacher's tests. Choosing again among
the direct answer and only the first N samples (with the early exit the program would apply at N) replays what a
run with ``--select-samples N`` would have chosen, without the teacher: the samples are drawn with their own
rollout ids in order, so the first N of a larger run are the N a smaller run draws. Each candidate's code is checked
once on the hidden tests, which also gives the oracle (some candidate in the pool passes): the headroom that
a perfect choice would realise. This is how the default N is chosen, on train and dev, never on test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from amr_dspy.agreement import CandidateRun, Selection, choose, exits_early, settled
from amr_dspy.errors import ConfigError
from amr_dspy.evaluation import check_solutions, execution_limits
from amr_dspy.sandbox import Sandbox
from amr_dspy.stats import mcnemar_exact
from amr_dspy.tasks import Task

__all__ = ["CurvePoint", "SelectionCurve", "replay", "selection_curve", "read_selections", "hidden_passes",
           "curve_markdown"]


class CurvePoint(BaseModel):
    """What selection with N samples (and the early exit after ``early_exit_after`` agreeing ones) would give."""

    samples: int
    early_exit_after: int
    passed: int  # tasks whose chosen answer passes base and plus tests
    oracle: int  # tasks where some candidate of the pool passes
    early_exits: int  # tasks that stop at the direct answer
    answers_per_task: float  # answers drawn from the teacher per task (direct, samples; evolved not counted)
    fixed: int  # tasks the chosen answer passes and the direct answer fails
    broken: int
    p_value: float  # exact McNemar against the direct answer


class SelectionCurve(BaseModel):
    run: str
    benchmark: str
    variant: str
    n_tasks: int
    max_samples: int
    direct_passed: int
    points: list[CurvePoint]


def read_selections(run: Path) -> tuple[dict[str, Selection], dict[str, object]]:
    """The ``selection`` of every task of an eval folder, and its results.json."""
    results_path, predictions_path = run / "results.json", run / "predictions.jsonl"
    for path in (results_path, predictions_path):
        if not path.is_file():
            raise ConfigError(f"{path}: not found; expected an eval folder of a direct-select or amr-select run")
    results = json.loads(results_path.read_text())
    selections: dict[str, Selection] = {}
    for number, line in enumerate(predictions_path.read_text().splitlines(), 1):
        record = json.loads(line)
        if record.get("selection") is None:
            raise ConfigError(f"{predictions_path}:{number}: task {record.get('task_id')} has no selection record "
                              "(not a direct-select or amr-select run)")  # fmt: skip
        selections[record["task_id"]] = Selection.model_validate(record["selection"])
    return selections, results


def replay(selection: Selection, samples: int, early_exit_after: int) -> tuple[CandidateRun, bool, list[CandidateRun]]:
    """The candidate that ``samples`` samples and the early exit would have chosen, whether it exited early, and
    the pool it chose from."""
    runs = selection.candidates
    direct, drawn = runs[0], [r for r in runs if r.kind == "sample"]
    evolved = [r for r in runs if r.kind == "evolved"]
    if settled([direct]):
        return direct, True, [direct]
    first = min(early_exit_after, samples)
    opening = [direct, *drawn[:first]]
    if exits_early(opening, first):
        return choose(opening)[0], True, opening
    pool = [direct, *drawn[:first], *evolved, *drawn[first:samples]]
    return choose(pool)[0], False, pool


def selection_curve(run: Path, tasks: Sequence[Task], *, benchmark: str, early_exit_after: Sequence[int] = (0, 1, 2),
                    workers: int = 2) -> SelectionCurve:  # fmt: skip
    """Replay the run's choices for every N up to the samples it drew, for each early-exit setting."""
    selections, results = read_selections(run)
    by_id = {t.task_id: t for t in tasks}
    missing = sorted(set(selections) - set(by_id))
    if missing:
        raise ConfigError(f"{run}: task {missing[0]} is not in {benchmark} (is --benchmark the run's benchmark?)")
    passes = hidden_passes(selections, by_id, workers)
    max_samples = max((sum(r.kind == "sample" for r in s.candidates) for s in selections.values()), default=0)
    direct = {tid: passes[(tid, s.candidates[0].code)] for tid, s in selections.items()}
    points = [_point(selections, passes, direct, n, e) for e in early_exit_after for n in range(max_samples + 1)]
    return SelectionCurve(run=str(run), benchmark=benchmark, variant=str(results.get("variant")),
                          n_tasks=len(selections), max_samples=max_samples, direct_passed=sum(direct.values()),
                          points=points)  # fmt: skip


def hidden_passes(selections: dict[str, Selection], tasks: dict[str, Task],
                   workers: int) -> dict[tuple[str, str | None], bool]:  # fmt: skip
    pairs = sorted({(tid, run.code) for tid, s in selections.items() for run in s.candidates},
                   key=lambda pair: (pair[0], pair[1] or ""))  # fmt: skip
    chosen_tasks = [tasks[tid] for tid, _ in pairs]
    with Sandbox(execution_limits(chosen_tasks), workers=workers) as sandbox:
        checks = check_solutions(sandbox, [(tasks[tid], code) for tid, code in pairs])
    return {pair: check.base_passed and check.plus_passed for pair, check in zip(pairs, checks, strict=True)}


def _point(selections: dict[str, Selection], passes: dict[tuple[str, str | None], bool], direct: dict[str, bool],
           samples: int, early_exit_after: int) -> CurvePoint:  # fmt: skip
    passed = oracle = exits = drawn = fixed = broken = 0
    for tid, selection in selections.items():
        chosen, exited, pool = replay(selection, samples, early_exit_after)
        ok = passes[(tid, chosen.code)]
        passed += ok
        oracle += any(passes[(tid, run.code)] for run in pool)
        exits += exited
        drawn += sum(run.kind != "evolved" for run in pool)
        fixed += ok and not direct[tid]
        broken += direct[tid] and not ok
    return CurvePoint(samples=samples, early_exit_after=early_exit_after, passed=passed, oracle=oracle,
                      early_exits=exits, answers_per_task=drawn / max(len(selections), 1), fixed=fixed,
                      broken=broken, p_value=mcnemar_exact(fixed, broken))  # fmt: skip


def curve_markdown(curves: Sequence[SelectionCurve]) -> str:
    """One table per run: pass rate, oracle and early exits for each N and early-exit setting."""
    parts = []
    for curve in curves:
        n = curve.n_tasks
        parts += [f"### {curve.variant} on {curve.benchmark} ({n} tasks; `{curve.run}`)", "",
                  f"Direct answer alone: {curve.direct_passed}/{n} ({100 * curve.direct_passed / n:.1f}%).", "",
                  "| N samples | early exit after | chosen passes | Δ vs direct (p; fixed, broken) | oracle | "
                  "early exits | answers drawn/task |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for p in curve.points:
            delta = 100 * (p.passed - curve.direct_passed) / n
            parts.append(f"| {p.samples} | {p.early_exit_after} | {p.passed} ({100 * p.passed / n:.1f}%) | "
                         f"{delta:+.1f} (p {p.p_value:.2f}; {p.fixed}, {p.broken}) | {p.oracle} "
                         f"({100 * p.oracle / n:.1f}%) | {p.early_exits} | {p.answers_per_task:.2f} |")  # fmt: skip
        parts.append("")
    return "\n".join(parts)
