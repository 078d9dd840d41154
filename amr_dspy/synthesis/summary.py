"""The run's summary: ``RunSummary`` (``summary.json``) with its ``YieldReport`` (where the input rows went and what
a teacher-hour yields), and ``summary_table``, the table the command prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from rich.table import Table

from amr_dspy.synthesis.inputs import InputBatch
from amr_dspy.synthesis.records import SynthesisRecord

if TYPE_CHECKING:
    from amr_dspy.synthesis.run import SynthesisJob

__all__ = ["RunSummary", "YieldReport", "summary_table"]


class YieldReport(BaseModel):
    """Where the input rows went, read → skipped (by reason) → verified → SFT, and what a teacher-hour yields.

    Every row read is skipped or verified once the run is complete (a row is an invalid row, an instruction dropped
    by decontamination, or a record). A teacher-hour is an hour of this run's synthesis loop, the teacher's whole
    time with concurrent calls overlapping in it (it is ~99% of the loop); the rate counts the records this run made,
    so a resumed run is not credited with earlier sessions' records.
    """

    read: int  # input rows read
    skipped: dict[str, int] = Field(default_factory=dict)  # rows without a verified record, by reason (nonzero only)
    verified: int  # records whose answer passed verification
    sft: int  # records in sft.jsonl (the verified ones, unless --sft-all)
    teacher_s: float  # this run's synthesis loop, wall time
    verified_this_run: int  # verified records this run made
    verified_per_teacher_hour: float


# why a record is not verified, by its verification status (a response overlapping a benchmark is "skipped" too)
_NOT_VERIFIED = {"no_code": "no_code", "no_tests": "no_tests", "failed": "failed", "error": "error",
                 "skipped": "verification_off"}  # fmt: skip


def _yield_report(batch: InputBatch, dropped: int, records: Sequence[SynthesisRecord], made: Sequence[SynthesisRecord],
                  sft: int, loop_s: float) -> YieldReport:  # fmt: skip
    skipped = Counter({"invalid_row": len(batch.invalid), "other_language": len(batch.other_language),
                       "instruction_overlaps_benchmark": dropped})  # fmt: skip
    for r in records:
        if r.contaminated:
            skipped["response_overlaps_benchmark"] += 1
        elif not r.verified:
            skipped[_NOT_VERIFIED[r.verification.status]] += 1
    verified, verified_now = sum(r.verified for r in records), sum(r.verified for r in made)
    per_hour = round(3600 * verified_now / loop_s, 1) if loop_s else 0.0
    return YieldReport(read=batch.rows, skipped={k: n for k, n in skipped.items() if n}, verified=verified, sft=sft,
                       teacher_s=round(loop_s, 1), verified_this_run=verified_now,
                       verified_per_teacher_hour=per_hour)  # fmt: skip


class RunSummary(BaseModel):
    """Counts, pass rates, tokens and throughput of a run (``summary.json``)."""

    input: str
    input_name: str
    out: str
    teacher: str
    server: str | None = None  # how a local teacher was served
    variant: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    rows_read: int
    invalid: int
    invalid_examples: list[str] = Field(default_factory=list)
    other_language: int = 0  # instructions --python-only skipped
    decontaminated: int  # instructions dropped before synthesis
    decontaminated_by_method: dict[str, int] = Field(default_factory=dict)
    records: int  # in records.jsonl, all runs of this directory
    resumed: int  # already committed when this run started
    processed: int  # made by this run
    response_contaminated: int
    errors: int  # records whose program failed past its retries
    fallbacks: int
    verification: dict[str, int]
    pass_rate: float  # verified records / records
    pass_rate_this_run: float
    library_start: int
    library_end: int
    modules_added: int
    lm_calls: int
    uncached_lm_calls: int
    prompt_tokens: int  # used, cache hits included (amr_dspy.usage)
    completion_tokens: int
    paid_prompt_tokens: int = 0  # paid: the calls that reached the teacher
    paid_completion_tokens: int = 0
    tokens_this_run: int  # paid by this run's records
    wall_s: float  # the whole command after the teacher started: decontamination, synthesis, exports
    synthesis_s: float  # the synthesis loop alone
    records_per_min: float  # this run, over synthesis_s
    tokens_per_s: float  # paid tokens of this run, over synthesis_s
    dataset_rows: int
    sft_records: int
    yield_report: YieldReport
    repaired_bytes: int = 0  # a torn last line dropped on resume
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def _summarize(
    job: SynthesisJob,
    batch: InputBatch,
    records: list[SynthesisRecord],
    made: list[SynthesisRecord],
    dropped: list[dict[str, Any]],
    exports: dict[str, int],
    *,
    wall_s: float,
    loop_s: float,
    teacher: str,
    digest: str | None,
    library_start: int,
    library_end: int,
    repaired: int,
) -> RunSummary:
    import dspy

    from amr_dspy.teacher import served_by

    n, n_made = len(records), len(made)
    tokens_made = sum(r.usage.paid_tokens for r in made)
    return RunSummary(
        input=batch.spec,
        input_name=batch.name,
        out=str(job.out),
        teacher=teacher,
        server=served_by(dspy.settings.lm),
        variant=job.variant,
        artifact=str(job.artifact) if job.artifact else None,
        artifact_sha256=digest,
        rows_read=batch.rows,
        invalid=len(batch.invalid),
        invalid_examples=[row.message for row in batch.invalid[:10]],
        other_language=len(batch.other_language),
        decontaminated=len(dropped),
        decontaminated_by_method=dict(Counter(str(d["method"]) for d in dropped)),
        records=n,
        resumed=n - n_made,
        processed=n_made,
        response_contaminated=sum(r.contaminated for r in records),
        errors=sum(r.error is not None for r in records),
        fallbacks=sum(r.fallback for r in records),
        verification=dict(Counter(r.verification.status for r in records).most_common()),
        pass_rate=sum(r.verified for r in records) / n if n else 0.0,
        pass_rate_this_run=sum(r.verified for r in made) / n_made if n_made else 0.0,
        library_start=library_start,
        library_end=library_end,
        modules_added=sum(len(r.growth.added) for r in made),
        lm_calls=sum(r.usage.lm_calls for r in records),
        uncached_lm_calls=sum(r.usage.uncached_lm_calls for r in records),
        prompt_tokens=sum(r.usage.prompt_tokens for r in records),
        completion_tokens=sum(r.usage.completion_tokens for r in records),
        paid_prompt_tokens=sum(r.usage.paid_prompt_tokens for r in records),
        paid_completion_tokens=sum(r.usage.paid_completion_tokens for r in records),
        tokens_this_run=tokens_made,
        wall_s=round(wall_s, 2),
        synthesis_s=round(loop_s, 2),
        records_per_min=round(60 * n_made / loop_s, 2) if loop_s else 0.0,
        tokens_per_s=round(tokens_made / loop_s, 1) if loop_s else 0.0,
        dataset_rows=exports["dataset"],
        sft_records=exports["sft"],
        yield_report=_yield_report(batch, len(dropped), records, made, exports["sft"], loop_s),
        repaired_bytes=repaired,
    )


def _yield_rows(report: YieldReport) -> list[tuple[str, str]]:
    skipped = sum(report.skipped.values())
    reasons = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.skipped.items())
    flow = (f"{report.read} read → {skipped} skipped{f' ({reasons})' if reasons else ''} → [bold]{report.verified}"
            f" verified[/] → {report.sft} SFT")  # fmt: skip
    rate = (f"{report.verified_per_teacher_hour:.1f} verified records per teacher-hour "
            f"({report.verified_this_run} in this run's {report.teacher_s:.0f}s)")  # fmt: skip
    return [("yield", flow), ("teacher time", rate)]


def summary_table(summary: RunSummary) -> Table:
    title = f"synthesize — {summary.input_name} · {summary.variant} · {summary.teacher}"
    table = Table(title=title, title_justify="left", show_header=False)
    rows = [
        ("records", f"{summary.records} ({summary.processed} this run, {summary.resumed} resumed)"),
        ("verified", f"[bold]{100 * summary.pass_rate:.1f}%[/] "
                     f"({', '.join(f'{n} {k}' for k, n in summary.verification.items()) or 'none'})"),
        ("input rows", f"{summary.rows_read} read, {summary.invalid} invalid skipped"
                       + (f", {summary.other_language} in another language skipped" if summary.other_language else "")),
        ("decontamination", f"{summary.decontaminated} instructions dropped"
                            + (f" ({', '.join(f'{n} {k}' for k, n in summary.decontaminated_by_method.items())})"
                               if summary.decontaminated_by_method else "")
                            + f", {summary.response_contaminated} responses dropped"),
        ("errors", f"{summary.errors} ({summary.fallbacks} fell back to the best response so far)"),
        ("library", f"{summary.library_start} → {summary.library_end} modules (+{summary.modules_added})"),
        ("LM calls", f"{summary.lm_calls} ({summary.uncached_lm_calls} uncached)"),
        ("tokens in/out", f"{summary.prompt_tokens:,}/{summary.completion_tokens:,} used, "
                          f"{summary.paid_prompt_tokens:,}/{summary.paid_completion_tokens:,} paid (uncached)"),
        ("throughput", f"{summary.records_per_min:.1f} records/min, {summary.tokens_per_s:.0f} tokens/s "
                       f"({summary.synthesis_s:.1f}s synthesizing, {summary.wall_s:.1f}s in all)"),
        ("exports", f"{summary.dataset_rows} dataset rows, {summary.sft_records} SFT records"),
        *_yield_rows(summary.yield_report),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table
