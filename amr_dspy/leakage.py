"""The leakage policy: which benchmark data may feed a module library or a compiled program's demos.

The rule: no task a program is evaluated on reaches the library it retrieves from or the demos it is compiled
with. HumanEval(+) is held out whole (it has no train split). MBPP+ (train = MBPP ids 1-10 and 601+, dev =
511-600, test = 11-510) and BigCodeBench (by ``BigCodeBench/N``: train N mod 10 in 0-3, dev 4, test 5-9) have
splits, and each use reads only some of them (``RULES``):

* ``seed``: seeding a library from canonical solutions (``amr_dspy.library.seed``): train only;
* ``grow``: growing a library from the teacher's verified responses (``amr_dspy.growth``): train only;
* ``demos``: compile's ``--train``, the demos and the optimizer's training examples (``optimize.compile``): train
  only;
* ``tuning``: compile's ``--dev``, the score the optimizer tunes against: train or dev, never test.

An input without a split label (a file's tasks, a plain instruction's provenance) is not a benchmark's as far as
anyone can tell: every use takes it but ``seed``, which takes only tasks labelled train (a file of canonical
solutions may have copied a benchmark's). That is the one difference between the uses beyond their splits
(``Rule.unlabelled``). A spec or source that names a benchmark without a split (``mbpp+``, ``synthesize`` of a
``Mbpp/N`` task) stands for all of it, its test split included, and is refused by every use.

The checks take what each caller has: a benchmark spec (before anything is loaded), loaded tasks, or a library
record's provenance; each raises a ``ConfigError`` of one line naming the offending input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from amr_dspy.errors import ConfigError

if TYPE_CHECKING:
    from amr_dspy.library.records import Provenance

__all__ = [
    "Use",
    "Split",
    "Refusal",
    "Rule",
    "RULES",
    "Origin",
    "refusal",
    "spec_origin",
    "task_origin",
    "provenance_origin",
    "check_spec",
    "check_tasks",
    "check_provenance",
]

Use = Literal["seed", "grow", "demos", "tuning"]
Split = Literal["train", "dev", "test"]
# why an input is refused: HumanEval(+), a test split (or a whole benchmark, which includes it), a dev split where
# only train may go, no split label where one is required
Refusal = Literal["held_out", "test", "dev", "unlabelled"]


class Rule(NamedTuple):
    splits: tuple[Split, ...]  # the splits of MBPP+ and BigCodeBench this use may read
    unlabelled: bool  # whether it may read an input without a split label


RULES: dict[Use, Rule] = {
    "seed": Rule(splits=("train",), unlabelled=False),
    "grow": Rule(splits=("train",), unlabelled=True),
    "demos": Rule(splits=("train",), unlabelled=True),
    "tuning": Rule(splits=("train", "dev"), unlabelled=True),
}


class Origin(NamedTuple):
    """Where an input comes from, as far as the policy cares."""

    held_out: bool = False  # HumanEval(+): every task is held out
    split: Split | None = None  # the split its label names (None: no label, or one that is not train/dev/test)
    whole: bool = False  # names a benchmark but no split: all of it, the test split included


def refusal(origin: Origin, use: Use) -> Refusal | None:
    """The policy: why ``use`` may not read an input from ``origin``, or None when it may."""
    rule = RULES[use]
    if origin.held_out:
        return "held_out"
    if origin.whole:
        return "test"
    if origin.split is None:
        return None if rule.unlabelled else "unlabelled"
    if origin.split in rule.splits:
        return None
    return "dev" if origin.split == "dev" else "test"


# --------------------------------------------------------------------------------------------
# the origin of each kind of input

_FAMILIES = ("mbpp", "humaneval", "bigcodebench")  # as sources and task ids name the benchmarks
_SUBSET = re.compile(r"@(stdlib|core|full)$")  # a BigCodeBench subset after the split: bigcodebench:train@core
# benchmark spec names with train/dev/test splits, and how messages call them
_SPLIT_BENCHMARKS = {"mbpp+": "MBPP+", "mbpp+stub": "MBPP+", "bigcodebench": "BigCodeBench",
                     "bigcodebench-complete": "BigCodeBench"}  # fmt: skip


def _label(text: str | None) -> Split | None:
    return next((split for split in get_args(Split) if split == text), None)


def _spec_parts(spec: str) -> tuple[str, str, str]:
    """``bigcodebench:dev@core`` -> (``bigcodebench``, ``dev``, ``@core``)."""
    base, at, subset = spec.strip().partition("@")
    name, _, split = base.partition(":")
    return name, split, f"{at}{subset}"


def spec_origin(spec: str) -> Origin | None:
    """The origin of a benchmark spec (``mbpp+:train``, ``bigcodebench:dev@core``, ``humaneval+``); None for files and
    ``hf:`` datasets, whose tasks are checked one by one once loaded."""
    from amr_dspy.tasks import benchmark_name

    name = benchmark_name(spec)
    if name is None:
        return None
    split = _spec_parts(spec)[1]
    return Origin(held_out=name == "humaneval+", split=_label(split), whole=not split)


def task_origin(task: Any) -> Origin:
    """The origin of a loaded task (``amr_dspy.tasks.Task`` or anything with its ``task_id``, ``split``, ``dataset``
    and ``source``): HumanEval by its dataset, source or id; the split by its label."""
    names = f"{getattr(task, 'dataset', None) or ''} {getattr(task, 'source', '') or ''}".lower()
    held_out = "humaneval" in names or str(task.task_id).lower().startswith("humaneval")
    return Origin(held_out=held_out, split=_label(getattr(task, "split", None)))


def provenance_origin(provenance: Provenance) -> Origin:
    """The origin of a library record's provenance: a benchmark when its source or task id names one, the split by the
    source's last ``:`` part (``synthesize:bigcodebench:train@core`` -> train)."""
    source = provenance.source.lower()
    task = (provenance.task_id or "").lower()
    named = [b for b in _FAMILIES if b in source or task.startswith(f"{b}/")]
    _, colon, last = _SUBSET.sub("", source).rpartition(":")
    split = _label(last) if colon else None
    return Origin(held_out="humaneval" in named, split=split, whole=bool(named) and split is None)


# --------------------------------------------------------------------------------------------
# the checks


def check_spec(spec: str, use: Use, *, option: str = "") -> None:
    """ConfigError when ``use`` may not read the benchmark a spec names; files and ``hf:`` datasets pass (their tasks
    are checked once loaded, ``check_tasks``). ``option`` is the command-line option that gave it (compile's)."""
    origin = spec_origin(spec)
    reason = None if origin is None else refusal(origin, use)
    if reason is None:
        return
    name, _, subset = _spec_parts(spec)
    if use in ("seed", "grow"):
        hint = "" if reason == "held_out" else f" (e.g. {name}:train)"
        verb = "seed" if use == "seed" else "grow"
        raise ConfigError(f"refusing to {verb} the library from {spec!r}: only a training split may {verb} it{hint}")
    where = f"{option} {spec.strip()}".strip()
    if reason == "held_out":
        raise ConfigError(f"{where}: HumanEval+ is held out for testing; never compile on it")
    if reason == "test":
        raise ConfigError(f"{where}: includes the held-out {_SPLIT_BENCHMARKS.get(name, name)} test split; "
                          f"use --train {name}:train{subset} --dev {name}:dev{subset}")  # fmt: skip
    raise ConfigError(f"{where}: demos must come from the train split; use --train {name}:train{subset}")


def check_tasks(tasks: Iterable[Any], use: Use, *, option: str = "") -> None:
    """ConfigError naming the first task ``use`` may not read. ``option`` is the command-line option that gave the
    tasks (compile's)."""
    for task in tasks:
        reason = refusal(task_origin(task), use)
        if reason is None:
            continue
        if use in ("seed", "grow"):
            split, source = getattr(task, "split", None), getattr(task, "source", None)
            raise ConfigError(f"refusing to {use} the library from task {task.task_id!r} (split {split!r}, source "
                              f"{source!r}): only training tasks may {use} it")  # fmt: skip
        where = f"{option}: task" if option else "task"
        if reason == "held_out":
            raise ConfigError(f"{where} {task.task_id} is from HumanEval+, which is held out for testing")
        if reason == "test":
            raise ConfigError(f"{where} {task.task_id} is from a held-out test split ({task.source})")
        if reason == "dev":
            raise ConfigError(f"{where} {task.task_id} is from the dev split; demos must come from the train split")
        raise ConfigError(f"{where} {task.task_id} has no split; only labelled tasks may be used here")


def check_provenance(provenance: Provenance) -> None:
    """ConfigError when a record with this provenance may not grow a library: only a benchmark's train split, or
    data no benchmark's (unlabelled, or labelled train), may."""
    if refusal(provenance_origin(provenance), "grow") is not None:
        raise ConfigError(
            f"library growth refused for {provenance.task_id or '?'} from {provenance.source!r}: "
            "benchmark dev/test/held-out solutions must never enter the module library (leakage)"
        )
