"""``amr-dspy bench sandbox``: test executions per second of the project's sandbox next to evalplus's checker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from amr_dspy.cli._app import bench_app, console

if TYPE_CHECKING:
    from amr_dspy.server import ServerSettings

__all__ = ["bench_sandbox_command", "bench_decontam_command", "bench_selection_command"]


@bench_app.command("sandbox")
def bench_sandbox_command(
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="mbpp+[:split] or humaneval+.")] = "mbpp+:test",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N tasks.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Parallel workers on both sides (sandbox workers, evalplus pool).")
    ] = 2,
    out: Annotated[Path, typer.Option(dir_okay=False, help="Where to save the JSON report.")] = Path(
        "artifacts/reports/bench-sandbox.json"
    ),
) -> None:
    """Run the canonical solutions' hidden tests through amr_dspy's Sandbox and through evalplus; compare speed."""
    from amr_dspy.evaluation import bench_sandbox, bench_table
    from amr_dspy.run import open_resources
    from amr_dspy.tasks import load_tasks

    with console.status(f"loading {benchmark}"):
        tasks = load_tasks(benchmark, limit=limit)
    with (
        console.status(f"running {sum(len(t.tests) for t in tasks)} tests twice"),
        open_resources(None, tasks=tasks, workers=workers) as run,
    ):
        report = bench_sandbox(tasks, run.sandbox, benchmark=benchmark, workers=workers)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    console.print(bench_table(report))
    console.print(f"wrote {out}")


# eval amr retrieves from the bundled seed library and synthesize runs the bundled compiled amr: their defaults.
_DEFAULT_COMMANDS = {
    "eval direct": ["eval", "--variant", "direct", "-b", "{benchmark}", "--no-cache", "--fresh"],
    "eval amr": ["eval", "--variant", "amr", "-b", "{benchmark}", "--no-cache", "--fresh"],
    "synthesize sample": ["synthesize", "--input", "sample", "--no-cache"],
}


def _ints(text: str, option: str, *, minimum: int = 1) -> list[int]:
    from amr_dspy.errors import ConfigError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,2,4,8") from None
    if values and min(values) < minimum:
        raise ConfigError(f"{option} {text!r}: expected integers >= {minimum}")
    return values


def _sweep_settings(text: str) -> ServerSettings:
    """``slots=16,threads=2,ubatch=256,batch=2048,spec=none`` → llama-server settings."""
    from amr_dspy.errors import ConfigError
    from amr_dspy.server import ServerSettings

    names = {"slots": "slots", "threads": "threads", "batch": "batch_size", "ubatch": "ubatch_size"}
    drafts = ("none", "ngram-simple")
    values: dict[str, Any] = {}  # ServerSettings keyword arguments
    for part in text.split(","):
        key, _, value = (p.strip() for p in part.partition("="))
        if key == "spec" and value in drafts:
            values["speculative"] = value
        elif key in names and value.isdigit():
            values[names[key]] = int(value)
        else:
            raise ConfigError(f"--sweep {text!r}: expected key=N pairs with keys {', '.join(names)}, "
                              f"or spec={'|'.join(drafts)}")  # fmt: skip
    return ServerSettings(kind="llama-server", **values)


@bench_app.command("teacher")
def bench_teacher_command(
    teacher: Annotated[str, typer.Option("--teacher", "-t", help="Embedded model: local or local:1.5b.")] = "local",
    concurrency: Annotated[
        str, typer.Option(help="Concurrency levels of the token-rate part ('' skips it).")
    ] = "1,2,4,8",
    slots: Annotated[int, typer.Option(min=1, help="llama-server slots for the main comparison.")] = 8,
    sweep: Annotated[
        list[str] | None,
        typer.Option(help="More llama-server settings to measure at concurrency = their slots, e.g. "
                     "slots=16,threads=2,ubatch=256 (repeatable)."),  # fmt: skip
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=16, help="Tokens per answer in the token-rate part.")] = 128,
    commands: Annotated[
        bool, typer.Option("--commands/--no-commands", help="Also time real eval and synthesize runs per server.")
    ] = True,
    only: Annotated[
        list[str] | None, typer.Option(help=f"Run only these commands (of: {', '.join(_DEFAULT_COMMANDS)}).")
    ] = None,
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="Benchmark of the eval commands.")] = "mbpp+:dev",
    out: Annotated[Path, typer.Option(file_okay=False, help="Report folder.")] = Path(
        "artifacts/reports/bench-teacher"
    ),
    append: Annotated[
        bool, typer.Option("--append", help="Add to the report already in --out (a bench run in parts).")
    ] = False,
    servers_only: Annotated[
        str | None, typer.Option("--servers", help="Measure only these server kinds (llama-server, llama-cpp-python).")
    ] = None,
) -> None:
    """Aggregate tokens/s at several concurrency levels and the wall time of real runs, per local server."""
    import datetime
    import os
    import shutil

    from amr_dspy.errors import ConfigError
    from amr_dspy.server_build import find_server_binary
    from amr_dspy.teacher import TeacherSpec
    from amr_dspy.teacher_bench import (
        TeacherBenchReport,
        agreement,
        available_servers,
        markdown_report,
        measure_rates,
        run_command,
    )

    spec = TeacherSpec.parse(teacher)
    if spec.kind != "local":
        raise ConfigError(f"bench teacher measures the embedded local teacher, not {spec.model!r}")
    levels = _ints(concurrency, "--concurrency")
    chosen = set(only or _DEFAULT_COMMANDS)
    if unknown := chosen - set(_DEFAULT_COMMANDS):
        raise ConfigError(f"--only {sorted(unknown)[0]!r}: unknown command; known: {', '.join(_DEFAULT_COMMANDS)}")
    servers = available_servers(slots)
    if len(servers) == 1:
        console.print("[yellow]llama-server is not built (amr-dspy teacher build-server): measuring llama_cpp.server "
                      "only[/]")  # fmt: skip
    if servers_only:
        servers = [s for s in servers if s.kind in servers_only.split(",")]
    binary = find_server_binary()
    report = TeacherBenchReport(model=spec.name, cores=os.cpu_count() or 1, max_tokens=max_tokens,
                                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))  # fmt: skip
    if append and (out / "report.json").is_file():
        report = TeacherBenchReport.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    say = lambda line: console.print(f"[dim]{line}[/]", highlight=False)  # noqa: E731
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every part: a long bench interrupted keeps what it measured
        (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (out / "report.md").write_text(markdown_report(report), encoding="utf-8")

    for settings in servers:
        report.rates += measure_rates(spec.model, settings, levels, max_tokens=max_tokens, binary=binary, say=say)
        save()
    for text in sweep or []:
        settings = _sweep_settings(text)
        report.rates += measure_rates(spec.model, settings, [settings.slots], max_tokens=max_tokens,
                                      binary=binary, say=say)  # fmt: skip
        save()
    if commands:
        runs_dir = out / "runs"
        for name, template in _DEFAULT_COMMANDS.items():
            if name not in chosen:
                continue
            args = [a.replace("{benchmark}", benchmark) for a in template]
            if teacher != "local":
                args += ["--teacher", teacher]
            pair = []
            for settings in servers:
                folder = runs_dir / f"{name.replace(' ', '-')}-{settings.kind}"
                shutil.rmtree(folder, ignore_errors=True)  # each run starts cold and fresh
                pair.append(run_command(name, args, settings, folder, say=say))
                report.commands.append(pair[-1])
                save()
            if len(pair) == 2 and name.startswith("eval") and (agree := agreement(f"{name} {benchmark}", *pair)):
                report.agreements.append(agree)
                save()
    console.print(markdown_report(report), highlight=False)
    console.print(f"wrote {out / 'report.json'} and {out / 'report.md'}")


@bench_app.command("decontam")
def bench_decontam_command(
    out: Annotated[Path, typer.Option(file_okay=False, help="Report folder.")] = Path(
        "artifacts/reports/bench-decontam"
    ),
    alpaca: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Code Alpaca JSON (default: code_alpaca_2k.json in "
                                  "$AMR_DSPY_DATA or ../shared/data).")  # fmt: skip
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Python Code Alpaca rows used as clean text.")] = 200,
    embedding: Annotated[
        bool, typer.Option("--embedding/--no-embedding", help="Also measure MiniLM similarity and the defaults "
                           "end to end (embeds a few thousand texts).")  # fmt: skip
    ] = True,
) -> None:
    """False positives on known-clean text and recall on planted contamination, per decontamination setting."""
    from amr_dspy.decontam_bench import markdown_report, run_bench
    from amr_dspy.errors import DataError
    from amr_dspy.tasks import _local_copy

    source = alpaca or (Path(found) if (found := _local_copy("code_alpaca_2k.json")) else None)
    if source is None or not source.is_file():
        raise DataError(f"Code Alpaca not found ({source or 'code_alpaca_2k.json in $AMR_DSPY_DATA or ../shared/data'})"
                        "; pass --alpaca")  # fmt: skip
    say = lambda line: console.print(f"[dim]{line}[/]", highlight=False)  # noqa: E731
    report = run_bench(source, limit=limit, embedding=embedding, say=say)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_report(report), encoding="utf-8")
    for reason in report.reasons:
        console.print(reason, highlight=False)
    console.print(f"wrote {out / 'report.json'} and {out / 'report.md'}")


@bench_app.command("selection")
def bench_selection_command(
    runs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, help="Eval folders of direct-select or "
                                               "amr-select runs, all on --benchmark.")],  # fmt: skip
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="The runs' benchmark, e.g. mbpp+:dev.")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="Report: OUT.md and OUT.json beside it.")] = Path(
        "selection-curve.md"
    ),
    early_exit: Annotated[str, typer.Option(help="Early-exit settings to replay (agreeing samples), comma-separated.")
                          ] = "0,1,2",  # fmt: skip
    workers: Annotated[int, typer.Option(min=1, help="Sandbox worker processes checking candidates.")] = 2,
) -> None:
    """The pass rate selection would reach with each N samples, replayed from runs' candidate pools (no teacher)."""
    from amr_dspy.selection_bench import curve_markdown, selection_curve
    from amr_dspy.tasks import load_tasks

    tasks = load_tasks(benchmark)
    settings = _ints(early_exit, "--early-exit", minimum=0)
    curves = [selection_curve(run, tasks, benchmark=benchmark, early_exit_after=settings, workers=workers)
              for run in runs]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(curve_markdown(curves), encoding="utf-8")
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps([c.model_dump() for c in curves], indent=2) + "\n", encoding="utf-8")
    for curve in curves:
        best = max(curve.points, key=lambda p: (p.passed, -p.answers_per_task))
        console.print(f"{curve.variant} on {curve.benchmark}: direct {curve.direct_passed}/{curve.n_tasks}, best "
                      f"{best.passed} at N={best.samples} (early exit after {best.early_exit_after})",
                      highlight=False, emoji=False)  # fmt: skip; "mbpp+:train:" is not an emoji
    console.print(f"wrote {out} and {json_path}")


@bench_app.command("verification")
def bench_verification_command(
    runs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, help="Eval folders of direct-select or "
                                               "amr-select runs, all on --benchmark.")],  # fmt: skip
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="The runs' benchmark, e.g. mbpp+:dev.")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="Report: OUT.md and OUT.json beside it.")] = Path(
        "verification.md"
    ),
    workers: Annotated[int, typer.Option(min=1, help="Sandbox worker processes checking answers.")] = 2,
) -> None:
    """How right synthesis's verified records are: its verification replayed on runs' pools, against hidden tests."""
    from amr_dspy.tasks import load_tasks
    from amr_dspy.verification_bench import replay_markdown, verification_replay

    tasks = load_tasks(benchmark)
    replays = [verification_replay(run, tasks, benchmark=benchmark, workers=workers) for run in runs]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replay_markdown(replays), encoding="utf-8")
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps([r.model_dump() for r in replays], indent=2) + "\n", encoding="utf-8")
    for replay in replays:
        c = replay.without_examples
        precision = "n/a" if c.precision is None else f"{100 * c.precision:.1f}%"
        console.print(f"{replay.variant} on {replay.benchmark}, without examples: {c.passed}/{c.records} verified, "
                      f"precision {precision} on hidden tests", highlight=False, emoji=False)  # fmt: skip
    console.print(f"wrote {out} and {json_path}")
