"""``amr-dspy library build|add|search|stats|export``: the function-module library on disk."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from amr_dspy.cli._app import console, library_app
from amr_dspy.cli._options import ApiBaseOpt, ApiKeyOpt, teacher_spec
from amr_dspy.errors import ConfigError, DataError, LibraryError

if TYPE_CHECKING:
    from amr_dspy.library import FunctionModule, Library, SeedReport
    from amr_dspy.library.verify import SeedVerdicts
    from amr_dspy.tasks import Task

__all__ = ["build", "add", "search", "stats", "export"]

LibraryDir = Annotated[
    Path, typer.Argument(help="Library directory (holds index.faiss, modules.jsonl and manifest.json).")
]


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"


@library_app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", help="Directory of the new library (must not hold one already).")],
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="Training tasks whose verified canonical solutions seed the library; repeat to merge several, "
            "e.g. --from mbpp+:train --from bigcodebench:train@core (default: mbpp+:train).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Seed from at most this many tasks of each source.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Sandbox workers that run the tests.")] = 2,
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
    """Seed a new library from the modules of training tasks whose canonical solution passes its tests.

    Every source is checked before anything runs: only training splits may seed a library. The manifest
    records, per source, the tasks read, verified, failed, skipped and excluded and the modules added.
    """
    from amr_dspy.leakage import check_spec, check_tasks
    from amr_dspy.library import Library
    from amr_dspy.library.store import MANIFEST_FILE
    from amr_dspy.library.verify import verify_seed_tasks
    from amr_dspy.tasks import load_tasks

    if (out / MANIFEST_FILE).exists():
        raise LibraryError(f"library {out}: already exists; choose another --out or add to it with `library add`")
    specs = list(dict.fromkeys(sources or ["mbpp+:train"]))
    for spec in specs:
        check_spec(spec, "seed")
    loaded: dict[str, list[Task]] = {}
    for spec in specs:
        with console.status(f"loading {spec}"):
            loaded[spec] = load_tasks(spec, limit=limit)
        check_tasks(loaded[spec], "seed")  # before the sandbox runs anything
    verdicts = {}
    for spec, tasks in loaded.items():
        with console.status(f"verifying {len(tasks)} canonical solutions of {spec}"):
            verdicts[spec] = verify_seed_tasks(tasks, workers=workers)
    library = Library.create(out)
    reports = _seed(loaded, verdicts, library, teacher, api_base, api_key)
    library.record_seed([report.counts(spec) for spec, report in reports.items()])
    library.save()
    console.print(_seed_table(out, reports))


def _seed(
    loaded: dict[str, list[Task]],
    verdicts: dict[str, SeedVerdicts],
    library: Library,
    teacher: str | None,
    api_base: str | None,
    api_key: str | None,
) -> dict[str, SeedReport]:
    """Seed ``library`` source by source, so a module already added from an earlier source is a duplicate."""
    from amr_dspy.library import seed_from_tasks

    if teacher is None:
        with console.status("embedding modules"):
            return {spec: seed_from_tasks(tasks, verdicts[spec], None, library) for spec, tasks in loaded.items()}
    from amr_dspy.run import teacher_session

    config = teacher_spec(teacher, api_base, api_key, max_tokens=256)
    with teacher_session(config), console.status("describing and embedding modules"):
        describe = _teacher_describer()
        return {
            spec: seed_from_tasks(tasks, verdicts[spec], describe, library, teacher=config.name)
            for spec, tasks in loaded.items()
        }


def _seed_table(out: Path, reports: dict[str, SeedReport]) -> Table:
    table = Table(title=f"library {out}")
    table.add_column("")
    for spec in reports:
        table.add_column(spec, overflow="fold")
    rows: list[tuple[str, Callable[[SeedReport], object]]] = [
        ("tasks", lambda r: r.tasks),
        ("verified", lambda r: r.verified),
        ("failed verification", lambda r: ", ".join(r.failed_task_ids) or "none"),
        ("skipped (library not installed)", lambda r: ", ".join(r.skipped_task_ids) or "none"),
        ("excluded", lambda r: ", ".join(r.excluded_task_ids) or "none"),
        ("without a function", lambda r: ", ".join(r.no_modules_task_ids) or "none"),
        ("modules seen", lambda r: r.modules_seen),
        ("not standalone", lambda r: ", ".join(r.not_standalone) or "none"),
        ("modules added", lambda r: len(r.added_ids)),
        ("duplicates skipped", lambda r: r.duplicates),
    ]
    for label, value in rows:
        table.add_row(label, *(str(value(r)) for r in reports.values()))
    return table


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
    from amr_dspy.library import (
        Library,
        Provenance,
        Verification,
        describe,
        describe_from_signature,
        record_from_module,
        split_modules,
    )

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
    for counts in info.seed:
        table.add_row(
            f"seeded from {counts.source}",
            f"{counts.tasks} tasks: {counts.verified} verified, {counts.failed} failed, {counts.skipped} skipped, "
            f"{counts.excluded} excluded; {counts.modules_added} modules added, {counts.duplicates} duplicates",
        )
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
