"""One usage meter: tokens used (cache hits included) and paid (calls that reached the teacher), everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import dspy

from amr_dspy.synthesis import SynthesisRecord
from amr_dspy.usage import Usage, metered, migrate_paid_only
from optimize.artifact import read_manifest
from tests.fake_openai_server import FakeOpenAI

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "local-0.5b"


def test_a_cache_hit_is_used_as_much_as_the_call_that_made_it_and_costs_nothing() -> None:
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    with FakeOpenAI() as server, dspy.context(lm=server.lm(cache=True)):
        predict = dspy.Predict("instruction -> response")
        with metered() as first:
            predict(instruction="Write `add(a, b)`.")
        with metered() as again:
            predict(instruction="Write `add(a, b)`.")
    paid, reused = first.usage(), again.usage()
    assert len(server.requests) == 1
    assert (paid.lm_calls, paid.uncached_lm_calls) == (1, 1) and paid.tokens > 0 and paid.paid_tokens == paid.tokens
    assert (reused.lm_calls, reused.uncached_lm_calls, reused.cached_lm_calls) == (1, 0, 1)
    assert reused.tokens == paid.tokens and reused.paid_tokens == 0


def test_usage_adds_and_subtracts_field_by_field() -> None:
    a = Usage(lm_calls=2, uncached_lm_calls=1, prompt_tokens=10, completion_tokens=5, paid_prompt_tokens=4,
              paid_completion_tokens=2)  # fmt: skip
    assert (a + a - a) == a and (a + a).paid_tokens == 12 and (a + a).tokens == 30


def test_usage_from_before_paid_was_recorded_reads_as_paid() -> None:
    old = {"lm_calls": 3, "uncached_lm_calls": 2, "prompt_tokens": 100, "completion_tokens": 40}
    migrated = Usage.model_validate(migrate_paid_only(old))
    assert (migrated.paid_prompt_tokens, migrated.paid_completion_tokens) == (100, 40)
    current = {**old, "paid_prompt_tokens": 7, "paid_completion_tokens": 3}
    assert migrate_paid_only(current) == current  # new files are read as written


def test_committed_manifests_and_old_records_keep_their_paid_tokens() -> None:
    manifest = read_manifest(ARTIFACTS / "amr-bootstrap-2core.json")
    raw = json.loads((ARTIFACTS / "amr-bootstrap-2core.manifest.json").read_text())["usage"]["total"]
    total = manifest.usage["total"]
    assert (total.paid_prompt_tokens, total.paid_completion_tokens) == (raw["prompt_tokens"], raw["completion_tokens"])
    assert total.metric_calls == raw["metric_calls"]

    record = SynthesisRecord.model_validate({
        "id": "old/0", "instruction": "Write `f()`.", "response": "", "source": "old", "teacher": "t",
        "variant": "direct", "verification": {"status": "passed"},
        "timings": {"started_at": "2026-01-01T00:00:00+00:00"},
        "usage": {"lm_calls": 2, "uncached_lm_calls": 2, "prompt_tokens": 50, "completion_tokens": 20},
    })  # fmt: skip
    assert record.usage.paid_tokens == 70 == record.usage.tokens
