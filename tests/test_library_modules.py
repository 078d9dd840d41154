"""split_modules, descriptions and the normalized-code hash."""

from __future__ import annotations

import pytest

from amr_dspy.errors import DataError
from amr_dspy.library import (
    code_hash,
    describe,
    describe_from_signature,
    module_text,
    normalize_code,
    split_modules,
)

SOURCE = '''\
import math
import os  # unused by every function
from typing import List
SCALE = 2

def helper(x: float) -> float:
    """Scaled square root.

    Longer explanation that is not part of the description.
    """
    return math.sqrt(x) * SCALE


@staticmethod
@functools.lru_cache(maxsize=None)
def total(values: List[float],  # the inputs
          start: float = 0.0,
          *, clip: bool = False,
          ) -> float:
    def inner(v):  # nested: not a module of its own
        return helper(v)
    return start + sum(inner(v) for v in values) + total_again(values)


async def fetch(url: str, retries: int=3): return url * retries

def total_again(values):
    return len(values) if values else total_again([1])
'''


def test_split_modules_finds_top_level_functions_in_order() -> None:
    modules = split_modules(SOURCE)
    assert [m.name for m in modules] == ["helper", "total", "fetch", "total_again"]


def test_signature_is_joined_onto_one_line_with_annotations_as_written() -> None:
    by_name = {m.name: m for m in split_modules(SOURCE)}
    assert by_name["helper"].signature == "def helper(x: float) -> float:"
    assert by_name["total"].signature == (
        "def total(values: List[float], start: float = 0.0, *, clip: bool = False) -> float:"
    )
    assert by_name["fetch"].signature == "async def fetch(url: str, retries: int=3):"


def test_code_includes_decorators_and_starts_at_the_first_one() -> None:
    total = {m.name: m for m in split_modules(SOURCE)}["total"]
    assert total.code.startswith("@staticmethod\n@functools.lru_cache(maxsize=None)\ndef total(")
    assert total.code.rstrip().endswith("total_again(values)")
    assert total.lineno == SOURCE.splitlines().index("@staticmethod") + 1


def test_calls_name_other_top_level_functions_only() -> None:
    by_name = {m.name: m for m in split_modules(SOURCE)}
    assert by_name["total"].calls == ["helper", "total_again"]  # not inner, sum or itself
    assert by_name["total_again"].calls == []  # recursion is not a call to another module
    assert by_name["helper"].calls == []


def test_preamble_holds_what_the_function_needs_transitively() -> None:
    by_name = {m.name: m for m in split_modules(SOURCE)}
    assert by_name["helper"].preamble == ["import math", "SCALE = 2"]
    total_preamble = by_name["total"].preamble
    assert total_preamble[:3] == ["import math", "from typing import List", "SCALE = 2"]
    assert any(p.startswith("def helper(") for p in total_preamble)
    assert any(p.startswith("def total_again(") for p in total_preamble)
    assert not any("import os" in p for p in total_preamble)
    assert by_name["fetch"].preamble == []


def test_standalone_code_runs_on_its_own() -> None:
    source = (
        "import math\nR = 3\n\ndef area() -> float:\n    return math.pi * R ** 2\n\n"
        "def ring(k):\n    return area() * k\n"
    )
    ring = split_modules(source)[1]
    namespace: dict[str, object] = {}
    exec(ring.standalone_code, namespace)  # our own fixture code
    assert namespace["ring"](2) == pytest.approx(2 * 3.141592653589793 * 9)


def test_source_without_functions_gives_no_modules() -> None:
    assert split_modules("x = 1\nclass A:\n    def m(self):\n        return 1\n") == []


def test_syntax_error_names_the_label_and_line() -> None:
    with pytest.raises(DataError, match=r"^solution\.py:2: not valid Python"):
        split_modules("def ok():\n    return (\n", label="solution.py")


def test_describe_uses_the_docstrings_first_paragraph_else_none() -> None:
    helper, total, *_ = split_modules(SOURCE)
    assert describe(helper) == "Scaled square root."
    assert describe(total) is None


def test_describe_from_signature_reads_name_params_and_return() -> None:
    total = split_modules(SOURCE)[1]
    text = describe_from_signature(total)
    assert text.startswith("Total (takes values: List[float]")
    assert text.endswith("; returns float).")
    camel = split_modules("def isPowerOfTwo(n):\n    return n & (n - 1) == 0\n")[0]
    assert describe_from_signature(camel) == "Is power of two (takes n)."


def test_code_hash_ignores_docstrings_comments_and_layout() -> None:
    a = "def f(x):\n    return x+1\n"
    b = 'def f( x ):\n    """Add one."""\n    # comment\n    return (x + 1)\n'
    c = "def f(x):\n    return x + 2\n"
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash(c)
    assert normalize_code("    def g():\n        'doc'\n") == "def g():\n    pass"


def test_code_hash_rejects_invalid_python() -> None:
    with pytest.raises(DataError, match=r"^mod: not valid Python \(line 1"):
        code_hash("def (:", label="mod")


def test_module_text_has_name_signature_and_description() -> None:
    assert module_text("def add(a: int, b: int) -> int:", " Add two ints. ") == (
        "add: def add(a: int, b: int) -> int:\nAdd two ints."
    )
    assert module_text("add(a, b)", "Add.", name="add") == "add: add(a, b)\nAdd."
