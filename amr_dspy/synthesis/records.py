"""The record schema: one ``SynthesisRecord`` per input (a line of ``records.jsonl``), with its verification,
usage, timings and library growth; ``SynthesisSettings``, what every record of a run shares; ``RecordResult``, a
record with the modules it proposes for the library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from amr_dspy.agreement import Selection
from amr_dspy.decontam import Verdict
from amr_dspy.library import ModuleRecord
from amr_dspy.usage import Usage, migrate_paid_only

__all__ = [
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
]


class Timings(BaseModel):
    started_at: datetime
    program_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0
    teacher_s: float = 0.0  # waiting on LM calls, program and verification (a cache hit counts its lookup)


class RetrievedModule(BaseModel):
    id: str
    name: str
    score: float


class ModuleSpecRecord(BaseModel):
    name: str
    signature: str
    description: str


VerificationStatus = Literal["passed", "failed", "no_code", "no_tests", "error", "skipped"]
EntryPointSource = Literal["item", "instruction", "direct answer"]


class DiscardedTest(BaseModel):
    """A teacher test the leading agreement group contradicts: not counted for or against the answer."""

    test: str  # its code
    observed: str  # what every member of the leading group did on it: "returned VALUE" or "raised TYPE"


class AgreementEvidence(BaseModel):
    """What verification by agreement saw, kept on the record for an audit (``_judge``).

    ``pool`` is every candidate run on the instruction's examples and the teacher's tests, with what each did on
    each of them, the groups and their scores, and the leading group's first member as ``chosen``.
    """

    pool: Selection
    tests_from: Literal["record", "selection"]  # tests the teacher wrote for the record, or the program's selection's
    leading: list[str] = Field(default_factory=list)  # the leading group's members
    answer: str | None = None  # the candidate holding the record's answer (before pruning)
    kept: list[str] = Field(default_factory=list)  # the teacher tests the answer is judged on, besides the examples
    discarded: list[DiscardedTest] = Field(default_factory=list)
    unexercised: list[str] = Field(default_factory=list)  # teacher tests naming nothing the answer defines: dropped


class RecordVerification(BaseModel):
    """The kept answer's verification: ``agreement`` (records made before it say ``unit_tests``).

    ``passed``: the answer is in the leading agreement group and passes every example of the instruction and every
    teacher test the leading group does not contradict.
    """

    status: VerificationStatus
    method: Literal["unit_tests", "agreement"] = "agreement"
    n_tests: int = 0  # the tests the answer was judged on: the instruction's examples and the teacher tests kept
    n_passed: int = 0
    n_examples: int = 0  # of n_tests, the instruction's own examples
    n_discarded: int = 0  # teacher tests the leading group contradicts (not in n_tests)
    failed_test: str | None = None
    message: str | None = None
    evidence: AgreementEvidence | None = None


class Growth(BaseModel):
    candidates: int = 0  # novel modules of the verified code (against the snapshot)
    proposed: int = 0  # records handed to the merge step
    added: list[str] = Field(default_factory=list)  # library ids added by the merge step
    reason: str | None = None  # why nothing was proposed or added


class SynthesisRecord(BaseModel):
    """One line of ``records.jsonl``."""

    id: str
    instruction: str  # as the input gave it (the SFT prompt)
    framed_instruction: str | None = None  # what the teacher saw instead, when the program framed it
    source: str  # the input's name
    task_id: str | None = None
    direct_response: str | None = None
    modules: list[ModuleSpecRecord] = Field(default_factory=list)
    retrieved: list[RetrievedModule] = Field(default_factory=list)
    evolved_response: str | None = None  # the evolution step's answer (AMR variants), kept or not
    response: str  # the final answer: the training target
    kept: str | None = None  # "evolved", "direct" or "fallback"
    code: str | None = None
    entry_point: str | None = None  # the function the answer must define: the item's, or derived
    entry_point_source: EntryPointSource | None = None
    pruned: list[str] = Field(default_factory=list)  # definitions the entry point never reaches, cut from the answer
    notes: list[str] = Field(default_factory=list)
    verification: RecordVerification
    contamination: Verdict | None = None  # the response's benchmark-overlap check
    growth: Growth = Field(default_factory=Growth)
    teacher: str
    variant: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    usage: Usage = Field(default_factory=Usage)

    @field_validator("usage", mode="before")
    @classmethod
    def _paid_before_used(cls, value: Any) -> Any:  # records written when only paid tokens were counted
        return migrate_paid_only(value)
    timings: Timings
    attempts: int = 1
    fallback: bool = False  # the program failed past its retries; ``response`` is the best one seen
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.verification.status == "passed"

    @property
    def contaminated(self) -> bool:
        return self.contamination is not None and self.contamination.contaminated


class SynthesisSettings(BaseModel):
    """What every record of a run shares."""

    source: str  # the input's name
    teacher: str
    variant: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    retries: int = Field(2, ge=0)  # program re-runs after a failure (the LM retries transport faults itself)
    backoff_s: float = Field(2.0, ge=0.0)  # before re-run k: backoff_s * 2**(k-1)
    verify: bool = True
    grow: bool = True

    @property
    def provenance_source(self) -> str:
        return f"synthesize:{self.source}"


class RecordResult(BaseModel):
    """A record and the module records it proposes for the library (not yet added)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    record: SynthesisRecord
    proposed: list[ModuleRecord] = Field(default_factory=list)
