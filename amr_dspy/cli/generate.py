"""``amr-dspy generate``: the teacher answers one instruction or the instructions of a file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from amr_dspy.cli._app import app, console
from amr_dspy.cli._options import LibraryOpt, NoLibraryOpt, teacher_options
from amr_dspy.errors import ConfigError, TeacherUnavailableError
from amr_dspy.teacher import TeacherSpec  # at run time: typer reads the command's signature

SAMPLE_FILE = Path(__file__).resolve().parent.parent / "data" / "sample_instructions.jsonl"


@app.command()
@teacher_options(temperature=False)
def generate(
    instruction: Annotated[str | None, typer.Option("--instruction", "-i", help="One instruction to answer.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Instruction file (JSONL, JSON list or parquet); 'sample' = bundled.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Answer at most this many instructions.")] = None,
    variant: Annotated[str, typer.Option(help="Program variant, e.g. direct or cot.")] = "direct",
    instruction_field: Annotated[str, typer.Option(help="Field holding the instruction in --input.")] = "instruction",
    out: Annotated[Path | None, typer.Option(help="Also append the answers to this JSONL file.")] = None,
    library: LibraryOpt = None,
    no_library: NoLibraryOpt = False,
    *,
    spec: TeacherSpec,
) -> None:
    """Answer instructions with the teacher and show each answer with syntax-highlighted code."""
    from amr_dspy.render import answer_panel
    from amr_dspy.run import load_program, open_resources

    items = _instructions(instruction, input_file, limit, instruction_field)
    load_program(variant)  # an unknown variant fails here, before the teacher starts
    with open_resources(spec, workers=1, variants=[variant], library=library, no_library=no_library,
                        status=console.status) as run:  # fmt: skip
        program = run.program(variant).module
        for number, (item_id, text, entry_point) in enumerate(items, 1):
            started = time.monotonic()
            with console.status(f"[{number}/{len(items)}] {item_id}"):
                try:
                    prediction = program(instruction=text, entry_point=entry_point)
                except Exception as exc:  # LiteLLM/DSPy raise many types; the user needs one line
                    raise TeacherUnavailableError(
                        f"teacher {spec.name} failed on {item_id}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    ) from None
            seconds = time.monotonic() - started
            console.print(answer_panel(f"{item_id} · {variant}", text, prediction.response, prediction.code,
                                       footer=f"{spec.name} · {seconds:.1f}s"))
            if out is not None:
                _append(out, {"id": item_id, "instruction": text, "variant": variant, "teacher": spec.name,
                              "response": prediction.response, "code": prediction.code, "seconds": round(seconds, 2)})


def _instructions(
    instruction: str | None, input_file: Path | None, limit: int | None, field: str
) -> list[tuple[str, str, str | None]]:
    """(id, instruction, entry point) of each instruction to answer; a benchmark spec (humaneval+) names its entry
    points, which lets programs name the function a completion-style stub asks for."""
    if (instruction is None) == (input_file is None):
        raise ConfigError("give exactly one of --instruction TEXT or --input FILE")
    if instruction is not None:
        return [("instruction", instruction, None)]
    from amr_dspy.tasks import load_tasks

    sample = str(input_file) == "sample"
    path = SAMPLE_FILE if sample else input_file
    tasks = load_tasks(str(path), limit=limit, instruction_field=field, id_field="id" if sample else None)
    return [(task.task_id, task.instruction, task.entry_point) for task in tasks]


def _append(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
