"""Salvaging what a small teacher meant from answers that miss the adapter's format.

The 0.5B teacher often writes a good code block without the ``[[ ## response ## ]]`` marker, asserts in a code
block instead of a list of strings, or module specs as near-JSON without a description. Dropping such answers
would measure the prompt format rather than the teacher's code, so the programs read them leniently.
"""

from __future__ import annotations

import ast
import keyword
import re
from typing import Any

import json_repair

from signatures import ModuleSpec

__all__ = ["strip_field_markers", "assert_lines", "lenient_specs"]

_FIELD_MARKER = re.compile(r"^\[\[ ## \w+ ## \]\]\s*$", re.MULTILINE)
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\s*\n(.*?)(?=\n\s*\[\[ ## |\Z)", re.DOTALL)
# A closing quote is stripped only when the line opened with one: `assert f(x) == y, "message"` keeps its own.
_LIST_ITEM = re.compile(r"""^(?:[-*]\s+|\d+[.)]\s+)?(["']?)(assert\b.*?)\1,?$""")


def strip_field_markers(text: str) -> str:
    """The answer without ChatAdapter's ``[[ ## field ## ]]`` lines."""
    return _FIELD_MARKER.sub("", text).strip()


def assert_lines(text: str) -> list[str]:
    """The assert statements of an answer that is not the list asked for (bullets, a code block, quoted lines)."""
    found = (_LIST_ITEM.match(line.strip()) for line in text.splitlines())
    return [m.group(2) for m in found if m]


def lenient_specs(text: str, field: str = "modules") -> list[ModuleSpec]:
    """Module specs from a malformed decomposition: near-JSON, missing descriptions, bodies in the def line."""
    sections = dict(_SECTION.findall(text))
    try:
        value: Any = json_repair.loads(sections.get(field, text))
    except Exception:  # json_repair gives up on some inputs with assorted exceptions
        return []
    if isinstance(value, dict):
        value = value.get(field, [value])
    specs = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        name, signature = item.get("name"), item.get("signature")
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            continue
        header = _def_header(signature if isinstance(signature, str) else "") or f"def {name}(*args):"
        calls = [c for c in item.get("calls") or [] if isinstance(c, str)]
        description = item.get("description")
        specs.append(ModuleSpec(name=name, signature=header, calls=calls,
                                description=description if isinstance(description, str) else ""))  # fmt: skip
    return specs


def _def_header(signature: str) -> str | None:
    """The def line alone, also when the teacher put the body in it ('def f(x): return x')."""
    text = signature.strip()
    for candidate in (text, text.rstrip(":") + ":\n    pass"):
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        function = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)
        if function is not None:
            function.body, function.decorator_list = [ast.Pass()], []
            return ast.unparse(function).splitlines()[0]
    return None
