"""Rendering results: the pass@1 summary, the per-task table and the line on the tasks pass@1 leaves out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import get_args

from rich.table import Table

from amr_dspy.evaluation.results import EvalResults, Kept

__all__ = ["summary_table", "results_table", "left_out_summary"]


def summary_table(results: EvalResults) -> Table:
    source = results.variant or (Path(results.samples).name if results.samples else None)
    title = " · ".join(x for x in (results.benchmark, source, results.teacher) if x)
    ran_program = results.samples is None
    paid = ran_program and results.paid_prompt_tokens is not None and results.paid_completion_tokens is not None
    table = Table(title=f"pass@1 — {title}", title_justify="left")
    usage_columns = (("LM calls", "tokens in/out") if ran_program else ()) + (("paid in/out",) if paid else ())
    for name in ("tasks", "base", "plus", "failures", *usage_columns, "wall"):
        table.add_column(name, justify="left" if name == "failures" else "right")
    failures = ", ".join(
        f"{n} {name.replace('_', ' ')}" for name, n in sorted(results.failures.items(), key=lambda x: -x[1])
    )
    usage: tuple[str, ...] = (str(results.lm_calls), f"{results.prompt_tokens}/{results.completion_tokens}") \
        if ran_program else ()
    if paid:  # tokens in/out count cache hits (amr_dspy.usage); paid only the calls that reached the teacher
        usage += (f"{results.paid_prompt_tokens}/{results.paid_completion_tokens}",)
    n_scored = results.n_tasks if results.n_scored is None else results.n_scored
    table.add_row(
        str(n_scored) if n_scored == results.n_tasks else f"{n_scored} of {results.n_tasks}",
        f"{100 * results.pass_at_1.base:.1f}%",
        f"[bold]{100 * results.pass_at_1.plus:.1f}%[/]",
        failures or "none",
        *usage,
        f"{results.wall_s:.1f}s",
    )
    table.caption = _kept_caption(results)
    if results.crosscheck is not None:
        cc = results.crosscheck
        table.caption = (
            f"evalplus.evaluate: base {100 * cc.evalplus.base:.1f}% · plus {100 * cc.evalplus.plus:.1f}% — "
            + ("[green]agrees[/]" if cc.agree else f"[red]differs on {len(cc.disagreements)} task(s)[/]")
        )
    return table


def _kept_caption(results: EvalResults) -> str | None:
    """Which answers the program kept: the guard's evolved/direct split, or what the -select variants chose."""
    kept = Counter(t.kept for t in results.tasks if t.kept is not None)
    n, rest = results.n_tasks, results.n_tasks - sum(kept.values())
    if not kept:
        return None
    if "sample" in kept or (results.variant or "").endswith("-select"):  # a selection may never pick a sample
        chosen = ", ".join(f"{kind} {kept[kind]}" for kind in get_args(Kept) if kept[kind])
        return f"answer chosen on {sum(kept.values())} of {n} tasks: {chosen}" + (f"; none on {rest}" if rest else "")
    return (f"evolved answer kept on {kept['evolved']} of {n} tasks, direct on {kept['direct']}; "
            f"{rest} ended before evolving")  # fmt: skip


def left_out_summary(results: EvalResults) -> str | None:
    """The tasks pass@1 leaves out, and why (libraries not installed here, the exclusion list); None if none."""
    if not (results.skipped or results.excluded):
        return None
    parts = []
    if results.skipped:
        libraries = Counter(name for names in results.skipped.values() for name in names)
        named = ", ".join(f"{name} ({n})" for name, n in libraries.most_common())
        parts.append(f"{len(results.skipped)} skipped, not installed: {named}")
    if results.excluded:
        parts.append(f"{len(results.excluded)} excluded (amr_dspy/data/bigcodebench_exclusions.json)")
    return "left out of pass@1: " + "; ".join(parts)


def results_table(results: EvalResults) -> Table:
    """One row per task."""
    ran_program = results.samples is None
    table = Table(title="per task", title_justify="left")
    table.add_column("task", no_wrap=True)
    table.add_column("base", justify="center")
    table.add_column("plus", justify="center")
    table.add_column("failure", no_wrap=True)
    table.add_column("first failing test", ratio=1)
    if ran_program:
        table.add_column("LM calls", justify="right")
        table.add_column("tokens", justify="right")
    table.add_column("wall", justify="right")
    mark = {True: "[green]✓[/]", False: "[red]✗[/]"}
    for t in results.tasks:
        detail = ": ".join(part for part in (t.failed_test, t.failure_message) if part)
        usage = (str(t.lm_calls), str(t.prompt_tokens + t.completion_tokens)) if ran_program else ()
        left_out = t.scored or ("[dim]excluded[/]" if t.excluded is not None else "[yellow]skipped[/]")
        table.add_row(
            t.task_id,
            mark[t.base_passed] if left_out is True else "–",
            mark[t.plus_passed] if left_out is True else "–",
            (t.failure or "").replace("_", " ") if left_out is True else left_out,
            _clip(detail, 100),
            *usage,
            f"{t.wall_s + t.exec_s:.1f}s",
        )
    return table


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
