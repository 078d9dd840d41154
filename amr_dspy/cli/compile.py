"""``amr-dspy compile`` (optimise a variant with a recipe) and ``amr-dspy program show`` (inspect an artifact)."""

from __future__ import annotations

import difflib
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from amr_dspy.cli._app import app, console, err_console
from amr_dspy.cli._options import GuardOpt, LibraryOpt, NoLibraryOpt, SelectSamplesOpt, TestSetsOpt, teacher_options
from amr_dspy.errors import ArtifactError, ConfigError
from amr_dspy.tasks import load_tasks
from amr_dspy.teacher import TeacherSpec  # at run time: typer reads the command's signature
from optimize.recipes import load_recipe, parse_overrides, recipe_names

if TYPE_CHECKING:
    from optimize.artifact import ArtifactManifest, DevScore
    from optimize.compile import CompileEvent, CompileResult

__all__ = ["compile_command", "program_app", "show"]

program_app = typer.Typer(help="Inspect compiled program artifacts.", no_args_is_help=True)
app.add_typer(program_app, name="program")


@app.command("compile")
@teacher_options()
def compile_command(
    variant: Annotated[
        str, typer.Option(help="Program variant to compile: direct, cot, ans-repair, amr, amr-paper, amr-no-*.")
    ] = "amr",
    recipe: Annotated[
        str,
        typer.Option("--recipe", "-r", help=f"Optimizer recipe: {', '.join(recipe_names())}, or a .toml file "
                     "(copy one from optimize/recipes/ and edit it)."),
    ] = "mipro",
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe key, KEY=VALUE with a TOML value; repeatable "
                     "(e.g. --set auto=medium --set threads=2)."),
    ] = None,
    train: Annotated[str, typer.Option(help="Training tasks: demos and candidates come from here.")] = "mbpp+:train",
    dev: Annotated[str, typer.Option(help="Dev tasks: the score before and after compiling.")] = "mbpp+:dev",
    train_limit: Annotated[int | None, typer.Option(min=2, help="Use only the first N training tasks.")] = None,
    dev_limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N dev tasks.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="Artifact path (.json; default artifacts/<teacher-slug>/<variant>-<recipe>"
                     ".json). The manifest goes next to it, the checkpoint to <out>.checkpoint/."),
    ] = None,
    library: LibraryOpt = None,
    no_library: NoLibraryOpt = False,
    guard: GuardOpt = True,
    select_samples: SelectSamplesOpt = None,
    test_sets: TestSetsOpt = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Examples run in parallel (overrides the recipe's threads).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Sandbox worker processes executing solutions.")] = 2,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the checkpoint of an earlier run instead of resuming it.")
    ] = False,
    *,
    spec: TeacherSpec,
) -> None:
    """Optimise a program variant with a recipe and save it as an artifact (DSPy state JSON plus manifest).

    Scores the variant on --dev before and after; rerunning the same command resumes from the checkpoint.
    """
    from amr_dspy.metric import ExecutionMetric
    from amr_dspy.programs import VARIANTS
    from amr_dspy.run import open_resources
    from amr_dspy.teacher import served_by
    from optimize.artifact import TeacherInfo
    from optimize.compile import check_compilable, check_split_specs, compile_program

    if variant not in VARIANTS:
        raise ConfigError(f"--variant {variant}: unknown variant; known: {', '.join(VARIANTS)}")
    check_compilable(variant)
    settings = parse_overrides(overrides or [])
    if threads is not None:
        settings["threads"] = threads
    chosen = load_recipe(recipe, settings)
    check_split_specs(train, dev)
    out = out or Path("artifacts") / spec.slug / f"{variant}-{chosen.name}.json"
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: the artifact must be a .json file")

    with console.status(f"loading {train} and {dev}"):
        trainset = load_tasks(train, limit=train_limit)
        devset = load_tasks(dev, limit=dev_limit)
    with (
        open_resources(spec, tasks=[*trainset, *devset], workers=workers, variants=[variant], library=library,
                       no_library=no_library, status=console.status) as run,
        ExecutionMetric(run.sandbox) as metric,
        _ProgressDisplay() as show_event,
    ):
        result = compile_program(
            variant,
            chosen,
            trainset,
            devset,
            out,
            metric=metric,
            teacher=TeacherInfo.from_spec(spec, served_by(run.lm)),
            train_spec=train if train_limit is None else f"{train} (first {train_limit})",
            dev_spec=dev if dev_limit is None else f"{dev} (first {dev_limit})",
            program_options={"library": run.library, "executor": run.sandbox, "guard": guard,
                             "samples": select_samples, "test_sets": test_sets},  # fmt: skip
            library=run.library_id,
            fresh=fresh,
            on_event=show_event,
        )
    _print_summary(result)


class _ProgressDisplay:
    """Phase rules, a bar while dev is scored, one line per bootstrap candidate; dspy shows its own progress."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._bar: TaskID | None = None
        self._passed = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _ProgressDisplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()

    def __call__(self, event: CompileEvent) -> None:
        if event.kind == "phase":
            self._stop()
            console.rule(f"[bold]{event.phase}[/]: {event.message}")
            if event.total:
                self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TextColumn("passed {task.fields[passed]}"), TimeElapsedColumn(),
                                          console=console)  # fmt: skip
                self._progress.start()
                self._bar = self._progress.add_task(f"{event.phase} dev", total=event.total, passed=0)
                self._passed = 0
        elif event.kind == "progress" and self._progress is not None and self._bar is not None:
            with self._lock:
                self._passed += event.score is not None and event.score >= 1.0
                self._progress.update(self._bar, advance=1, passed=self._passed)
        elif event.kind == "done":
            self._stop()
            console.print(f"[green]✓[/] {event.message}", soft_wrap=True)
        elif event.kind in ("candidate", "info"):
            console.print(event.message if event.kind == "candidate" else f"[dim]{event.message}[/]", soft_wrap=True)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._bar = None, None


# --------------------------------------------------------------------------------------------
# summaries


def _score_cell(score: DevScore | None) -> str:
    return "-" if score is None else f"{score.score:.3f} (all tests passed: {score.pass_rate:.1%} of {score.n})"


def _manifest_table(manifest: ArtifactManifest, title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    total = manifest.usage.get("total")
    rows = [
        ("variant", manifest.variant),
        ("teacher", manifest.teacher.name),
        ("recipe", f"{manifest.recipe} ({manifest.optimizer})"),
        *((f"{role} tasks", f"{split.n_tasks} from {split.spec}") for role, split in manifest.data.items()),
        ("valset", manifest.valset),
        ("dev before", _score_cell(manifest.dev_before)),
        ("dev after", _score_cell(manifest.dev_after)),
    ]
    if total is not None:
        rows += [
            ("LM calls", f"{total.lm_calls} ({total.cached_lm_calls} cache hits)"),
            ("tokens", f"{total.prompt_tokens} prompt, {total.completion_tokens} completion used (cache hits "
                       f"included); {total.paid_prompt_tokens} prompt, {total.paid_completion_tokens} completion paid"),
            ("metric calls", str(total.metric_calls)),
        ]
    rows += [
        ("wall time", f"{manifest.wall_s:.1f} s" if manifest.wall_s < 120 else f"{manifest.wall_s / 60:.1f} min"),
        ("dspy / commit", f"{manifest.dspy_version} / {(manifest.git_commit or 'unknown')[:12]}"
                          + (" (dirty)" if manifest.git_dirty else "")),
    ]  # fmt: skip
    for key, value in rows:
        table.add_row(key, value)
    return table


def _print_summary(result: CompileResult) -> None:
    console.print(_manifest_table(result.manifest, "compile summary"))
    before = {p.name: p for p in result.before}
    table = Table(title="predictors before → after", title_justify="left")
    table.add_column("predictor")
    table.add_column("demos", justify="right")
    table.add_column("instructions")
    diffs = []
    for after in result.after:
        old = before.get(after.name)
        old_text, old_demos = (old.instructions, old.n_demos) if old else ("", 0)
        diff = list(difflib.unified_diff(old_text.splitlines(), after.instructions.splitlines(), "before", "after",
                                         lineterm="", n=1))  # fmt: skip
        changed = f"changed (+{_count(diff, '+')}/-{_count(diff, '-')} lines)" if diff else "unchanged"
        table.add_row(after.name, f"{old_demos} → {after.n_demos}", changed)
        if diff:
            diffs.append(Panel(Syntax("\n".join(diff), "diff", word_wrap=True), title=f"{after.name} instructions"))
    console.print(table)
    for panel in diffs:
        console.print(panel)
    if result.resumed:
        console.print(f"[dim]resumed from the checkpoint: {', '.join(result.resumed)}[/]")
    console.print(f"wrote {result.program_path} and {result.manifest_path}", soft_wrap=True)


def _count(diff: list[str], sign: str) -> int:
    return sum(line.startswith(sign) and not line.startswith(sign * 3) for line in diff)


@program_app.command("show")
def show(
    artifact: Annotated[Path, typer.Argument(dir_okay=False, help="Compiled program artifact (.json).")],
    full: Annotated[bool, typer.Option("--full", help="Print demo fields in full instead of clipped.")] = False,
    max_demos: Annotated[
        int | None, typer.Option("--max-demos", min=0, help="Show at most N demos per predictor.")
    ] = None,
) -> None:
    """Print an artifact's manifest, and each predictor's instructions and demos."""
    from optimize.artifact import read_manifest, read_program_state

    state = read_program_state(artifact)
    try:
        console.print(_manifest_table(read_manifest(artifact), str(artifact)))
    except ArtifactError as exc:
        err_console.print(f"[yellow]warning:[/] {exc}", highlight=False)
    for name, entry in state.items():
        if not isinstance(entry, dict) or "signature" not in entry:
            continue
        demos = entry.get("demos", [])
        shown = demos if max_demos is None else demos[:max_demos]
        parts: list[Text | Table] = [Text(entry["signature"]["instructions"])]
        for i, demo in enumerate(shown, start=1):
            demo_table = Table(title=f"demo {i}", show_header=False, title_justify="left")
            demo_table.add_column(style="bold", no_wrap=True)
            demo_table.add_column()
            for key, value in demo.items():
                text = value if isinstance(value, str) else repr(value)
                demo_table.add_row(key, text if full or len(text) <= 400 else text[:400] + " …")
            parts.append(demo_table)
        more = f", {len(demos) - len(shown)} not shown" if len(shown) < len(demos) else ""
        console.print(Panel(Group(*parts), title=f"{name}: {len(demos)} demos{more}", title_align="left"))
