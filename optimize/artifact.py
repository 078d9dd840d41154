"""Compiled-program artifacts: the DSPy program state (JSON) plus ``<name>.manifest.json`` next to it.

The manifest records what the program was compiled for (variant, its AMR stages, signature shapes, dspy
version) and how (teacher, recipe, data fingerprints, scores, usage). ``load_artifact`` refuses an
artifact whose variant, signatures or dspy major.minor differ from the running code, since DSPy would
otherwise load demos and instructions into predictors they were never optimised for.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from amr_dspy.errors import ArtifactError
from amr_dspy.usage import Usage as LMUsage
from amr_dspy.usage import migrate_paid_only

if TYPE_CHECKING:
    import dspy

__all__ = [
    "ARTIFACT_FORMAT",
    "FieldShape",
    "PredictorShape",
    "PredictorSummary",
    "TeacherInfo",
    "SplitInfo",
    "DevScore",
    "Usage",
    "ArtifactManifest",
    "manifest_path",
    "signature_shapes",
    "signature_fingerprint",
    "strip_demos",
    "describe_program",
    "save_program",
    "write_manifest",
    "read_manifest",
    "read_program_state",
    "check_artifact",
    "load_artifact",
]

ARTIFACT_FORMAT: Final = "amr-dspy-artifact/1"
_DEMO_META = {"augmented"}  # dspy's own flag on bootstrapped demos; JSON-safe and read back by dspy


class FieldShape(BaseModel):
    name: str
    io: Literal["input", "output"]
    type: str


class PredictorShape(BaseModel):
    """A predictor's signature fields, without its instructions (which compiling rewrites) or class name."""

    fields: list[FieldShape]


class PredictorSummary(BaseModel):
    name: str
    instructions: str
    n_demos: int


class TeacherInfo(BaseModel):
    name: str
    slug: str
    kind: str = "local"
    model: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    adapter: str | None = None
    server: str | None = None  # how a local teacher was served

    @classmethod
    def from_spec(cls, spec: Any, server: str | None = None) -> TeacherInfo:
        """From an ``amr_dspy.teacher.TeacherSpec`` (no secrets: the API key is never recorded)."""
        return cls(name=spec.name, slug=spec.slug, kind=spec.kind, model=spec.model, temperature=spec.temperature,
                   max_tokens=spec.max_tokens, adapter=spec.adapter, server=server)  # fmt: skip


class SplitInfo(BaseModel):
    spec: str
    n_tasks: int
    fingerprint: str  # sha256 over task ids, instructions, entry points, test counts and reference solutions


class DevScore(BaseModel):
    n: int
    score: float  # mean fraction of hidden tests passed (the execution metric)
    pass_rate: float  # share of tasks whose code passed every hidden test


class Usage(LMUsage):
    """A compile phase's LM usage (used and paid, ``amr_dspy.usage``) and how often the metric ran."""

    metric_calls: int = 0


class ArtifactManifest(BaseModel):
    format: Literal["amr-dspy-artifact/1"] = ARTIFACT_FORMAT
    program_file: str
    program_sha256: str
    variant: str
    program_config: dict[str, Any] | None = None  # the AMRConfig of AMR variants
    teacher: TeacherInfo
    recipe: str
    optimizer: str
    recipe_config: dict[str, Any]
    dspy_version: str
    amr_dspy_version: str
    signatures: dict[str, PredictorShape]
    signature_fingerprint: str
    data: dict[str, SplitInfo]  # train (demo pool), val (candidates scored on), dev (before/after)
    valset: str  # which split the optimizer selected candidates on
    dev_before: DevScore | None = None
    dev_after: DevScore | None = None
    usage: dict[str, Usage]  # per phase (baseline, optimize, final) and total

    @field_validator("usage", mode="before")
    @classmethod
    def _paid_before_used(cls, value: Any) -> Any:  # manifests written when only paid tokens were counted
        return {k: migrate_paid_only(v) for k, v in value.items()} if isinstance(value, dict) else value
    wall_s: float
    git_commit: str | None = None
    git_dirty: bool | None = None
    checkpoint_dir: str | None = None
    library: str | None = None  # the module library the program retrieved from (path and fingerprint)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def manifest_path(program_path: Path) -> Path:
    """``artifacts/x/amr-mipro.json`` → ``artifacts/x/amr-mipro.manifest.json``."""
    return program_path.with_name(f"{program_path.stem}.manifest.json")


# --------------------------------------------------------------------------------------------
# signatures


def _type_name(tp: Any) -> str:
    """A stable spelling of a field type; pydantic models are spelled out so a changed model changes it."""
    from pydantic import BaseModel as _Model

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is not None and args:
        name = "Union" if origin in (typing.Union, types.UnionType) else getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(tp, type) and issubclass(tp, _Model):
        inner = ", ".join(f"{k}: {_type_name(f.annotation)}" for k, f in tp.model_fields.items())
        return f"{tp.__name__}{{{inner}}}"
    return getattr(tp, "__name__", None) or str(tp)


def signature_shapes(program: dspy.Module) -> dict[str, PredictorShape]:
    """Each predictor's signature field names, roles and types."""
    shapes = {}
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        roles: tuple[tuple[Literal["input", "output"], Any], ...] = (
            ("input", signature.input_fields), ("output", signature.output_fields))
        fields = [FieldShape(name=k, io=io, type=_type_name(f.annotation)) for io, group in roles
                  for k, f in group.items()]
        shapes[name] = PredictorShape(fields=fields)
    return shapes


def signature_fingerprint(shapes: Mapping[str, PredictorShape]) -> str:
    payload = json.dumps({k: v.model_dump() for k, v in sorted(shapes.items())}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# program state


def strip_demos(program: dspy.Module) -> None:
    """Keep only signature fields in every demo: examples carry a ``task`` (hidden tests) that must not be saved."""
    import dspy

    for _, predictor in program.named_predictors():
        keep = set(predictor.signature.fields) | _DEMO_META
        stripped = []
        for demo in predictor.demos:
            items = demo.items() if isinstance(demo, dspy.Example | dict) else []
            stripped.append(dspy.Example(**{k: v for k, v in items if k in keep}))
        predictor.demos = stripped


def describe_program(program: dspy.Module) -> list[PredictorSummary]:
    return [
        PredictorSummary(name=name, instructions=p.signature.instructions, n_demos=len(p.demos))
        for name, p in program.named_predictors()
    ]


def save_program(program: dspy.Module, path: Path) -> str:
    """Save the program state as DSPy JSON (demos stripped first), atomically; return the file's sha256."""
    strip_demos(program)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.json")
    program.save(str(tmp))
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(manifest: ArtifactManifest, program_path: Path) -> Path:
    path = manifest_path(program_path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(program_path: Path) -> ArtifactManifest:
    path = manifest_path(program_path)
    if not path.is_file():
        raise ArtifactError(
            f"{program_path}: no manifest {path.name} next to it; only artifacts written by `amr-dspy compile` load"
        )
    try:
        return ArtifactManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise ArtifactError(f"{path}: not a valid artifact manifest ({key}: {error['msg']})") from None


def read_program_state(program_path: Path) -> dict[str, Any]:
    if not program_path.is_file():
        raise ArtifactError(f"{program_path}: no such artifact")
    try:
        state = json.loads(program_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{program_path}: not a DSPy program state (invalid JSON: {exc})") from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{program_path}: not a DSPy program state (expected a JSON object)")
    return state


# --------------------------------------------------------------------------------------------
# checked loading


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _shape_text(shape: PredictorShape) -> str:
    return ", ".join(f"{f.name}: {f.type}" + (" (out)" if f.io == "output" else "") for f in shape.fields)


def _signature_mismatch(saved: Mapping[str, PredictorShape], current: Mapping[str, PredictorShape]) -> str | None:
    missing, extra = sorted(set(saved) - set(current)), sorted(set(current) - set(saved))
    if missing or extra:
        return f"predictors differ (artifact has {', '.join(missing) or '-'}; program has {', '.join(extra) or '-'})"
    for name in sorted(saved):
        if saved[name] != current[name]:
            return (f"predictor {name!r} signature changed: artifact [{_shape_text(saved[name])}], "
                    f"code [{_shape_text(current[name])}]")  # fmt: skip
    return None


def check_artifact(path: Path, variant: str, program: dspy.Module) -> tuple[ArtifactManifest, dict[str, Any]]:
    """The manifest and state of ``path`` once they are known to fit ``program`` (built as ``variant``)."""
    import dspy

    path = Path(path)
    state = read_program_state(path)
    manifest = read_manifest(path)
    if manifest.variant != variant:
        raise ArtifactError(
            f"{path}: compiled for variant {manifest.variant!r}, not {variant!r}; run with --variant {manifest.variant}"
        )
    if _major_minor(manifest.dspy_version) != _major_minor(dspy.__version__):
        raise ArtifactError(
            f"{path}: compiled with dspy {manifest.dspy_version}, this environment has dspy {dspy.__version__} "
            "(major.minor must match); recompile it"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != manifest.program_sha256:
        raise ArtifactError(f"{path}: the program file does not match its manifest (sha256 differs); recompile it")
    problem = _signature_mismatch(manifest.signatures, signature_shapes(program))
    if problem is not None:
        raise ArtifactError(f"{path}: {problem}; recompile it")
    missing = [name for name, _ in program.named_predictors() if name not in state]
    if missing:
        raise ArtifactError(f"{path}: the program state lacks predictor {missing[0]!r}; recompile it")
    return manifest, state


def load_artifact(
    path: Path, variant: str, *, program: dspy.Module | None = None, **build_kwargs: Any
) -> dspy.Module:
    """Load a compiled artifact into ``program`` (default: a fresh ``build_program(variant, **build_kwargs)``).

    Raises ArtifactError, before touching the program, when the variant, signatures or dspy version differ.
    """
    if program is None:
        from amr_dspy.programs import build_program

        program = build_program(variant, **build_kwargs)
    _, state = check_artifact(Path(path), variant, program)
    state = {k: v for k, v in state.items() if k != "metadata"}
    try:
        program.load_state(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot load the program state ({type(exc).__name__}: {exc})") from None
    return program
