"""Whether a module's code runs on its own (every global name it reads is bound in it or a builtin), and making
it so with imports borrowed from elsewhere (a BigCodeBench solution may lean on its test module's imports)."""

from __future__ import annotations

import ast
import builtins
import symtable
import warnings

from amr_dspy.errors import DataError

__all__ = ["unresolved_names", "borrow_imports"]

# Bound by the interpreter in every module, though not in ``builtins``.
_MODULE_DUNDERS = frozenset(
    {"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__"}
)
_KNOWN = frozenset(dir(builtins)) | _MODULE_DUNDERS


def unresolved_names(code: str, *, label: str = "code") -> list[str]:
    """The global names ``code`` reads that nothing in it binds and that are not builtins, sorted.

    A ``from x import *`` could bind anything, so code with one has none. DataError if it does not parse.
    """
    try:
        with warnings.catch_warnings():  # solutions write regexes like '\d' in plain strings
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            if _has_star_import(ast.parse(code)):
                return []
            top = symtable.symtable(code, label, "exec")
    except SyntaxError as exc:
        raise DataError(f"{label}:{exc.lineno}: not valid Python ({exc.msg})") from None
    tables = _walk(top)
    bound = {s.get_name() for s in top.get_symbols() if _binds(s)}
    # `global x` then `x = ...` inside a function binds x at module level when it runs.
    bound |= {s.get_name() for t in tables[1:] for s in t.get_symbols() if s.is_declared_global() and s.is_assigned()}
    read = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    read |= {s.get_name() for t in tables[1:] for s in t.get_symbols() if s.is_global() and s.is_referenced()}
    return sorted(read - bound - _KNOWN)


def borrow_imports(code: str, donors: list[str], *, label: str = "code") -> str:
    """``code`` after the top-level imports of ``donors`` that bind names it reads but does not bind.

    Only the aliases it needs are taken (``import numpy as np, os`` lends ``import numpy as np``); a donor that
    does not parse lends nothing. ``code`` is returned unchanged when nothing is missing or nothing fits.
    """
    missing = set(unresolved_names(code, label=label))
    borrowed: list[str] = []
    for donor in donors:
        for node in _top_level_imports(donor):
            aliases = [a for a in node.names if _alias_binds(a, node) in missing]
            if aliases:
                missing -= {_alias_binds(a, node) for a in aliases}
                borrowed.append(ast.unparse(_with_aliases(node, aliases)))
    return "\n".join(borrowed) + "\n\n" + code if borrowed else code


def _top_level_imports(source: str) -> list[ast.Import | ast.ImportFrom]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            body = ast.parse(source).body
    except SyntaxError:
        return []
    return [n for n in body if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and not n.level)]


def _with_aliases(node: ast.Import | ast.ImportFrom, aliases: list[ast.alias]) -> ast.stmt:
    if isinstance(node, ast.ImportFrom):
        return ast.ImportFrom(module=node.module, names=aliases, level=0)
    return ast.Import(names=aliases)


def _alias_binds(alias: ast.alias, node: ast.Import | ast.ImportFrom) -> str:
    return alias.asname or (alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name)


def _binds(symbol: symtable.Symbol) -> bool:
    return symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()


def _walk(table: symtable.SymbolTable) -> list[symtable.SymbolTable]:
    out = [table]
    for child in table.get_children():
        out.extend(_walk(child))
    return out


def _has_star_import(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree))
