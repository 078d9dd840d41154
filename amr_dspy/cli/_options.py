"""Options shared by several commands, so every command spells them the same way."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from amr_dspy import resources
from amr_dspy.teacher import ACCEPTED_FORMS, TeacherSpec

if TYPE_CHECKING:
    import dspy

    from amr_dspy.library import Library

__all__ = [
    "TeacherOpt",
    "ApiBaseOpt",
    "ApiKeyOpt",
    "MaxTokensOpt",
    "TemperatureOpt",
    "NoCacheOpt",
    "GuardOpt",
    "SelectSamplesOpt",
    "ServerOpt",
    "SlotsOpt",
    "LibraryOpt",
    "NoLibraryOpt",
    "teacher_spec",
    "teacher_session",
    "open_module_library",
    "retrieval_library",
]

TeacherOpt = Annotated[
    str | None,
    typer.Option("--teacher", "-t", help=f"Teacher model (env AMR_DSPY_TEACHER, default local): {ACCEPTED_FORMS}."),
]
ApiBaseOpt = Annotated[
    str | None, typer.Option("--api-base", help="API base URL of a remote teacher (env AMR_DSPY_API_BASE).")
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="API key of a remote teacher (env AMR_DSPY_API_KEY).")
]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=16, help="Most tokens per teacher answer.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0, max=2.0, help="Sampling temperature.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Bypass DSPy's LM cache (fresh calls, real usage).")]
GuardOpt = Annotated[
    bool,
    typer.Option("--guard/--no-guard", help="AMR variants: keep the evolved answer only if it passes at least as "
                 "many teacher-written unit tests as the direct one."),
]
# Not --samples: eval's --samples already names a samples file to check.
SelectSamplesOpt = Annotated[
    int | None,
    typer.Option("--select-samples", min=0, help="direct-select and amr-select: answers sampled besides the direct "
                 "one (default 8 for direct-select, 4 for amr-select); other variants ignore it."),
]

# eval, compare and compile; synthesize words its own (its library is also the one it grows).
LibraryOpt = Annotated[
    Path | None,
    typer.Option("--library", file_okay=False, help="Function-module library the retrieval variants (amr, amr-paper, "
                 "amr-select, amr-verified, ...) retrieve from (default: the bundled seed library "
                 "artifacts/library/minilm-mbpp-train); the other variants never open one."),
]
NoLibraryOpt = Annotated[
    bool,
    typer.Option("--no-library", help="Run the retrieval variants without retrieval (no library is opened); "
                 "by default they retrieve from --library."),
]

ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="How a local teacher is served (env AMR_DSPY_SERVER): auto (llama-server when "
                 "built, else llama_cpp.server), llama-server or llama-cpp-python."),
]
SlotsOpt = Annotated[
    int | None,
    typer.Option("--slots", min=1, help="llama-server slots: requests decoded together (env AMR_DSPY_SLOTS)."),
]


def teacher_spec(
    teacher: str | None,
    api_base: str | None = None,
    api_key: str | None = None,
    *,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    no_cache: bool = False,
    server: str | None = None,
    slots: int | None = None,
) -> TeacherSpec:
    serving = {k: v for k, v in {"server": server, "slots": slots}.items() if v is not None}
    return TeacherSpec.parse(teacher, api_base=api_base, api_key=api_key, max_tokens=max_tokens,
                             temperature=temperature, cache=not no_cache, **serving)  # fmt: skip


@contextmanager
def teacher_session(spec: TeacherSpec) -> Iterator[dspy.LM]:
    """Start the teacher (with a spinner) and make it, with its adapter, DSPy's LM for the block."""
    import dspy

    from amr_dspy.cli._app import console
    from amr_dspy.teacher import open_teacher

    with ExitStack() as stack:
        with console.status(f"starting teacher {spec.name}"):
            lm = stack.enter_context(open_teacher(spec))
        stack.enter_context(dspy.context(lm=lm, adapter=spec.make_adapter()))
        yield lm


def open_module_library(directory: Path) -> Library:
    """``resources.open_library`` behind a spinner: loading the index and the embedding model takes seconds."""
    from amr_dspy.cli._app import console

    with console.status(f"opening module library {directory}"):
        return resources.open_library(directory)


def retrieval_library(
    variants: Iterable[str], library: Path | None, no_library: bool
) -> tuple[Library | None, str | None]:
    """The opened library the retrieval variants among ``variants`` use and its id for results and manifests;
    (None, None) when none of them retrieves or with --no-library."""
    directory = resources.library_for(variants, library, no_library=no_library)
    if directory is None:
        return None, None
    return open_module_library(directory), resources.library_id(directory)
