"""The run layer: how every command opens what it runs on.

A command turns its options into a ``TeacherSpec`` and a job, opens its resources here and hands them to its
service (evaluation, compare, compile, synthesis): ``open_resources`` starts the teacher and makes it DSPy's LM,
opens one sandbox with one set of limits (``sandbox_limits``), opens the module library the retrieval variants
use (``resources.library_for``: ``--library``, else the bundled seed library; none with ``--no-library``), and
closes all of them when the block ends. Programs come from ``Resources.program`` (or ``load_program`` without
resources): the variant built on that sandbox and library, with its compiled artifact loaded through
``optimize.artifact.load_artifact`` and the artifact's sha256 computed once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amr_dspy import resources
from amr_dspy.errors import ConfigError

if TYPE_CHECKING:
    import dspy

    from amr_dspy.library import Library
    from amr_dspy.sandbox import Sandbox, SandboxLimits
    from amr_dspy.tasks import Task
    from amr_dspy.teacher import TeacherSpec

__all__ = [
    "LoadedProgram",
    "Resources",
    "open_resources",
    "teacher_session",
    "load_program",
    "artifact_sha256",
    "sandbox_limits",
]

Status = Callable[[str], AbstractContextManager[Any]]  # a spinner around a slow step (the CLI's console.status)


@dataclass(frozen=True)
class LoadedProgram:
    """A built program, the artifact loaded into it (None: uncompiled) and that artifact's sha256."""

    module: dspy.Module
    variant: str
    artifact: Path | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Resources:
    """What a run has open: the teacher's LM (None when no teacher was asked for), the sandbox, and the library
    the retrieval variants use with its id for results and manifests (both None without retrieval)."""

    lm: dspy.LM | None
    sandbox: Sandbox
    library: Library | None = None
    library_id: str | None = None

    def program(self, variant: str, artifact: Path | None = None, **build: Any) -> LoadedProgram:
        """``variant`` built on this run's sandbox and (when it retrieves) library; ``build``: guard, samples."""
        library = self.library if self.library is not None and resources.retrieves(variant) else None
        return load_program(variant, artifact, library=library, executor=self.sandbox, **build)

    def library_id_for(self, variant: str) -> str | None:
        """The library id ``variant``'s results record: this run's library when the variant retrieves."""
        return self.library_id if self.library is not None and resources.retrieves(variant) else None


def sandbox_limits(tasks: Sequence[Task] = ()) -> SandboxLimits:
    """The one set of limits of a run's sandbox: BigCodeBench's when a task is from it, else evalplus's (also for
    synthesis, so a record's tests run as an eval's would)."""
    from amr_dspy.evaluation import execution_limits

    return execution_limits(tasks)


@contextmanager
def open_resources(
    teacher: TeacherSpec | None,
    *,
    tasks: Sequence[Task] = (),
    workers: int = 2,
    variants: Iterable[str] = (),
    library: Path | None = None,
    no_library: bool = False,
    status: Status | None = None,
) -> Iterator[Resources]:
    """Open the sandbox (limits from ``tasks``), the library ``variants`` retrieve from and the teacher (``None``:
    none, e.g. checking existing samples); the teacher is DSPy's LM, with its adapter, inside the block."""
    from amr_dspy.sandbox import Sandbox

    show = status or (lambda _message: nullcontext())
    directory = resources.library_for(list(variants), library, no_library=no_library)
    with ExitStack() as stack:
        sandbox = stack.enter_context(Sandbox(sandbox_limits(tasks), workers=workers))
        opened, ident = None, None
        if directory is not None:
            with show(f"opening module library {directory}"):
                opened, ident = resources.open_library(directory), resources.library_id(directory)
        lm = None
        if teacher is not None:
            with show(f"starting teacher {teacher.name}"):
                lm = stack.enter_context(teacher_session(teacher))
        yield Resources(lm=lm, sandbox=sandbox, library=opened, library_id=ident)


@contextmanager
def teacher_session(spec: TeacherSpec) -> Iterator[dspy.LM]:
    """Start the teacher and make it, with its adapter, DSPy's LM for the block (the one seam tests replace to run
    a command on a scripted LM)."""
    import dspy

    from amr_dspy.teacher import open_teacher

    with open_teacher(spec) as lm, dspy.context(lm=lm, adapter=spec.make_adapter()):
        yield lm


def load_program(variant: str, artifact: Path | None = None, **build: Any) -> LoadedProgram:
    """Build ``variant`` (``build``: library, executor, guard, samples) and load the compiled ``artifact`` into it;
    ArtifactError when the artifact was compiled for another variant, signatures or dspy."""
    from amr_dspy.programs import build_program

    module = build_program(variant, **build)
    if artifact is None:
        return LoadedProgram(module, variant)
    if not artifact.is_file():
        raise ConfigError(f"--program {artifact}: no such file")
    from optimize.artifact import load_artifact

    load_artifact(artifact, variant, program=module)
    return LoadedProgram(module, variant, artifact, artifact_sha256(artifact))


def artifact_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
