"""The examples an instruction states itself, read as tests (amr_dspy.examples)."""

from __future__ import annotations

from typing import Any

import pytest

from amr_dspy.examples import instruction_examples
from amr_dspy.framing import frame_instruction
from amr_dspy.testcases import AssertTest

MBPP = '"""\nWrite a python function which takes a list of integers and only returns the odd ones.\n' \
       'assert Split([1,2,3,4,5,6]) == [1,3,5]\n"""\n'  # fmt: skip

STUB = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """ Detect whether the balance ever falls below zero.
    >>> below_zero([1, 2, 3])
    False
    >>> below_zero([1, 2, -4, 5])
    True
    >>> ops = [-1]
    >>> below_zero(ops)
    True
    """
'''


def codes(tests: list[AssertTest]) -> list[str]:
    return [t.code for t in tests]


def passes(solution: str, test: AssertTest) -> bool:
    namespace: dict[str, Any] = {}
    exec(solution, namespace)
    try:
        exec(test.code, namespace)
    except AssertionError:
        return False
    return True


def test_an_mbpp_instruction_gives_its_assert_line() -> None:
    tests = instruction_examples(MBPP, "Split")
    assert codes(tests) == ["assert Split([1,2,3,4,5,6]) == [1,3,5]"]
    assert [t.name for t in tests] == ["example_1"] and tests[0].kind == "assert"


def test_doctests_of_a_stub_become_asserts_with_their_setup() -> None:
    expected = ["assert below_zero([1, 2, 3]) == False", "assert below_zero([1, 2, -4, 5]) == True",
                "ops = [-1]\nassert below_zero(ops) == True"]  # fmt: skip
    assert codes(instruction_examples(STUB, "below_zero")) == expected
    framed = instruction_examples(frame_instruction(STUB, "below_zero"), "below_zero")  # as programs see the stub
    assert codes(framed) == expected and [t.name for t in framed] == ["example_1", "example_2", "example_3"]


def test_the_doctest_asserts_judge_a_solution_as_the_doctests_would() -> None:
    right = "def below_zero(operations):\n    total = 0\n    for op in operations:\n        total += op\n" \
            "        if total < 0:\n            return True\n    return False\n"  # fmt: skip
    wrong = "def below_zero(operations):\n    return sum(operations) < 0\n"
    tests = instruction_examples(STUB, "below_zero")
    assert [passes(right, t) for t in tests] == [True, True, True]
    assert [passes(wrong, t) for t in tests] == [True, False, True]


def test_a_prose_instruction_without_examples_has_none() -> None:
    assert instruction_examples("Write a function is_palindrome(s: str) -> bool.", "is_palindrome") == []
    assert instruction_examples("Explain how to reverse a list; assert nothing.") == []
    assert instruction_examples("") == []


def test_doctests_whose_output_is_not_an_expression_are_skipped() -> None:
    stub = '''def greet(name):
    """Greet someone.
    >>> greet("Ann")
    Hello, Ann!
    >>> greet
    <function greet at 0x7f>
    >>> print(greet("Bo"))
    'Hello, Bo!'
    >>> greet("Cy")
    'Hello, Cy!'
    >>> len(greet("Di"))
    variable_name
    """
'''
    assert codes(instruction_examples(stub, "greet")) == ["assert greet('Cy') == 'Hello, Cy!'"]


def test_expected_values_may_use_builtin_constructors_but_not_other_names() -> None:
    stub = '''def unique(xs):
    """
    >>> unique([1, 1, 2])
    {1, 2}
    >>> unique([])
    set()
    >>> unique([3.5])
    frozenset({3.5})
    >>> unique([4])
    Result(4)
    """
'''
    assert codes(instruction_examples(stub)) == ["assert unique([1, 1, 2]) == {1, 2}", "assert unique([]) == set()",
                                                 "assert unique([3.5]) == frozenset({3.5})"]  # fmt: skip


def test_prose_asserts_fenced_blocks_and_multi_line_asserts() -> None:
    prose = ("Write f(x) returning x + 1.\nExample: assert f(1) == 2\n```python\nassert f(2) == 3\n"
             "assert f(\n    3) == 4\n```\nAnd also:\n    assert math.isclose(f(0.5), 1.5)\nassert f(1) == 2\n")
    tests = instruction_examples(prose, "f")
    assert codes(tests) == ["assert f(2) == 3", "assert f(\n    3) == 4", "assert f(1) == 2",
                            "if 'math' not in globals(): import math\nassert math.isclose(f(0.5), 1.5)"]  # fmt: skip
    assert all(passes("def f(x):\n    return x + 1\n", t) for t in tests)  # the import makes math available


def test_a_module_name_the_solution_defines_itself_is_not_imported_over_it() -> None:
    (test,) = instruction_examples('"""\nWrite a stack class queue.\nassert queue.pop() == 1\n"""')
    assert passes("class queue:\n    @staticmethod\n    def pop():\n        return 1\n", test)


def test_a_word_containing_assert_in_prose_is_not_an_example() -> None:
    prose = "Reassert the order: sort the list.\nWe assert that f(1) == 2 holds.\nassertive: f(1)"
    assert instruction_examples(prose) == []


def test_only_the_stub_s_target_function_gives_doctests() -> None:
    stub = '''def is_palindrome(s: str) -> bool:
    """ Test if given string is a palindrome
    >>> is_palindrome('aba')
    True
    """
    return s == s[::-1]


def make_palindrome(string: str) -> str:
    """ Find the shortest palindrome that begins with a supplied string.
    >>> make_palindrome('cat')
    'catac'
    """
'''
    assert codes(instruction_examples(stub, "make_palindrome")) == ["assert make_palindrome('cat') == 'catac'"]
    assert codes(instruction_examples(stub)) == ["assert make_palindrome('cat') == 'catac'"]


def test_an_mbpp_stub_with_an_example_line_in_its_docstring() -> None:
    stub = 'def f(xs: list) -> int:\n    """Count the items.\n\n    Example: assert f([1, 2]) == 2\n    """\n'
    assert codes(instruction_examples(frame_instruction(stub, "f"), "f")) == ["assert f([1, 2]) == 2"]


@pytest.mark.parametrize("instruction", ['"""\nDo it.\nassert f(1) == 1\nassert f(1) == 1\n"""',
                                         "Do it.\n>>> f(1)\n1\n\nThat is: assert f(1) == 1"])  # fmt: skip
def test_an_example_stated_twice_runs_once(instruction: str) -> None:
    assert codes(instruction_examples(instruction)) == ["assert f(1) == 1"]
