from __future__ import annotations

import pytest

from amr_dspy.extract import balance_fences, defined_functions, extract_code, fenced_blocks, hollow_functions

MARKDOWN = """Here is a solution.

```python
import math

def helper(x):
    return math.isqrt(x)

def is_square(n):
    return helper(n) ** 2 == n
```

Example usage:

```python
print(is_square(16))
```
"""


def test_extracts_entry_point_with_its_dependencies_and_imports() -> None:
    code = extract_code(MARKDOWN, "is_square")
    assert code is not None
    assert "import math" in code and "def helper" in code and "def is_square" in code
    assert "print(" not in code and "Here is" not in code
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["is_square"](16) is True and namespace["is_square"](15) is False


def test_drops_definitions_the_entry_point_does_not_need() -> None:
    response = "```python\ndef unused():\n    return 1\n\ndef target(a):\n    return a * 2\n```"
    code = extract_code(response, "target")
    assert code is not None and "def target" in code and "unused" not in code


def test_without_entry_point_keeps_all_definitions() -> None:
    code = extract_code(MARKDOWN, None)
    assert code is not None and "def helper" in code and "def is_square" in code


def test_unfenced_code_goes_through_the_sanitizer() -> None:
    response = "Sure, this works:\ndef add(a, b):\n    return a + b\nIt adds two numbers."
    assert extract_code(response, "add") == "def add(a, b):\n    return a + b\n"


def test_untagged_fence_counts_as_python_but_other_languages_do_not() -> None:
    assert fenced_blocks("```\nx = 1\n```\n```bash\nls\n```\n```py\ny = 2\n```") == ["x = 1\n", "y = 2\n"]


@pytest.mark.parametrize(
    "response",
    ["", "   \n", "I cannot help with that.", "Sure", "```python\n```", "```bash\nrm -rf /tmp/x\n```\nDone."],
)
def test_responses_without_code_give_none(response: str) -> None:
    assert extract_code(response, "f") is None


def test_broken_code_keeps_the_longest_parsable_part() -> None:
    response = "```python\ndef f(x):\n    return x + 1\n\ndef g(:\n    pass\n```"
    code = extract_code(response, "f")
    assert code is not None and "def f" in code and "def g" not in code


def test_hollow_functions_are_signatures_without_a_body() -> None:
    code = (
        'def spec(x: int) -> int:\n    """Only a docstring."""\n\n'
        "def stub(x):\n    pass\n\n"
        "def dots(x):\n    ...\n\n"
        'def real(x):\n    """Doc."""\n    return x\n\n'
        "class Box:\n    def get(self):\n        pass\n"
    )
    assert hollow_functions(code) == {"spec", "stub", "dots"}
    assert defined_functions(code) == {"spec", "stub", "dots", "real"}
    assert hollow_functions("def broken(:\n") == set() and defined_functions("def broken(:\n") == set()


# Code Alpaca 5 with the compiled direct program: the answer begins inside a code block
STRAY_CLOSE = "def is_even(n):\n    return n % 2 == 0\n\n# Test\nassert is_even(4) == True\n```"


@pytest.mark.parametrize(
    ("response", "balanced"),
    [
        (STRAY_CLOSE, "```python\n" + STRAY_CLOSE),
        ("Here it is:\n```python\ndef f():\n    return 1\n", "Here it is:\n```python\ndef f():\n    return 1\n```\n"),
        ("Like this:\n```\nx = 1\n```\nDone.", "Like this:\n```\nx = 1\n```\nDone."),
        ("No code at all.", "No code at all."),
    ],
)
def test_fences_are_paired_for_training_records(response: str, balanced: str) -> None:
    assert balance_fences(response) == balanced
    assert sum(line.lstrip().startswith("```") for line in balance_fences(response).splitlines()) % 2 == 0


def test_functions_without_a_return_are_kept_and_left_as_written() -> None:
    # evalplus's sanitizer alone drops them: a plotting task_func came out as its imports only
    response = (
        "```\nimport matplotlib.pyplot as plt\n\nSIZE = 3\n\ndef _label(ax):\n    ax.set_title('t')\n\n"
        "def task_func(values):\n    fig, ax = plt.subplots()\n    ax.hist(values, bins=SIZE)\n    _label(ax)\n"
        "    if not values:\n        print('empty')\n\nprint(task_func([1, 2]))\n```\nThis plots a histogram."
    )
    code = extract_code(response, "task_func")
    assert code is not None and "return" not in code and "print(task_func" not in code
    assert code == (
        "import matplotlib.pyplot as plt\nSIZE = 3\ndef _label(ax):\n    ax.set_title('t')\n"
        "def task_func(values):\n    fig, ax = plt.subplots()\n    ax.hist(values, bins=SIZE)\n    _label(ax)\n"
        "    if not values:\n        print('empty')\n"
    )


def test_a_one_line_function_without_a_return_is_left_to_the_sanitizer() -> None:
    code = extract_code("```python\ndef noop(): pass\ndef f(x):\n    return x\n```", "f")
    assert code == "def f(x):\n    return x\n"
