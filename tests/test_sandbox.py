"""The sandbox's outcomes, its evalplus-exact comparison, its limits and its worker pool."""

from __future__ import annotations

import math
import os
import signal
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amr_dspy._sandbox_worker import SANDBOX_UID_BASE
from amr_dspy.errors import SandboxError
from amr_dspy.sandbox import Sandbox, SandboxLimits, run_once
from amr_dspy.testcases import AssertTest, CallTest, ExecutionRequest, ExecutionResult, UnitTestModule
from tests.sandbox_helpers import (
    alive,
    assert_clean_shutdown,
    descendants_of,
    normal_request,
    processes_of_uid,
    request_processes,
    sandbox_processes,
    wait_until,
)

SEEN_WORKERS: set[int] = set()
# catches the in-process timer's exception and carries on (a bare `while True: pass` inside the try
# would not: CPython 3.11 raises the signal's exception at the loop's jump, outside the handler's range)
SWALLOWER = ("def spin():\n    n = 0\n    while True:\n        try:\n            while True:\n                n += 1\n"
             "        except BaseException:\n            n = 0\n")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(workers=2)
    yield box
    assert_clean_shutdown(box, SEEN_WORKERS)


@pytest.fixture(autouse=True)
def _remember_workers(sandbox: Sandbox) -> Iterator[None]:
    SEEN_WORKERS.update(sandbox.worker_pids)
    yield
    SEEN_WORKERS.update(sandbox.worker_pids)


def call(code: str, entry: str, cases: list[tuple[list[Any], Any]], **request: Any) -> ExecutionRequest:
    atol = request.pop("atol", 0.0)
    tests = [CallTest(name=f"t{i}", inputs=inp, expected=exp, atol=atol) for i, (inp, exp) in enumerate(cases)]
    return ExecutionRequest(code=code, entry_point=entry, tests=tests, **request)


def statuses(result: ExecutionResult) -> list[str]:
    return [o.status for o in result.outcomes]


# --------------------------------------------------------------------------------------------
# outcomes


def test_pass_fail_and_error_outcomes_with_messages(sandbox: Sandbox) -> None:
    code = "def half(x):\n    print('half of', x)\n    return 10 // x\n"
    request = call(code, "half", [([2], 5), ([5], 3), ([0], 0)], fail_fast=False)
    result = sandbox.run(request)
    assert statuses(result) == ["passed", "failed", "error"]
    assert result.outcomes[1].message == "expected 3, got 2"
    assert result.outcomes[2].message.startswith("ZeroDivisionError: integer division or modulo by zero")
    assert "line 3: return 10 // x" in result.outcomes[2].message
    assert result.stdout == "half of 2\nhalf of 5\nhalf of 0\n"
    assert not result.crashed and result.fraction_passed() == pytest.approx(1 / 3)


def test_assert_tests_run_in_the_solution_namespace(sandbox: Sandbox) -> None:
    request = ExecutionRequest(
        code="import math\ndef area(r):\n    return math.pi * r * r\n",
        tests=[
            AssertTest(name="ok", code="assert abs(area(1) - math.pi) < 1e-9"),
            AssertTest(name="bad", code="x = area(2)\nassert x < 1, f'area is {x:.1f}'"),
            AssertTest(name="bare", code="assert area(0) == 1"),
        ],
        fail_fast=False,
    )
    result = sandbox.run(request)
    assert statuses(result) == ["passed", "failed", "failed"]
    assert result.outcomes[1].message == "area is 12.6 (assert x < 1, f'area is {x:.1f}')"
    assert result.outcomes[2].message == "assert area(0) == 1"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("def f(x) return x\n", "SyntaxError"),
        ("import no_such_module_xyz\ndef f(x):\n    return x\n",
         "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
        ("def g(x):\n    return x\n", "does not define the entry point 'f'"),
        ("raise ValueError('bad top level')\n", "ValueError: bad top level (line 1"),
    ],
)
def test_code_that_does_not_load_errors_every_test(sandbox: Sandbox, code: str, reason: str) -> None:
    result = sandbox.run(call(code, "f", [([1], 1), ([2], 2)]))
    assert statuses(result) == ["error", "error"]
    assert all(reason in (o.message or "") for o in result.outcomes), result.outcomes


def test_fail_fast_skips_the_rest(sandbox: Sandbox) -> None:
    code = "def f(x):\n    return x\n"
    cases = [([1], 1), ([2], 0), ([3], 3), ([4], 4)]
    fast = sandbox.run(call(code, "f", cases, fail_fast=True))
    assert statuses(fast) == ["passed", "failed", "skipped", "skipped"]
    assert fast.first_failure() is fast.outcomes[1]
    full = sandbox.run(call(code, "f", cases, fail_fast=False))
    assert statuses(full) == ["passed", "failed", "passed", "passed"]


def test_per_test_timeout_and_the_run_goes_on(sandbox: Sandbox) -> None:
    code = "import time\ndef f(x):\n    while x: pass\n    return x\n"
    tests = [
        CallTest(name="spin", inputs=[1], expected=1, time_limit_s=0.3),
        CallTest(name="quick", inputs=[0], expected=0, time_limit_s=0.3),
    ]
    result = sandbox.run(ExecutionRequest(code=code, entry_point="f", tests=tests, fail_fast=False))
    assert statuses(result) == ["timeout", "passed"]
    assert result.outcomes[0].message == "exceeded the time limit of 0.3s"


def test_memory_error_is_a_memory_outcome(sandbox: Sandbox) -> None:
    result = sandbox.run(call("def f(n):\n    return bytearray(n)\n", "f", [([1 << 40], 0)]))
    assert statuses(result) == ["memory"]


def test_inputs_are_deep_copied_before_each_call(sandbox: Sandbox) -> None:
    shared = [1, 2, 3]
    code = "def grow(xs):\n    xs.append(0)\n    return len(xs)\n"
    result = sandbox.run(call(code, "grow", [([shared], 4), ([shared], 4)]))
    assert statuses(result) == ["passed", "passed"]


def test_plus_flag_is_kept_on_outcomes(sandbox: Sandbox) -> None:
    tests = [CallTest(name="b", inputs=[1], expected=1), CallTest(name="p", inputs=[2], expected=2, plus=True)]
    result = sandbox.run(ExecutionRequest(code="def f(x):\n    return x\n", entry_point="f", tests=tests))
    assert [(o.name, o.plus) for o in result.outcomes] == [("b", False), ("p", True)]


# --------------------------------------------------------------------------------------------
# evalplus 0.3.1 comparison semantics, checked against evalplus's own untrusted_check

EVALPLUS_CASES = [
    # (dataset, entry point, code, [(inputs, expected)], atol)
    ("mbpp", "f", "def f(a, b):\n    return a + b\n", [([0.1, 0.2], 0.3)], 0.0),  # atol raised to 1e-6
    ("mbpp", "f", "def f():\n    return 1.1\n", [([], 1.0)], 0.0),
    ("mbpp", "f", "def f():\n    return 1.1\n", [([], 1.0)], 0.2),
    ("mbpp", "f", "def f():\n    return 1\n", [([], 1.0)], 0.0),  # 1 == 1.0 is an exact match
    ("mbpp", "f", "def f():\n    return (1.0, 2.0)\n", [([], [1.0, 2.0])], 0.0),  # types must agree
    ("mbpp", "f", "def f():\n    return float('nan')\n", [([], math.nan)], 0.0),  # nan never matches
    ("mbpp", "f", "def f():\n    return float('inf')\n", [([], math.inf)], 0.0),
    ("mbpp", "f", "def f():\n    return -math.inf\nimport math\n", [([], math.inf)], 0.0),
    ("mbpp", "f", "import numpy as np\ndef f():\n    return np.array([1.0])\n", [([], [1.0])], 0.0),
    # the 1e-6 atol, once raised by a float expectation, stays for the later inputs
    ("mbpp", "f", "def f(x):\n    return x if x == 0.5 else [1, 2.0000001]\n", [([0.5], 0.5), ([1], [1, 2])], 0.0),
    ("mbpp", "f", "def f(x):\n    return [1, 2.0000001]\n", [([1], [1, 2])], 0.0),
    ("mbpp", "similar_elements", "def similar_elements(a, b):\n    return (5, 4)\n", [([[4, 5], [5, 4]], (4, 5))], 0.0),
    ("humaneval", "similar_elements", "def similar_elements(a, b):\n    return (5, 4)\n", [([[4, 5], [5, 4]], (4, 5))],
     0.0),
    ("mbpp", "check_str", "def check_str(s):\n    return 'a match'\n", [(["abc"], True)], 0.0),
    ("mbpp", "check_str", "def check_str(s):\n    return None\n", [(["abc"], True)], 0.0),
    ("mbpp", "sum_div", "def sum_div(n):\n    return 0\n", [([7], 1)], 0.0),
    ("humaneval", "find_zero", "def find_zero(xs):\n    return 2.0\n", [([[-1, 1]], 1.0)], 1e-6),
]


@pytest.mark.parametrize(("dataset", "entry", "code", "cases", "atol"), EVALPLUS_CASES)
def test_comparison_agrees_with_evalplus(
    sandbox: Sandbox, dataset: str, entry: str, code: str, cases: list[tuple[list[Any], Any]], atol: float
) -> None:
    from evalplus.eval import untrusted_check

    inputs, expected = [c[0] for c in cases], [c[1] for c in cases]
    stat, _ = untrusted_check(dataset, code, inputs, entry, expected, atol, [0.1] * len(cases), fast_check=True)
    result = sandbox.run(call(code, entry, cases, atol=atol, dataset=dataset, task_id=f"x/{entry}"))
    assert stat in ("pass", "fail")
    assert result.passed == (stat == "pass"), result.outcomes


def test_find_zero_is_judged_by_its_residual(sandbox: Sandbox) -> None:
    """HumanEval/32 passes when |poly(xs, x)| <= atol, whatever the expected root.

    evalplus 0.3.1 checks the same residual but then skips its progress counter (``continue``), so
    its own ``untrusted_check`` fails every find_zero solution; the sandbox keeps the oracle, not that slip.
    """
    code = "def find_zero(xs):\n    return 1.0\n"
    cases = [([[-1, 1]], 0.999), ([[-2, 2]], 5.0)]
    assert sandbox.run(call(code, "find_zero", cases, atol=1e-6, dataset="humaneval")).passed
    wrong = sandbox.run(call(code, "find_zero", [([[-1, 2]], 0.5)], atol=1e-6, dataset="humaneval"))
    assert statuses(wrong) == ["failed"] and "|poly(xs, 1.0)| = 1.0 exceeds atol 1e-06" in wrong.outcomes[0].message


def test_mbpp_set_equality_needs_the_dataset(sandbox: Sandbox) -> None:
    code = "def similar_elements(a, b):\n    return (5, 4)\n"
    cases = [([[4, 5], [5, 4]], (4, 5))]
    assert sandbox.run(call(code, "similar_elements", cases, dataset="mbpp")).passed
    plain = sandbox.run(call(code, "similar_elements", cases))
    assert statuses(plain) == ["failed"] and plain.outcomes[0].message == "expected (4, 5), got (5, 4)"


def test_float_mismatch_message_names_the_tolerance(sandbox: Sandbox) -> None:
    result = sandbox.run(call("def f():\n    return 1.5\n", "f", [([], 1.0)]))
    assert result.outcomes[0].message == "expected 1.0, got 1.5 (not within atol 1e-06)"


# --------------------------------------------------------------------------------------------
# limits and output


def test_output_is_truncated_and_marked() -> None:
    limits = SandboxLimits(max_output_bytes=100)
    code = "import sys\ndef f():\n    print('o' * 1000)\n    sys.stderr.write('e' * 50)\n"
    result = run_once(call(code, "f", [([], None)]), limits)
    assert result.passed
    assert result.stdout == "o" * 100 + "\n[... 901 more bytes truncated]"
    assert result.stderr == "e" * 50


def test_wall_clock_cap_stops_the_request() -> None:
    code = "import time\ndef f():\n    time.sleep(0.6)\n"
    tests = [CallTest(name=f"t{i}", inputs=[], expected=None, time_limit_s=2) for i in range(4)]
    request = ExecutionRequest(code=code, entry_point="f", tests=tests, fail_fast=False)
    result = run_once(request, SandboxLimits(max_wall_s=1.0))
    assert statuses(result) == ["passed", "timeout", "skipped", "skipped"]
    assert "wall-clock limit of 1s" in result.outcomes[1].message
    assert "wall-clock limit was reached" in result.outcomes[2].message


def test_a_solution_that_never_finishes_loading_times_out_every_test() -> None:
    tests = [CallTest(name=f"t{i}", inputs=[i], expected=i, time_limit_s=0.2) for i in range(2)]
    request = ExecutionRequest(code="while True:\n    pass\n", entry_point="f", tests=tests)
    result = run_once(request, SandboxLimits(load_timeout_s=0.3))
    assert statuses(result) == ["timeout", "timeout"]
    assert result.outcomes[0].message == "the solution did not finish loading within 0.3s"


def test_cpu_limit_kills_a_loop_that_swallows_timeouts() -> None:
    code = SWALLOWER.replace("spin", "f")
    tests = [CallTest(name="spin", inputs=[], expected=None, time_limit_s=30)]
    result = run_once(ExecutionRequest(code=code, entry_point="f", tests=tests), SandboxLimits(cpu_s=1))
    assert statuses(result) == ["timeout"]
    assert result.outcomes[0].message == "exceeded the CPU time limit of 1s (killed)"


# --------------------------------------------------------------------------------------------
# the pool


def test_run_many_keeps_the_order(sandbox: Sandbox) -> None:
    code = "import time\ndef f(i):\n    time.sleep(0.05 * (i % 3))\n    print(i)\n    return i * i\n"
    requests = [call(code, "f", [([i], i * i)]) for i in range(8)]
    results = sandbox.run_many(requests)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    assert all(r.passed for r in results)
    assert sandbox.run_many([]) == []


def test_a_killed_worker_is_replaced_and_the_request_reported(sandbox: Sandbox) -> None:
    request = ExecutionRequest(
        code="import time\ndef f():\n    time.sleep(30)\n",
        entry_point="f",
        tests=[CallTest(name="sleepy", inputs=[], expected=None, time_limit_s=40)],
    )
    results: list[ExecutionResult] = []
    runner = threading.Thread(target=lambda: results.append(sandbox.run(request)))
    runner.start()
    busy: list[int] = []
    assert wait_until(lambda: bool(busy.extend(request_processes(sandbox)) or busy))
    (child,) = busy
    worker = next(w for w in sandbox.worker_pids if child in descendants_of(w))
    os.kill(worker, signal.SIGKILL)
    runner.join(10)
    (result,) = results
    assert result.crashed and f"sandbox worker pid {worker}" in result.crash_reason
    assert "killed by SIGKILL" in result.crash_reason
    assert statuses(result) == ["error"] and result.outcomes[0].message.startswith("not run:")
    assert wait_until(lambda: not alive(child), 5.0)  # the worker's child died with it
    SEEN_WORKERS.add(worker)
    assert all(sandbox.run(normal_request()).passed for _ in range(3))
    assert worker not in sandbox.worker_pids and len(sandbox.worker_pids) == 2


def test_a_worker_that_died_while_idle_is_replaced_silently(sandbox: Sandbox) -> None:
    victim = sandbox.worker_pids[0]
    SEEN_WORKERS.add(victim)
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: not alive(victim))
    results = sandbox.run_many([normal_request() for _ in range(4)])
    assert all(r.passed and not r.crashed for r in results)
    assert victim not in sandbox.worker_pids


def test_isolation_reports_what_is_in_force(sandbox: Sandbox) -> None:
    facts = sandbox.isolation
    assert facts["reliability_guard"] is True and facts["env_scrubbed"] is True
    assert facts["rlimits"] == "AS=1024MB CPU=20s FSIZE=16MB"
    if os.geteuid() == 0:  # this machine and CI: every restriction binds
        assert facts["network_namespace"] is True and facts["uid_drop"] is True
        assert facts["process_limit"] is True and facts["loopback_blocked"] is True


def test_invalid_requests_raise_sandbox_error(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="needs an entry_point"):
        sandbox.run(ExecutionRequest(code="", tests=[CallTest(name="t", inputs=[], expected=1)]))
    with pytest.raises(SandboxError, match="cannot be pickled"):
        sandbox.run(call("def f(x):\n    return x\n", "f", [([lambda: 1], 1)]))
    with pytest.raises(SandboxError, match="at least one worker"):
        Sandbox(workers=0)


def test_run_once_and_close_leave_nothing_behind() -> None:
    box = Sandbox(workers=1)
    workers = box.worker_pids
    assert box.run(normal_request()).passed
    box.close()
    assert wait_until(lambda: not sandbox_processes(workers), 5.0)
    with pytest.raises(SandboxError, match="after close"):
        box.run(normal_request())
    assert run_once(normal_request()).passed


# --------------------------------------------------------------------------------------------
# unittest modules (BigCodeBench)

UNIT_LIMITS = SandboxLimits(max_processes=4)
UNIT_WORKERS: set[int] = set()
SQUARE = "def task_func(x):\n    return x * x\n"


@pytest.fixture(scope="module")
def unit_sandbox() -> Iterator[Sandbox]:
    box = Sandbox(UNIT_LIMITS, workers=1)  # one worker: consecutive requests run in the same worker
    UNIT_WORKERS.update(box.worker_pids)
    yield box
    assert_clean_shutdown(box, UNIT_WORKERS)


def unit(code: str, methods: str, *, libraries: tuple[str, ...] = (), time_limit_s: float = 10.0,
         header: str = "import unittest\n") -> ExecutionRequest:  # fmt: skip
    source = f"{header}class TestCases(unittest.TestCase):\n" + textwrap.indent(textwrap.dedent(methods), "    ")
    test = UnitTestModule(name="TestCases", source=source, libraries=list(libraries), time_limit_s=time_limit_s)
    return ExecutionRequest(code=code, entry_point="task_func", tests=[test], dataset="bigcodebench")


def test_a_unittest_prelude_runs_before_the_solution_in_its_module(unit_sandbox: Sandbox) -> None:
    method = "def test_scaled(self):\n    self.assertEqual(task_func(2), 6)\n"
    request = unit("def task_func(x):\n    return SCALE * x\n", method)
    with_prelude = [request.tests[0].model_copy(update={"prelude": "SCALE = 3\n"})]
    calibrated = request.model_copy(update={"tests": with_prelude})
    assert by_name(unit_sandbox.run(calibrated)) == {"test_scaled": ("passed", None)}
    (outcome,) = unit_sandbox.run(request).outcomes
    assert outcome.status == "error" and "NameError: name 'SCALE' is not defined" in (outcome.message or "")


def by_name(result: ExecutionResult) -> dict[str, tuple[str, str | None]]:
    return {o.name: (o.status, o.message) for o in result.outcomes}


def test_unittest_module_has_one_outcome_per_method(unit_sandbox: Sandbox) -> None:
    methods = """
    def test_b_three(self):
        self.assertEqual(task_func(3), 9)
    def test_a_two(self):
        print('two')
        self.assertEqual(task_func(2), 4)
    def helper(self):
        raise AssertionError('not a test')
    """
    result = unit_sandbox.run(unit(SQUARE, methods))
    assert [(o.name, o.status) for o in result.outcomes] == [("test_a_two", "passed"), ("test_b_three", "passed")]
    assert result.passed and result.stdout == "two\n" and not result.missing_modules


def test_unittest_failures_errors_and_skips_are_told_apart(unit_sandbox: Sandbox) -> None:
    code = "def task_func(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x * x\n"
    methods = """
    def test_fails(self):
        self.assertEqual(task_func(3), 10)
    def test_solution_raises(self):
        task_func(-1)
    def test_subtest(self):
        for x in (1, 2):
            with self.subTest(x=x):
                self.assertEqual(task_func(x), 1)
    def test_skipped_by_itself(self):
        self.skipTest('needs a display')
    def test_passes(self):
        self.assertEqual(task_func(0), 0)
    """
    result = unit_sandbox.run(unit(code, methods))
    outcomes = by_name(result)
    assert outcomes["test_fails"] == ("failed",
                                      "AssertionError: 9 != 10 (test line 5: self.assertEqual(task_func(3), 10))")
    assert outcomes["test_solution_raises"] == ("error",
                                                "ValueError: negative (solution line 3: raise ValueError('negative'))")
    assert outcomes["test_subtest"][0] == "failed" and "4 != 1" in outcomes["test_subtest"][1]
    assert outcomes["test_skipped_by_itself"] == ("passed", "skipped by the test: needs a display")  # as BigCodeBench
    assert outcomes["test_passes"] == ("passed", None)
    assert not result.passed and result.first_failure().name == "test_fails"


def test_unittest_module_time_limit_covers_all_methods(unit_sandbox: Sandbox) -> None:
    methods = """
    def test_a_quick(self):
        pass
    def test_b_slow(self):
        time.sleep(0.4)
    def test_c_spins(self):
        while True:
            pass
    def test_d_never_runs(self):
        pass
    """
    result = unit_sandbox.run(unit(SQUARE, methods, time_limit_s=0.8, header="import time, unittest\n"))
    assert by_name(result) == {
        "test_a_quick": ("passed", None),
        "test_b_slow": ("passed", None),
        "test_c_spins": ("timeout", "exceeded the time limit of 0.8s"),
        "test_d_never_runs": ("skipped", "not run: exceeded the time limit of 0.8s"),
    }


def test_unittest_method_that_swallows_the_timeout_is_killed(unit_sandbox: Sandbox) -> None:
    methods = """
    def test_a(self):
        pass
    def test_b_swallows(self):
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    def test_c(self):
        pass
    """
    result = unit_sandbox.run(unit(SQUARE, methods, time_limit_s=0.5))
    assert [o.status for o in result.outcomes] == ["passed", "timeout", "skipped"]
    assert result.outcomes[1].message == "exceeded the time limit of 0.5s (killed)"
    assert not result.crashed


def test_unittest_fixture_errors_and_broken_modules(unit_sandbox: Sandbox) -> None:
    methods = """
    @classmethod
    def setUpClass(cls):
        raise RuntimeError('no fixture')
    def test_x(self):
        pass
    """
    result = unit_sandbox.run(unit(SQUARE, methods))
    assert by_name(result) == {
        "test_x": ("skipped", "not run"),
        "setUpClass (__test__.TestCases)": ("error",
                                            "RuntimeError: no fixture (test line 6: raise RuntimeError('no fixture'))"),
    }
    broken = unit_sandbox.run(unit(SQUARE, "def test_x(self):\n    pass\n", header="import unittest\nundefined_name\n"))
    assert by_name(broken) == {
        "TestCases": ("error", "the test module failed to load: NameError: name 'undefined_name' is not defined "
                               "(test line 2: undefined_name)"),
    }
    nothing = ExecutionRequest(code=SQUARE, tests=[UnitTestModule(name="TestCases", source="x = 1\n")])
    assert by_name(unit_sandbox.run(nothing)) == {
        "TestCases": ("error", "the test module defines no unittest.TestCase class 'TestCases'")
    }


def test_unittest_runs_in_one_module_named_as_bigcodebench_does(unit_sandbox: Sandbox) -> None:
    code = "import json\ndef helper():\n    return 1\ndef task_func():\n    return helper() + 1\n"
    methods = """
    def test_module(self):
        self.assertEqual(__name__, '__test__')
        self.assertIs(sys.modules['__test__'].task_func, task_func)
        self.assertEqual(json.dumps(1), '1')  # the solution's imports are the tests' too
    @patch('__test__.helper', return_value=41)
    def test_patch_the_solution(self, helper):
        self.assertEqual(task_func(), 42)
    def test_environment(self):
        self.assertEqual((os.environ['MPLBACKEND'], os.environ['TZ'], time.tzname[0]), ('Agg', 'UTC', 'UTC'))
        self.assertEqual(os.getcwd(), os.environ['HOME'])
    """
    result = unit_sandbox.run(unit(code, methods, header="import time, unittest\nfrom unittest.mock import patch\n"))
    assert result.passed, result.outcomes


def test_a_missing_library_skips_instead_of_failing(unit_sandbox: Sandbox) -> None:
    lib = "amr_dspy_not_installed_lib"
    in_tests = unit_sandbox.run(unit(SQUARE, "def test_x(self):\n    pass\n", libraries=(lib,),
                                     header=f"import unittest\nimport {lib}.sub\n"))  # fmt: skip
    assert [(o.name, o.status, o.missing_module) for o in in_tests.outcomes] == [("TestCases", "skipped", lib)]
    assert in_tests.missing_modules == [lib] and in_tests.first_failure() is None and not in_tests.passed
    in_solution = unit_sandbox.run(unit(f"import {lib}\n" + SQUARE, "def test_x(self):\n    pass\n", libraries=(lib,)))
    assert [(o.status, o.missing_module) for o in in_solution.outcomes] == [("skipped", lib)]
    assert in_solution.outcomes[0].message == f"the solution needs {lib}, which is not installed here"
    methods = f"def test_lazy(self):\n    import {lib}\ndef test_other(self):\n    pass\n"
    lazy = unit_sandbox.run(unit(SQUARE, methods, libraries=(lib,)))
    assert by_name(lazy) == {"test_lazy": ("skipped", f"needs {lib}, which is not installed here"),
                             "test_other": ("passed", None)}  # fmt: skip


def test_a_module_the_task_does_not_name_or_that_is_installed_is_an_error(unit_sandbox: Sandbox) -> None:
    unnamed = unit_sandbox.run(unit("import amr_dspy_unlisted_lib\n" + SQUARE, "def test_x(self):\n    pass\n"))
    assert [o.status for o in unnamed.outcomes] == ["error"] and not unnamed.missing_modules
    assert "ModuleNotFoundError: No module named 'amr_dspy_unlisted_lib'" in unnamed.outcomes[0].message
    forged = "def test_x(self):\n    raise ModuleNotFoundError('no json', name='json')\n"
    result = unit_sandbox.run(unit(SQUARE, forged, libraries=("json",)))
    assert [(o.status, o.missing_module) for o in result.outcomes] == [("error", None)]
    assert "json is installed" in result.outcomes[0].message


def test_each_task_gets_fresh_scratch_directories(unit_sandbox: Sandbox) -> None:
    write = """
    def test_write(self):
        for folder in ('.', '/tmp', '/dev/shm', tempfile.gettempdir()):
            with open(os.path.join(folder, 'left-behind.txt'), 'w') as handle:
                handle.write('from the last task')
        os.makedirs('/tmp/a/b')
        print(os.getcwd())
    """
    read = """
    def test_read(self):
        print(os.getcwd())
        self.assertEqual(os.listdir('.'), [])
        for folder in ('/tmp', '/dev/shm'):
            self.assertFalse(os.path.exists(os.path.join(folder, 'left-behind.txt')), folder)
        self.assertFalse(os.path.exists('/tmp/a'))
    """
    first = unit_sandbox.run(unit(SQUARE, write, header="import tempfile, unittest\n"))
    second = unit_sandbox.run(unit(SQUARE, read))
    assert first.passed and second.passed, (first.outcomes, second.outcomes)
    assert first.stdout != second.stdout  # a new work dir per task, removed after it
    assert not os.path.exists(first.stdout.strip())


def test_unittest_tasks_may_start_a_few_processes_and_threads(unit_sandbox: Sandbox) -> None:
    if unit_sandbox.isolation["uid_drop"] is not True:
        pytest.skip("processes are allowed only under the sandbox uid (root)")
    methods = """
    def test_subprocess(self):
        self.assertEqual(subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout, 'hi\\n')
        python = subprocess.run(['python', '-c', 'print(6 * 7)'], capture_output=True, text=True)
        self.assertEqual(python.stdout, '42\\n')
    def test_thread(self):
        box = []
        worker = threading.Thread(target=box.append, args=(1,))
        worker.start(); worker.join()
        self.assertEqual(box, [1])
    def test_but_not_many(self):
        started = []
        with self.assertRaises(BlockingIOError):
            for _ in range(8):
                started.append(subprocess.Popen(['sleep', '30']))
        for child in started:
            child.kill()
            child.wait()
        self.assertEqual(len(started), 4)
    """
    result = unit_sandbox.run(unit(SQUARE, methods, header="import subprocess, threading, unittest\n"))
    assert result.passed, result.outcomes
    plain = unit_sandbox.run(ExecutionRequest(code="import posix\n", tests=[AssertTest(name="t", code="posix.fork()")]))
    assert plain.outcomes[0].status == "error"  # other requests still start no process at all


def test_processes_left_running_are_killed_after_the_task(unit_sandbox: Sandbox) -> None:
    if unit_sandbox.isolation["uid_drop"] is not True:
        pytest.skip("processes are allowed only under the sandbox uid (root)")
    methods = """
    def test_escape(self):
        subprocess.Popen(['sleep', '300'], start_new_session=True)
    """
    (worker,) = unit_sandbox.worker_pids
    assert unit_sandbox.run(unit(SQUARE, methods, header="import subprocess, unittest\n")).passed
    assert wait_until(lambda: not processes_of_uid(SANDBOX_UID_BASE + worker), 5.0)


def test_a_request_cannot_mix_unittest_modules_with_other_tests(unit_sandbox: Sandbox) -> None:
    request = unit(SQUARE, "def test_x(self):\n    pass\n")
    request.tests.append(AssertTest(name="a", code="x = 1"))
    with pytest.raises(SandboxError, match="mixes unittest modules with other tests"):
        unit_sandbox.run(request)


def test_workers_keep_matplotlibs_font_cache_in_the_user_cache(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:  # fmt: skip
    # each worker's HOME is a fresh temporary directory: a font cache kept there was rebuilt by every worker
    monkeypatch.setenv("AMR_DSPY_HOME", str(tmp_path))
    methods = f"""
    def test_cache_dir(self):
        import matplotlib
        self.assertEqual(matplotlib.get_cachedir(), {str(tmp_path / "matplotlib")!r})
    """
    with Sandbox(SandboxLimits(max_processes=4, preload=("matplotlib.pyplot",)), workers=1) as box:
        result = box.run(unit(SQUARE, methods))
    assert result.passed, result.outcomes
    assert list((tmp_path / "matplotlib").glob("fontlist-*.json"))
