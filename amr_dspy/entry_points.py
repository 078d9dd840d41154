"""The function an instruction asks for, and an answer cut down to what that function needs.

A prose instruction carries no entry point, yet most name the function they want (``Write `word_frequencies(text:
str, top: int)` ...``). ``requested_entry_point`` finds it (or falls back to the direct answer's main function),
so a final answer that no longer defines it can be caught, and ``prune_unreachable`` drops the functions the entry
point never reaches (a retrieved library module pasted in beside the answer). All functions here are pure.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
from collections.abc import Iterable, Sequence

from amr_dspy.extract import fenced_blocks
from amr_dspy.framing import completion_target

__all__ = [
    "requested_entry_point",
    "named_entry_points",
    "main_function",
    "defined_names",
    "referenced_names",
    "prune_unreachable",
    "prune_response",
]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*\n?", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}
_BACKTICKED_CALL = re.compile(rf"`\s*(?:(?:async\s+)?def\s+|class\s+)?({_IDENTIFIER})\s*\(([^`\n]*)`")
_BACKTICKED_NAME = re.compile(rf"`({_IDENTIFIER})`")
_PLAIN = re.compile(rf"\b(?:function|def)\s+(?:called\s+|named\s+)?({_IDENTIFIER})\(|"
                    rf"\bfunction\s+(?:called|named)\s+({_IDENTIFIER})\b|"
                    rf"\bclass\s+(?:called\s+|named\s+)?([A-Z][A-Za-z0-9_]*)\b")  # fmt: skip
# What makes a backticked name the thing to write rather than a helper to use (`split()`) or a parameter (`top`):
# a verb or "function" before a call, "function"/"class" right before or after a bare name.
_FILLER = r"\W*(?:(?:an?|the|python|async|public|function|class|called|named)\s+)*$"
_CALL_CUE = re.compile(rf"\b(?:function|class|def|write|implement|create|define|complete){_FILLER}", re.IGNORECASE)
_NAME_CUE = re.compile(rf"\b(?:function|class){_FILLER}", re.IGNORECASE)
_NAME_CUE_AFTER = re.compile(r"\s*(?:function|class)\b", re.IGNORECASE)
_NOT_NAMES = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls"}
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_GONE = "\x00"  # where a code block left empty was, until the blank lines around it are tidied


# ------------------------------------------------------------------------------------------------ derivation


def requested_entry_point(instruction: str, direct_code: str | None) -> str | None:
    """The function (or class) ``instruction`` asks for first, else the direct answer's main function, else None."""
    named = named_entry_points(instruction, direct_code)
    if named:
        return named[0]
    return main_function(direct_code) if direct_code else None


def named_entry_points(instruction: str, direct_code: str | None = None) -> list[str]:
    """Every function or class the instruction asks for, in order of first mention.

    An instruction that is code (a stub) is read with ast; prose by a conservative regex. A backticked call
    with nothing marking it as the thing to write (``use `split()```) counts only when the direct answer
    defines it.
    """
    if (stub := _code_names(instruction)) is not None:
        return stub
    defined = defined_names(direct_code) if direct_code else set()
    named = [name for name, strong in _prose_names(_strip_fences(instruction)) if strong or name in defined]
    if named:
        return list(dict.fromkeys(named))
    in_blocks = main_function("\n\n".join(fenced_blocks(instruction)))  # "fix this: ```def f(...)```"
    return [in_blocks] if in_blocks else []


def main_function(code: str) -> str | None:
    """The top-level function no other top-level definition calls (the last one if several); None without one.

    ``main`` and ``test*`` drive the answer rather than being what was asked: their calls do not count, and they
    are chosen only when nothing else is left. Without a top-level function, the last uncalled class.
    """
    tree = _parse(code)
    if tree is None:
        return None
    definitions = [node for node in tree.body if isinstance(node, _DEFINITIONS)]
    drivers = [node for node in definitions if _is_driver(node.name)]
    callers = [node for node in definitions if node not in drivers] or drivers
    called = {name for node in callers for name in referenced_names(node) - {node.name}}
    uncalled = [node for node in definitions if node.name not in called]
    functions = [n.name for n in uncalled if not isinstance(n, ast.ClassDef)]
    classes = [n.name for n in uncalled if isinstance(n, ast.ClassDef)]
    names = [f for f in functions if not _is_driver(f)] or functions or classes
    return names[-1] if names else None


def _is_driver(name: str) -> bool:
    return name == "main" or name.startswith("test")


def _code_names(instruction: str) -> list[str] | None:
    """None for prose; for an instruction that parses as Python, the stub's target (or main function)."""
    if _parse(instruction) is None or not defined_names(instruction):
        return None
    target = completion_target(instruction) or main_function(instruction)
    return [target] if target else []


def _prose_names(text: str) -> list[tuple[str, bool]]:
    """(name, clearly the thing to write) for each function or class named in prose, in text order."""
    found: list[tuple[int, str, bool]] = []
    for match in _BACKTICKED_CALL.finditer(text):
        name, params = match.group(1), match.group(2)
        if _is_candidate(name) and params.split(",")[0].split(":")[0].strip() not in ("self", "cls"):
            typed = ":" in params or "->" in params
            found.append((match.start(), name, typed or bool(_CALL_CUE.search(_before(text, match.start())))))
    for match in _BACKTICKED_NAME.finditer(text):
        described = _NAME_CUE.search(_before(text, match.start())) or _NAME_CUE_AFTER.match(text, match.end())
        if _is_candidate(match.group(1)) and described:
            found.append((match.start(), match.group(1), True))
    for match in _PLAIN.finditer(text):
        name = next(group for group in match.groups() if group)
        if _is_candidate(name):
            found.append((match.start(), name, True))
    return [(name, strong) for _, name, strong in sorted(found)]


def _before(text: str, start: int) -> str:
    return text[max(0, start - 60) : start]


def _is_candidate(name: str) -> bool:
    return name not in _NOT_NAMES and not (name.startswith("__") and name.endswith("__"))


def _strip_fences(text: str) -> str:
    return _FENCE.sub("\n", text)


# ------------------------------------------------------------------------------------------------ pruning


def defined_names(code: str) -> set[str]:
    """Names the top level of ``code`` defines: functions, classes and assigned variables (empty if unparsable)."""
    tree = _parse(code)
    return {name for node in tree.body for name in _defines(node)} if tree else set()


def referenced_names(node: ast.AST | str) -> set[str]:
    """Every plain name a node (or source text) mentions, in any scope: a superset of what it calls."""
    tree = _parse(node) if isinstance(node, str) else node
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} if tree is not None else set()


def prune_unreachable(code: str, entry_point: str, keep: Iterable[str] = ()) -> str | None:
    """``code`` without the definitions that ``entry_point`` (and ``keep``) never reach; None when it cannot be.

    Imports and statements that are not definitions (``sys.setrecursionlimit(...)``) stay, and what they mention
    stays with them; a ``__main__`` block is demo code and goes. None when ``entry_point`` is not defined or the
    result does not compile. Unchanged code is returned as it is (compare with ``is`` or ``==``).
    """
    tree = _parse(code)
    if tree is None or entry_point not in defined_names(code):
        return None
    body = tree.body
    droppable = {i for i, node in enumerate(body) if _defines(node) or _is_main_guard(node)}
    roots = {entry_point, *keep}
    roots |= {name for i, node in enumerate(body) if i not in droppable for name in referenced_names(node)}
    reached = _reach(body, roots)
    dropped = [node for i, node in enumerate(body) if i in droppable and i not in reached]
    if not dropped:
        return code
    kept_lines = {line for i, node in enumerate(body) if i not in droppable or i in reached
                  for line in _lines(node)}  # fmt: skip
    pruned = _without(code, dropped, kept_lines)
    try:
        compile(pruned, "<pruned>", "exec")
    except (SyntaxError, ValueError):
        return None
    return pruned


def prune_response(response: str, names: Iterable[str]) -> str:
    """``response`` with the top-level statements of its Python code that define or use ``names`` removed.

    The markdown around the code stays; a code block left empty goes. A response that is bare code is pruned
    as one block; blocks that do not parse are left as they are.
    """
    dropped = set(names)
    if not dropped:
        return response
    if not _FENCE.search(response):
        return _prune_block(response, dropped) if _parse(response) is not None else response

    def replace(match: re.Match[str]) -> str:
        if match.group(1).lower() not in _PYTHON_TAGS:
            return match.group(0)
        body = _prune_block(match.group(2), dropped)
        if not body.strip():
            return _GONE
        whole, start, end = match.group(0), match.start(2) - match.start(0), match.end(2) - match.start(0)
        return whole[:start] + body + whole[end:]

    pruned = _FENCE.sub(replace, response)
    return re.sub(rf"\s*{_GONE}\s*", "\n\n", pruned).strip("\n") + "\n" if _GONE in pruned else pruned


def _prune_block(source: str, dropped: set[str]) -> str:
    tree = _parse(source)
    if tree is None:
        return source
    gone = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))
            and ((_defines(node) and _defines(node) <= dropped) or referenced_names(node) & dropped)]  # fmt: skip
    if not gone:
        return source
    kept_lines = {line for node in tree.body if node not in gone for line in _lines(node)}
    return _without(source, gone, kept_lines)


def _reach(body: Sequence[ast.stmt], roots: set[str]) -> set[int]:
    """Indices of the top-level definitions the roots reach, following the names each definition mentions."""
    providers: dict[str, list[int]] = {}
    for i, node in enumerate(body):
        for name in _defines(node):
            providers.setdefault(name, []).append(i)
    reached: set[int] = set()
    seen: set[str] = set()
    frontier = list(roots)
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        for i in providers.get(name, []):
            if i not in reached:
                reached.add(i)
                frontier.extend(referenced_names(body[i]))
    return reached


def _defines(node: ast.stmt) -> set[str]:
    if isinstance(node, _DEFINITIONS):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def _is_main_guard(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))  # fmt: skip


def _lines(node: ast.stmt) -> range:
    decorators = getattr(node, "decorator_list", None) or []
    start = min([node.lineno, *(d.lineno for d in decorators)])
    return range(start, (node.end_lineno or node.lineno) + 1)


def _without(source: str, nodes: Sequence[ast.stmt], kept_lines: set[int]) -> str:
    """``source`` without the lines of ``nodes``; a line a kept statement shares (``a = 1; b = 2``) stays."""
    cut = {line for node in nodes for line in _lines(node)} - kept_lines
    lines = source.splitlines(keepends=True)
    text = "".join(line for number, line in enumerate(lines, start=1) if number not in cut)
    return re.sub(r"\n{3,}", "\n\n\n", text).strip("\n") + "\n"


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None
