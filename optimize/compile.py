"""The one compile entry point: score a variant on dev, optimise it with a recipe, save the artifact, score again.

Phases: ``baseline`` (dev score before), ``optimize`` (the recipe's optimizer on train + valset) and ``final``
(the saved artifact, reloaded into a fresh program, scored on dev). Everything lands in ``<out>.checkpoint/``
as it happens, so a killed compile leaves something and a rerun of the same command resumes:

* every phase: the dev score before and the optimised program (``best.json``) are reused, never recomputed;
  ``metric_log.jsonl`` has every metric call (phase, task, score);
* bootstrap: each candidate program and its valset score (``bootstrap/``); a rerun skips finished candidates;
* gepa: GEPA's own state (``gepa/``), from which GEPA resumes natively;
* mipro: every evaluated candidate program (``mipro/``) for inspection; a rerun restarts its search;
* simba: no intermediate state beyond the metric log; a rerun restarts it.

A checkpoint made for another variant, recipe, data, teacher or library is refused (``fresh=True`` discards it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.leakage import check_spec, check_tasks
from amr_dspy.tasks import Task
from amr_dspy.usage import migrate_paid_only
from optimize.artifact import (
    ArtifactManifest,
    DevScore,
    PredictorShape,
    PredictorSummary,
    SplitInfo,
    TeacherInfo,
    Usage,
    describe_program,
    manifest_path,
    read_program_state,
    save_program,
    signature_fingerprint,
    signature_shapes,
    write_manifest,
)
from optimize.recipes import BootstrapRecipe, GepaRecipe, MiproRecipe, Recipe, SimbaRecipe

if TYPE_CHECKING:
    import dspy

    from amr_dspy.metric import ExecutionMetric

__all__ = [
    "Phase",
    "CompileEvent",
    "PhaseRecord",
    "CompileResult",
    "check_compilable",
    "check_split_specs",
    "check_splits",
    "checkpoint_dir",
    "compile_program",
]

Phase = Literal["baseline", "optimize", "final"]
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


class CompileEvent(BaseModel):
    """What the compile is doing, for a progress display."""

    kind: Literal["phase", "progress", "candidate", "info", "done"]
    phase: Phase
    message: str = ""
    total: int | None = None  # examples in an evaluation phase
    score: float | None = None


class PhaseRecord(BaseModel):
    wall_s: float
    usage: Usage
    score: DevScore | None = None

    @field_validator("usage", mode="before")
    @classmethod
    def _paid_before_used(cls, value: Any) -> Any:  # checkpoints written when only paid tokens were counted
        return migrate_paid_only(value)


class _CheckpointState(BaseModel):
    key: str
    baseline: PhaseRecord | None = None
    optimize: PhaseRecord | None = None


class CompileResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    program_path: Path
    manifest_path: Path
    manifest: ArtifactManifest
    before: list[PredictorSummary]
    after: list[PredictorSummary]
    program: Any  # the optimised dspy.Module as the optimizer returned it (demos stripped), before saving
    resumed: list[str]  # phases taken from the checkpoint


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}.checkpoint")


# --------------------------------------------------------------------------------------------
# guards


def check_compilable(variant: str) -> None:
    """Refuse a variant with nothing for an optimizer to tune (``direct-plain`` sends a fixed prompt)."""
    from amr_dspy.programs import build_program

    if not build_program(variant).named_predictors():
        raise ConfigError(f"{variant} has no predictors to compile")


def check_split_specs(train: str, dev: str) -> None:
    """Refuse held-out data before anything is loaded (``amr_dspy.leakage``: demos from train only, the dev score
    from train or dev, never HumanEval+ or a test split), and a dev spec that repeats the train spec."""
    train, dev = train.strip(), dev.strip()
    # held-out data in either option is named before a dev split given as --train (demos take train only)
    check_spec(train, "tuning", option="--train")
    check_spec(dev, "tuning", option="--dev")
    check_spec(train, "demos", option="--train")
    if train == dev:
        raise ConfigError(f"--train and --dev are both {train}; the dev score needs tasks kept out of training")


def check_splits(trainset: Sequence[Task], devset: Sequence[Task]) -> None:
    """The same policy on the loaded tasks, plus: hidden tests present, no task in both splits."""
    if not trainset:
        raise ConfigError("--train gave no tasks")
    # task by task, held-out data and missing tests as they come; dev tasks in --train after both sets (as for specs)
    for role, tasks in (("--train", trainset), ("--dev", devset)):
        for task in tasks:
            check_tasks([task], "tuning", option=role)
            if not task.tests:
                raise DataError(
                    f"{role}: task {task.task_id} ({task.source}) has no hidden tests; compile scores programs by "
                    "running them (use mbpp+:train / mbpp+:dev)"
                )
    check_tasks(trainset, "demos", option="--train")
    overlap = sorted({t.task_id for t in trainset} & {t.task_id for t in devset})
    if overlap:
        raise ConfigError(f"--train and --dev share {len(overlap)} task(s), e.g. {overlap[0]}")


class _SealedTask(Task):
    """A task that prints and serialises as its id only: optimizers print examples into prompts (MIPRO's
    dataset summary) and save labeled demos in their logs, and hidden tests belong in neither."""

    def __repr__(self) -> str:
        return f"Task({self.task_id!r})"

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {"task_id": self.task_id}


def _sealed_examples(tasks: Sequence[Task]) -> list[dspy.Example]:
    from amr_dspy.metric import task_to_example

    return [task_to_example(_SealedTask.model_construct(**dict(t))) for t in tasks]


def _split_info(spec: str, tasks: Sequence[Task]) -> SplitInfo:
    rows = [
        [t.task_id, t.instruction, t.entry_point, len(t.tests), t.canonical_solution]
        for t in sorted(tasks, key=lambda t: t.task_id)
    ]
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]
    return SplitInfo(spec=spec, n_tasks=len(tasks), fingerprint=digest)


def _select_valset(
    recipe: Recipe, trainset: Sequence[Task], devset: Sequence[Task]
) -> tuple[list[Task], list[Task], str]:
    """The demo pool, the tasks candidates are scored on, and where the latter come from."""
    if isinstance(recipe, SimbaRecipe):
        return list(trainset), [], "none (simba scores on --train minibatches)"
    if recipe.valset == "dev":
        pool, val, where = list(trainset), list(devset), "dev"
        if not val:
            raise ConfigError(f"recipe {recipe.name}: valset = dev needs a non-empty --dev")
    else:
        shuffled = list(trainset)
        random.Random(recipe.seed).shuffle(shuffled)
        n_val = max(1, round(recipe.val_fraction * len(shuffled)))
        if n_val >= len(shuffled):
            raise ConfigError(
                f"recipe {recipe.name}: --train has {len(shuffled)} task(s), too few to hold out a valset "
                "(use more tasks or valset = \"dev\")"
            )
        val, pool = shuffled[:n_val], shuffled[n_val:]
        where = f"train (held-out {n_val} of {len(shuffled)}, seed {recipe.seed})"
    if recipe.val_size is not None and len(val) > recipe.val_size:
        val = random.Random(recipe.seed).sample(val, recipe.val_size)
    return pool, val, where


# --------------------------------------------------------------------------------------------
# accounting


class _UsageMeter:
    """LM usage, used and paid (``amr_dspy.usage``; one meter shared by all threads), and the metric's calls."""

    def __init__(self) -> None:
        from amr_dspy.usage import UsageMeter

        self.lock = threading.Lock()
        self.metric_calls = 0
        self.lm = UsageMeter()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        import dspy

        with dspy.context(callbacks=[*dspy.settings.callbacks, self.lm]):
            yield

    def snapshot(self) -> Usage:
        with self.lock:
            return Usage(**self.lm.usage().model_dump(), metric_calls=self.metric_calls)


class _MetricProbe:
    """The execution metric, counted and logged; ``score`` for most optimizers, ``feedback`` for GEPA and SIMBA."""

    def __init__(self, metric: ExecutionMetric, meter: _UsageMeter, log: TextIO) -> None:
        self.metric, self.meter, self.log = metric, meter, log
        self.phase: Phase = "baseline"
        self.on_score: Callable[[float], None] | None = None

    def score(self, example: dspy.Example, prediction: Any, trace: Any = None) -> float | bool:
        value = self.metric(example, prediction, trace)
        self._record(example, float(value), traced=trace is not None)
        return value

    def feedback(
        self, gold: dspy.Example, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
    ) -> dspy.Prediction:
        result = self.metric.feedback(gold, pred, trace, pred_name, pred_trace)
        self._record(gold, float(result.score), traced=trace is not None)
        return result

    def _record(self, example: Any, score: float, *, traced: bool) -> None:
        row = {"phase": self.phase, "task_id": example.task.task_id, "score": round(score, 4), "traced": traced}
        with self.meter.lock:
            self.meter.metric_calls += 1
            self.log.write(json.dumps(row) + "\n")
        if self.on_score is not None:
            self.on_score(score)


# --------------------------------------------------------------------------------------------
# checkpoint


class _Checkpoint:
    def __init__(self, directory: Path, key: str, *, fresh: bool) -> None:
        self.dir = directory
        self._file = directory / "state.json"
        if fresh and directory.exists():
            shutil.rmtree(directory)
        if self._file.is_file():
            try:
                self.state = _CheckpointState.model_validate_json(self._file.read_text(encoding="utf-8"))
            except ValidationError:
                raise ConfigError(f"{self._file}: unreadable checkpoint; rerun with --fresh to discard it") from None
            if self.state.key != key:
                raise ConfigError(
                    f"{directory}: checkpoint of a different compile (variant, recipe, data, teacher or library "
                    "changed); rerun with --fresh to discard it"
                )
        elif directory.exists() and any(directory.iterdir()):
            raise ConfigError(f"{directory}: not an amr-dspy checkpoint (no state.json); rerun with --fresh")
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self.state = _CheckpointState(key=key)
            self._save()

    def record(self, phase: Literal["baseline", "optimize"], record: PhaseRecord) -> None:
        setattr(self.state, phase, record)
        self._save()

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(self.state.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self._file)


def _load_into(program: dspy.Module, path: Path) -> dspy.Module:
    program.load_state({k: v for k, v in read_program_state(path).items() if k != "metadata"})
    return program


def _drop_optimizer_logs(program: dspy.Module) -> dspy.Module:
    """Optimizers hang their candidate lists and logs on the program; the artifact must not carry them."""
    for attr in ("candidate_programs", "mb_candidate_programs", "trial_logs", "detailed_results", "simba_idx"):
        program.__dict__.pop(attr, None)
    return program


# --------------------------------------------------------------------------------------------
# optimizers


class _Run(BaseModel):
    """What an optimizer runner gets."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    student: Any
    train: list[Any]  # dspy.Example
    val: list[Any]
    probe: Any
    checkpoint: Any
    emit: Any


def _max_errors(recipe: Recipe) -> int:
    # A program error scores 0 for that example; by default it never aborts a long compile.
    return recipe.max_errors if recipe.max_errors is not None else 1_000_000


def _run_bootstrap(recipe: BootstrapRecipe, run: _Run) -> dspy.Module:
    """dspy's random search, one candidate seed at a time, so every scored candidate is checkpointed."""
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch

    train = list(run.train)
    random.Random(recipe.seed).shuffle(train)
    optimizer = BootstrapFewShotWithRandomSearch(
        metric=run.probe.score,
        max_bootstrapped_demos=recipe.max_bootstrapped_demos,
        max_labeled_demos=recipe.max_labeled_demos,
        max_rounds=recipe.max_rounds,
        num_candidate_programs=recipe.num_candidate_programs,
        num_threads=recipe.threads,
        max_errors=_max_errors(recipe),
        metric_threshold=recipe.metric_threshold,
    )
    folder = run.checkpoint.dir / "bootstrap"
    folder.mkdir(exist_ok=True)
    log = folder / "candidates.jsonl"
    done = {row["seed"]: row["score"] for row in map(json.loads, _lines(log))}
    best, best_score = None, -1.0
    for seed in range(-3, recipe.num_candidate_programs):
        if seed == -2 and recipe.max_labeled_demos == 0:
            continue  # "labels only" with no labels is the zero-shot candidate again
        file = folder / f"candidate_{seed}.json"
        if seed in done and file.is_file():
            program, score, how = _load_into(run.student.deepcopy(), file), done[seed], "from checkpoint"
        else:
            program = optimizer.compile(run.student, trainset=train, valset=run.val, restrict=[seed])
            score, how = program.candidate_programs[0]["score"] / 100, "scored"
            save_program(_drop_optimizer_logs(program), file)
            with log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"seed": seed, "score": score, "file": file.name}) + "\n")
        n_demos = sum(len(p.demos) for _, p in program.named_predictors())
        run.emit(CompileEvent(kind="candidate", phase="optimize", score=score,
                              message=f"candidate seed {seed} {how}: valset {score:.3f}, {n_demos} demos"))  # fmt: skip
        if score > best_score:
            best, best_score = program, score
        if recipe.stop_at_score is not None and score >= recipe.stop_at_score:
            break
    return best


def _run_mipro(recipe: MiproRecipe, run: _Run) -> dspy.Module:
    from dspy.teleprompt import MIPROv2

    auto = None if recipe.auto == "off" else recipe.auto
    if auto is None and recipe.minibatch and recipe.minibatch_size > len(run.val):
        raise ConfigError(
            f"recipe {recipe.name}: minibatch_size {recipe.minibatch_size} exceeds the valset ({len(run.val)} "
            "examples); lower it or set minibatch = false"
        )
    optimizer = MIPROv2(
        metric=run.probe.score,
        auto=auto,
        num_candidates=recipe.num_candidates,
        max_bootstrapped_demos=recipe.max_bootstrapped_demos,
        max_labeled_demos=recipe.max_labeled_demos,
        num_threads=recipe.threads,
        max_errors=_max_errors(recipe),
        seed=recipe.seed,
        init_temperature=recipe.init_temperature,
        track_stats=True,
        log_dir=str(run.checkpoint.dir / "mipro"),
        metric_threshold=recipe.metric_threshold,
    )
    return optimizer.compile(
        run.student,
        trainset=run.train,
        valset=run.val,
        num_trials=recipe.num_trials,
        minibatch=recipe.minibatch,
        minibatch_size=recipe.minibatch_size,
        minibatch_full_eval_steps=recipe.minibatch_full_eval_steps,
        program_aware_proposer=recipe.program_aware_proposer,
        data_aware_proposer=recipe.data_aware_proposer,
        view_data_batch_size=recipe.view_data_batch_size,
        tip_aware_proposer=recipe.tip_aware_proposer,
        fewshot_aware_proposer=recipe.fewshot_aware_proposer,
    )


def _run_gepa(recipe: GepaRecipe, run: _Run) -> dspy.Module:
    import dspy
    from dspy.teleprompt import GEPA
    from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

    lm = dspy.settings.lm
    if lm is None:
        raise ConfigError("gepa needs a configured teacher LM (it is also the reflection LM)")
    updates = {"temperature": recipe.reflection_temperature, "max_tokens": recipe.reflection_max_tokens}
    updates = {k: v for k, v in updates.items() if v is not None}
    optimizer = GEPA(
        metric=run.probe.feedback,
        auto=None if recipe.auto == "off" else recipe.auto,
        max_full_evals=recipe.max_full_evals,
        max_metric_calls=recipe.max_metric_calls,
        reflection_minibatch_size=recipe.reflection_minibatch_size,
        candidate_selection_strategy=recipe.candidate_selection_strategy,
        reflection_lm=lm.copy(**updates) if updates else lm,
        instruction_proposer=InstructionProposer(
            max_chars=recipe.max_instruction_chars,
            adapter=(dspy.JSONAdapter() if recipe.reflection_adapter == "json"
                     else dspy.ChatAdapter(use_json_adapter_fallback=False)),
        ),
        skip_perfect_score=recipe.skip_perfect_score,
        add_format_failure_as_feedback=recipe.add_format_failure_as_feedback,
        use_merge=recipe.use_merge,
        max_merge_invocations=recipe.max_merge_invocations,
        num_threads=recipe.threads,
        failure_score=0.0,
        perfect_score=1.0,
        log_dir=str(run.checkpoint.dir / "gepa"),
        seed=recipe.seed,
    )
    return optimizer.compile(run.student, trainset=run.train, valset=run.val)


def _run_simba(recipe: SimbaRecipe, run: _Run) -> dspy.Module:
    from dspy.teleprompt import SIMBA

    if recipe.bsize > len(run.train):
        raise ConfigError(f"recipe {recipe.name}: bsize {recipe.bsize} exceeds --train ({len(run.train)} tasks)")
    optimizer = SIMBA(
        metric=run.probe.feedback,
        bsize=recipe.bsize,
        num_candidates=recipe.num_candidates,
        max_steps=recipe.max_steps,
        max_demos=recipe.max_demos,
        num_threads=recipe.threads,
        demo_input_field_maxlen=recipe.demo_input_field_maxlen,
        temperature_for_sampling=recipe.temperature_for_sampling,
        temperature_for_candidates=recipe.temperature_for_candidates,
    )
    return optimizer.compile(run.student, trainset=run.train, seed=recipe.seed)


_RUNNERS: dict[str, Callable[[Any, _Run], dspy.Module]] = {
    "bootstrap": _run_bootstrap,
    "mipro": _run_mipro,
    "gepa": _run_gepa,
    "simba": _run_simba,
}


# --------------------------------------------------------------------------------------------
# the compile


def _evaluate(
    program: dspy.Module, examples: list[Any], probe: _MetricProbe, threads: int, emit: Callable[[CompileEvent], None],
    phase: Phase,
) -> DevScore | None:  # fmt: skip
    from amr_dspy.evaluation import run_parallel

    if not examples:
        return None
    probe.phase = phase
    probe.on_score = lambda score: emit(CompileEvent(kind="progress", phase=phase, score=score))
    try:
        scored = run_parallel(lambda example: probe.score(example, program(**example.inputs())), examples,
                              threads=threads, provide_traceback=False)  # fmt: skip
    finally:
        probe.on_score = None
    scores = [float(score or 0.0) for score in scored]
    n = len(scores)
    return DevScore(n=n, score=sum(scores) / n, pass_rate=sum(s >= 1.0 for s in scores) / n)


def _git_state() -> tuple[str | None, bool | None]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=_PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return commit, (bool(status) if status is not None else None)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


class _Plan(BaseModel):
    """What a compile works on, and the key that ties a checkpoint to it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pool: list[Task]
    val: list[Task]
    valset_from: str
    data: dict[str, SplitInfo]
    config: dict[str, Any] | None
    shapes: dict[str, PredictorShape]
    key: str


def _plan(variant: str, recipe: Recipe, student: dspy.Module, trainset: Sequence[Task], devset: Sequence[Task],
          train_spec: str, dev_spec: str, teacher: TeacherInfo, library: str | None) -> _Plan:  # fmt: skip
    pool, val, valset_from = _select_valset(recipe, trainset, devset)
    data = {"train": _split_info(train_spec, pool)}
    if val:
        data["val"] = _split_info(dev_spec if valset_from == "dev" else f"{train_spec} (held out)", val)
    data["dev"] = _split_info(dev_spec, devset)
    config = student.config.model_dump() if isinstance(getattr(student, "config", None), BaseModel) else None
    shapes = signature_shapes(student)
    key_parts = {"variant": variant, "config": config, "recipe": recipe.model_dump(), "library": library,
                 "data": {k: v.fingerprint for k, v in data.items()}, "signatures": signature_fingerprint(shapes),
                 "teacher": teacher.model_dump()}  # fmt: skip
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return _Plan(pool=pool, val=val, valset_from=valset_from, data=data, config=config, shapes=shapes, key=key)


class _Session:
    """One compile run: its checkpoint, accounting and progress events."""

    def __init__(self, checkpoint: _Checkpoint, probe: _MetricProbe, meter: _UsageMeter, threads: int,
                 emit: Callable[[CompileEvent], None]) -> None:  # fmt: skip
        self.checkpoint, self.probe, self.meter, self.threads, self.emit = checkpoint, probe, meter, threads, emit
        self.resumed: list[str] = []

    def timed(self, work: Callable[[], Any]) -> tuple[Any, PhaseRecord]:
        started, used = time.perf_counter(), self.meter.snapshot()
        value = work()
        return value, PhaseRecord(wall_s=time.perf_counter() - started, usage=self.meter.snapshot() - used)

    def score(self, program: dspy.Module, examples: list[Any], phase: Phase, message: str) -> PhaseRecord:
        self.emit(CompileEvent(kind="phase", phase=phase, total=len(examples), message=message))
        score, record = self.timed(lambda: _evaluate(program, examples, self.probe, self.threads, self.emit, phase))
        record = record.model_copy(update={"score": score})
        label = "dev before" if phase == "baseline" else "dev after"
        self.emit(CompileEvent(kind="done", phase=phase, score=_score(record), message=_score_text(label, record)))
        return record

    def baseline(self, student: dspy.Module, examples: list[Any], variant: str) -> None:
        state = self.checkpoint.state
        if state.baseline is not None:
            self.resumed.append("baseline")
            message = _score_text("dev before (from the checkpoint)", state.baseline)
            self.emit(CompileEvent(kind="info", phase="baseline", message=message))
            return
        self.checkpoint.record("baseline", self.score(student, examples, "baseline",
                                                      f"scoring {variant} on dev before compiling"))  # fmt: skip

    def optimize(self, recipe: Recipe, student: dspy.Module, plan: _Plan) -> dspy.Module:
        best_file = self.checkpoint.dir / "best.json"
        if self.checkpoint.state.optimize is not None and best_file.is_file():
            self.resumed.append("optimize")
            self.emit(CompileEvent(kind="info", phase="optimize", message=f"optimised program from {best_file}"))
            return _load_into(student.deepcopy(), best_file)
        self.emit(CompileEvent(kind="phase", phase="optimize", message=f"optimising with {recipe.optimizer}"))
        self.probe.phase = "optimize"
        run = _Run(student=student, train=_sealed_examples(plan.pool), val=_sealed_examples(plan.val),
                   probe=self.probe, checkpoint=self.checkpoint, emit=self.emit)  # fmt: skip
        best, record = self.timed(lambda: _drop_optimizer_logs(_RUNNERS[recipe.optimizer](recipe, run)))
        save_program(best, best_file)
        self.checkpoint.record("optimize", record)
        self.emit(CompileEvent(kind="done", phase="optimize", message=f"optimised program saved to {best_file}"))
        return best


def compile_program(
    variant: str,
    recipe: Recipe,
    trainset: Sequence[Task],
    devset: Sequence[Task],
    out: Path,
    *,
    metric: ExecutionMetric,
    teacher: TeacherInfo,
    train_spec: str = "train",
    dev_spec: str = "dev",
    program_options: Mapping[str, Any] | None = None,
    library: str | None = None,
    fresh: bool = False,
    on_event: Callable[[CompileEvent], None] | None = None,
) -> CompileResult:
    """Compile ``variant`` with ``recipe`` under the configured LM; write ``out`` and its manifest.

    ``program_options`` go to ``build_program`` (library, executor, guard, samples); ``library`` names the module
    library for the manifest. Raises ConfigError for held-out data, bad budgets or a foreign checkpoint.
    """
    from amr_dspy.metric import task_to_example
    from amr_dspy.programs import build_program

    check_compilable(variant)
    check_splits(trainset, devset)
    emit = on_event or (lambda event: None)
    options = dict(program_options or {})
    student = build_program(variant, **options)
    plan = _plan(variant, recipe, student, trainset, devset, train_spec, dev_spec, teacher, library)
    checkpoint = _Checkpoint(checkpoint_dir(out), plan.key, fresh=fresh)
    dev_examples = [task_to_example(t) for t in devset]
    emit(CompileEvent(kind="info", phase="baseline", message=(
        f"{variant} with {recipe.name} ({recipe.optimizer}): {len(plan.pool)} train, {len(plan.val)} val "
        f"({plan.valset_from}), {len(devset)} dev tasks; checkpoint {checkpoint.dir}")))  # fmt: skip

    meter = _UsageMeter()
    with meter.active(), (checkpoint.dir / "metric_log.jsonl").open("a", encoding="utf-8", buffering=1) as log:
        session = _Session(checkpoint, _MetricProbe(metric, meter, log), meter, recipe.threads, emit)
        session.baseline(student, dev_examples, variant)
        best = session.optimize(recipe, student, plan)
        manifest_path(out).unlink(missing_ok=True)  # an earlier compile's manifest must never vouch for this one
        sha = save_program(best, out)
        final = _load_into(build_program(variant, **options), out)  # what users will load is what gets scored
        final_record = session.score(final, dev_examples, "final", "scoring the saved artifact on dev")

    manifest = _manifest(variant, recipe, plan, teacher, checkpoint, final_record, sha, out, library)
    written = write_manifest(manifest, out)
    return CompileResult(program_path=out, manifest_path=written, manifest=manifest, before=describe_program(student),
                         after=describe_program(final), program=best, resumed=session.resumed)  # fmt: skip


def _manifest(variant: str, recipe: Recipe, plan: _Plan, teacher: TeacherInfo, checkpoint: _Checkpoint,
              final: PhaseRecord, sha: str, out: Path, library: str | None) -> ArtifactManifest:  # fmt: skip
    import dspy

    import amr_dspy

    records = {"baseline": checkpoint.state.baseline, "optimize": checkpoint.state.optimize, "final": final}
    usage = {name: r.usage for name, r in records.items() if r is not None}
    usage["total"] = sum(usage.values(), Usage())
    commit, dirty = _git_state()
    return ArtifactManifest(
        program_file=out.name,
        program_sha256=sha,
        variant=variant,
        program_config=plan.config,
        teacher=teacher,
        recipe=recipe.name,
        optimizer=recipe.optimizer,
        recipe_config=recipe.model_dump(),
        dspy_version=dspy.__version__,
        amr_dspy_version=amr_dspy.__version__,
        signatures=plan.shapes,
        signature_fingerprint=signature_fingerprint(plan.shapes),
        data=plan.data,
        valset=plan.valset_from,
        dev_before=checkpoint.state.baseline.score if checkpoint.state.baseline else None,
        dev_after=final.score,
        usage=usage,
        wall_s=sum(r.wall_s for r in records.values() if r is not None),
        git_commit=commit,
        git_dirty=dirty,
        checkpoint_dir=str(checkpoint.dir),
        library=library,
    )


def _score(record: PhaseRecord | None) -> float | None:
    return record.score.score if record is not None and record.score is not None else None


def _score_text(label: str, record: PhaseRecord | None) -> str:
    if record is None or record.score is None:
        return f"{label}: no dev tasks"
    s = record.score
    return f"{label}: score {s.score:.3f}, all tests passed {s.pass_rate:.1%} of {s.n} tasks"
