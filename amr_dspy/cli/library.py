"""``amr-dspy library build|add|search|stats|export``: the function-module library on disk."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from amr_dspy.cli._app import console, library_app
from amr_dspy.cli._options import ApiBaseOpt, ApiKeyOpt, teacher_session, teacher_spec
from amr_dspy.errors import ConfigError, DataError, LibraryError

if TYPE_CHECKING:
    from amr_dspy.library import FunctionModule

__all__ = ["build", "add", "search", "stats", "export"]

LibraryDir = Annotated[
    Path, typer.Argument(help="Library directory (holds index.faiss, modules.jsonl and manifest.json).")
]


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


@library_app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", help="Directory of the new library (must not hold one already).")],
    source: Annotated[
        str, typer.Option("--from", help="Training tasks whose verified canonical solutions seed the library.")
    ] = "mbpp+:train",
    limit: Annotated[int | None, typer.Option(min=1, help="Seed from at most this many tasks.")] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher", "-t",
            help="Teacher that describes modules without a docstring (default: none; described from the signature).",
        ),
    ] = None,
    api_base: ApiBaseOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Seed a new library from the modules of training tasks whose canonical solution passes its tests."""
    from amr_dspy.evaluation import bigcodebench_limits
    from amr_dspy.library import Library, check_train_only, seed_from_tasks
    from amr_dspy.library.store import MANIFEST_FILE
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import load_tasks
    from amr_dspy.testcases import ExecutionRequest

    if (out / MANIFEST_FILE).exists():
        raise LibraryError(f"library {out}: already exists; choose another --out or add to it with `library add`")
    with console.status(f"loading {source}"):
        tasks = load_tasks(source, limit=limit)
    check_train_only(tasks)  # before the sandbox runs anything
    limits = bigcodebench_limits() if any(t.dataset == "bigcodebench" for t in tasks) else None
    with console.status(f"verifying {len(tasks)} canonical solutions"), Sandbox(limits) as sandbox:
        requests = [
            ExecutionRequest(code=t.canonical_solution or "", entry_point=t.entry_point, tests=t.tests,
                             task_id=t.task_id, dataset=t.dataset)
            for t in tasks
        ]
        passed = {t.task_id: r.passed for t, r in zip(tasks, sandbox.run_many(requests), strict=True)}

    def verify(task: Any, solution: str) -> bool:
        return passed[task.task_id]

    library = Library.create(out)
    if teacher is None:
        with console.status("embedding modules"):
            report = seed_from_tasks(tasks, verify, None, library)
    else:
        spec = teacher_spec(teacher, api_base, api_key, max_tokens=256)
        with teacher_session(spec), console.status("describing and embedding modules"):
            report = seed_from_tasks(tasks, verify, _teacher_describer(), library, teacher=spec.name)
    library.save()
    table = Table(title=f"library {out}", show_header=False)
    for key, value in [
        ("tasks", report.tasks),
        ("verified", report.verified),
        ("failed verification", ", ".join(report.failed_task_ids) or "none"),
        ("without a function", ", ".join(report.no_modules_task_ids) or "none"),
        ("modules seen", report.modules_seen),
        ("modules added", len(report.added_ids)),
        ("duplicates skipped", report.duplicates),
    ]:
        table.add_row(key, str(value))
    console.print(table)


@library_app.command("add")
def add(
    directory: LibraryDir,
    file: Annotated[Path, typer.Option("--file", "-f", help="Python file whose top-level functions are added.")],
    description: Annotated[
        str | None, typer.Option(help="Description of the module (the file must hold exactly one function).")
    ] = None,
    source: Annotated[str, typer.Option(help="Provenance source recorded for the modules.")] = "manual",
) -> None:
    """Add the top-level functions of a file you vouch for (recorded as verification method 'manual')."""
    from amr_dspy.library import Library, Provenance, Verification, describe, describe_from_signature
    from amr_dspy.library import record_from_module, split_modules

    library = Library.open(directory)
    modules = split_modules(_read_text(file), label=str(file))
    if not modules:
        raise DataError(f"{file}: no top-level function to add")
    if description is not None and len(modules) != 1:
        raise ConfigError(f"--description needs a file with exactly one function; {file} has {len(modules)}")
    verification = Verification(method="manual", passed=True, details=f"added from {file}; not executed")
    records = [
        record_from_module(
            m,
            description or describe(m) or describe_from_signature(m),
            provenance=Provenance(source=source, artifact=str(file)),
            verification=verification,
        )
        for m in modules
    ]
    added = set(library.add(records))
    library.save()
    for record in records:
        status = "[green]added[/]" if record.id in added else "[yellow]duplicate, skipped[/]"
        console.print(f"{status} {record.id}  {record.signature}", highlight=False)


@library_app.command("search")
def search(
    directory: LibraryDir,
    query: Annotated[str, typer.Argument(help="What the wanted module does, or its signature and description.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Number of modules to show.")] = 3,
) -> None:
    """Show the modules most similar to QUERY, with cosine scores and their code."""
    from amr_dspy.library import Library

    library = Library.open(directory)
    hits = library.search(query, k=k)[0]
    if not hits:
        console.print(f"library {directory} is empty")
        return
    table = Table(title=f"top {len(hits)} for {query!r}", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("module")
    table.add_column("code")
    for rank, hit in enumerate(hits, 1):
        rec = hit.record
        module = Group(
            Text(rec.signature, style="bold"),
            Text(rec.description),
            Text(f"{rec.id} · {rec.provenance.source}", style="dim"),
        )
        code = Syntax(rec.code, "python", theme="ansi_dark", word_wrap=True)
        table.add_row(str(rank), f"{hit.score:.3f}", module, code)
    console.print(table)


@library_app.command("stats")
def stats(directory: LibraryDir) -> None:
    """Size, embedding model, index type and where the modules came from."""
    from amr_dspy.library import Library

    info = Library.open(directory).stats()
    table = Table(title=f"library {directory}", show_header=False)
    for key in ("count", "dim", "embedding_model", "index_type", "hnsw_threshold"):
        table.add_row(key.replace("_", " "), str(getattr(info, key)))
    for src, n in info.by_source.items():
        table.add_row(f"source {src}", str(n))
    for method, n in info.by_verification.items():
        table.add_row(f"verified by {method}", str(n))
    console.print(table)


@library_app.command("export")
def export(
    directory: LibraryDir,
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="jsonl (nested records) or parquet (flattened).")] = (
        ExportFormat.jsonl
    ),
) -> None:
    """Write every module record (without vectors) to a file."""
    from amr_dspy.library import Library

    library = Library.open(directory)
    path = library.export(out, fmt=fmt.value)
    console.print(f"wrote {len(library)} modules to {path}")


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def _teacher_describer() -> Any:
    """A one-sentence description of a module by the configured teacher (``dspy.settings.lm``)."""
    import dspy

    from signatures import DescribeModule

    predict = dspy.Predict(DescribeModule)

    def describe_module(module: FunctionModule) -> str:
        return str(predict(code=module.code).description)

    return describe_module
