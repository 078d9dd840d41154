"""A scripted teacher and tiny made-up tasks for offline compile tests.

``ScriptedTeacher`` reads each ChatAdapter (or JSONAdapter) prompt and fills every output field it asks for.
Its code answer to "Write a function f_K(x) that returns x plus K." is right when K is even, or whenever the
prompt holds demos or an instruction the teacher proposed itself (IMPROVED_INSTRUCTION); otherwise it returns
x unchanged. So demos and proposed instructions measurably help, and since every answer quotes a digest of
the whole prompt, two programs give identical predictions only when their prompts are identical.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils import DummyLM

from amr_dspy.tasks import Task
from amr_dspy.testcases import CallTest

PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5
IMPROVED_INSTRUCTION = "Write correct, complete Python code"
_TASK = re.compile(r"Write a function (f_(\d+))\(x\) that returns x plus (\d+)\.")
_OUTPUT_FIELD = re.compile(r"^\d+\. `(\w+)` \(([^)]*)\)", re.MULTILINE)


def fake_task(k: int, split: str = "train") -> Task:
    return Task(
        task_id=f"fake/{k}",
        instruction=f"Write a function f_{k}(x) that returns x plus {k}.",
        entry_point=f"f_{k}",
        tests=[CallTest(name=f"base_{i}", inputs=[x], expected=x + k) for i, x in enumerate((1, 10))],
        source="fake",
        split=split,
        canonical_solution=f"def f_{k}(x):\n    return x + {k}\n",
    )


def answer(messages: list[dict[str, str]]) -> str:
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    fields = _output_fields(system)
    if not fields:  # a raw prompt: answer with a fenced instruction, as GEPA's classic proposer expects
        return f"```\n{IMPROVED_INSTRUCTION}.\n```"
    digest = hashlib.sha256("\n".join(m["content"] for m in messages).encode()).hexdigest()[:10]
    helped = sum(m["role"] == "user" for m in messages) > 1 or IMPROVED_INSTRUCTION in system
    values = {name: _value(name, kind, messages[-1]["content"], helped, digest) for name, kind in fields}
    if "[[ ## completed ## ]]" not in system:  # JSONAdapter
        return json.dumps({k: json.loads(v) if v in ("[]", "{}") else v for k, v in values.items()})
    return "\n\n".join([*(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items()), "[[ ## completed ## ]]"])


def _output_fields(system: str) -> list[tuple[str, str]]:
    start = system.find("Your output fields are:")
    if start < 0:
        return []
    end = system.find("All interactions will be structured", start)
    return _OUTPUT_FIELD.findall(system[start : end if end > 0 else None])


def _value(name: str, kind: str, last: str, helped: bool, digest: str) -> str:
    if name in ("response", "repaired_response"):
        match = _TASK.search(last)
        if match is None:
            return f"No task found ({digest})."
        fn, k = match[1], int(match[3])
        added = k if (k % 2 == 0 or helped) else 0
        return f"Solution {digest}.\n```python\ndef {fn}(x):\n    return x + {added}\n```"
    if kind.startswith("list"):
        return "[]"
    if kind.startswith("dict"):
        return "{}"
    if kind == "bool":
        return "True"
    if kind in ("int", "float"):
        return "1"
    return f"{IMPROVED_INSTRUCTION} ({digest})."  # e.g. a proposed instruction


class _Engine(DummyEngine):
    def _complete_messages(self, messages: list[dict[str, Any]]) -> Response:
        self.owner.prompts.append(messages)
        return Response(
            id=None,
            model="scripted",
            message=Message.assistant([TextPart(answer(messages))]),
            finish_reason="stop",
            usage=Usage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS,
                        total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS),  # fmt: skip
        )


class ScriptedTeacher(DummyLM):
    """A DummyLM whose answers follow from the prompt (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__([])
        self.prompts: list[list[dict[str, Any]]] = []
        self._engine_spec = _Engine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs: Any) -> ScriptedTeacher:
        copied = super().copy(**kwargs)
        copied._engine_spec = _Engine(copied)
        copied._async_engine_spec = AsyncDummyEngine(copied._engine_spec)
        return copied
