"""The Typer application every command module registers on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="amr-dspy",
    help="AMR-Evol as a compiled DSPy program: distil a teacher LLM's coding skill into verified training data.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
teacher_app = typer.Typer(help="Run and check the teacher model.", no_args_is_help=True)
library_app = typer.Typer(help="Build, grow and query the function-module library.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (speed and memory); reports go under artifacts/.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")
app.add_typer(library_app, name="library")
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)
