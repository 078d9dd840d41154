"""The resources amr-dspy ships, and the defaults every command takes from them.

Two kinds: the embedded teacher's compiled programs (``local-0.5b/<variant>-bootstrap-2core.json`` with their
manifests) and the seed function-module library (``library/minilm-mbpp-bcb-train``: MBPP+ and BigCodeBench train).
They live in the repository's ``artifacts/``; the wheel holds them as the data package ``amr_dspy/bundled``
(pyproject maps that package to ``artifacts/`` and ships only those two subtrees). ``bundled_root`` finds
``amr_dspy/bundled`` in an installed wheel, else ``artifacts/`` next to the package in a checkout (an editable
install, or the source on the path): never relative to the working directory.

Retrieval: a variant whose AMR config retrieves (amr, amr-paper, amr-select, amr-verified, ...) takes
``--library`` or else the bundled seed library; ``--no-library`` turns retrieval off; the other variants never
open a library.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from amr_dspy.errors import ConfigError

if TYPE_CHECKING:
    from amr_dspy.library import Library

__all__ = [
    "EMBEDDED_TEACHER_SLUG",
    "DEFAULT_RECIPE",
    "SEED_LIBRARY",
    "bundled_root",
    "default_library",
    "default_program",
    "retrieves",
    "library_for",
    "open_library",
    "library_id",
]

EMBEDDED_TEACHER_SLUG = "local-0.5b"  # TeacherSpec.parse("local").slug, without importing the teacher stack
DEFAULT_RECIPE = "bootstrap-2core"  # the recipe the bundled programs were compiled with
SEED_LIBRARY = "minilm-mbpp-bcb-train"
_PACKAGE, _BUNDLED, _CHECKOUT = "amr_dspy", "bundled", "artifacts"
_SEED_NAME = f"{_CHECKOUT}/library/{SEED_LIBRARY}"  # how manifests and results name it, wherever it is installed


def bundled_root() -> Path:
    """The folder holding the bundled resources: ``amr_dspy/bundled`` when installed, ``artifacts/`` in a checkout."""
    package = files(_PACKAGE)
    if not isinstance(package, Path):  # FAISS reads and synthesize copies real files
        raise ConfigError(f"amr_dspy is installed as {package}, not as files; install it from a wheel or a checkout")
    for root in (package / _BUNDLED, package.parent / _CHECKOUT):
        if root.is_dir():
            return root
    raise ConfigError(
        f"{package}: no bundled resources ({_BUNDLED}/ inside it, or {_CHECKOUT}/ next to it); reinstall amr-dspy"
    )


def default_library() -> Path:
    """The seed function-module library: verified modules of MBPP+ train and BigCodeBench train@core solutions,
    embedded with MiniLM."""
    return bundled_root() / "library" / SEED_LIBRARY


def default_program(variant: str) -> Path | None:
    """The compiled program of ``variant`` for the embedded teacher, if one is bundled."""
    path = bundled_root() / EMBEDDED_TEACHER_SLUG / f"{variant}-{DEFAULT_RECIPE}.json"
    return path if path.is_file() else None


def retrieves(variant: str) -> bool:
    """Whether ``variant`` retrieves modules from a library (its AMR config says so); ConfigError if unknown."""
    from amr_dspy.programs import VARIANTS

    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    # the variant's own factory, bare: what it is built with (library, executor) does not change its config
    return bool(getattr(getattr(VARIANTS[variant](), "config", None), "retrieve", False))


def library_for(variants: Iterable[str], library: Path | None = None, *, no_library: bool = False) -> Path | None:
    """The library directory runs of ``variants`` retrieve from: ``library``, else the bundled seed library;
    None when retrieval is off (``no_library``) or none of the variants retrieves."""
    if no_library and library is not None:
        raise ConfigError(f"--library {library} and --no-library: give one of them")
    if no_library or not any(retrieves(v) for v in variants):
        return None
    return library if library is not None else default_library()


def open_library(directory: Path) -> Library:
    """Open the function-module library in ``directory`` (a one-line error when there is none)."""
    if not directory.is_dir():
        raise ConfigError(f"--library {directory}: no such library (build one with `amr-dspy library build`)")
    from amr_dspy.library import Library

    return Library.open(directory)


def library_id(directory: Path) -> str:
    """How manifests and results name a library: its path, the bundled seed by its repository path wherever it is
    installed (so a checkout and a wheel agree), with the hash of its modules."""
    modules = directory / "modules.jsonl"
    digest = hashlib.sha256(modules.read_bytes()).hexdigest()[:12] if modules.is_file() else "unknown"
    name = _SEED_NAME if directory.resolve() == default_library().resolve() else str(directory)
    return f"{name} (modules sha256 {digest})"
