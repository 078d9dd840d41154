"""The requested entry point of an instruction, and answers pruned to what it reaches."""

from __future__ import annotations

import pytest

from amr_dspy.entry_points import (
    defined_names,
    main_function,
    named_entry_points,
    prune_response,
    prune_unreachable,
    requested_entry_point,
)

WORD_FREQUENCIES = "Write `word_frequencies(text)` returning (word, count) pairs, most frequent first."
# What the compiled amr program kept for it on the sample run: a retrieved library module (Mbpp/643) and nothing else.
RETRIEVED_ONLY = (
    "import re\n\n"
    "def text_match_wordz_middle(text):\n"
    "    return bool(re.search(r'\\Bz\\B', text))\n"
)
DIRECT = (
    "from collections import Counter\n\n\n"
    "def word_frequencies(text):\n"
    "    return Counter(text.split()).most_common()\n"
)


# ------------------------------------------------------------------------------------------------ derivation


@pytest.mark.parametrize(("instruction", "expected"), [
    (WORD_FREQUENCIES, "word_frequencies"),
    ("Implement `word_frequencies(text: str, top: int) -> list[tuple[str, int]]` returning the `top` most "
     "frequent words.", "word_frequencies"),  # `top` is a parameter, not a function
    ("Write a function called `count_vowels` that counts vowels.", "count_vowels"),
    ("Write a function is_palindrome(s: str) -> bool.", "is_palindrome"),
    ("Create a class `LRUCache` with `__init__(self, capacity: int)` and `get(self, key: int) -> int`.",
     "LRUCache"),  # methods and dunders are not entry points
    ("Write `foo(x)` that uses `re.sub()` and `len()`.", "foo"),  # dotted names and builtins are not
    ("Implement `run_length_encode(s: str) -> str` and `run_length_decode(s: str) -> str`.", "run_length_encode"),
])  # fmt: skip
def test_a_named_function_is_the_entry_point(instruction: str, expected: str) -> None:
    assert requested_entry_point(instruction, None) == expected
    assert requested_entry_point(instruction, RETRIEVED_ONLY) == expected  # what the answer defines does not matter


def test_every_function_asked_for_is_listed_in_order() -> None:
    both = "Implement `run_length_encode(s: str) -> str` and `run_length_decode(s: str) -> str`; `run_length_encode`"
    assert named_entry_points(both) == ["run_length_encode", "run_length_decode"]


def test_a_def_in_a_code_block_or_a_bare_stub_is_read_with_ast() -> None:
    block = ("Fix the bug in this code:\n```python\ndef helper(x):\n    return x\n\n\ndef fix_me(y):\n"
             "    return helper(y) - 1\n```\nIt should return y.")  # fmt: skip
    assert requested_entry_point(block, None) == "fix_me"  # the function the others do not call
    stub = 'import math\n\ndef scale_up(x: int) -> int:\n    """Return x scaled up."""\n'
    assert requested_entry_point(stub, None) == "scale_up"
    assert requested_entry_point("Explain `def` in a sentence.", None) is None  # a keyword is no function


def test_a_helper_to_use_counts_only_when_the_direct_answer_defines_it() -> None:
    use = "Use `split()` to count the words of a text."
    assert named_entry_points(use) == [] and requested_entry_point(use, None) is None
    own_split = "def split(text):\n    return text.split()\n"
    assert requested_entry_point(use, own_split) == "split"
    counts = "def count_words(text):\n    return len(text.split())\n"
    assert requested_entry_point(use, counts) == "count_words"  # the direct answer's main function
    assert named_entry_points("Rewrite `split()` calls as loops.") == []  # "write" inside a word is no cue


def test_prose_without_a_name_falls_back_to_the_direct_answers_main_function() -> None:
    direct = ("def normalise(word):\n    return word.strip('.,').lower()\n\n"
              "def count_words(text):\n    return len({normalise(w) for w in text.split()})\n\n"
              "def main():\n    print(count_words('a b A'))\n")  # fmt: skip
    assert requested_entry_point("Count the distinct words of a text.", direct) == "count_words"
    assert requested_entry_point("Count the distinct words of a text.", None) is None
    assert requested_entry_point("Count the distinct words of a text.", "x = 1\n") is None
    assert requested_entry_point("Count the distinct words of a text.", "not python (") is None


def test_the_main_function_is_the_last_one_nothing_calls() -> None:
    assert main_function("def a():\n    return b()\n\ndef b():\n    return 1\n\ndef c():\n    return 2\n") == "c"
    assert main_function("def main():\n    return 1\n") == "main"  # a driver, when it is all there is
    assert main_function("class Stack:\n    pass\n") == "Stack"
    assert main_function("import os\n") is None


# ------------------------------------------------------------------------------------------------ pruning


EVOLVED = '''import re
from collections import Counter

WORD = re.compile(r"[a-z]+")
UNUSED = 3


def _words(text):
    return WORD.findall(text.lower())


def word_frequencies(text):
    return Counter(_words(text)).most_common()


def text_match_wordz_middle(text):
    return bool(re.search(r"\\Bz\\B", text))


if __name__ == "__main__":
    print(text_match_wordz_middle("xzy"))
'''


def test_unreachable_code_is_dropped_and_what_the_entry_point_needs_is_kept() -> None:
    pruned = prune_unreachable(EVOLVED, "word_frequencies")
    assert pruned is not None
    assert defined_names(pruned) == {"WORD", "_words", "word_frequencies"}  # helper, used constant kept
    assert "import re\nfrom collections import Counter\n" in pruned  # imports kept
    assert "text_match_wordz_middle" not in pruned and "UNUSED" not in pruned and "__main__" not in pruned
    namespace: dict[str, object] = {}
    exec(pruned, namespace)  # the test's own code
    assert namespace["word_frequencies"]("b a b") == [("b", 2), ("a", 1)]  # type: ignore[operator]


def test_a_missing_entry_point_cannot_be_pruned() -> None:
    assert requested_entry_point(WORD_FREQUENCIES, DIRECT) == "word_frequencies"
    assert prune_unreachable(RETRIEVED_ONLY, "word_frequencies") is None  # the retrieved module only
    assert prune_unreachable("def f(:\n", "f") is None


def test_classes_decorators_and_annotations_are_followed() -> None:
    code = ("import functools\n\nclass Point:\n    pass\n\n\ndef memo(fn):\n    return functools.cache(fn)\n\n\n"
            "@memo\ndef origin() -> Point:\n    return Point()\n\n\ndef unrelated():\n    return 0\n")  # fmt: skip
    pruned = prune_unreachable(code, "origin")
    assert pruned is not None and defined_names(pruned) == {"Point", "memo", "origin"}
    assert "@memo\ndef origin" in pruned


def test_nothing_to_prune_returns_the_code_and_keep_adds_roots() -> None:
    assert prune_unreachable(DIRECT, "word_frequencies") == DIRECT
    two = "def encode(s):\n    return s\n\n\ndef decode(s):\n    return s\n"
    assert defined_names(prune_unreachable(two, "encode") or "") == {"encode"}
    assert prune_unreachable(two, "encode", keep=["decode"]) == two


def test_statements_that_are_not_definitions_stay_with_what_they_use() -> None:
    code = "import sys\n\nLIMIT = 10_000\nsys.setrecursionlimit(LIMIT)\n\n\ndef f():\n    return 1\n"
    assert prune_unreachable(code, "f") == code


def test_pruning_that_breaks_the_syntax_gives_none() -> None:
    shared_line = "KEEP = 1; UNUSED = [\n    2]\n\n\ndef f():\n    return KEEP\n"
    assert prune_unreachable(shared_line, "f") is None


def test_the_response_loses_the_pruned_code_and_its_usage() -> None:
    response = (f"Here is the solution.\n\n```python\n{EVOLVED}```\n\nFor example:\n\n```python\n"
                "print(text_match_wordz_middle('xzy'))\n```\n\nDone.\n")  # fmt: skip
    pruned = prune_response(response, ["UNUSED", "text_match_wordz_middle"])
    assert "text_match_wordz_middle" not in pruned and "UNUSED" not in pruned
    assert pruned.startswith("Here is the solution.\n\n```python\nimport re\n") and pruned.endswith("Done.\n")
    assert "def word_frequencies(text):" in pruned and pruned.count("```") == 2  # the usage block is gone
    assert prune_response(response, []) == response
    assert prune_response(RETRIEVED_ONLY + DIRECT, ["text_match_wordz_middle"]).startswith("import re\n")  # bare code
