"""Point evalplus at small datasets for tests: a few MBPP+ rows taken at test time from the shared release,
or the made-up HumanEval+-format fixture; ground truth is cached under the test's tmp dir."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from amr_dspy.tasks import _local_copy

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HUMANEVAL_FIXTURE = FIXTURES / "FixtureEvalPlus.jsonl"


def mbpp_release() -> Path:
    path = _local_copy("MbppPlus-v0.2.0.jsonl.gz")
    assert path is not None, "MBPP+ v0.2.0 not found: set AMR_DSPY_DATA to the folder holding MbppPlus-v0.2.0.jsonl.gz"
    return Path(path)


def mbpp_rows() -> list[dict]:
    with gzip.open(mbpp_release(), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def use_mbpp_subset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, numbers: list[int]) -> Path:
    """Write the MBPP+ rows ``Mbpp/<n>`` for ``numbers`` to tmp_path and make evalplus use them."""
    wanted = {f"Mbpp/{n}" for n in numbers}
    rows = [row for row in mbpp_rows() if row["task_id"] in wanted]
    assert len(rows) == len(wanted)
    path = tmp_path / "MbppPlus-subset.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    monkeypatch.setenv("MBPP_OVERRIDE_PATH", str(path))
    isolate_groundtruth_cache(monkeypatch, tmp_path)
    return path


def use_humaneval_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", str(HUMANEVAL_FIXTURE))
    isolate_groundtruth_cache(monkeypatch, tmp_path)
    return HUMANEVAL_FIXTURE


def isolate_groundtruth_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import evalplus.evaluate

    monkeypatch.setattr(evalplus.evaluate, "CACHE_DIR", str(tmp_path / "evalplus-cache"))
