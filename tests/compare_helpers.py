"""Made-up eval runs of three variants on the same eight tasks, written as real eval folders.

The outcomes are chosen so the comparison's numbers can be worked out by hand (see the tests):
base+plus passes are direct 3/8, cot 4/8, amr 6/8.
"""

from __future__ import annotations

import json
from pathlib import Path

from amr_dspy.evaluation import EvalResults, TaskResult, write_results, write_samples

TASK_IDS = [f"Mbpp/{n}" for n in range(11, 19)]
TEACHER = "stand-in-teacher"

# (base passed, plus passed, failure) per task, in TASK_IDS order
OUTCOMES: dict[str, list[tuple[bool, bool, str | None]]] = {
    "direct": [
        (True, True, None),
        (True, False, "wrong_answer"),
        (False, False, "error"),
        (False, False, "no_code"),
        (True, True, None),
        (False, False, "timeout"),
        (True, True, None),
        (False, False, "wrong_answer"),
    ],
    "cot": [
        (True, True, None),
        (True, True, None),  # fixed
        (False, False, "wrong_answer"),
        (True, True, None),  # fixed
        (True, True, None),
        (False, False, "memory"),
        (False, False, "wrong_answer"),  # broken
        (False, False, "wrong_answer"),
    ],
    "amr": [
        (True, True, None),
        (True, True, None),  # fixed
        (True, True, None),  # fixed
        (True, True, None),  # fixed
        (True, True, None),
        (True, False, "wrong_answer"),
        (True, True, None),
        (False, False, "program_error"),
    ],
}
# (LM calls, uncached calls, prompt tokens, completion tokens, program seconds) per task
USAGE = {"direct": (1, 1, 100, 20, 1.0), "cot": (1, 1, 150, 80, 2.0), "amr": (4, 3, 500, 300, 6.0)}
EXEC_S = 0.5

LONG_FIX = "def f(x):\n" + "".join(f"    step_{i} = x + {i}\n" for i in range(12)) + "    return step_11\n"


def code_for(variant: str, index: int) -> str | None:
    if OUTCOMES[variant][index][2] in ("no_code", "program_error"):
        return None
    if variant == "amr" and index == 1:
        return LONG_FIX
    body = {"direct": "return x", "cot": "return x + 1", "amr": "return abs(x)"}[variant]
    if variant == "cot" and index == 6:
        body = "return -x"
    return f"def f(x):\n    {body}\n"


def eval_results(variant: str) -> EvalResults:
    calls, uncached, prompt, completion, wall = USAGE[variant]
    tasks = [
        TaskResult(
            task_id=task_id,
            base_passed=base,
            plus_passed=plus,
            failure=failure,
            failure_message=None if failure is None else f"{failure} on {task_id}",
            exec_s=EXEC_S,
            lm_calls=calls,
            uncached_lm_calls=uncached,
            prompt_tokens=prompt,
            completion_tokens=completion,
            wall_s=wall,
        )
        for task_id, (base, plus, failure) in zip(TASK_IDS, OUTCOMES[variant], strict=True)
    ]
    return EvalResults.collect("mbpp+:test", tasks, (wall + EXEC_S) * len(tasks), variant=variant, teacher=TEACHER)


def write_eval_dir(root: Path, variant: str, results: EvalResults | None = None) -> Path:
    """An eval folder as ``amr-dspy eval`` leaves it: results.json, samples.jsonl, predictions.jsonl."""
    directory = root / f"{variant}-mbpp+test"
    results = results or eval_results(variant)
    codes = {t.task_id: code_for(variant, i) for i, t in enumerate(results.tasks) if i < len(TASK_IDS)}
    write_results(directory / "results.json", results)
    write_samples(directory / "samples.jsonl", [t.task_id for t in results.tasks], codes)
    with (directory / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for task in results.tasks:
            code = codes.get(task.task_id)
            row = {"task_id": task.task_id, "response": code, "code": code, "failure": task.failure}
            handle.write(json.dumps(row) + "\n")
    return directory


def write_all(root: Path) -> list[Path]:
    return [write_eval_dir(root, variant) for variant in ("direct", "cot", "amr")]
