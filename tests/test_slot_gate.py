from __future__ import annotations

import threading
import time
from typing import Any

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from amr_dspy.server import ServerSettings
from amr_dspy.slot_gate import SlotGate, prompt_prefix_key
from amr_dspy.teacher import TeacherSpec


def _messages(system: str, user: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}


def _wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the gate"
        time.sleep(0.001)


def _queue_calls(gate: SlotGate, systems: list[str]) -> tuple[list[str], list[threading.Thread]]:
    """While a call holds the gate, queue one waiting call per system message, in this arrival order."""
    order: list[str] = []

    def call(name: str, system: str) -> None:
        gate.on_lm_start(name, None, _messages(system, name))
        order.append(name)
        gate.on_lm_end(name, None)

    threads = []
    for i, system in enumerate(systems):
        thread = threading.Thread(target=call, args=(f"{system}{i}", system))
        thread.start()
        _wait_until(lambda n=i + 1: len(gate._waiting) == n)
        threads.append(thread)
    return order, threads


def test_the_key_is_everything_but_the_last_message() -> None:
    assert prompt_prefix_key(_messages("S", "task 1")) == prompt_prefix_key(_messages("S", "task 2"))
    assert prompt_prefix_key(_messages("S", "task 1")) != prompt_prefix_key(_messages("T", "task 1"))
    assert prompt_prefix_key({"prompt": "raw"}) == ""


def test_waiting_calls_with_the_last_sent_prefix_go_first() -> None:
    gate = SlotGate()
    gate.on_lm_start("first", None, _messages("A", "x"))
    order, threads = _queue_calls(gate, ["B", "A", "B", "A"])
    gate.on_lm_end("first", None)
    for thread in threads:
        thread.join(5)
    # after the A call: the waiting A's, then the oldest (a B), then the other B
    assert order == ["A1", "A3", "B0", "B2"]
    assert (gate.sent, gate.prefix_repeats) == (5, 3)


def test_a_call_passed_over_too_often_goes_next() -> None:
    gate = SlotGate(max_skips=1)
    gate.on_lm_start("first", None, _messages("A", "x"))
    order, threads = _queue_calls(gate, ["B", "A", "A"])
    gate.on_lm_end("first", None)
    for thread in threads:
        thread.join(5)
    assert order == ["A1", "B0", "A2"]  # B0 was skipped once, so it may not be skipped again


def _max_concurrency(slots: int, n_calls: int = 12) -> tuple[int, SlotGate]:
    """Run one predictor on 6 threads against a slow LM behind a gate; return the most calls seen in flight."""
    in_flight, most = 0, 0
    lock = threading.Lock()

    class SlowLM(DummyLM):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, most
            with lock:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(0.05)
            with lock:
                in_flight -= 1
            return super().forward(*args, **kwargs)

    gate = SlotGate(slots)
    lm = SlowLM([{"answer": "ok"}] * 40)
    lm.callbacks = [gate]
    predict = dspy.Predict("question -> answer")
    examples = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(n_calls)]
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=examples, metric=lambda g, p, t=None: p.answer == "ok", num_threads=6)(predict)
    assert result.score == 100.0 and gate.sent == n_calls and gate._in_flight == {}
    return most, gate


@pytest.mark.parametrize("slots", [2, 4])
def test_calls_go_out_concurrently_up_to_the_slot_count(slots: int) -> None:
    most, gate = _max_concurrency(slots)
    assert most == slots == gate.most_in_flight


def test_a_freed_slot_takes_a_waiting_call_with_its_prefix() -> None:
    gate = SlotGate(slots=2)
    gate.on_lm_start("a", None, _messages("A", "x"))
    gate.on_lm_start("b", None, _messages("B", "x"))  # both slots busy; "b" stays busy throughout
    order, threads = _queue_calls(gate, ["C", "B", "A", "C"])  # each queued call ends as soon as it starts
    gate.on_lm_end("a", None)
    for thread in threads:
        thread.join(5)
    # the freed A slot takes the waiting A, though C and B came first; then the oldest (C0); then C0's slot
    # takes the other C before the older B
    assert order == ["A2", "C0", "C3", "B1"]
    assert gate.prefix_repeats == 2 and gate.most_in_flight == 2
    gate.on_lm_end("b", None)
    assert gate._in_flight == {}


def test_programs_on_many_threads_send_one_call_at_a_time() -> None:
    most, gate = _max_concurrency(1)
    assert most == 1
    assert gate.prefix_repeats == 11  # one predictor: every call after the first repeats its prefix


def test_a_failing_call_releases_the_gate() -> None:
    gate = SlotGate()
    gate.on_lm_start("boom", None, _messages("A", "x"))
    gate.on_lm_end("boom", None, exception=RuntimeError("teacher down"))
    done = threading.Event()
    threading.Thread(target=lambda: (gate.on_lm_start("next", None, _messages("B", "y")), done.set())).start()
    assert done.wait(5)


def test_closing_releases_waiting_calls_and_stops_ordering() -> None:
    gate = SlotGate()
    gate.on_lm_start("stuck", None, _messages("A", "x"))  # in flight, and never ends
    released = threading.Event()
    threading.Thread(target=lambda: (gate.on_lm_start("waiting", None, _messages("B", "y")), released.set())).start()
    _wait_until(lambda: len(gate._waiting) == 1)
    gate.close()
    assert released.wait(5) and gate._waiting == []
    gate.on_lm_start("later", None, _messages("C", "z"))  # returns at once


@pytest.mark.parametrize(("teacher", "gated"), [("local", True), ("openai/gpt-4o-mini", False)])
def test_only_the_local_teacher_is_gated(teacher: str, gated: bool) -> None:
    lm = TeacherSpec.parse(teacher, api_base="http://127.0.0.1:9/v1").make_lm(api_base="http://127.0.0.1:9/v1")
    assert any(isinstance(c, SlotGate) for c in lm.callbacks) == gated
    if gated:
        copy = lm.copy(temperature=0.7)
        assert copy.callbacks[0] is lm.callbacks[0]  # copies share the one server's gate
        assert copy.server == lm.server


def test_the_gate_has_as_many_slots_as_the_server() -> None:
    settings = ServerSettings(kind="llama-server", slots=6)
    lm = TeacherSpec.parse("local").make_lm(api_base="http://127.0.0.1:9/v1", server=settings)
    assert lm.callbacks[0].slots == 6 and lm.server == settings
    assert TeacherSpec.parse("local").make_lm(api_base="http://127.0.0.1:9/v1").callbacks[0].slots == 1
