"""LM usage, with one meaning wherever tokens appear (results.json, records.jsonl, summary.json, manifests).

Two counts of every token: **used**, every call's tokens, cache hits included (DSPy reports no usage for a cache
hit, but the stored response keeps the usage of the call that made it), which is what a program costs and what
variants are compared on; and **paid**, the tokens of the calls that reached the teacher this time, which is what a
run cost. A rerun on a warm cache uses as much as the first run and pays nothing.

``UsageMeter`` is a DSPy callback that measures both; ``metered`` puts one in the DSPy context for a block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from dspy.utils.callback import BaseCallback
from pydantic import BaseModel

__all__ = ["Usage", "UsageMeter", "metered", "migrate_paid_only"]


class Usage(BaseModel):
    lm_calls: int = 0  # every LM call, cache hits included
    uncached_lm_calls: int = 0  # calls that reached the teacher
    prompt_tokens: int = 0  # used: every call's, cache hits included
    completion_tokens: int = 0
    paid_prompt_tokens: int = 0  # paid: the calls that reached the teacher
    paid_completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        """Tokens used (cache hits included)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def paid_tokens(self) -> int:
        return self.paid_prompt_tokens + self.paid_completion_tokens

    @property
    def cached_lm_calls(self) -> int:
        return self.lm_calls - self.uncached_lm_calls

    def __add__(self, other: Usage) -> Self:
        return type(self)(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})

    def __sub__(self, other: Usage) -> Self:
        return type(self)(**{k: getattr(self, k) - getattr(other, k) for k in type(self).model_fields})


def migrate_paid_only(data: Any) -> Any:
    """Usage written before "paid" was recorded by a meter that counted only uncached calls' tokens: those are the
    paid ones, and the used ones are at least as many (taken as equal)."""
    if isinstance(data, dict) and "paid_prompt_tokens" not in data and "prompt_tokens" in data:
        return {**data, "paid_prompt_tokens": data["prompt_tokens"],
                "paid_completion_tokens": data.get("completion_tokens", 0)}  # fmt: skip
    return data


def _entry_tokens(entry: dict[str, Any]) -> tuple[int, int, bool]:
    """Prompt and completion tokens of one LM history entry and whether the call reached the teacher; a cache hit
    keeps them on its stored response."""
    usage = entry.get("usage") or {}
    if usage:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), True
    response = entry.get("response")
    response = response[0] if isinstance(response, list | tuple) and response else response
    stored = getattr(response, "usage", None)
    prompt = getattr(stored, "input_tokens", None) or getattr(stored, "prompt_tokens", None)
    completion = getattr(stored, "output_tokens", None) or getattr(stored, "completion_tokens", None)
    return int(prompt or 0), int(completion or 0), False


class UsageMeter(BaseCallback):  # type: ignore[misc]  # dspy ships no types
    """Counts every LM call and its used and paid tokens, from the LM's history entry of the call; safe to share
    between threads (dspy.Evaluate's and the optimizers' workers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage = Usage()
        self._lms: dict[str, Any] = {}

    def usage(self) -> Usage:
        with self._lock:
            return self._usage.model_copy()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            self._usage.lm_calls += 1
            self._lms[call_id] = instance

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            lm = self._lms.pop(call_id, None)
        history = getattr(lm, "history", None) or []
        entry = next((e for e in reversed(history[-64:]) if e.get("outputs") is outputs), None)
        if entry is None:
            return
        prompt, completion, paid = _entry_tokens(entry)
        with self._lock:
            usage = self._usage
            usage.prompt_tokens += prompt
            usage.completion_tokens += completion
            if paid:
                usage.uncached_lm_calls += 1
                usage.paid_prompt_tokens += prompt
                usage.paid_completion_tokens += completion


@contextmanager
def metered() -> Iterator[UsageMeter]:
    """A fresh meter on every LM call in the block (on top of the callbacks already configured)."""
    import dspy

    meter = UsageMeter()
    with dspy.context(callbacks=[*dspy.settings.callbacks, meter]):
        yield meter
