"""Send a local teacher one call at a time, grouping calls that start with the same prompt prefix.

llama.cpp's server runs one request at a time and keeps the tokens of the last one: a request that starts
like it skips re-reading that prefix. A DSPy predictor's calls share their system message and demos, but
tasks run in parallel interleave predictors (respond, decompose, generate, ...), so each call re-reads
its whole prefix. The gate holds waiting calls and sends next the one whose prefix matches the last sent,
else the oldest; a call passed over ``max_skips`` times goes first, so none starves.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from dspy.utils.callback import BaseCallback

__all__ = ["PrefixGate", "prompt_prefix_key"]


def prompt_prefix_key(inputs: dict[str, Any]) -> str:
    """What a call shares with others of its predictor: every message but the last (system message and demos)."""
    messages = inputs.get("messages")
    if not messages:
        return ""
    shared = [{"role": m.get("role"), "content": m.get("content")} for m in messages[:-1]]
    return hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(eq=False)
class _Waiter:
    key: str
    skips: int = 0


class PrefixGate(BaseCallback):
    """A DSPy LM callback (``dspy.LM(..., callbacks=[PrefixGate()])``): at most one call in flight, ordered as above.

    Cache hits pass through the gate too; they take milliseconds.
    """

    def __init__(self, max_skips: int = 8) -> None:
        self.max_skips = max_skips
        self._cond = threading.Condition()
        self._waiting: list[_Waiter] = []  # in arrival order
        self._in_flight: str | None = None
        self._last_key: str | None = None
        self._closed = False
        self.sent = 0
        self.prefix_repeats = 0  # calls sent right after one with the same prefix

    def __deepcopy__(self, memo: dict[int, Any]) -> PrefixGate:
        return self  # an LM copy talks to the same server, so it shares the gate

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        waiter = _Waiter(prompt_prefix_key(inputs))
        with self._cond:
            self._waiting.append(waiter)
            while not self._closed and (self._in_flight is not None or self._next() is not waiter):
                self._cond.wait()
            if self._closed:
                self._waiting.remove(waiter)
                return
            position = self._waiting.index(waiter)
            for earlier in self._waiting[:position]:
                earlier.skips += 1
            del self._waiting[position]
            self.sent += 1
            self.prefix_repeats += waiter.key == self._last_key
            self._in_flight, self._last_key = call_id, waiter.key

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._cond:
            if self._in_flight == call_id:
                self._in_flight = None
                self._cond.notify_all()

    def close(self) -> None:
        """Stop ordering: waiting and later calls go straight on (to fail fast once the server is gone)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _next(self) -> _Waiter | None:
        if not self._waiting:
            return None
        oldest = self._waiting[0]
        if oldest.skips >= self.max_skips:
            return oldest
        return next((w for w in self._waiting if w.key == self._last_key), oldest)
