"""``amr-dspy synthesize`` through a real subprocess: kill -9 and resume, one-line errors, the fake teacher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amr_dspy.library import Library
from amr_dspy.server import free_port
from amr_dspy.synthesis import read_records
from tests.fake_openai_server import FakeOpenAI
from tests.test_synthesis import benchmark_file, seed_library, write_jsonl

# Registers the command whether or not amr_dspy.cli imports it yet.
_ENTRY = "import amr_dspy.cli.synthesize; from amr_dspy.cli import main; main()"


@pytest.fixture(scope="module")
def slow_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(delay_s=0.3) as server:  # slow enough to kill a run in the middle
        yield server


def command(tmp_path: Path, api_base: str, *args: str) -> list[str]:
    return [sys.executable, "-c", _ENTRY, "synthesize", "--teacher", "openai/fake-teacher", "--api-base", api_base,
            "--no-cache", "--library", str(seed_library(tmp_path / "seed")), "--variant", "direct", "--uncompiled",
            "--decontam-against", str(benchmark_file(tmp_path / "bench.jsonl")), "--embedding-model", "hashing-256",
            "--workers", "1", "--lm-retries", "1", "--request-timeout", "5", "--backoff", "0.1", *args]  # fmt: skip


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AMR_DSPY_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def run(tmp_path: Path, api_base: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(tmp_path, api_base, *args), capture_output=True, text=True, timeout=180,
                          env=environment(tmp_path))  # fmt: skip


def committed(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def children(pid: int) -> set[int]:
    """The direct children of ``pid`` (the sandbox workers of a synthesize run)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_after(tmp_path: Path, api_base: str, records: Path, n: int, *args: str) -> None:
    """Start a run and SIGKILL it once ``n`` records are committed; its sandbox workers must not outlive it."""
    proc = subprocess.Popen(command(tmp_path, api_base, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=environment(tmp_path))  # fmt: skip
    deadline = time.monotonic() + 150
    while committed(records) < n:
        if proc.poll() is not None:
            tail = proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            raise AssertionError(f"run ended before {n} records: {tail}")
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(alive(w) for w in workers)


def test_help_names_the_main_options() -> None:
    result = subprocess.run([sys.executable, "-c", _ENTRY, "synthesize", "--help"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert result.returncode == 0
    for option in ("--program", "--uncompiled", "--input", "--out", "--resume", "--skip-invalid", "--concurrency",
                   "--library", "--no-library", "--similarity-threshold", "--judge-threshold", "--ngram", "--sft-all",
                   "--instruction-field"):
        assert option in result.stdout, option  # fmt: skip


def test_kill_9_at_any_point_then_resume_loses_in_flight_items_only(slow_fake: FakeOpenAI, tmp_path: Path) -> None:
    names = ["merge_ranges", "count_vowels", "flatten_tree", "parse_header", "rotate_grid", "median_of",
             "dedupe_words", "sum_digits"]
    rows: list[object] = [{"instruction": f"Write `{name}(x)`."} for name in names]
    rows.insert(3, '{"instruction": "broken')
    inputs = write_jsonl(tmp_path / "work.jsonl", rows)
    out = tmp_path / "run"
    records = out / "records.jsonl"
    args = ("--input", str(inputs), "--out", str(out), "--skip-invalid", "--concurrency", "2")

    kill_after(tmp_path, slow_fake.api_base, records, 2, *args)
    first = read_records(records)
    assert len(first) >= 2 and Library.open(out / "library")  # consistent on disk after the kill
    with records.open("ab") as fh:  # and a record line torn in the middle of its write
        fh.write(b'{"id": "work/9", "instruction": "Write `tas')

    fresh = run(tmp_path, slow_fake.api_base, *args)  # without --resume the directory is refused
    assert fresh.returncode == 1 and "already holds a synthesis run" in fresh.stderr and "--resume" in fresh.stderr

    kill_after(tmp_path, slow_fake.api_base, records, len(first) + 2, *args, "--resume")
    second = read_records(records)
    assert [r.id for r in second[: len(first)]] == [r.id for r in first]  # committed records are never rewritten

    result = run(tmp_path, slow_fake.api_base, *args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    final = read_records(records)
    ids = [r.id for r in final]
    assert sorted(ids) == sorted(f"work/{i}" for i in (0, 1, 2, 4, 5, 6, 7, 8)) and len(set(ids)) == len(ids)
    assert all(r.verified for r in final)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 8 and summary["resumed"] == len(second) and summary["invalid"] == 1
    assert summary["repaired_bytes"] == 0  # the torn line was cut by the second run, before this one
    yields = summary["yield_report"]
    assert yields["read"] == 9 and yields["skipped"] == {"invalid_row": 1}
    assert yields["verified"] == yields["sft"] == 8 and "verified → 8 SFT" in result.stdout
    library = Library.open(out / "library")
    held = {r.id for r in library.records}
    assert {i for r in final for i in r.growth.added} <= held
    grown = [r.provenance.instruction_id for r in library.records if r.provenance.source == "synthesize:work.jsonl"]
    assert sorted(grown) == sorted(ids)  # every record grew the library exactly once, however often it was started
    sft = (out / "sft.jsonl").read_text().splitlines()
    assert len(sft) == 8


def test_bad_input_is_one_line_naming_file_and_line_before_the_teacher_starts(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "ok"}, '{"instruction": "caf'])
    out = tmp_path / "run"
    result = run(tmp_path, f"http://127.0.0.1:{free_port()}/v1", "--input", str(inputs), "--out", str(out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {inputs}:2: invalid JSON (Invalid control character, column 21)"]
    assert not out.exists()


def test_an_unreachable_teacher_is_one_line_and_no_work_is_done(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "ok.jsonl", [{"instruction": "Write `f(x)`."}])
    out = tmp_path / "run"
    api_base = f"http://127.0.0.1:{free_port()}/v1"
    result = run(tmp_path, api_base, "--input", str(inputs), "--out", str(out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: teacher openai/fake-teacher at {api_base} is unreachable")
    assert not out.exists()


def test_python_only_reports_the_instructions_it_skipped(slow_fake: FakeOpenAI, tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "mixed.jsonl", [{"instruction": "Write `reverse_words(s)` in JavaScript."},
                                                    {"instruction": "Write `count_vowels(s)`."}])  # fmt: skip
    out = tmp_path / "run"
    result = run(tmp_path, slow_fake.api_base, "--input", str(inputs), "--out", str(out), "--python-only")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 1 and summary["other_language"] == 1
    assert summary["yield_report"]["read"] == 2 and summary["yield_report"]["skipped"] == {"other_language": 1}
    assert "1 in another language skipped" in result.stdout and "1 other language" in result.stdout
