"""The leakage policy (``amr_dspy.leakage``): each use against train, dev, test, HumanEval, unlabelled and whole
benchmark inputs, with the outcomes written out by hand rather than derived from ``RULES``."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from amr_dspy.errors import ConfigError
from amr_dspy.leakage import Origin, Refusal, Use, check_provenance, check_spec, check_tasks, refusal
from amr_dspy.library import Provenance

USES: tuple[Use, ...] = ("seed", "grow", "demos", "tuning")
ORIGINS = {
    "train": Origin(split="train"),
    "dev": Origin(split="dev"),
    "test": Origin(split="test"),
    "humaneval": Origin(held_out=True),
    "unlabelled": Origin(),
    "whole": Origin(whole=True),
}
# why each use refuses each origin (None: it may read it), in the order of USES
TABLE: dict[str, tuple[Refusal | None, ...]] = {
    "train": (None, None, None, None),
    "dev": ("dev", "dev", "dev", None),
    "test": ("test", "test", "test", "test"),
    "humaneval": ("held_out", "held_out", "held_out", "held_out"),
    "unlabelled": ("unlabelled", None, None, None),
    "whole": ("test", "test", "test", "test"),
}
CASES = [(origin, use, TABLE[origin][i]) for origin in TABLE for i, use in enumerate(USES)]


@pytest.mark.parametrize(("origin", "use", "expected"), CASES)
def test_policy_table(origin: str, use: Use, expected: Refusal | None) -> None:
    assert refusal(ORIGINS[origin], use) == expected


# a benchmark spec of each origin; a file stands for "unlabelled": its tasks are checked once loaded
SPECS = {
    "train": ["mbpp+:train", "mbpp+stub:train", "bigcodebench:train@core", " bigcodebench-complete:train "],
    "dev": ["mbpp+:dev", "mbpp+stub:dev", "bigcodebench:dev@core", "bigcodebench-complete:dev"],
    "test": ["mbpp+:test", "mbpp+stub:test", "bigcodebench:test", "bigcodebench-complete:test@full"],
    "humaneval": ["humaneval+"],
    "unlabelled": ["tasks.jsonl", "hf:someone/instructions:test"],
    "whole": ["mbpp+", "mbpp+stub", "bigcodebench@core", "bigcodebench-complete"],
}
SPEC_REFUSED = {  # seed, grow, demos, tuning
    "train": (False, False, False, False),
    "dev": (True, True, True, False),
    "test": (True, True, True, True),
    "humaneval": (True, True, True, True),
    "unlabelled": (False, False, False, False),
    "whole": (True, True, True, True),
}


@pytest.mark.parametrize(
    ("spec", "use", "refused"),
    [(spec, use, SPEC_REFUSED[origin][i]) for origin, specs in SPECS.items() for spec in specs
     for i, use in enumerate(USES)],
)  # fmt: skip
def test_check_spec_table(spec: str, use: Use, refused: bool) -> None:
    if not refused:
        check_spec(spec, use)
        return
    with pytest.raises(ConfigError) as info:
        check_spec(spec, use)
    assert spec.strip() in str(info.value) and "\n" not in str(info.value)


def _task(task_id: str, split: str | None, dataset: str | None, source: str) -> SimpleNamespace:
    return SimpleNamespace(task_id=task_id, split=split, dataset=dataset, source=source)


# loaded tasks of each origin (a loaded task always has its split or none: "whole" has no task)
TASKS = {
    "train": [_task("Mbpp/2", "train", "mbpp", "mbpp+"), _task("BigCodeBench/0", "train", "bigcodebench",
                                                               "bigcodebench")],
    "dev": [_task("Mbpp/520", "dev", "mbpp", "mbpp+stub"), _task("BigCodeBench/4", "dev", "bigcodebench",
                                                                 "bigcodebench")],
    "test": [_task("Mbpp/11", "test", "mbpp", "mbpp+"), _task("BigCodeBench/5", "test", "bigcodebench",
                                                              "bigcodebench-complete")],
    "humaneval": [_task("HumanEval/0", "test", "humaneval", "humaneval+"), _task("HumanEval/1", None, None, "x.jsonl"),
                  _task("t1", "train", "humaneval", "tasks.jsonl")],
    "unlabelled": [_task("t1", None, None, "tasks.jsonl"), _task("t2", "validation", None, "hf:someone/data")],
}
TASK_REFUSED = {origin: refused for origin, refused in SPEC_REFUSED.items() if origin != "unlabelled"}
TASK_REFUSED["unlabelled"] = (True, False, False, False)


@pytest.mark.parametrize(
    ("task", "use", "refused"),
    [(task, use, TASK_REFUSED[origin][i]) for origin, tasks in TASKS.items() for task in tasks
     for i, use in enumerate(USES)],
    ids=str,
)  # fmt: skip
def test_check_tasks_table(task: SimpleNamespace, use: Use, refused: bool) -> None:
    if not refused:
        check_tasks([task], use)
        return
    with pytest.raises(ConfigError) as info:
        check_tasks([_task("Mbpp/3", "train", "mbpp", "mbpp+"), task], use)
    assert task.task_id in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("source", "task_id", "refused"),
    [
        ("mbpp+:train", "Mbpp/3", False),  # train
        ("synthesize:bigcodebench:train@core", None, False),
        ("mbpp+:dev", "Mbpp/520", True),  # dev
        ("bigcodebench-complete:dev", None, True),
        ("synthesize:bigcodebench:test@core", None, True),  # test
        ("mbpp+:test", "Mbpp/12", True),
        ("humaneval+", "HumanEval/3", True),  # humaneval
        ("synthesize", "HumanEval/0", True),
        ("humaneval+:train", None, True),  # held out whole, whatever its label says
        ("x.jsonl:train", "HumanEval/0", True),
        ("synthesize:instructions.jsonl", None, False),  # unlabelled
        ("synthesize:hf:someone/data:validation", "row-1", False),
        ("synthesize:hf:someone/data:train", None, False),  # labelled train, no benchmark's
        ("synthesize:hf:someone/data:test", None, True),  # labelled test: refused though no benchmark's
        ("synthesize:mbpp+", None, True),  # whole
        ("synthesize:bigcodebench@core", None, True),
        ("synthesize", "BigCodeBench/5", True),
    ],
)
def test_check_provenance_table(source: str, task_id: str | None, refused: bool) -> None:
    provenance = Provenance(source=source, task_id=task_id)
    if not refused:
        check_provenance(provenance)
        return
    with pytest.raises(ConfigError, match="leakage"):
        check_provenance(provenance)


def _message(check: Callable[..., None], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_check_spec_messages() -> None:
    assert _message(check_spec, "mbpp+:dev", "seed") == (
        "refusing to seed the library from 'mbpp+:dev': only a training split may seed it (e.g. mbpp+:train)")
    assert _message(check_spec, "humaneval+", "grow") == (
        "refusing to grow the library from 'humaneval+': only a training split may grow it")
    assert _message(check_spec, " humaneval+ ", "demos", option="--train") == (
        "--train humaneval+: HumanEval+ is held out for testing; never compile on it")
    assert _message(check_spec, "bigcodebench@core", "tuning", option="--dev") == (
        "--dev bigcodebench@core: includes the held-out BigCodeBench test split; "
        "use --train bigcodebench:train@core --dev bigcodebench:dev@core")
    assert _message(check_spec, "mbpp+stub:dev", "demos", option="--train") == (
        "--train mbpp+stub:dev: demos must come from the train split; use --train mbpp+stub:train")


def test_check_tasks_messages() -> None:
    dev, test = _task("Mbpp/520", "dev", "mbpp", "mbpp+"), _task("Mbpp/11", "test", "mbpp", "mbpp+")
    humaneval = _task("HumanEval/0", None, "humaneval", "humaneval+")
    assert _message(check_tasks, [dev], "seed") == (
        "refusing to seed the library from task 'Mbpp/520' (split 'dev', source 'mbpp+'): "
        "only training tasks may seed it")
    assert _message(check_tasks, [humaneval], "demos", option="--train") == (
        "--train: task HumanEval/0 is from HumanEval+, which is held out for testing")
    assert _message(check_tasks, [test], "tuning", option="--dev") == (
        "--dev: task Mbpp/11 is from a held-out test split (mbpp+)")
    assert _message(check_tasks, [dev], "demos", option="--train") == (
        "--train: task Mbpp/520 is from the dev split; demos must come from the train split")


def test_check_provenance_message() -> None:
    assert _message(check_provenance, Provenance(source="mbpp+:test", task_id="Mbpp/12")) == (
        "library growth refused for Mbpp/12 from 'mbpp+:test': benchmark dev/test/held-out solutions must never enter "
        "the module library (leakage)")
    assert _message(check_provenance, Provenance(source="synthesize:mbpp+")).startswith(
        "library growth refused for ? from 'synthesize:mbpp+': ")
