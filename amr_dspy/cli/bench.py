"""``amr-dspy bench sandbox``: test executions per second of the project's sandbox next to evalplus's checker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amr_dspy.cli._app import bench_app, console

__all__ = ["bench_sandbox_command"]


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
    from amr_dspy.evaluation import bench_sandbox, bench_table, evalplus_limits
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import load_tasks

    with console.status(f"loading {benchmark}"):
        tasks = load_tasks(benchmark, limit=limit)
    with (
        console.status(f"running {sum(len(t.tests) for t in tasks)} tests twice"),
        Sandbox(evalplus_limits(), workers=workers) as sandbox,
    ):
        report = bench_sandbox(tasks, sandbox, benchmark=benchmark, workers=workers)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    console.print(bench_table(report))
    console.print(f"wrote {out}")
