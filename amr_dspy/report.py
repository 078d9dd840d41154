"""The comparison report: its JSON schema, its rich rendering, and its exports (SVG, HTML, text, Markdown, JSON,
PNG).

A ``ComparisonReport`` holds everything the rendering needs (per-task outcomes included), so a saved
``report.json`` re-renders without the eval folders it was built from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from rich import box
from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from amr_dspy.complexity import ComplexitySplit
from amr_dspy.errors import DataError
from amr_dspy.stats import Interval, PairedTest

__all__ = [
    "FAILURE_CATEGORIES",
    "TaskOutcome",
    "VariantReport",
    "TaskChange",
    "VariantChanges",
    "ComparisonReport",
    "ReportFiles",
    "save_report",
    "load_report",
    "summary_table",
    "head_to_head_table",
    "disagreement_table",
    "complexity_table",
    "changes_view",
    "render_report",
    "plot_pass_at_1",
    "markdown_summary",
    "export_report",
]

FAILURE_CATEGORIES = ("no_code", "wrong_answer", "error", "timeout")
REPORT_WIDTH = 120  # the exported report's width in characters


class TaskOutcome(BaseModel):
    task_id: str
    base: bool
    plus: bool
    failure: str | None = None


class VariantReport(BaseModel):
    """One variant's numbers on the compared tasks."""

    label: str
    variant: str | None = None
    artifact: str | None = None
    teacher: str | None = None
    source: str  # the eval folder the numbers come from
    ran_program: bool  # False for a checked samples file: no LM calls or timings to show
    pass_base: Interval
    pass_plus: Interval
    vs_baseline_base: PairedTest | None = None  # None for the baseline itself
    vs_baseline_plus: PairedTest | None = None
    tokens_per_task: float  # used: prompt + completion tokens of every call, cache hits included
    paid_tokens_per_task: float | None = None  # paid: the calls that reached the teacher; None: not recorded
    lm_calls_per_task: float  # every LM call, cache hits included
    uncached_lm_calls_per_task: float
    s_per_task: float  # the run's wall time (program and test runs) over its tasks
    failures: dict[str, int]  # FAILURE_CATEGORIES; memory and program errors count as errors
    raw_failures: dict[str, int] = Field(default_factory=dict)  # as the eval recorded them
    outcomes: list[TaskOutcome]


class TaskChange(BaseModel):
    """A task the variant fixed or broke relative to the baseline, with the start of the code diff."""

    task_id: str
    baseline_failure: str | None = None
    variant_failure: str | None = None
    diff: list[str]  # the first lines of a unified diff, baseline code to variant code
    diff_lines: int  # lines in the whole diff


class VariantChanges(BaseModel):
    label: str
    fixed: list[TaskChange]  # the variant passes base+plus, the baseline does not
    broken: list[TaskChange]  # the baseline passes base+plus, the variant does not


class ComparisonReport(BaseModel):
    schema_version: int = 1
    benchmark: str
    baseline: str
    task_ids: list[str]
    confidence: float
    resamples: int
    seed: int
    variants: list[VariantReport]
    head_to_head: list[list[int]]  # [i][j]: tasks variant i passes (base+plus) and variant j fails
    changes: list[VariantChanges]
    complexity: list[ComplexitySplit] = Field(default_factory=list)  # empty: no instructions were at hand
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)


class ReportFiles(BaseModel):
    json_path: Path
    text: Path
    svg: Path
    html: Path
    markdown: Path
    png: Path


# --------------------------------------------------------------------------------------------
# saving and loading


def save_report(report: ComparisonReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")


def load_report(path: Path) -> ComparisonReport:
    """Read a saved ``report.json`` (``path`` may be the comparison folder)."""
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file; run `amr-dspy compare` to make a comparison first")
    try:
        return ComparisonReport.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise DataError(f"{path}: not a comparison report ({where}: {first['msg']})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8") from exc


# --------------------------------------------------------------------------------------------
# rendering


def _interval_cell(interval: Interval, *, signed: bool = False, bold: bool = False) -> Text:
    fmt = "{:+.1f}" if signed else "{:.1f}"
    text = Text(fmt.format(100 * interval.estimate) + ("" if signed else "%"), style="bold" if bold else "")
    text.append(f"\n{fmt.format(100 * interval.low)}–{fmt.format(100 * interval.high)}", style="dim")
    return text


def _p_cell(p: float) -> Text:
    return Text(f"{p:.3f}" if p >= 0.001 else "<0.001", style="bold" if p < 0.05 else "")


_FAILURE_SHORT = {"no_code": "no code", "wrong_answer": "wrong", "error": "error", "timeout": "timeout"}


def _failures_cell(failures: dict[str, int]) -> str:
    lines = [f"{failures[name]} {_FAILURE_SHORT[name]}" for name in FAILURE_CATEGORIES if failures.get(name)]
    return "\n".join(lines) or "none"


def _title(report: ComparisonReport) -> str:
    teachers = sorted({v.teacher for v in report.variants if v.teacher})
    teacher = teachers[0] if len(teachers) == 1 else ("teachers differ" if teachers else None)
    parts = [report.benchmark, f"{report.n_tasks} tasks", teacher, f"baseline {report.baseline}"]
    return " · ".join(p for p in parts if p)


SummaryPart = Literal["pass", "cost"]


def summary_table(report: ComparisonReport, parts: tuple[SummaryPart, ...] = ("pass", "cost")) -> Table:
    """Per variant: pass@1 with intervals and the paired difference against the baseline ("pass"), then
    tokens, LM calls and seconds per task and the failure categories ("cost")."""
    table = Table(
        title=f"pass@1 — {_title(report)}" if "pass" in parts else "cost and failures per variant",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("variant", no_wrap=True)
    if "pass" in parts:
        for name in ("base", "base+plus", f"Δ vs {report.baseline}", "p"):
            table.add_column(name, justify="right", no_wrap=True)
    paid = _shows_paid(report)
    if "cost" in parts:
        for name in ("tokens\n/task", *(("paid\n/task",) if paid else ()), "LM calls\n/task", "s\n/task"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("failures", no_wrap=True)
    for v in report.variants:
        cells: list[RenderableType] = [Text(v.label, style="bold" if v.label == report.baseline else "")]
        if "pass" in parts:
            paired = v.vs_baseline_plus
            cells += [
                _interval_cell(v.pass_base),
                _interval_cell(v.pass_plus, bold=True),
                _interval_cell(paired.diff, signed=True) if paired else Text("baseline", style="dim"),
                _p_cell(paired.p_value) if paired else Text("—", style="dim"),
            ]
        if "cost" in parts:
            cells += _cost_cells(v, paid)
            cells.append(_failures_cell(v.failures))
        table.add_row(*cells, end_section=True)
    return table


def _shows_paid(report: ComparisonReport) -> bool:
    """A paid column only when some run recorded it, so reports from before re-render as they were."""
    return any(v.paid_tokens_per_task is not None for v in report.variants if v.ran_program)


def _cost_cells(v: VariantReport, paid: bool) -> list[str]:
    if not v.ran_program:
        return ["—"] * (4 if paid else 3)
    spent = [f"{v.paid_tokens_per_task:,.0f}" if v.paid_tokens_per_task is not None else "—"] if paid else []
    return [f"{v.tokens_per_task:,.0f}", *spent, f"{v.lm_calls_per_task:.2f}", f"{v.s_per_task:.1f}"]


def _summary_note(report: ComparisonReport) -> Text:
    pct = f"{100 * report.confidence:g}%"
    return Text(
        f"pass@1 in % with {pct} percentile-bootstrap intervals ({report.resamples:,} resamples, seed "
        f"{report.seed}); Δ: base+plus difference in points, paired bootstrap over tasks; p: exact McNemar "
        "on base+plus. Tokens: prompt and completion of every call, cache hits included; s: the run's wall time "
        "per task, short where DSPy's cache answered. Failures: no code, wrong answer, error (memory and program "
        "errors included), timeout.",
        style="dim",
    )


def head_to_head_table(report: ComparisonReport) -> Table:
    """The win/loss matrix: how many tasks the row variant passes that the column variant fails."""
    table = Table(title="wins (base+plus)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("tasks row passes,\ncolumn fails", no_wrap=True)
    for v in report.variants:
        table.add_column(v.label, justify="right")
    for i, row in enumerate(report.variants):
        cells = [Text("—", style="dim") if i == j else Text(str(n)) for j, n in enumerate(report.head_to_head[i])]
        table.add_row(row.label, *cells)
    return table


def complexity_table(report: ComparisonReport) -> Table | None:
    """Pass@1 (base+plus) per stratum of instruction complexity, and each variant's paired Δ to the baseline there."""
    if not report.complexity:
        return None
    table = Table(title="pass@1 by instruction complexity (base+plus; Δ vs baseline, fixed/broken)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # fmt: skip
    table.add_column("stratum", no_wrap=True)
    table.add_column("tasks", justify="right")
    for v in report.variants:
        table.add_column(v.label, justify="right", no_wrap=True)
    for split in report.complexity:
        for i, stratum in enumerate(split.strata):
            cells = [Text(stratum.name), Text(str(stratum.n))]
            cells += [_stratum_cell(cell.passed, stratum.n, cell.vs_baseline) for cell in stratum.cells]
            table.add_row(*cells, end_section=i == len(split.strata) - 1)
    return table


def _stratum_cell(passed: int, n: int, paired: PairedTest | None) -> Text:
    text = Text(f"{100 * passed / n:.1f}%")
    if paired is not None:
        style = "bold" if paired.p_value < 0.05 else "dim"
        text.append(f"\n{100 * paired.diff.estimate:+.1f} ({paired.wins}/{paired.losses})", style=style)
    return text


_MARK = {"plus": Text("✓", style="green"), "base": Text("base", style="yellow"), "fail": Text("✗", style="red")}


def disagreement_table(report: ComparisonReport, max_rows: int = 40) -> Table | None:
    """Per task, each variant's outcome, for the tasks where the variants do not all agree (None: they all do)."""
    outcomes = [{o.task_id: o for o in v.outcomes} for v in report.variants]
    disputed = [t for t in report.task_ids if len({by_id[t].plus for by_id in outcomes}) > 1]
    if not disputed:
        return None
    table = Table(
        title=f"per task: {len(disputed)} of {report.n_tasks} disputed",
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("task", no_wrap=True)
    for v in report.variants:
        table.add_column(v.label, justify="center")
    for task_id in disputed[:max_rows]:
        marks = []
        for by_id in outcomes:
            o = by_id[task_id]
            marks.append(_MARK["plus" if o.plus else "base" if o.base else "fail"])
        table.add_row(task_id, *marks)
    more = len(disputed) - max_rows
    if more > 0:
        table.caption = f"… {more} more in report.json"
    return table


_DIFF_STYLES = (("@@", "cyan"), ("+", "green"), ("-", "red"))


def _diff_text(diff: list[str], total: int) -> Text:
    text = Text()
    for line in diff:
        style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "dim")
        text.append("    " + line + "\n", style=style)
    if total > len(diff):
        text.append(f"    … {total - len(diff)} more diff line(s)\n", style="dim")
    if total == 0:
        text.append("    (same code)\n", style="dim")
    return text


def _change_line(kind: str, change: TaskChange, baseline: str, label: str) -> Text:
    before = (change.baseline_failure or "passes").replace("_", " ")
    after = (change.variant_failure or "passes").replace("_", " ")
    line = Text(f"  {kind} ", style="bold green" if kind == "fixed" else "bold red")
    line.append(f"{change.task_id}", style="bold")
    line.append(f"  {baseline}: {before} → {label}: {after}")
    return line


def changes_view(report: ComparisonReport, max_tasks: int = 10) -> RenderableType:
    """For each variant, the tasks it fixed and broke relative to the baseline, each with a short code diff."""
    parts: list[RenderableType] = []
    for changes in report.changes:
        parts.append(
            Rule(
                f"{changes.label} vs {report.baseline}: {len(changes.fixed)} fixed, {len(changes.broken)} broken",
                align="left",
            )
        )
        for kind, items in (("fixed", changes.fixed), ("broken", changes.broken)):
            for change in items[:max_tasks]:
                parts.append(_change_line(kind, change, report.baseline, changes.label))
                parts.append(_diff_text(change.diff, change.diff_lines))
            if len(items) > max_tasks:
                parts.append(Text(f"  … {len(items) - max_tasks} more {kind} task(s) in report.json", style="dim"))
    return Group(*parts)


def render_report(report: ComparisonReport, console: Console, *, task_rows: int = 40, change_tasks: int = 10) -> None:
    """Print the whole report: the summary, the win/loss matrix, the per-task grid, the fixed and broken tasks."""
    table = summary_table(report)
    if console.measure(table, options=console.options.update_width(10_000)).maximum <= console.width:
        console.print(table)
    else:  # one table this wide would truncate its numbers
        console.print(summary_table(report, ("pass",)))
        console.print(summary_table(report, ("cost",)))
    console.print(_summary_note(report))
    console.print()
    console.print(head_to_head_table(report))
    strata = complexity_table(report)
    if strata is not None:
        console.print(strata)
    grid = disagreement_table(report, task_rows)
    if grid is None:
        console.print(Text("per task: all variants agree on every task"))
    else:
        console.print(grid)
        console.print(Text("✓ passes base+plus · base: passes base only · ✗ fails base", style="dim"))
    console.print()
    console.print(changes_view(report, change_tasks))


# --------------------------------------------------------------------------------------------
# exports


def plot_pass_at_1(report: ComparisonReport, path: Path) -> None:
    """Bar chart of pass@1 (base and base+plus) per variant with the bootstrap intervals as error bars."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, renders with Agg

    labels = [v.label for v in report.variants]
    xs = list(range(len(labels)))
    width = 0.38
    figure = Figure(figsize=(max(5.0, 1.1 * len(labels) + 2), 4.0), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    bars = ((-width / 2, "base", "pass_base", "#9bbcd9"), (width / 2, "base+plus", "pass_plus", "#2f6ea5"))
    for offset, name, key, color in bars:
        intervals: list[Interval] = [getattr(v, key) for v in report.variants]
        heights = [100 * i.estimate for i in intervals]
        errors = [
            [100 * (i.estimate - i.low) for i in intervals],
            [100 * (i.high - i.estimate) for i in intervals],
        ]
        axes.bar([x + offset for x in xs], heights, width, yerr=errors, capsize=3, label=name, color=color)
    baseline = next(v for v in report.variants if v.label == report.baseline)
    axes.axhline(
        100 * baseline.pass_plus.estimate,
        color="#555555",
        linestyle="--",
        linewidth=0.8,
        label=f"{report.baseline} base+plus",
    )
    axes.set_xticks(xs, labels, rotation=20 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    axes.set_ylabel("pass@1 (%)")
    axes.set_ylim(0, 100)
    axes.set_title(
        f"pass@1 on {report.benchmark} ({report.n_tasks} tasks)\n"
        f"bars: {100 * report.confidence:g}% bootstrap intervals",
        fontsize=10,
    )
    axes.legend(loc="upper left", frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})


def _md_interval(interval: Interval) -> str:
    return f"{100 * interval.estimate:.1f}% ({100 * interval.low:.1f}–{100 * interval.high:.1f})"


def _md_paired(paired: PairedTest | None) -> str:
    if paired is None:
        return "baseline"
    p = f"{paired.p_value:.2f}" if paired.p_value >= 0.01 else "<0.01"
    return f"{100 * paired.diff.estimate:+.1f} (p {p}; {paired.wins} fixed, {paired.losses} broken)"


def markdown_summary(report: ComparisonReport) -> str:
    """The summary table as GitHub Markdown, with a caption line, for READMEs and pull requests."""
    paid = _shows_paid(report)
    lines = [
        f"pass@1 on {_title(report)}; {100 * report.confidence:g}% bootstrap intervals, exact McNemar p on "
        "base+plus; tokens and LM calls count cache hits"
        + (" (paid: only the calls that reached the teacher)" if paid else "")
        + ", s/task is the run's wall time over its tasks.",
        "",
        f"| variant | base | base+plus | Δ base+plus vs {report.baseline} (p; fixed, broken) "
        f"| tokens/task |{' paid/task |' if paid else ''} LM calls/task | s/task | failures |",
        "|---|---|---|---|---|" + ("---|" if paid else "") + "---|---|---|",
    ]
    for v in report.variants:
        cost = _cost_cells(v, paid)
        failures = _failures_cell(v.failures).replace("\n", ", ")
        cells = [v.label, _md_interval(v.pass_base), _md_interval(v.pass_plus), _md_paired(v.vs_baseline_plus)]
        lines.append("| " + " | ".join([*cells, *cost, failures]) + " |")
    return "\n".join([*lines, *_md_complexity(report)]) + "\n"


def _md_complexity(report: ComparisonReport) -> list[str]:
    if not report.complexity:
        return []
    caption = f"pass@1 (base+plus) by instruction complexity; Δ vs {report.baseline} in points (p; fixed, broken)."
    lines = ["", caption, "",
             "| stratum | tasks | " + " | ".join(v.label for v in report.variants) + " |",
             "|---|---|" + "---|" * len(report.variants)]  # fmt: skip
    for split in report.complexity:
        for stratum in split.strata:
            cells = [f"{100 * c.passed / stratum.n:.1f}%" + (f" {_md_paired(c.vs_baseline)}" if c.vs_baseline else "")
                     for c in stratum.cells]  # fmt: skip
            lines.append(f"| {stratum.name} | {stratum.n} | " + " | ".join(cells) + " |")
    return lines


def export_report(
    report: ComparisonReport, out: Path, *, width: int = REPORT_WIDTH, task_rows: int = 40, change_tasks: int = 10
) -> ReportFiles:
    """Write report.json, the rendered report as report.txt / .svg / .html, its summary table as report.md, and
    pass_at_1.png into ``out``."""
    files = ReportFiles(
        json_path=out / "report.json",
        text=out / "report.txt",
        svg=out / "report.svg",
        html=out / "report.html",
        markdown=out / "report.md",
        png=out / "pass_at_1.png",
    )
    save_report(report, files.json_path)
    recorder = Console(file=StringIO(), width=width, record=True, color_system="truecolor")
    render_report(report, recorder, task_rows=task_rows, change_tasks=change_tasks)
    files.text.write_text(recorder.export_text(clear=False), encoding="utf-8")
    recorder.save_html(str(files.html), clear=False)
    recorder.save_svg(str(files.svg), title=f"amr-dspy compare — {report.benchmark}")
    files.markdown.write_text(markdown_summary(report), encoding="utf-8")
    plot_pass_at_1(report, files.png)
    return files
