"""Reading a small teacher's malformed answers: the forms below were seen from the 0.5B teacher on MBPP+ dev."""

from __future__ import annotations

import pytest

from amr_dspy.salvage import assert_lines, lenient_specs, strip_field_markers


def test_specs_without_descriptions_and_with_bodies_in_the_def_line() -> None:
    raw = ('[[ ## modules ## ]]\n[{"name": "sum_of_cubes", "signature": "def sum_of_cubes(n: int): return sum(i**3 '
           'for i in range(1, n+1))"}, {"name": "assert", "signature": "assert x"}, {}]\n[[ ## completed ## ]]')
    (spec,) = lenient_specs(raw)
    assert (spec.name, spec.signature, spec.description) == ("sum_of_cubes", "def sum_of_cubes(n: int):", "")


def test_specs_with_unquoted_keys_and_single_quotes() -> None:
    raw = ("[[ ## modules ## ]]\n[{name: 'sort_sublists', signature: 'def sort_sublists(lists: list) -> list:', "
           "description: 'Sort each sublist.', calls: ['helper', 3]}]")
    (spec,) = lenient_specs(raw)
    assert spec.signature == "def sort_sublists(lists: list) -> list:" and spec.calls == ["helper"]
    assert spec.description == "Sort each sublist."


@pytest.mark.parametrize("raw", ["[[ ## modules ## ]]\n[{},{},{}]", "no json here at all", "[[ ## modules ## ]]\n42"])
def test_nothing_usable_gives_no_specs(raw: str) -> None:
    assert lenient_specs(raw) == []


def test_a_def_line_that_does_not_parse_becomes_a_stub_header() -> None:
    (spec,) = lenient_specs('[{"name": "f", "signature": "f takes x"}]')
    assert spec.signature == "def f(*args):"


def test_assert_lines_and_field_markers() -> None:
    assert assert_lines('```python\nassert f(1) == 2\n```\n- "assert f(2) == 3",\nprint(1)') == [
        "assert f(1) == 2", "assert f(2) == 3"]  # fmt: skip
    # the 0.5B teacher's usual form under a field marker: an assert with its own quoted message keeps the quote
    raw = '[[ ## tests ## ]]\nassert rot([[1, 2]]) == [[1], [2]], "Test case 1 failed"\n1. \'assert rot([]) == []\','
    assert assert_lines(raw) == ['assert rot([[1, 2]]) == [[1], [2]], "Test case 1 failed"', "assert rot([]) == []"]
    assert strip_field_markers("[[ ## response ## ]]\nHi\n[[ ## completed ## ]]") == "Hi"
