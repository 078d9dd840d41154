"""Synthesis, the main job: every input instruction becomes one training record with a verified response.

One module per concept: ``inputs`` reads the instructions (``read_inputs``), ``records`` is the record schema
(``SynthesisRecord``), ``pipeline`` makes one record (``synthesize_record``, ``merge_record``), ``record_log`` is
the commit log ``records.jsonl`` and its durability (``RecordLog``, ``read_records``), ``run`` is a whole run with
resume (``prepare``, ``execute``, ``run_synthesis``) and the teacher check (``check_teacher``),
``exports`` writes the HF dataset and the SFT file, ``summary`` is ``summary.json`` and the printed table.
"""

from __future__ import annotations

from amr_dspy.synthesis.exports import write_exports
from amr_dspy.synthesis.inputs import DEFAULT_MAX_INSTRUCTION_CHARS, InputBatch, InputItem, InvalidRow, read_inputs
from amr_dspy.synthesis.pipeline import merge_record, synthesize_record
from amr_dspy.synthesis.record_log import RecordLog, read_records
from amr_dspy.synthesis.records import (
    AgreementEvidence,
    DiscardedTest,
    Growth,
    ModuleSpecRecord,
    RecordResult,
    RecordVerification,
    RetrievedModule,
    SynthesisRecord,
    SynthesisSettings,
    Timings,
    Usage,
)
from amr_dspy.synthesis.run import (
    Prepared,
    ProgressSink,
    SynthesisJob,
    check_teacher,
    execute,
    open_run,
    prepare,
    run_synthesis,
)
from amr_dspy.synthesis.summary import RunSummary, YieldReport, summary_table

__all__ = [
    "DEFAULT_MAX_INSTRUCTION_CHARS",
    "InputItem",
    "InvalidRow",
    "InputBatch",
    "read_inputs",
    "Usage",
    "Timings",
    "RetrievedModule",
    "ModuleSpecRecord",
    "DiscardedTest",
    "AgreementEvidence",
    "RecordVerification",
    "Growth",
    "SynthesisRecord",
    "SynthesisSettings",
    "RecordResult",
    "synthesize_record",
    "merge_record",
    "RecordLog",
    "SynthesisJob",
    "Prepared",
    "ProgressSink",
    "RunSummary",
    "YieldReport",
    "prepare",
    "execute",
    "open_run",
    "run_synthesis",
    "check_teacher",
    "write_exports",
    "read_records",
    "summary_table",
]
