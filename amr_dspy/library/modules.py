"""Split Python source into its top-level function modules (``ast``), and describe them."""

from __future__ import annotations

import ast
import io
import re
import tokenize

from pydantic import BaseModel, Field

from amr_dspy.errors import DataError

__all__ = ["FunctionModule", "split_modules", "describe", "describe_from_signature"]

_OPEN, _CLOSE = "([{", ")]}"
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)
# the top-level statements a module's code may need besides itself
_Context = (
    ast.Import | ast.ImportFrom | ast.Assign | ast.AnnAssign | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
)
_SKIP_TOKENS = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}


class FunctionModule(BaseModel):
    """One top-level function of a source file."""

    name: str
    signature: str  # the def line, annotations as written, joined onto one line
    docstring: str | None = None
    code: str  # the function's source, decorators included
    calls: list[str] = Field(default_factory=list)  # other top-level functions it calls, first-call order
    # The top-level statements it needs to run alone, transitively and in source order: imports,
    # constants, classes and the helper functions it calls.
    preamble: list[str] = Field(default_factory=list)
    lineno: int = 1  # of the first decorator, else of the def

    @property
    def standalone_code(self) -> str:
        """The function after the top-level statements it needs, ready to run alone."""
        return "\n\n".join([*self.preamble, self.code]) if self.preamble else self.code


def split_modules(source: str, *, label: str = "source") -> list[FunctionModule]:
    """The top-level functions of ``source`` in order; DataError naming ``label`` and the line if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise DataError(f"{label}:{exc.lineno}: not valid Python ({exc.msg})") from None
    lines = source.splitlines(keepends=True)
    functions = [n for n in tree.body if isinstance(n, _FUNCTION_NODES)]
    top_names = {f.name for f in functions}
    context = [
        n
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.ClassDef, *_FUNCTION_NODES))
    ]
    modules = []
    for fn in functions:
        start = _first_line(fn)
        modules.append(
            FunctionModule(
                name=fn.name,
                signature=_signature(lines, fn),
                docstring=ast.get_docstring(fn),
                code="".join(lines[start - 1 : fn.end_lineno]).rstrip() + "\n",
                calls=_calls(fn, top_names - {fn.name}),
                preamble=["".join(lines[_first_line(n) - 1 : n.end_lineno]).rstrip() for n in _needs(fn, context)],
                lineno=start,
            )
        )
    return modules


def describe(module: FunctionModule) -> str | None:
    """The first paragraph of the module's docstring on one line, or None when it has none."""
    if not module.docstring or not module.docstring.strip():
        return None
    paragraph = module.docstring.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def describe_from_signature(module: FunctionModule) -> str:
    """A last-resort description read off the signature, e.g. 'Max sub array sum (takes a: list; returns int).'"""
    words = " ".join(w for w in re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])", module.name) if w).lower() or module.name
    params = re.search(r"\((.*)\)", module.signature)
    returns = re.search(r"->\s*(.+?):\s*$", module.signature)
    parts = []
    if params and params.group(1).strip():
        parts.append(f"takes {params.group(1).strip()}")
    if returns:
        parts.append(f"returns {returns.group(1).strip()}")
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"{words[:1].upper()}{words[1:]}{detail}."


def _signature(lines: list[str], fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The source text from ``def`` to its closing colon, joined onto one line."""
    text = "".join(lines[fn.lineno - 1 : fn.end_lineno])
    text_lines = text.splitlines(keepends=True)
    tokens: list[tokenize.TokenInfo] = []
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in _SKIP_TOKENS:
            continue
        tokens.append(tok)
        if tok.type == tokenize.OP and tok.string in _OPEN:
            depth += 1
        elif tok.type == tokenize.OP and tok.string in _CLOSE:
            depth -= 1
        elif tok.type == tokenize.OP and tok.string == ":" and depth == 0:
            break
    # A trailing comma before a closing bracket on a later line is layout, not meaning.
    kept = [
        tok
        for i, tok in enumerate(tokens)
        if not (
            tok.string == ","
            and i + 1 < len(tokens)
            and tokens[i + 1].string in _CLOSE
            and tokens[i + 1].start[0] != tok.start[0]
        )
    ]
    out: list[str] = []
    for prev, tok in zip([None, *kept], kept, strict=False):
        if prev is not None and prev.end[0] == tok.start[0]:
            out.append(text_lines[tok.start[0] - 1][prev.end[1] : tok.start[1]])
        elif prev is not None and not (prev.string in _OPEN or tok.string in _CLOSE):
            out.append(" ")
        out.append(tok.string)
    return "".join(out)


def _calls(fn: ast.AST, names: set[str]) -> list[str]:
    seen: list[str] = []
    for node in ast.walk(fn):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
                and node.func.id not in seen):
            seen.append(node.func.id)
    return seen


def _used_names(fn: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}


def _needs(fn: ast.AST, context: list[_Context]) -> list[_Context]:
    """The statements of ``context`` that ``fn`` uses, directly or through each other, in source order."""
    wanted, chosen = _used_names(fn), set()
    changed = True
    while changed:
        changed = False
        for i, node in enumerate(context):
            if i in chosen or node is fn:
                continue
            bound = _bound_names(node)
            if bound & wanted or "*" in bound:
                chosen.add(i)
                wanted |= _used_names(node)
                changed = True
    return [node for i, node in enumerate(context) if i in chosen]


def _first_line(node: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([d.lineno for d in decorators] + [node.lineno])


def _bound_names(node: _Context) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.asname or a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name for a in node.names}
    if isinstance(node, (ast.ClassDef, *_FUNCTION_NODES)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
