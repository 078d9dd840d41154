"""Compare program variants on identical tasks: parse the variant list, load eval runs, build the report.

Each variant's run is an ordinary eval folder (samples.jsonl, predictions.jsonl, results.json), so a
comparison can be built from runs made by ``amr-dspy compare`` or by separate ``amr-dspy eval`` calls.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from amr_dspy.complexity import complexity_splits
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.evaluation import EvalResults, TaskResult, package_versions, read_results
from amr_dspy.report import (
    FAILURE_CATEGORIES,
    ComparisonReport,
    TaskChange,
    TaskOutcome,
    VariantChanges,
    VariantReport,
)
from amr_dspy.stats import DEFAULT_RESAMPLES, bootstrap_ci, paired_test
from amr_dspy.tasks import hidden_test_set
from optimize.artifact import manifest_path

__all__ = [
    "VariantEntry",
    "EvalRun",
    "parse_variant_entries",
    "manifest_path",
    "variant_dir",
    "load_eval_dir",
    "check_same_tasks",
    "build_report",
    "short_diff",
]

DIFF_LINES = 8  # lines of each fixed/broken task's diff kept in the report


class VariantEntry(BaseModel):
    """One item of ``--variants``: a variant name, or a compiled program artifact (a ``.json`` path)."""

    label: str  # the name the report shows; unique within a comparison
    variant: str  # the program variant to build (from the artifact's manifest for an artifact)
    artifact: Path | None = None


class EvalRun(BaseModel):
    """A finished eval folder: its results and each task's extracted code."""

    directory: Path
    label: str
    results: EvalResults
    codes: dict[str, str | None]


# --------------------------------------------------------------------------------------------
# variants


def _manifest_variant(artifact: Path) -> str:
    manifest = manifest_path(artifact)
    if not artifact.is_file():
        raise ConfigError(f"--variants: program artifact {artifact} does not exist")
    if not manifest.is_file():
        raise ConfigError(f"--variants: {artifact} has no manifest {manifest.name} naming its variant")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{manifest}: not valid JSON ({exc})") from None
    variant = data.get("variant") if isinstance(data, dict) else None
    if not isinstance(variant, str):
        raise DataError(f"{manifest}: expected an object with a string 'variant'")
    return variant


def parse_variant_entries(spec: str) -> list[VariantEntry]:
    """Split ``direct,cot,path/to/prog.json`` into entries; unknown variants and duplicates are errors."""
    from amr_dspy.programs import VARIANTS

    entries = []
    for raw in (item.strip() for item in spec.split(",")):
        if not raw:
            raise ConfigError(f"--variants {spec!r}: empty entry; give names separated by commas, e.g. direct,cot")
        if raw.endswith(".json") or "/" in raw:
            artifact = Path(raw)
            entry = VariantEntry(label=artifact.stem, variant=_manifest_variant(artifact), artifact=artifact)
        else:
            entry = VariantEntry(label=raw, variant=raw)
        if entry.variant not in VARIANTS:
            where = f" (from {manifest_path(entry.artifact)})" if entry.artifact else ""
            raise ConfigError(f"--variants: unknown variant {entry.variant!r}{where}; known: {', '.join(VARIANTS)}")
        entries.append(entry)
    labels = [e.label for e in entries]
    duplicate = next((label for label in labels if labels.count(label) > 1), None)
    if duplicate is not None:
        raise ConfigError(
            f"--variants: {duplicate!r} appears twice; each variant runs once "
            "(a compiled program is named after its file)"
        )
    if len(entries) < 2:
        raise ConfigError(f"--variants {spec!r}: a comparison needs at least two variants")
    return entries


def _paid_per_task(tasks: Sequence[TaskResult]) -> float | None:
    paid = [(t.paid_prompt_tokens, t.paid_completion_tokens) for t in tasks]
    if not paid or any(p is None or c is None for p, c in paid):
        return None
    return sum((p or 0) + (c or 0) for p, c in paid) / len(paid)


def variant_dir(out: Path, label: str) -> Path:
    return out / (re.sub(r"[^A-Za-z0-9._+-]+", "-", label).strip("-") or "variant")


# --------------------------------------------------------------------------------------------
# eval folders


def _run_label(results: EvalResults, directory: Path) -> str:
    if results.artifact:
        return Path(results.artifact).stem
    if results.variant:
        return results.variant
    if results.samples:
        return Path(results.samples).stem
    return directory.name


def load_eval_dir(directory: Path) -> EvalRun:
    """Read an eval folder's results.json and the code of each task (predictions.jsonl, else samples.jsonl)."""
    results = read_results(directory)
    codes: dict[str, str | None] = {}
    for name, key in (("predictions.jsonl", "code"), ("samples.jsonl", "solution")):
        if (directory / name).is_file():
            codes = _read_codes(directory / name, key)
            break
    return EvalRun(directory=directory, label=_run_label(results, directory), results=results, codes=codes)


def _read_codes(path: Path, key: str) -> dict[str, str | None]:
    codes: dict[str, str | None] = {}
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
                raise DataError(f"{path}:{lineno}: expected an object with a string 'task_id'")
            code = row.get(key)
            codes[row["task_id"]] = code if isinstance(code, str) and code.strip() else None
    return codes


def first_tasks(run: EvalRun, n: int) -> EvalRun:
    """The run's first ``n`` tasks, as a run with ``--limit n`` would have them: a longer run compared on a prefix.

    Its wall time is scaled to the prefix, so seconds per task stay the run's mean over everything it ran.
    """
    results = run.results
    if n >= len(results.tasks):
        return run
    kept = results.tasks[:n]
    sliced = results.recollect(kept, wall_s=results.wall_s * n / len(results.tasks))
    ids = {t.task_id for t in kept}
    return run.model_copy(update={"results": sliced, "codes": {k: v for k, v in run.codes.items() if k in ids}})


def check_same_tasks(runs: Sequence[EvalRun]) -> None:
    """Refuse runs that are not on the same benchmark and the same task set: their pass@1 are not comparable.

    ``mbpp+stub:dev`` and ``mbpp+:dev`` count as one benchmark: the same tasks and hidden tests, asked two ways.
    """
    first = runs[0]
    ids = [t.task_id for t in first.results.tasks]
    for run in runs[1:]:
        if hidden_test_set(run.results.benchmark) != hidden_test_set(first.results.benchmark):
            raise ConfigError(
                f"{run.directory}: benchmark {run.results.benchmark}, but {first.directory} is "
                f"{first.results.benchmark}; compare runs on the same benchmark"
            )
        other = {t.task_id for t in run.results.tasks}
        if other != set(ids) or len(run.results.tasks) != len(ids):
            missing = next((t for t in ids if t not in other), None)
            extra = next((t for t in sorted(other) if t not in set(ids)), None)
            example = f"{missing} missing" if missing else f"{extra} extra" if extra else "a task repeated"
            raise ConfigError(
                f"{run.directory}: {len(run.results.tasks)} tasks, {first.directory}: {len(ids)} tasks, not the same "
                f"set ({example}); compare runs on identical tasks (same benchmark and --limit)"
            )


def _unique_labels(runs: Sequence[EvalRun]) -> list[str]:
    """Each run's label; runs that share one (say amr with and without the guard) are named after their folders."""
    labels = [r.label for r in runs]
    for rename in (_folder_label, lambda run: run.directory.name):
        clashing = {label for label in labels if labels.count(label) > 1}
        labels = [rename(run) if label in clashing else label for run, label in zip(runs, labels, strict=True)]
    duplicate = next((label for label in labels if labels.count(label) > 1), None)
    if duplicate is not None:
        raise ConfigError(
            f"two eval folders are both called {duplicate!r}; rename one so the report can tell them apart"
        )
    return labels


def _folder_label(run: EvalRun) -> str:
    """The folder name less a benchmark suffix: ``amr-noguard-mbpp+dev`` -> ``amr-noguard``."""
    name, benchmark = run.directory.name, run.results.benchmark
    for suffix in {benchmark.replace(":", ""), benchmark.replace(":", "-")}:
        if name.endswith(f"-{suffix}") and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1]
    return name


# --------------------------------------------------------------------------------------------
# the report


def short_diff(before: str | None, after: str | None, *, fromfile: str, tofile: str) -> tuple[list[str], int]:
    """The first ``DIFF_LINES`` lines of a unified diff (headers dropped) and the whole diff's length."""
    lines = list(
        difflib.unified_diff(
            (before or "").splitlines(), (after or "").splitlines(), fromfile=fromfile, tofile=tofile, lineterm="", n=1
        )
    )[2:]  # the ---/+++ headers: the report already names both sides
    return lines[:DIFF_LINES], len(lines)


def _categories(failures: dict[str, int]) -> dict[str, int]:
    folded = dict.fromkeys(FAILURE_CATEGORIES, 0)
    for name, n in failures.items():
        folded[name if name in folded else "error"] += n
    return folded


def _variant_report(
    run: EvalRun, label: str, order: list[str], baseline: EvalRun | None, **stats: Any
) -> VariantReport:
    by_id = {t.task_id: t for t in run.results.tasks}
    tasks = [by_id[t] for t in order]
    n = len(tasks)
    base = [t.base_passed for t in tasks]
    plus = [t.plus_passed for t in tasks]
    paired: dict[str, Any] = {}
    if baseline is not None:
        reference = {t.task_id: t for t in baseline.results.tasks}
        paired = {
            "vs_baseline_base": paired_test([reference[t].base_passed for t in order], base, **stats),
            "vs_baseline_plus": paired_test([reference[t].plus_passed for t in order], plus, **stats),
        }
    raw = {name: count for name, count in sorted(run.results.failures.items())}
    return VariantReport(
        label=label,
        variant=run.results.variant,
        artifact=run.results.artifact,
        teacher=run.results.teacher,
        source=str(run.directory),
        ran_program=run.results.samples is None,
        pass_base=bootstrap_ci(base, **stats),
        pass_plus=bootstrap_ci(plus, **stats),
        **paired,
        tokens_per_task=sum(t.prompt_tokens + t.completion_tokens for t in tasks) / n,
        paid_tokens_per_task=_paid_per_task(tasks),
        lm_calls_per_task=sum(t.lm_calls for t in tasks) / n,
        uncached_lm_calls_per_task=sum(t.uncached_lm_calls for t in tasks) / n,
        # the run's wall time per task: tasks run in parallel and wait on one teacher, so per-task times overlap
        s_per_task=run.results.wall_s / max(1, len(run.results.tasks)),
        failures=_categories(raw),
        raw_failures=raw,
        outcomes=[
            TaskOutcome(task_id=t.task_id, base=t.base_passed, plus=t.plus_passed, failure=t.failure) for t in tasks
        ],
    )


def _changes(run: EvalRun, label: str, baseline: EvalRun, baseline_label: str, order: list[str]) -> VariantChanges:
    mine = {t.task_id: t for t in run.results.tasks}
    theirs = {t.task_id: t for t in baseline.results.tasks}
    fixed: list[TaskChange] = []
    broken: list[TaskChange] = []
    for task_id in order:
        if mine[task_id].plus_passed == theirs[task_id].plus_passed:
            continue
        diff, total = short_diff(
            baseline.codes.get(task_id), run.codes.get(task_id), fromfile=baseline_label, tofile=label
        )
        change = TaskChange(
            task_id=task_id,
            baseline_failure=theirs[task_id].failure,
            variant_failure=mine[task_id].failure,
            diff=diff,
            diff_lines=total,
        )
        (fixed if mine[task_id].plus_passed else broken).append(change)
    return VariantChanges(label=label, fixed=fixed, broken=broken)


def build_report(
    runs: Sequence[EvalRun],
    *,
    baseline: str | None = None,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    instructions: Mapping[str, str] | None = None,
) -> ComparisonReport:
    """Compare ``runs`` (on identical tasks) against the one labelled ``baseline`` (default: the first).

    ``instructions`` (task id → instruction, every compared task) adds pass@1 by instruction complexity.
    """
    if len(runs) < 2:
        raise ConfigError("a comparison needs at least two runs")
    check_same_tasks(runs)
    labels = _unique_labels(runs)
    baseline = baseline or labels[0]
    if baseline not in labels:
        raise ConfigError(f"--baseline {baseline!r} is not among the compared variants: {', '.join(labels)}")
    reference = runs[labels.index(baseline)]
    # a task excluded, or skipped for a library one run's answer imported, is left out of every run's pass@1, as
    # eval leaves it out of its own: the runs stay paired on the tasks they all scored
    unscored = {t.task_id for run in runs for t in run.results.tasks if not t.scored}
    order = [t.task_id for t in runs[0].results.tasks if t.task_id not in unscored]
    if not order:
        raise ConfigError("no task was scored in every run (all excluded or skipped)")
    stats = {"confidence": confidence, "resamples": resamples, "seed": seed}
    variants = [
        _variant_report(run, label, order, None if run is reference else reference, **stats)
        for run, label in zip(runs, labels, strict=True)
    ]
    plus = [{o.task_id: o.plus for o in v.outcomes} for v in variants]
    head_to_head = [[sum(a[t] and not b[t] for t in order) for b in plus] for a in plus]
    complexity = []
    if instructions is not None and all(t in instructions for t in order):
        labelled = [(v.label, p) for v, p in zip(variants, plus, strict=True)]
        complexity = complexity_splits({t: instructions[t] for t in order}, labelled, baseline=baseline,
                                       confidence=confidence, resamples=resamples, seed=seed)  # fmt: skip
    return ComparisonReport(
        benchmark=" / ".join(dict.fromkeys(run.results.benchmark for run in runs)),  # mbpp+:dev / mbpp+stub:dev
        baseline=baseline,
        task_ids=order,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        variants=variants,
        head_to_head=head_to_head,
        complexity=complexity,
        changes=[
            _changes(run, label, reference, baseline, order)
            for run, label in zip(runs, labels, strict=True)
            if run is not reference
        ],
        versions=package_versions(),
    )

