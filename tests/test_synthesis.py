"""Synthesis: inputs and their errors, one record (verification, faults, fallback), the log, a whole run with resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dspy
import pytest
from rich.console import Console

from amr_dspy.errors import ArtifactError, ConfigError, DataError, TeacherUnavailableError
from amr_dspy.extract import extract_code
from amr_dspy.library import HashingEmbedder, Library, ModuleRecord, Provenance, Verification
from amr_dspy.run import load_program, open_resources
from amr_dspy.sandbox import Sandbox
from amr_dspy.server import free_port
from amr_dspy.synthesis import (
    InputItem,
    RecordLog,
    SynthesisJob,
    SynthesisRecord,
    SynthesisSettings,
    check_teacher,
    execute,
    merge_record,
    prepare,
    read_inputs,
    read_records,
    run_synthesis,
    summary_table,
    synthesize_record,
)
from tests.fake_openai_server import LEAKED_CODE, FakeOpenAI

BENCH_PROMPT = "Write a function to find the shared elements from the given two lists of integers."
LEAKY = "Write `leaky_sum(xs)` that adds up a list of numbers. LEAK"


# ------------------------------------------------------------------------------------------------ helpers


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def seed_library(directory: Path) -> Path:
    """A small hashing-embedded library (fast, no model) with one verified module."""
    if (directory / "manifest.json").exists():
        return directory
    library = Library.create(directory, HashingEmbedder(64))
    code = 'def clamp(x: int, lo: int, hi: int) -> int:\n    """Clamp x."""\n    return max(lo, min(hi, x))\n'
    library.add([ModuleRecord.model_validate({
        "name": "clamp", "signature": "def clamp(x: int, lo: int, hi: int) -> int:", "description": "Clamp x.",
        "code": code, "provenance": Provenance(source="manual"),
        "verification": Verification(method="manual", passed=True)})])  # fmt: skip
    library.save()
    return directory


def benchmark_file(path: Path) -> Path:
    """A two-item stand-in for HumanEval/MBPP: one prompt to match, one solution the fake teacher 'leaks'."""
    return write_jsonl(path, [
        {"id": "Fix/1", "prompt": BENCH_PROMPT, "solution": "def shared(a, b):\n    return set(a) & set(b)\n"},
        {"id": "Fix/2", "prompt": "Compute a running total.", "solution": LEAKED_CODE},
    ])  # fmt: skip


def settings(**overrides: object) -> SynthesisSettings:
    return SynthesisSettings(**{"source": "unit.jsonl", "teacher": "fake", "variant": "amr", "backoff_s": 0.05}
                             | overrides)  # fmt: skip


def item(text: str, item_id: str = "i/0") -> InputItem:
    return InputItem(id=item_id, instruction=text, where="unit.jsonl:1")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2) as box:
        yield box


@contextmanager
def teacher(fake: FakeOpenAI, **lm_settings: object) -> Iterator[dspy.LM]:
    lm = fake.lm(**lm_settings)
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        yield lm


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library.open(seed_library(tmp_path / "lib"))


# ------------------------------------------------------------------------------------------------ inputs


def test_inputs_get_stable_ids_the_alpaca_input_and_a_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "set.jsonl", [
        {"instruction": "Sum a list.", "input": "[1, 2]"}, "", {"instruction": "Reverse a string.", "input": ""},
        {"instruction": "Sort a list.", "id": "s-3"},
    ])  # fmt: skip
    batch = read_inputs(str(path))
    assert [(i.id, i.instruction) for i in batch.items] == [("set/0", "Sum a list.\n[1, 2]"),
                                                            ("set/1", "Reverse a string."), ("set/2", "Sort a list.")]
    assert batch.items[1].where == f"{path}:3" and batch.name == "set.jsonl" and batch.rows == 3
    assert [i.id for i in read_inputs(str(path), limit=2).items] == ["set/0", "set/1"]
    with pytest.raises(DataError, match=f"{path}:1: missing or empty id field 'id'"):
        read_inputs(str(path), id_field="id")


BAD_ROWS = [
    ('{"instruction": "ok"', "invalid JSON"),
    (b'{"instruction": "caf\xe9"}', "not valid UTF-8"),
    ('{"prompt": "wrong field"}', "missing or empty field 'instruction'"),
    ('{"instruction": "   "}', "missing or empty field 'instruction'"),
    ('{"instruction": 42}', "field 'instruction' is a int, not a string"),
    ('["a", "list"]', "expected a JSON object, got list"),
    (json.dumps({"instruction": "x" * 101}), "instruction is 101 characters, over the limit of 100"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_a_bad_row_is_a_one_line_error_naming_file_and_line(tmp_path: Path, row: str | bytes, message: str) -> None:
    path = tmp_path / "in.jsonl"
    raw = row if isinstance(row, bytes) else row.encode()
    path.write_bytes(b'{"instruction": "fine"}\n' + raw + b"\n")
    with pytest.raises(DataError) as caught:
        read_inputs(str(path), max_chars=100)
    text = str(caught.value)
    assert text.startswith(f"{path}:2: ") and message in text and "\n" not in text


def test_skip_invalid_counts_bad_rows_and_keeps_the_ids_of_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [b'{"instruction": "first"}'] + [r if isinstance(r, bytes) else r.encode() for r, _ in BAD_ROWS]
    rows += [b'{"instruction": "last", "id": "dup"}', b'{"instruction": "again", "id": "dup"}']
    path.write_bytes(b"\n".join(rows) + b"\n")
    batch = read_inputs(str(path), max_chars=100, skip_invalid=True)
    assert [i.instruction for i in batch.items] == ["first", "last", "again"]
    assert [i.id for i in batch.items] == ["mixed/0", "mixed/8", "mixed/9"]  # positions, whatever was skipped
    assert len(batch.invalid) == len(BAD_ROWS) and batch.rows == len(BAD_ROWS) + 3
    assert [r.where for r in batch.invalid] == [f"{path}:{n}" for n in range(2, 2 + len(BAD_ROWS))]
    dup = read_inputs(str(path), max_chars=100, skip_invalid=True, id_field="id")
    assert [i.instruction for i in dup.items] == ["last"]
    assert dup.invalid[-1].message == f"{path}:10: duplicate id 'dup'"


def test_python_only_skips_and_counts_instructions_in_another_language(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [{"instruction": "Write a Java method that reverses a string."},
            {"instruction": "Reverse a list.", "input": "Use C++ templates."},  # the input names the language
            {"instruction": "Write a Python function that joins C strings."},  # names Python: kept
            {"instruction": "Sort a list of tuples by their second item."},  # names none: kept
            {"instruction": "Write an SQL query listing all users."}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batch = read_inputs(str(path), python_only=True, limit=1)
    assert [i.id for i in batch.items] == ["mixed/2"] and batch.other_language == [f"{path}:1", f"{path}:2"]
    assert batch.rows == 3  # the limit counts kept items; reading stops there
    assert [i.id for i in read_inputs(str(path), python_only=True).items] == ["mixed/2", "mixed/3"]
    assert len(read_inputs(str(path)).items) == 5


def test_json_lists_and_parquet_are_read_with_locations(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    listed = tmp_path / "set.json"
    listed.write_text('[\n  {"instruction": "a"},\n  {"instruction": ""}\n]\n')
    with pytest.raises(DataError, match=f"{listed}:3: missing or empty field 'instruction'"):
        read_inputs(str(listed))
    assert [i.instruction for i in read_inputs(str(listed), skip_invalid=True).items] == ["a"]
    table = tmp_path / "set.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q1"}, {"question": "q2"}]), table)
    batch = read_inputs(str(table), instruction_field="question")
    assert [(i.id, i.instruction) for i in batch.items] == [("set/0", "q1"), ("set/1", "q2")]
    with pytest.raises(ConfigError, match="no such file"):
        read_inputs(str(tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------------------------------------ one record


def test_a_record_is_verified_and_its_modules_proposed_without_writing_the_library(
    fake: FakeOpenAI, sandbox: Sandbox, library: Library
) -> None:
    program = load_program("amr", library=library, executor=sandbox).module
    with teacher(fake):
        result = synthesize_record(item("Write `add_numbers(a, b)`."), program, library, settings=settings(),
                                   executor=sandbox)  # fmt: skip
    record = result.record
    assert record.verified and record.verification.n_tests == 2 and record.verification.n_passed == 2
    assert record.code and "def add_numbers" in record.code and "```python" in record.response
    assert record.direct_response and record.modules[0].name == "add_numbers"
    assert record.evolved_response == record.direct_response and record.kept == "direct"  # a tie goes to direct
    assert "tie: direct kept (the evolved response is the direct one)" in record.notes
    assert (record.entry_point, record.entry_point_source, record.pruned) == ("add_numbers", "instruction", [])
    assert record.retrieved and record.retrieved[0].id.startswith("clamp-")  # the library was searched
    assert record.error is None and record.attempts == 1 and not record.fallback
    assert [m.name for m in result.proposed] == ["add_numbers"] and len(library) == 1  # pure: nothing added yet
    provenance = result.proposed[0].provenance
    assert provenance.source == "synthesize:unit.jsonl" and provenance.instruction_id == "i/0"
    merged = merge_record(library, result)
    assert merged.growth.added == [result.proposed[0].id] and len(library) == 2
    assert merge_record(library, result).growth.added == []  # merging the same proposals twice adds nothing


def test_usage_counts_every_call_and_cached_calls_count_no_tokens(fake: FakeOpenAI, sandbox: Sandbox) -> None:
    program = load_program("direct").module
    text = "Write `count_things(xs)` usage."
    with teacher(fake, cache=True):
        dspy.configure_cache(enable_memory_cache=True, enable_disk_cache=False)
        try:
            first = synthesize_record(item(text), program, None, settings=settings(), executor=sandbox).record
            again = synthesize_record(item(text), program, None, settings=settings(), executor=sandbox).record
        finally:
            dspy.configure_cache(enable_memory_cache=False, enable_disk_cache=False)
    served = [r for r in fake.requests if r["instruction"].startswith(text)]
    assert first.usage.lm_calls == first.usage.uncached_lm_calls == 2 == len(served)  # answer + unit tests
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.paid_tokens == first.usage.tokens
    assert again.usage.lm_calls == 2 and again.usage.uncached_lm_calls == 0 and again.usage.paid_tokens == 0
    assert again.usage.tokens == first.usage.tokens  # a cache hit is used as much as the call that made it
    assert again.response == first.response


def test_a_stub_is_framed_for_the_program_and_the_verifier_and_kept_raw_in_the_record(
    fake: FakeOpenAI, sandbox: Sandbox
) -> None:
    from amr_dspy.framing import frame_instruction

    stub = 'def scale_up(x: int) -> int:\n    """Return x scaled up."""\n'
    program = load_program("direct").module
    stub_item = InputItem(id="h/0", instruction=stub, where="unit.jsonl:1", entry_point="scale_up")
    with teacher(fake):
        record = synthesize_record(stub_item, program, None, settings=settings(), executor=sandbox).record
    framed = frame_instruction(stub, "scale_up")
    assert record.instruction == stub and record.framed_instruction == framed != stub
    assert record.verified and record.verification.n_tests == 2
    seen = [r["instruction"] for r in fake.requests if "scale_up" in r["instruction"]]
    assert seen == [framed.strip()] * 2  # the answer and the unit tests were both asked with the framed text


def test_code_failing_its_unit_tests_is_recorded_and_grows_nothing(
    fake: FakeOpenAI, sandbox: Sandbox, library: Library
) -> None:
    program = load_program("direct").module
    with teacher(fake):
        result = synthesize_record(item("Write `half_of(x)` BUGGY."), program, library, settings=settings(),
                                   executor=sandbox)  # fmt: skip
    verification = result.record.verification
    assert verification.status == "failed" and verification.n_passed == 0 and verification.failed_test == "unit_1"
    assert result.proposed == [] and result.record.growth.reason == "not verified (failed)"


def test_asserts_joined_in_one_test_string_are_run_one_by_one(fake: FakeOpenAI, sandbox: Sandbox) -> None:
    program = load_program("direct").module
    with teacher(fake):
        joined = synthesize_record(item("Write `two_in_one(x)` JOINED_TESTS"), program, None, settings=settings(),
                                   executor=sandbox).record  # fmt: skip
    assert joined.verified and joined.verification.n_tests == 2
    with teacher(fake):
        none = synthesize_record(item("Write `untested(x)` NO_TESTS"), program, None, settings=settings(),
                                 executor=sandbox).record  # fmt: skip
    assert none.verification.status == "no_tests"
    assert none.verification.message == "the teacher wrote no valid assert statement"


def test_timeouts_5xx_and_connection_loss_are_retried(fake: FakeOpenAI, sandbox: Sandbox, tmp_path: Path) -> None:
    items = [item("Write `flaky_a(x)` FAULT:500x2", "f/0"), item("Write `flaky_b(x)` FAULT:dropx1", "f/1"),
             item("Write `flaky_c(x)` FAULT:timeoutx1", "f/2")]  # fmt: skip
    program = load_program("direct").module
    log = RecordLog.open(tmp_path / "records.jsonl")
    with teacher(fake, num_retries=2, timeout=1.0):
        made = run_synthesis(items, program=program, library=None, executor=sandbox, settings=settings(grow=False),
                             log=log, concurrency=3)  # fmt: skip
    assert sorted(r.id for r in made) == ["f/0", "f/1", "f/2"]
    assert all(r.error is None and r.attempts == 1 and r.verified for r in made)
    faults = [(r["instruction"][:14], r["fault"]) for r in fake.faults() if "flaky" in r["instruction"]]
    assert sorted(faults) == [("Write `flaky_a", "500"), ("Write `flaky_a", "500"), ("Write `flaky_b", "drop"),
                              ("Write `flaky_c", "timeout")]  # fmt: skip
    assert len(read_records(log.path)) == 3


def test_unparsable_output_reruns_the_program(fake: FakeOpenAI, sandbox: Sandbox) -> None:
    program = load_program("direct").module
    with teacher(fake):  # ChatAdapter, then its JSONAdapter fallback, both get garbage on the first run
        record = synthesize_record(item("Write `parse_me(x)` FAULT:garbagex2"), program, None, settings=settings(),
                                   executor=sandbox).record  # fmt: skip
    assert record.attempts == 2 and record.error is None and record.verified


def test_past_the_retries_the_record_keeps_the_failure(fake: FakeOpenAI, sandbox: Sandbox) -> None:
    program = load_program("direct").module
    with teacher(fake, num_retries=1):
        record = synthesize_record(item("Write `down_hard(x)` FAULT:500x50"), program, None,
                                   settings=settings(retries=1), executor=sandbox).record  # fmt: skip
    assert record.fallback and record.attempts == 2 and record.response == "" and record.code is None
    assert record.error == "LMServerError: [openai/fake-teacher] injected server error"
    assert record.verification.status == "no_code"
    assert len([r for r in fake.requests if "down_hard" in r["instruction"]]) == 4  # 2 runs x (1 + 1 LM retry)


def test_the_fallback_is_the_best_response_seen_so_far(fake: FakeOpenAI, sandbox: Sandbox) -> None:
    from signatures import DirectResponse

    class AnswersThenBreaks(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.respond = dspy.Predict(DirectResponse)

        def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
            self.respond(instruction=instruction)
            raise RuntimeError("a later step broke")

    with teacher(fake):
        record = synthesize_record(item("Write `almost_there(x)`."), AnswersThenBreaks(), None,
                                   settings=settings(retries=1), executor=sandbox).record  # fmt: skip
    assert record.fallback and record.kept == "fallback" and record.error == "RuntimeError: a later step broke"
    assert "def almost_there" in record.response and record.verified  # the kept answer is still checked


WORDS = "Write `word_frequencies(text)` returning (word, count) pairs, most frequent first."
CSV = "Write `csv_column_stats(csv_text, column)` returning the min, max and mean of a column of CSV text."
WORDS_DIRECT = ("from collections import Counter\n\n\ndef word_frequencies(text):\n"
                "    return Counter(text.split()).most_common()\n")  # fmt: skip
WORDS_BUGGY = "def word_frequencies(text):\n    return [(w, 1) for w in text.split()]\n"
CSV_DIRECT = ("import csv\nimport io\n\n\ndef csv_column_stats(csv_text, column):\n"
              "    values = [float(r[column]) for r in csv.DictReader(io.StringIO(csv_text)) if r[column]]\n"
              "    return {'min': min(values), 'max': max(values), 'mean': sum(values) / len(values)}\n")  # fmt: skip
# The evolved answers the compiled amr program kept on the sample run: retrieved library modules, nothing else.
MBPP_643 = "import re\n\n\ndef text_match_wordz_middle(text):\n    return bool(re.search(r'\\Bz\\B', text))\n"
MBPP_722 = ("def filter_data(students, h, w):\n"
            "    return {k: s for k, s in students.items() if s[0] >= h and s[1] >= w}\n")  # fmt: skip
WORDS_TESTS = ["assert word_frequencies('b a b') == [('b', 2), ('a', 1)]", "assert word_frequencies('') == []"]
CSV_TESTS = ["assert csv_column_stats('x\\n1\\n3\\n', 'x') == {'min': 1.0, 'max': 3.0, 'mean': 2.0}"]


def fenced(code: str) -> str:
    return f"Here is the solution.\n\n```python\n{code}```\n"


class Evolved(dspy.Module):
    """A stand-in AMR program: a fixed direct answer, and an evolved one the quality guard kept."""

    def __init__(self, direct: str, evolved: str) -> None:
        super().__init__()
        self.direct, self.evolved = fenced(direct), fenced(evolved)

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        return dspy.Prediction(response=self.evolved, code=extract_code(self.evolved, entry_point),
                               direct_response=self.direct, evolved_response=self.evolved, kept="evolved",
                               notes=["kept evolved: no valid unit tests to compare with"], modules=[],
                               retrieved=[])  # fmt: skip


def synthesize_scripted(sandbox: Sandbox, instruction: str, program: dspy.Module, tests: list[str]) -> SynthesisRecord:
    from dspy.utils import DummyLM

    lm = DummyLM([{"tests": tests}])  # the one call left: the record's unit tests
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        return synthesize_record(item(instruction), program, None, settings=settings(grow=False),
                                 executor=sandbox).record  # fmt: skip


@pytest.mark.parametrize(("instruction", "direct", "module", "tests"), [
    (WORDS, WORDS_DIRECT, MBPP_643, WORDS_TESTS), (CSV, CSV_DIRECT, MBPP_722, CSV_TESTS)])
def test_an_evolved_answer_that_is_only_a_retrieved_module_loses_to_the_direct_answer(
    sandbox: Sandbox, instruction: str, direct: str, module: str, tests: list[str]
) -> None:
    record = synthesize_scripted(sandbox, instruction, Evolved(direct, module), tests)
    name = instruction.split("`")[1].split("(")[0]
    assert (record.entry_point, record.entry_point_source) == (name, "instruction")
    assert record.kept == "direct" and record.response == fenced(direct) and record.code == extract_code(direct)
    assert record.evolved_response == fenced(module)  # kept on the record, but not the answer
    assert f"kept direct: the evolved response does not define {name}" in record.notes
    assert record.verified and record.verification.n_tests == len(tests)


def test_without_a_name_in_the_instruction_the_direct_answers_main_function_is_required(sandbox: Sandbox) -> None:
    record = synthesize_scripted(sandbox, "Count how often each word of a text occurs, most frequent first.",
                                 Evolved(WORDS_DIRECT, MBPP_643), WORDS_TESTS)  # fmt: skip
    assert (record.entry_point, record.entry_point_source) == ("word_frequencies", "direct answer")
    assert record.kept == "direct" and record.verified


def test_a_tie_on_the_records_tests_goes_to_the_direct_answer(sandbox: Sandbox) -> None:
    rewritten = ("from collections import Counter\n\n\ndef word_frequencies(text: str) -> list[tuple[str, int]]:\n"
                 "    return Counter(text.split()).most_common()\n")  # fmt: skip
    tie = synthesize_scripted(sandbox, WORDS, Evolved(WORDS_DIRECT, rewritten), WORDS_TESTS)
    assert tie.kept == "direct" and tie.response == fenced(WORDS_DIRECT) and tie.verified
    assert "tie: direct kept (both in the leading group; record's tests: direct 2/2, evolved 2/2)" in tie.notes
    better = synthesize_scripted(sandbox, WORDS, Evolved(WORDS_BUGGY, rewritten), WORDS_TESTS)
    assert better.kept == "evolved" and better.response == fenced(rewritten) and better.verified
    assert ("kept evolved: it is in the leading group, the direct response is not (record's tests: direct 1/2, "
            "evolved 2/2)") in better.notes  # fmt: skip


def test_what_the_entry_point_never_reaches_is_pruned_from_the_kept_answer(sandbox: Sandbox) -> None:
    record = synthesize_scripted(sandbox, WORDS, Evolved(WORDS_BUGGY, WORDS_DIRECT + "\n\n" + MBPP_643),
                                 [*WORDS_TESTS, "assert text_match_wordz_middle('xzy')"])  # fmt: skip
    assert record.kept == "evolved" and record.pruned == ["text_match_wordz_middle"]
    assert record.code == extract_code(WORDS_DIRECT + "import re\n")  # imports stay
    assert "text_match_wordz_middle" not in record.response and "def word_frequencies" in record.response
    assert "pruned what word_frequencies never reaches: text_match_wordz_middle" in record.notes
    assert record.verified and record.verification.n_tests == 2  # the test of the pruned module went with it


def test_an_answer_that_pruning_breaks_loses_to_the_direct_answer(sandbox: Sandbox) -> None:
    dynamic = ("def _count(text):\n    return sorted({w: text.split().count(w) for w in text.split()}.items(),\n"
               "                  key=lambda kv: (-kv[1], text.split().index(kv[0])))\n\n\n"
               "def word_frequencies(text):\n    return globals()['_count'](text)\n")  # fmt: skip
    record = synthesize_scripted(sandbox, WORDS, Evolved(WORDS_BUGGY, dynamic), WORDS_TESTS)
    assert ("kept evolved: it is in the leading group, the direct response is not (record's tests: direct 1/2, "
            "evolved 2/2)") in record.notes  # fmt: skip
    assert "kept direct: pruning the evolved response broke it" in record.notes
    assert record.kept == "direct" and record.response == fenced(WORDS_BUGGY) and not record.verified


# Verification by agreement (issue 17). The teacher's assert below is wrong: (1, 3) and (4, 5) do not overlap.
MERGE = "Write `merge_intervals(intervals)` merging overlapping closed intervals, sorted by start."
MERGE_DIRECT = ("def merge_intervals(intervals):\n    merged = []\n    for start, end in sorted(intervals):\n"
                "        if merged and start <= merged[-1][1]:\n"
                "            merged[-1] = (merged[-1][0], max(merged[-1][1], end))\n        else:\n"
                "            merged.append((start, end))\n    return merged\n")  # fmt: skip
MERGE_EVOLVED = ("def merge_intervals(intervals):\n    result = []\n    for interval in sorted(intervals):\n"
                 "        if not result or interval[0] > result[-1][1]:\n            result.append(tuple(interval))\n"
                 "        else:\n            result[-1] = (result[-1][0], max(result[-1][1], interval[1]))\n"
                 "    return result\n")  # fmt: skip
MERGE_ONE_SPAN = ("def merge_intervals(intervals):\n    if not intervals:\n        return []\n"
                  "    return [(min(s for s, _ in intervals), max(e for _, e in intervals))]\n")  # fmt: skip
WRONG_ASSERT = "assert merge_intervals([(1, 3), (4, 5)]) == [(1, 5)]"
MERGE_TESTS = ["assert merge_intervals([(1, 4), (2, 5)]) == [(1, 5)]", WRONG_ASSERT, "assert merge_intervals([]) == []"]
BOTH_RETURN = "returned list[tuple[1, 3], tuple[4, 5]]"


def test_a_wrong_teacher_test_both_agreeing_candidates_contradict_is_discarded(sandbox: Sandbox) -> None:
    record = synthesize_scripted(sandbox, MERGE, Evolved(MERGE_DIRECT, MERGE_EVOLVED), MERGE_TESTS)
    v = record.verification
    assert record.verified and record.kept == "direct"  # both lead; a tie goes to the direct answer
    assert (v.method, v.n_tests, v.n_passed, v.n_examples, v.n_discarded) == ("agreement", 2, 2, 0, 1)
    assert (f"discarded 1 teacher test(s) contradicted by the leading group: {WRONG_ASSERT} ({BOTH_RETURN})"
            in record.notes)  # fmt: skip
    evidence = v.evidence
    assert evidence is not None and evidence.tests_from == "record" and evidence.answer == "direct"
    assert evidence.leading == ["direct", "evolved"] and evidence.kept == [MERGE_TESTS[0], MERGE_TESTS[2]]
    assert [(d.test, d.observed) for d in evidence.discarded] == [(WRONG_ASSERT, BOTH_RETURN)]
    runs = evidence.pool.candidates
    assert [r.name for r in runs] == ["direct", "evolved"] and runs[0].tests == runs[1].tests
    assert runs[0].tests[0] == runs[0].tests[2] == "pass"
    assert runs[0].tests[1].startswith("got ") and runs[0].tests[1].endswith(" list[tuple[1, 3], tuple[4, 5]]")
    assert [(g.members, g.score) for g in evidence.pool.groups] == [(["direct", "evolved"], 4)]  # 2 members x 2 tests
    line = json.loads(record.model_dump_json())["verification"]["evidence"]
    assert line["discarded"] == [{"test": WRONG_ASSERT, "observed": BOTH_RETURN}]  # in records.jsonl for an audit


@pytest.mark.parametrize("evolved", [MERGE_DIRECT, "# the same code, reworded\n" + MERGE_DIRECT])
def test_one_program_is_no_agreement_and_every_teacher_test_counts(sandbox: Sandbox, evolved: str) -> None:
    record = synthesize_scripted(sandbox, MERGE, Evolved(MERGE_DIRECT, evolved), MERGE_TESTS)
    v = record.verification
    assert not record.verified and v.status == "failed" and v.failed_test == "unit_2"
    assert (v.n_tests, v.n_passed, v.n_discarded) == (3, 2, 0) and not any("discarded" in n for n in record.notes)


def test_an_example_of_the_instruction_failing_rejects_whatever_the_candidates_agree(sandbox: Sandbox) -> None:
    adjacent = (f"{MERGE} Adjacent integer intervals merge too.\n"
                "Example: assert merge_intervals([(1, 2), (3, 4)]) == [(1, 4)]")  # fmt: skip
    record = synthesize_scripted(sandbox, adjacent, Evolved(MERGE_DIRECT, MERGE_EVOLVED), MERGE_TESTS)
    v = record.verification
    assert not record.verified and v.failed_test == "example_1"
    assert (v.n_tests, v.n_passed, v.n_examples, v.n_discarded) == (4, 2, 1, 0)  # a group failing an example is wrong
    assert v.evidence is not None and v.evidence.leading == ["direct", "evolved"] and v.evidence.discarded == []


class Answered(dspy.Module):
    """A stand-in direct program answering with a fixed response, as the teacher wrote it."""

    def __init__(self, response: str) -> None:
        super().__init__()
        self.response = response

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        return dspy.Prediction(response=self.response, code=extract_code(self.response, entry_point),
                               direct_response=self.response)  # fmt: skip


def test_the_records_response_has_paired_fences_and_the_direct_response_stays_as_written(sandbox: Sandbox) -> None:
    raw = "def is_even(n):\n    return n % 2 == 0\n```"  # Code Alpaca 5: the answer began inside a code block
    record = synthesize_scripted(sandbox, "Check if a number is even.", Answered(raw), ["assert is_even(4)"])
    assert record.response == "```python\n" + raw and record.direct_response == raw and record.verified


# Code Alpaca 174 with the 0.5B teacher: both of its asserts call `sorted`, never `sort_array`
SORT = "Sort this input array [1, 6, 4, 3, 0, 9] in ascending order."
SORT_DIRECT = "def sort_array(arr):\n    return sorted(arr)\n"
SORT_IDLE = ["assert sorted([1, 6, 4, 3, 0, 9]) == [0, 1, 3, 4, 6, 9]", "assert sorted([2, 1]) == [1, 2]"]


def test_teacher_tests_that_name_nothing_the_answer_defines_verify_nothing(sandbox: Sandbox) -> None:
    idle = synthesize_scripted(sandbox, SORT, Evolved(SORT_DIRECT, SORT_DIRECT), SORT_IDLE)
    v = idle.verification
    assert not idle.verified and v.status == "no_tests" and v.message == "no unit test left that exercises the answer"
    assert v.evidence is not None and v.evidence.unexercised == SORT_IDLE and v.evidence.kept == []
    assert f"dropped 2 teacher test(s) that name nothing the answer defines: {'; '.join(SORT_IDLE)}" in idle.notes
    real = "assert sort_array([3, 1, 2]) == [1, 2, 3]"
    mixed = synthesize_scripted(sandbox, SORT, Evolved(SORT_DIRECT, SORT_DIRECT), [SORT_IDLE[0], real])
    assert mixed.verified and mixed.verification.n_tests == 1 and mixed.verification.evidence is not None
    assert mixed.verification.evidence.kept == [real] and mixed.verification.evidence.unexercised == SORT_IDLE[:1]


def test_the_instructions_examples_verify_when_the_teacher_writes_no_test(sandbox: Sandbox) -> None:
    stated = f"{MERGE}\nExample: assert merge_intervals([(1, 3), (2, 4)]) == [(1, 4)]"
    record = synthesize_scripted(sandbox, stated, Evolved(MERGE_DIRECT, MERGE_DIRECT), ["print(1)"])
    v = record.verification
    assert record.verified and (v.n_tests, v.n_examples) == (1, 1)
    assert "the teacher wrote no valid assert statement; judged on the instruction's 1 example(s) only" in record.notes


class Selected(dspy.Module):
    """A stand-in -select program: its final answer and the pool it chose from (the teacher's tests included)."""

    def __init__(self, final: str, kept: str | None) -> None:
        from amr_dspy.agreement import CandidateRun, Selection

        super().__init__()
        self.final, self.kept = fenced(final), kept
        pool = [("direct", "direct", MERGE_ONE_SPAN), ("sample_1", "sample", MERGE_DIRECT),
                ("sample_2", "sample", MERGE_EVOLVED)]  # fmt: skip
        self.selection = Selection(chosen="sample_1", kind="sample", reason="scripted", tests=MERGE_TESTS,
                                   candidates=[CandidateRun(name=n, kind=k, code=c) for n, k, c in pool])  # fmt: skip

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        return dspy.Prediction(response=self.final, code=extract_code(self.final, entry_point),
                               direct_response=fenced(MERGE_ONE_SPAN), kept=self.kept, selection=self.selection,
                               notes=[], modules=[], retrieved=[])  # fmt: skip


def test_a_sampled_pool_outvotes_a_wrong_answer_that_passes_the_wrong_test(sandbox: Sandbox) -> None:
    from dspy.utils import DummyLM

    # direct passes all three tests (score 1 x 3); the two samples agree and pass two (2 x 2): they lead, and the
    # wrong assert, which they contradict, goes. The selection's tests are reused: no teacher call.
    with dspy.context(lm=DummyLM([]), adapter=dspy.ChatAdapter()):
        wrong = synthesize_record(item(MERGE), Selected(MERGE_ONE_SPAN, None), None, settings=settings(grow=False),
                                  executor=sandbox).record  # fmt: skip
        right = synthesize_record(item(MERGE), Selected(MERGE_DIRECT, "sample"), None, settings=settings(grow=False),
                                  executor=sandbox).record  # fmt: skip
    v = wrong.verification
    assert not wrong.verified and v.message == "the answer is not in the leading agreement group (sample_1, sample_2)"
    assert v.n_passed == v.n_tests == 2 and v.n_discarded == 1  # it passes what is left, but the pool disagrees
    assert v.evidence is not None and v.evidence.tests_from == "selection" and v.evidence.answer == "direct"
    assert right.verified and right.kept == "sample" and right.response == fenced(MERGE_DIRECT)
    assert ("kept sample: it is in the leading group, the direct response is not (record's tests: direct 3/3, "
            "sample 2/3)") in right.notes  # fmt: skip
    assert right.verification.evidence.answer == "sample_1" and right.usage.lm_calls == 0


def test_old_records_without_the_new_fields_still_load() -> None:
    old = {"id": "o/0", "instruction": "x", "source": "s", "response": "r", "verification": {"status": "passed"},
           "teacher": "t", "variant": "amr", "timings": {"started_at": "2025-01-01T00:00:00Z"}}  # fmt: skip
    record = SynthesisRecord.model_validate(old)
    assert record.entry_point is None and record.entry_point_source is None and record.pruned == []


def test_an_unreachable_teacher_is_one_line_before_any_work() -> None:
    lm = dspy.LM("openai/nobody", api_base=f"http://127.0.0.1:{free_port()}/v1", api_key="x", num_retries=3)
    with pytest.raises(TeacherUnavailableError) as caught:
        check_teacher(lm, "openai/nobody")
    message = str(caught.value)
    assert message.startswith("teacher openai/nobody at http://127.0.0.1:") and "is unreachable" in message
    assert "\n" not in message


# ------------------------------------------------------------------------------------------------ the log


def test_the_log_drops_a_torn_last_line_and_refuses_duplicates(
    fake: FakeOpenAI, sandbox: Sandbox, tmp_path: Path
) -> None:
    program = load_program("direct").module
    with teacher(fake):
        record = synthesize_record(item("Write `logged(x)`."), program, None, settings=settings(),
                                   executor=sandbox).record  # fmt: skip
    path = tmp_path / "records.jsonl"
    log = RecordLog.open(path)
    log.append(record)
    with pytest.raises(DataError, match="already committed"):
        log.append(record)
    log.close()
    with path.open("ab") as fh:
        fh.write(record.model_dump_json().encode()[:57])  # a write cut short by kill -9
    reopened = RecordLog.open(path)
    assert reopened.repaired_bytes == 57 and len(reopened) == 1 and "i/0" in reopened
    assert path.read_bytes().endswith(b"}\n")
    reopened.close()
    with path.open("ab") as fh:
        fh.write(b'{"id": "broken"}\n' + record.model_copy(update={"id": "other"}).model_dump_json().encode() + b"\n")
    with pytest.raises(DataError, match=f"{path}:2: corrupt record"):
        read_records(path)


# ------------------------------------------------------------------------------------------------ a whole run


def job_for(tmp_path: Path, inputs: Path, **overrides: object) -> SynthesisJob:
    from amr_dspy.decontam import DecontamConfig

    settings_ = {
        "input": str(inputs), "out": tmp_path / "run", "seed_library": seed_library(tmp_path / "seed"),
        "concurrency": 3, "backoff_s": 0.05, "sandbox_workers": 1,
        "decontam": DecontamConfig(benchmarks=[str(benchmark_file(tmp_path / "bench.jsonl"))],
                                   embedding_model="hashing-256"),
    }  # fmt: skip
    return SynthesisJob(**(settings_ | overrides))


def test_a_run_writes_records_exports_library_and_summary_and_resumes(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    monkeypatch.setenv("AMR_DSPY_HOME", str(tmp_path / "home"))
    inputs = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Write `add_pair(a, b)` returning a + b."},
        {"instruction": "Write `scale_all(xs, k)` multiplying each value."},
        {"instruction": "Write `off_by_one(n)` BUGGY counting."},
        {"instruction": BENCH_PROMPT + " Call it `shared(a, b)`."},  # overlaps the benchmark prompt
        {"instruction": LEAKY},  # its answer is a benchmark solution
        {"instruction": ""},  # invalid, skipped
    ])  # fmt: skip
    job = job_for(tmp_path, inputs, skip_invalid=True)
    with teacher(fake), open_resources(None, workers=1) as run:
        summary = execute(job, prepare(job), teacher="fake", sandbox=run.sandbox)
    out = job.out
    records = read_records(out / "records.jsonl")
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == ["alpaca/0", "alpaca/1", "alpaca/2", "alpaca/4"]  # 3 dropped before, 5 invalid
    assert by_id["alpaca/0"].verified and by_id["alpaca/1"].verified
    assert by_id["alpaca/2"].verification.status == "failed"
    leaky = by_id["alpaca/4"]
    assert leaky.contaminated and leaky.contamination.benchmark_id == "Fix/2" and leaky.growth.added == []
    [dropped] = [json.loads(line) for line in (out / "decontamination.jsonl").read_text().splitlines()]
    assert dropped["id"] == "alpaca/3" and dropped["method"] == "ngram" and dropped["benchmark_id"] == "Fix/1"

    assert summary.records == 4 and summary.processed == 4 and summary.resumed == 0
    assert summary.invalid == 1 and summary.invalid_examples[0].startswith(f"{inputs}:6: missing or empty field")
    assert summary.decontaminated == 1 and summary.response_contaminated == 1
    assert summary.verification == {"passed": 2, "failed": 1, "skipped": 1} and summary.pass_rate == 0.5
    assert summary.lm_calls == sum(r.usage.lm_calls for r in records) > 0 and summary.prompt_tokens > 0
    assert json.loads((out / "summary.json").read_text())["records"] == 4
    report = summary.yield_report  # 6 rows: 1 invalid, 1 instruction and 1 response overlapping a benchmark, 1 failing
    assert (report.read, report.verified, report.sft) == (6, 2, 2)
    assert report.skipped == {"invalid_row": 1, "instruction_overlaps_benchmark": 1, "response_overlaps_benchmark": 1,
                              "failed": 1}  # fmt: skip
    assert report.teacher_s == pytest.approx(summary.synthesis_s, abs=0.06) and report.verified_this_run == 2
    loop_s = summary.synthesis_s  # rounded to 0.01 s, so the rate is bounded, not pinned
    assert 3600 * 2 / (loop_s + 0.005) - 0.05 <= report.verified_per_teacher_hour <= 3600 * 2 / (loop_s - 0.005) + 0.05
    assert json.loads((out / "summary.json").read_text())["yield_report"] == report.model_dump(mode="json")
    console = Console(record=True, width=250)
    console.print(summary_table(summary))
    table = console.export_text()
    assert "6 read → 4 skipped (1 invalid row, 1 instruction overlaps benchmark, " in table
    assert "→ 2 verified → 2 SFT" in table and "verified records per teacher-hour" in table

    added = [i for r in records for i in r.growth.added]
    assert summary.library_start == 1 and summary.library_end == 1 + len(added) and len(added) >= 2
    grown = Library.open(out / "library")
    assert {r.id for r in grown.records} >= set(added) and len(Library.open(tmp_path / "seed")) == 1

    dataset = datasets.load_dataset(str(out / "dataset"), split="train")
    assert sorted(dataset["id"]) == ["alpaca/0", "alpaca/1", "alpaca/2"]  # the contaminated record is left out
    assert dataset[dataset["id"].index("alpaca/0")]["modules"][0]["name"] == "add_pair"
    assert dataset[dataset["id"].index("alpaca/0")]["entry_point"] == "add_pair"
    assert dataset[dataset["id"].index("alpaca/0")]["verification_method"] == "agreement"
    assert json.loads(dataset[dataset["id"].index("alpaca/0")]["verification_evidence"])["leading"] == ["direct"]
    sft = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in sft) == ["alpaca/0", "alpaca/1"]
    assert [m["role"] for m in sft[0]["messages"]] == ["user", "assistant"]

    with pytest.raises(ConfigError, match=r"already holds a synthesis run .* pass --resume"):
        prepare(job)
    other = write_jsonl(tmp_path / "other.jsonl", [{"instruction": "Write `x(y)`."}])
    with pytest.raises(ConfigError, match=f"was started on --input {inputs}, not {other}"):
        prepare(job.model_copy(update={"resume": True, "input": str(other)}))
    again = job.model_copy(update={"resume": True, "sft_all": True})
    served = len(fake.requests)
    with teacher(fake), open_resources(None, workers=1) as run:
        resumed = execute(again, prepare(again), teacher="fake", sandbox=run.sandbox)
    assert resumed.processed == 0 and resumed.resumed == 4 and len(fake.requests) == served
    assert len(read_records(out / "records.jsonl")) == 4 and resumed.sft_records == 3
    assert (resumed.yield_report.verified, resumed.yield_report.sft) == (2, 3)  # --sft-all: the failing one too


def test_benchmark_named_inputs_may_not_grow_the_library(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "humaneval_rewrites.jsonl", [{"instruction": "Write `f(x)`."}])
    with pytest.raises(ConfigError, match=r"leakage.*pass --no-grow"):
        prepare(job_for(tmp_path, inputs))
    assert prepare(job_for(tmp_path, inputs, grow=False)).batch.items[0].id == "humaneval_rewrites/0"


def test_without_a_library_a_run_neither_retrieves_nor_grows_and_resumes_only_without_one(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMR_DSPY_HOME", str(tmp_path / "home"))
    inputs = write_jsonl(tmp_path / "work.jsonl", [{"instruction": "Write `add_pair(a, b)` returning a + b."}])
    job = job_for(tmp_path, inputs, variant="amr", seed_library=None, use_library=False)
    with teacher(fake), open_resources(None, workers=1) as run:
        summary = execute(job, prepare(job), teacher="fake", sandbox=run.sandbox)
    (record,) = read_records(job.out / "records.jsonl")
    assert record.retrieved == [] and "retrieval skipped: no module library" in record.notes
    assert record.growth.added == [] and not (job.out / "library").exists()
    assert summary.library_start == summary.library_end == 0
    assert json.loads((job.out / "run.json").read_text())["seed_library"] is None
    with pytest.raises(ConfigError, match="started without a module library; resume it with --no-library"):
        prepare(job.model_copy(update={"resume": True, "use_library": True}))
    with pytest.raises(ConfigError, match=r"--library .* and --no-library: give one of them"):
        prepare(job_for(tmp_path, inputs, out=tmp_path / "other", use_library=False))


def test_only_a_run_that_retrieves_or_grows_keeps_a_library(tmp_path: Path) -> None:
    from amr_dspy.synthesis import open_run

    inputs = write_jsonl(tmp_path / "work.jsonl", [{"instruction": "Write `f(x)`."}])
    plain = job_for(tmp_path, inputs, variant="direct", grow=False)
    log, library = open_run(plain, prepare(plain).batch, teacher="fake")
    log.close()
    assert library is None and not (plain.out / "library").exists()  # never opened

    growing = job_for(tmp_path, inputs, variant="direct", out=tmp_path / "grown")
    log, library = open_run(growing, prepare(growing).batch, teacher="fake")
    log.close()
    assert library is not None and (growing.out / "library" / "manifest.json").is_file()
    with pytest.raises(ConfigError, match="started with a module library; resume it without --no-library"):
        prepare(growing.model_copy(update={"resume": True, "use_library": False, "seed_library": None}))


def test_a_compiled_artifact_is_loaded_and_hashed(tmp_path: Path) -> None:
    import hashlib

    compiled = load_program("direct").module
    compiled.respond.signature = compiled.respond.signature.with_instructions("Answer tersely.")
    from tests.test_artifact import make_artifact

    artifact = make_artifact(tmp_path / "direct.json", "direct", compiled)
    loaded = load_program("direct", artifact)
    program, digest = loaded.module, loaded.sha256
    assert program.respond.signature.instructions == "Answer tersely."
    assert digest == hashlib.sha256(artifact.read_bytes()).hexdigest()
    with pytest.raises(ArtifactError, match=r"compiled for variant 'direct'|variant"):
        load_program("amr", artifact)


def test_an_answer_in_another_language_says_so() -> None:
    from amr_dspy.synthesis.pipeline import _no_code_message

    sql = "the response's code is sql, not Python; only Python is verified"
    assert _no_code_message("```sql\nSELECT 1\n```") == sql
    assert _no_code_message("Sure.\n```python\nx = (\n```") == "the response has no code"
    assert _no_code_message(None) == "the response has no code"
