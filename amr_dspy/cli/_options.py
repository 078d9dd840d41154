"""Options shared by several commands, so every command spells them the same way."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from amr_dspy.teacher import ACCEPTED_FORMS, TeacherSpec

__all__ = [
    "TeacherOpt",
    "ApiBaseOpt",
    "ApiKeyOpt",
    "MaxTokensOpt",
    "TemperatureOpt",
    "NoCacheOpt",
    "GuardOpt",
    "SelectSamplesOpt",
    "TestSetsOpt",
    "ServerOpt",
    "SlotsOpt",
    "LibraryOpt",
    "NoLibraryOpt",
    "teacher_spec",
    "teacher_options",
]

_Command = TypeVar("_Command", bound=Callable[..., Any])

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
TestSetsOpt = Annotated[
    int | None,
    typer.Option("--test-sets", min=1, help="direct-select and amr-select: sets of unit tests the teacher writes "
                 "for the candidates (default 1; each further set sampled with its own rollout id)."),
]

# eval, compare, compile and generate; synthesize words its own (its library is also the one it grows).
LibraryOpt = Annotated[
    Path | None,
    typer.Option("--library", file_okay=False, help="Function-module library the retrieval variants (amr, amr-paper, "
                 "amr-select, amr-verified, ...) retrieve from (default: the bundled seed library "
                 "artifacts/library/minilm-mbpp-bcb-train); the other variants never open one."),
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


def teacher_options(*, temperature: bool = True) -> Callable[[_Command], _Command]:
    """Declare the teacher options once: the decorated command takes ``spec: TeacherSpec`` and the CLI shows, in
    its place, --teacher, --api-base, --api-key, --max-tokens, --temperature (unless ``temperature`` is False:
    the command always decodes greedily) and --no-cache."""

    def decorate(command: _Command) -> _Command:
        signature = inspect.signature(command, eval_str=True)
        if "spec" not in signature.parameters:
            raise TypeError(f"{command.__name__} takes no spec: TeacherSpec parameter")
        options = [p for p in _TEACHER_PARAMETERS if temperature or p.name != "temperature"]
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            parameters.extend(options if parameter.name == "spec" else [parameter])

        @functools.wraps(command)
        def with_spec(**kwargs: Any) -> Any:
            given = {p.name: kwargs.pop(p.name) for p in options}
            spec = teacher_spec(given.pop("teacher"), given.pop("api_base"), given.pop("api_key"), **given)
            return command(**kwargs, spec=spec)

        with_spec.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        with_spec.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_spec  # type: ignore[return-value]

    return decorate


_TEACHER_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation, default=default)
    for name, annotation, default in (
        ("teacher", TeacherOpt, None),
        ("api_base", ApiBaseOpt, None),
        ("api_key", ApiKeyOpt, None),
        ("max_tokens", MaxTokensOpt, 1024),
        ("temperature", TemperatureOpt, 0.0),
        ("no_cache", NoCacheOpt, False),
    )
]
