"""Optimizer recipes: small typed configs, one TOML file each under ``optimize/recipes/``, copy-and-edit friendly.

A recipe file names its ``optimizer`` (bootstrap, mipro, gepa, simba) and sets that optimizer's budget, demo
counts, seed and threads. ``load_recipe("mipro")`` reads ``optimize/recipes/mipro.toml``; any other ``.toml`` path
works too. Scores in recipes are fractions in [0, 1] (the execution metric's scale), never DSPy's percentages.
TOML has no null: optional settings are simply left out, and ``auto = "off"`` turns an automatic budget off.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from amr_dspy.errors import ConfigError

__all__ = [
    "RECIPES_DIR",
    "Recipe",
    "BootstrapRecipe",
    "MiproRecipe",
    "GepaRecipe",
    "SimbaRecipe",
    "OPTIMIZERS",
    "recipe_names",
    "recipe_path",
    "load_recipe",
    "parse_overrides",
]

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
Auto = Literal["light", "medium", "heavy", "off"]


class _RecipeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""  # defaults to the file's stem
    description: str = ""
    seed: int = 0
    threads: int = Field(4, ge=1, description="Examples run through the program in parallel.")
    max_errors: int | None = Field(None, ge=1, description="Abort after this many program errors (default: never).")


class _WithValset(_RecipeBase):
    # "train": candidates are scored on a held-out part of --train, so the dev score after compile stays unbiased.
    # "dev": they are scored on --dev itself (more data for demos, but the dev score after is optimistic).
    valset: Literal["train", "dev"] = "train"
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="Share of --train held out when valset = train.")
    val_size: int | None = Field(None, ge=1, description="Score candidates on at most this many examples.")


class BootstrapRecipe(_WithValset):
    """BootstrapFewShotWithRandomSearch: bootstrapped demo sets, each candidate scored on the valset."""

    optimizer: Literal["bootstrap"] = "bootstrap"
    max_bootstrapped_demos: int = Field(3, ge=1)  # dspy's random search draws 1..this many per candidate
    # Examples carry no gold response (only hidden tests), so labeled demos would hold inputs only.
    max_labeled_demos: int = Field(0, ge=0)
    num_candidate_programs: int = Field(6, ge=1)
    max_rounds: int = Field(1, ge=1)
    metric_threshold: float | None = Field(None, ge=0.0, le=1.0)
    stop_at_score: float | None = Field(None, ge=0.0, le=1.0)


class MiproRecipe(_WithValset):
    """MIPROv2: proposed instructions and bootstrapped demos, searched with Optuna."""

    optimizer: Literal["mipro"] = "mipro"
    auto: Auto = "light"
    num_candidates: int | None = Field(None, ge=1)
    num_trials: int | None = Field(None, ge=1)
    max_bootstrapped_demos: int = Field(2, ge=0)
    max_labeled_demos: int = Field(0, ge=0)
    minibatch: bool = True
    minibatch_size: int = Field(25, ge=1)
    minibatch_full_eval_steps: int = Field(5, ge=1)
    init_temperature: float = Field(1.0, ge=0.0, le=2.0)
    metric_threshold: float | None = Field(None, ge=0.0, le=1.0)
    program_aware_proposer: bool = True
    data_aware_proposer: bool = True
    tip_aware_proposer: bool = True
    fewshot_aware_proposer: bool = True
    view_data_batch_size: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _budget(self) -> MiproRecipe:
        if self.auto != "off" and (self.num_candidates is not None or self.num_trials is not None):
            raise ValueError('num_candidates/num_trials need auto = "off" (auto sets both)')
        if self.auto == "off" and (self.num_candidates is None or self.num_trials is None):
            raise ValueError('auto = "off" needs both num_candidates and num_trials')
        return self


class GepaRecipe(_WithValset):
    """GEPA: reflective instruction evolution driven by the metric's textual feedback."""

    optimizer: Literal["gepa"] = "gepa"
    auto: Auto = "light"
    max_full_evals: int | None = Field(None, ge=1)
    max_metric_calls: int | None = Field(None, ge=1)
    reflection_minibatch_size: int = Field(3, ge=1)
    candidate_selection_strategy: Literal["pareto", "current_best"] = "pareto"
    skip_perfect_score: bool = True
    add_format_failure_as_feedback: bool = False
    use_merge: bool = True
    max_merge_invocations: int = Field(5, ge=0)
    # The reflection LM is the teacher; sampling keeps repeated reflections from being identical (cached) calls.
    reflection_temperature: float | None = Field(1.0, ge=0.0, le=2.0)
    reflection_max_tokens: int | None = Field(None, ge=16)
    # How the reflection LM is asked for the new instruction; small teachers follow "chat" more reliably.
    reflection_adapter: Literal["chat", "json"] = "chat"
    max_instruction_chars: int | None = Field(None, ge=100, description="Longest instruction GEPA may propose.")

    @model_validator(mode="after")
    def _budget(self) -> GepaRecipe:
        budgets = [k for k in ("max_full_evals", "max_metric_calls") if getattr(self, k) is not None]
        if self.auto != "off" and budgets:
            raise ValueError(f'{budgets[0]} needs auto = "off" (set exactly one budget)')
        if self.auto == "off" and len(budgets) != 1:
            raise ValueError('auto = "off" needs exactly one of max_full_evals, max_metric_calls')
        return self


class SimbaRecipe(_RecipeBase):
    """SIMBA: stochastic mini-batch ascent adding demos and self-reflective rules (trains on --train only)."""

    optimizer: Literal["simba"] = "simba"
    bsize: int = Field(16, ge=1)
    num_candidates: int = Field(4, ge=1)
    max_steps: int = Field(4, ge=1)
    max_demos: int = Field(2, ge=0)
    demo_input_field_maxlen: int = Field(100_000, ge=1)
    temperature_for_sampling: float = Field(0.2, gt=0.0)
    temperature_for_candidates: float = Field(0.2, gt=0.0)


Recipe = BootstrapRecipe | MiproRecipe | GepaRecipe | SimbaRecipe
OPTIMIZERS: dict[str, type[Recipe]] = {
    "bootstrap": BootstrapRecipe,
    "mipro": MiproRecipe,
    "gepa": GepaRecipe,
    "simba": SimbaRecipe,
}


def recipe_names() -> list[str]:
    """The recipes shipped next to the code."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """``mipro`` → ``optimize/recipes/mipro.toml``; a path to a ``.toml`` file is taken as it is."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--recipe {text}: no such recipe file")
        return path
    path = RECIPES_DIR / f"{text}.toml"
    if not path.is_file():
        raise ConfigError(f"--recipe {text}: unknown recipe; known: {', '.join(recipe_names())} (or a .toml file)")
    return path


def load_recipe(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe; ``overrides`` (from ``--set``) replace keys of the file."""
    path = recipe_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
    overrides = dict(overrides or {})
    data = {**data, **overrides}
    data.setdefault("name", path.stem)

    def where(key: str | None) -> str:
        if key is not None and key in overrides:
            return f"--set {key}"
        line = _line_of(text, key) if key else None
        return f"{path}:{line}: key {key!r}" if line else (f"{path}: key {key!r}" if key else str(path))

    optimizer = data.get("optimizer")
    if optimizer not in OPTIMIZERS:
        found = "missing" if optimizer is None else f"{optimizer!r}"
        raise ConfigError(f"{where('optimizer')}: optimizer is {found}; expected one of {', '.join(OPTIMIZERS)}")
    model = OPTIMIZERS[optimizer]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, model, where)) from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["auto=medium", "threads=2"]`` → ``{"auto": "medium", "threads": 2}``; values are TOML, else strings."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set auto=medium")
        try:
            result[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            result[key] = raw  # a bare word such as medium
    return result


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=", text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _describe(exc: ValidationError, model: type[Recipe], where: Any) -> str:
    """The first validation error as one line naming the file, line and key."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or None
    if error["type"] == "extra_forbidden":
        known = ", ".join(k for k in model.model_fields if k != "name")
        return f"{where(key)}: unknown key for optimizer {model.model_fields['optimizer'].default!r}; known: {known}"
    message = error["msg"].removeprefix("Value error, ")
    if key is None:
        return f"{where(None)}: {message}"
    return f"{where(key)}: {message} (got {error.get('input')!r})"
