"""The run's exports: the HF dataset (parquet, loadable with ``datasets.load_dataset("OUT/dataset")``) and the SFT
chat file ``sft.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amr_dspy.synthesis.record_log import _write_atomic
from amr_dspy.synthesis.records import SynthesisRecord

__all__ = ["write_exports"]

SFT_FILE = "sft.jsonl"
DATASET_FILE = "dataset/data/train-00000-of-00001.parquet"  # datasets.load_dataset("OUT/dataset") finds it


def _dataset_features() -> Any:
    from datasets import Features, Value

    string, integer, number = Value("string"), Value("int64"), Value("float64")
    return Features({
        "id": string, "instruction": string, "response": string, "code": string, "source": string,
        "direct_response": string, "evolved_response": string, "kept": string, "notes": [string],
        "entry_point": string, "entry_point_source": string, "pruned": [string],
        "modules": [{"name": string, "signature": string, "description": string}],
        "retrieved": [{"id": string, "name": string, "score": number}],
        "verified": Value("bool"), "verification_status": string, "verification_n_tests": integer,
        "verification_n_passed": integer, "verification_method": string, "verification_n_examples": integer,
        "verification_n_discarded": integer, "verification_discarded": [string], "verification_leading": [string],
        "verification_evidence": string, "library_added": [string], "teacher": string, "variant": string,
        "artifact_sha256": string, "lm_calls": integer, "uncached_lm_calls": integer, "prompt_tokens": integer,
        "completion_tokens": integer, "paid_prompt_tokens": integer, "paid_completion_tokens": integer,
        "total_s": number, "teacher_s": number, "attempts": integer,
        "fallback": Value("bool"), "error": string,
    })  # fmt: skip


def _dataset_row(r: SynthesisRecord) -> dict[str, Any]:
    v, evidence = r.verification, r.verification.evidence
    return {
        "id": r.id, "instruction": r.instruction, "response": r.response, "code": r.code, "source": r.source,
        "direct_response": r.direct_response, "evolved_response": r.evolved_response, "kept": r.kept,
        "notes": r.notes, "entry_point": r.entry_point, "entry_point_source": r.entry_point_source,
        "pruned": r.pruned, "modules": [m.model_dump() for m in r.modules],
        "retrieved": [m.model_dump() for m in r.retrieved], "verified": r.verified,
        "verification_status": r.verification.status, "verification_n_tests": r.verification.n_tests,
        "verification_n_passed": r.verification.n_passed, "verification_method": v.method,
        "verification_n_examples": v.n_examples, "verification_n_discarded": v.n_discarded,
        "verification_discarded": [d.test for d in evidence.discarded] if evidence else [],
        "verification_leading": evidence.leading if evidence else [],
        "verification_evidence": evidence.model_dump_json() if evidence else None, "library_added": r.growth.added,
        "teacher": r.teacher, "variant": r.variant, "artifact_sha256": r.artifact_sha256,
        "lm_calls": r.usage.lm_calls, "uncached_lm_calls": r.usage.uncached_lm_calls,
        "prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens,
        "paid_prompt_tokens": r.usage.paid_prompt_tokens, "paid_completion_tokens": r.usage.paid_completion_tokens,
        "total_s": r.timings.total_s, "teacher_s": r.timings.teacher_s, "attempts": r.attempts,
        "fallback": r.fallback, "error": r.error,
    }  # fmt: skip


def write_exports(out: Path, records: Sequence[SynthesisRecord], *, sft_all: bool = False) -> dict[str, int]:
    """The HF dataset (parquet, every record without benchmark overlap) and the SFT chat file; returns row counts.

    The SFT file holds verified records only unless ``sft_all`` (then every record with a response).
    """
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    clean = [r for r in records if not r.contaminated]
    table = datasets.Dataset.from_list([_dataset_row(r) for r in clean], features=_dataset_features())
    target = out / DATASET_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    bars = not are_progress_bars_disabled()
    disable_progress_bars()  # a bar per export would litter the command's output
    try:
        table.to_parquet(str(tmp))
    finally:
        if bars:
            enable_progress_bars()
    os.replace(tmp, target)
    sft = [r for r in clean if r.response.strip() and (sft_all or r.verified)]
    lines = "".join(json.dumps({"id": r.id, "verified": r.verified, "messages": [
        {"role": "user", "content": r.instruction}, {"role": "assistant", "content": r.response}]},
        ensure_ascii=False) + "\n" for r in sft)  # fmt: skip
    _write_atomic(out / SFT_FILE, lines.encode("utf-8"))
    return {"dataset": len(clean), "sft": len(sft)}
