"""``amr-dspy synthesize``: the main job — turn an instruction set into verified training data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from amr_dspy.cli._app import app, console
from amr_dspy.cli._options import GuardOpt, SelectSamplesOpt, TestSetsOpt, teacher_options
from amr_dspy.teacher import TeacherSpec  # at run time: typer reads the command's signature

if TYPE_CHECKING:
    from amr_dspy.synthesis import SynthesisRecord

__all__ = ["synthesize_command"]

SAMPLE_FILE = Path(__file__).resolve().parent.parent / "data" / "sample_instructions.jsonl"


class RichProgress:
    """The progress bar: records done, rate, ETA, pass rate and tokens so far (this run)."""

    def __init__(self, out: Console) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("verified {task.fields[passed]}"),
            TextColumn("{task.fields[tokens]} tokens"),
        )
        self._progress = Progress(*columns, console=out)
        self._task: Any = None
        self._started = time.monotonic()
        self._made = self._verified = self._tokens = 0

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)  # type: ignore[arg-type]

    def start(self, total: int, done: int) -> None:
        self._started = time.monotonic()
        self._task = self._progress.add_task("synthesize", total=total, completed=done, rate="-", passed="-",
                                             tokens=0)  # fmt: skip

    def advance(self, record: SynthesisRecord) -> None:
        self._made += 1
        self._verified += record.verified
        self._tokens += record.usage.paid_tokens  # what the teacher decoded and read for this run
        minutes = max(time.monotonic() - self._started, 1e-6) / 60
        self._progress.update(self._task, advance=1, rate=f"{self._made / minutes:.1f}/min",
                              passed=f"{100 * self._verified / self._made:.0f}%",
                              tokens=f"{self._tokens:,}")  # fmt: skip


@app.command("synthesize")
@teacher_options()
def synthesize_command(
    input_spec: Annotated[
        str, typer.Option("--input", "-i", help="Instructions: a .jsonl, .json or .parquet file, hf:NAME[:SPLIT], "
                          "or 'sample' for the bundled sample file.")  # fmt: skip
    ],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Output directory of the run.")],
    program: Annotated[
        Path | None,
        typer.Option("--program", dir_okay=False, help="Compiled program artifact to load into --variant (default: "
                     "the bundled one compiled for the embedded teacher, where --variant has one: amr, cot, direct)."),
    ] = None,
    uncompiled: Annotated[
        bool, typer.Option("--uncompiled", help="Run --variant uncompiled, not the bundled compiled program.")
    ] = False,
    variant: Annotated[
        str, typer.Option(help="Program variant, e.g. amr, amr-paper, direct (see --program).")
    ] = "amr",
    instruction_field: Annotated[str, typer.Option(help="Field holding the instruction.")] = "instruction",
    input_field: Annotated[
        str, typer.Option(help="Field appended to the instruction when non-empty (Alpaca 'input'); '' for none.")
    ] = "input",
    id_field: Annotated[
        str | None, typer.Option(help="Field holding a unique id (default: <file stem>/<row index>).")
    ] = None,
    library: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Seed module library, copied into OUT/library, retrieved from and grown "
                     "there (default: the bundled MBPP+ and BigCodeBench train library "
                     "artifacts/library/minilm-mbpp-bcb-train; never modified)."),  # fmt: skip
    ] = None,
    no_library: Annotated[
        bool,
        typer.Option("--no-library", help="Run without a module library: no retrieval, no OUT/library and so no "
                     "growth (default: a library, see --library)."),  # fmt: skip
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Synthesize at most N instructions.")] = None,
    concurrency: Annotated[
        int,
        typer.Option(min=1, help="Records in flight to the teacher; the local teacher takes as many of their calls "
                     "at once as it has slots, grouped by prompt prefix."),  # fmt: skip
    ] = 8,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out, skipping ids already done.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip (and count) invalid input rows instead of stopping.")
    ] = False,
    python_only: Annotated[
        bool, typer.Option("--python-only", help="Skip (and count) instructions that name another programming "
                           "language and not Python; --limit counts the ones kept.")  # fmt: skip
    ] = False,
    max_instruction_chars: Annotated[
        int, typer.Option(min=1, help="Longest instruction accepted, in characters.")
    ] = 16_000,
    grow: Annotated[
        bool, typer.Option("--grow/--no-grow", help="Add the novel modules of verified records to OUT/library.")
    ] = True,
    guard: GuardOpt = True,
    select_samples: SelectSamplesOpt = None,
    test_sets: TestSetsOpt = None,
    retries: Annotated[
        int, typer.Option(min=0, help="Re-runs of a record's program after a failure, with exponential backoff.")
    ] = 2,
    backoff: Annotated[float, typer.Option(min=0.0, help="Seconds before the first re-run (doubling after).")] = 2.0,
    lm_retries: Annotated[
        int, typer.Option(min=0, help="Retries of one teacher request on timeouts, 5xx and connection loss.")
    ] = 3,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds before a teacher request times out.")
    ] = 600.0,
    decontaminate: Annotated[
        bool, typer.Option("--decontaminate/--no-decontaminate", help="Drop instructions and responses that "
                           "overlap HumanEval or MBPP (on by default).")  # fmt: skip
    ] = True,
    ngram: Annotated[
        int, typer.Option(min=0, help="Normalized code-token n-gram length of the overlap check (0: off).")
    ] = 15,
    similarity_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Embedding cosine similarity to a benchmark prompt at which an "
                            "instruction is dropped (0: off).")  # fmt: skip
    ] = 0.9,
    judge_threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Ask the teacher to judge instructions whose similarity "
                                   "is in [this, --similarity-threshold).")  # fmt: skip
    ] = None,
    decontam_against: Annotated[
        list[str] | None, typer.Option(help="Benchmarks to check against (their evaluation splits): humaneval, mbpp+, "
                                       "bigcodebench or a JSONL of {id, prompt, solution} (repeatable; default all "
                                       "three).")  # fmt: skip
    ] = None,
    embedding_model: Annotated[
        str, typer.Option(help="Embedding model of the similarity check (hashing-N for a quick offline check).")
    ] = "sentence-transformers/all-MiniLM-L6-v2",
    sft_all: Annotated[
        bool, typer.Option("--sft-all", help="Put every record in sft.jsonl, not only the verified ones.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Sandbox worker processes running the unit tests.")] = 2,
    *,
    spec: TeacherSpec,
) -> None:
    """Synthesize one verified training record per instruction with a (compiled) program and the teacher.

    Writes OUT/records.jsonl (appended as records finish; --resume continues), OUT/dataset (parquet for
    datasets.load_dataset), OUT/sft.jsonl (chat messages), OUT/library, OUT/decontamination.jsonl and
    OUT/summary.json.
    """
    from amr_dspy.decontam import DEFAULT_BENCHMARKS, DecontamConfig
    from amr_dspy.run import open_resources
    from amr_dspy.synthesis import SynthesisJob, check_teacher, execute, prepare, summary_table

    sample = input_spec == "sample"
    job = SynthesisJob(
        input=str(SAMPLE_FILE) if sample else input_spec,
        out=out,
        variant=variant,
        artifact=_program(variant, program, uncompiled),
        seed_library=library,
        use_library=not no_library,
        instruction_field=instruction_field,
        input_field=input_field or None,
        id_field=id_field or ("id" if sample else None),
        max_instruction_chars=max_instruction_chars,
        skip_invalid=skip_invalid,
        python_only=python_only,
        limit=limit,
        resume=resume,
        grow=grow,
        guard=guard,
        samples=select_samples,
        test_sets=test_sets,
        retries=retries,
        backoff_s=backoff,
        sft_all=sft_all,
        decontaminate=decontaminate,
        decontam=DecontamConfig(
            benchmarks=list(decontam_against or DEFAULT_BENCHMARKS),
            ngram=ngram or None,
            embedding_threshold=similarity_threshold or None,
            judge_threshold=judge_threshold,
            embedding_model=embedding_model,
        ),
        sandbox_workers=workers,
    )
    spec = spec.model_copy(update={"num_retries": lm_retries, "timeout_s": request_timeout})
    job.concurrency = concurrency
    prepared = prepare(job)  # bad input, a taken --out or a benchmark input stop here, before the teacher starts
    console.print(f"[dim]program: {job.artifact or f'{variant} (uncompiled)'}[/]", highlight=False, soft_wrap=True)
    batch = prepared.batch
    if batch.invalid:
        console.print(f"[yellow]skipped {len(batch.invalid)} invalid row(s)[/], first: {batch.invalid[0].message}",
                      highlight=False)  # fmt: skip
    # synthesis opens its own library (the copy in OUT/library that it grows), so none here
    with open_resources(spec, workers=workers, status=console.status) as run:
        check_teacher(run.lm, spec.name)
        with RichProgress(console) as progress:
            summary = execute(job, prepared, teacher=spec.name, sandbox=run.sandbox, progress=progress,
                              status=lambda message: console.print(f"[dim]{message}[/]", highlight=False))  # fmt: skip
    console.print(summary_table(summary))
    console.print(f"wrote {out}/records.jsonl, dataset/, sft.jsonl, library/ and summary.json", highlight=False)


def _program(variant: str, program: Path | None, uncompiled: bool) -> Path | None:
    """The artifact to load: --program, else the bundled one compiled for the embedded teacher (if any)."""
    from amr_dspy.errors import ConfigError
    from amr_dspy.resources import default_program

    if uncompiled and program is not None:
        raise ConfigError(f"--program {program} and --uncompiled: give one of them")
    return program if program is not None or uncompiled else default_program(variant)
