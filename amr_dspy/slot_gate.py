"""Send a local teacher at most as many calls as it has slots, preferring calls whose prompt prefix a slot holds.

A local server keeps the tokens of each slot's last request: a request that starts like it skips re-reading
that prefix (``llama-server`` sends a request to the idle slot whose cached prompt shares the most with it;
``llama_cpp.server`` has a single slot). A DSPy predictor's calls share their system message and demos, but
tasks running in parallel interleave predictors (respond, decompose, generate, ...). When a call ends, its
slot still holds its prefix, so the gate sends next a waiting call with that prefix, else the oldest; a call
passed over ``max_skips`` times goes first, so none starves. Calls beyond the slot count wait here rather
than in the server's queue, where they could not be chosen by prefix.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from dspy.utils.callback import BaseCallback

__all__ = ["SlotGate", "prompt_prefix_key"]


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


class SlotGate(BaseCallback):  # type: ignore[misc]  # dspy ships no types
    """A DSPy LM callback (``dspy.LM(..., callbacks=[SlotGate(slots)])``): at most ``slots`` calls in flight.

    Cache hits pass through the gate too; they take milliseconds.
    """

    def __init__(self, slots: int = 1, max_skips: int = 8) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.max_skips = max_skips
        self._cond = threading.Condition()
        self._waiting: list[_Waiter] = []  # in arrival order
        self._in_flight: dict[str, str] = {}  # call id -> prefix key
        self._idle_keys: deque[str] = deque(maxlen=slots)  # prefixes that idle slots hold, newest last
        self._closed = False
        self.sent = 0
        self.prefix_repeats = 0  # calls sent to a slot that had just served their prefix
        self.most_in_flight = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> SlotGate:
        return self  # an LM copy talks to the same server, so it shares the gate

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        waiter = _Waiter(prompt_prefix_key(inputs))
        with self._cond:
            self._waiting.append(waiter)
            while not self._closed and (len(self._in_flight) >= self.slots or self._next() is not waiter):
                self._cond.wait()
            if self._closed:
                self._waiting.remove(waiter)
                return
            position = self._waiting.index(waiter)
            for earlier in self._waiting[:position]:
                earlier.skips += 1
            del self._waiting[position]
            if waiter.key in self._idle_keys:
                self._idle_keys.remove(waiter.key)
                self.prefix_repeats += 1
            self.sent += 1
            self._in_flight[call_id] = waiter.key
            while len(self._idle_keys) > self.slots - len(self._in_flight):
                self._idle_keys.popleft()  # a call without a cached prefix took the least recently used slot
            self.most_in_flight = max(self.most_in_flight, len(self._in_flight))
            if len(self._in_flight) < self.slots:
                self._cond.notify_all()  # another slot is free: let the next waiter check

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._cond:
            key = self._in_flight.pop(call_id, None)
            if key is not None:
                self._idle_keys.append(key)
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
        for key in reversed(self._idle_keys):
            match = next((w for w in self._waiting if w.key == key), None)
            if match is not None:
                return match
        return oldest
