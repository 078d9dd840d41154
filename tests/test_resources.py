"""Bundled resources and the defaults they give every command: the seed library, the embedded teacher's compiled
programs, which variants retrieve, ``--library`` / ``--no-library`` in eval, compare, compile and synthesize."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

import amr_dspy.run
from amr_dspy import resources
from amr_dspy.errors import ConfigError
from amr_dspy.resources import (
    EMBEDDED_TEACHER_SLUG,
    bundled_root,
    default_library,
    default_program,
    library_for,
    library_id,
    open_library,
    retrieves,
)
from tests.evalplus_helpers import use_humaneval_fixture

REPO = Path(__file__).resolve().parents[1]
RETRIEVAL = ["amr", "amr-paper", "amr-no-decomposition", "amr-select", "amr-verified"]
NO_RETRIEVAL = ["direct", "cot", "direct-plain", "direct-select", "ans-repair", "amr-no-retrieval"]
SEED_ID = "artifacts/library/minilm-mbpp-bcb-train (modules sha256 "


# --------------------------------------------------------------------------------------------
# the resolver


def test_the_default_library_is_the_bundled_seed_with_its_index() -> None:
    library = default_library()
    assert library.is_dir(), library
    assert {"index.faiss", "modules.jsonl", "manifest.json"} <= {p.name for p in library.iterdir()}
    manifest = json.loads((library / "manifest.json").read_text())
    assert manifest["count"] > 0 and manifest["embedding_model"].endswith("all-MiniLM-L6-v2")
    # one library of both seeds, each counted on its own; only train splits ever seed it
    added = {seed["source"]: seed["modules_added"] for seed in manifest["seed"]}
    assert set(added) == {"mbpp+:train", "bigcodebench:train@core"} and min(added.values()) > 0
    assert sum(added.values()) == manifest["count"]


def test_in_a_checkout_the_resources_are_the_repository_artifacts() -> None:
    assert bundled_root() == REPO / "artifacts"
    assert default_library() == REPO / "artifacts" / "library" / "minilm-mbpp-bcb-train"


@pytest.mark.parametrize("variant", ["amr", "cot", "direct"])
def test_a_bundled_program_is_compiled_for_the_embedded_teacher_and_loads(variant: str) -> None:
    from optimize.artifact import load_artifact, manifest_path

    program = default_program(variant)
    assert program is not None and program.is_file()
    manifest = json.loads(manifest_path(program).read_text())
    assert manifest["variant"] == variant and manifest["teacher"]["slug"] == EMBEDDED_TEACHER_SLUG
    load_artifact(program, variant)  # signatures and dspy version still match


def test_a_variant_without_a_bundled_program_has_no_default() -> None:
    assert default_program("amr-select") is None and default_program("no-such-variant") is None


def test_the_embedded_teacher_slug_is_the_local_teachers() -> None:
    from amr_dspy.teacher import TeacherSpec

    assert TeacherSpec.parse("local").slug == EMBEDDED_TEACHER_SLUG


def test_a_wheel_layout_resolves_to_the_package_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = tmp_path / "site" / "amr_dspy"
    (package / "bundled" / "library" / "minilm-mbpp-bcb-train").mkdir(parents=True)
    (tmp_path / "site" / "artifacts").mkdir()  # an unrelated folder next to the package is not looked at
    monkeypatch.setattr(resources, "files", lambda name: package)
    assert bundled_root() == package / "bundled"
    assert default_library() == package / "bundled" / "library" / "minilm-mbpp-bcb-train"


def test_missing_resources_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "amr_dspy").mkdir()
    monkeypatch.setattr(resources, "files", lambda name: tmp_path / "amr_dspy")
    with pytest.raises(ConfigError, match=r"no bundled resources .*reinstall amr-dspy"):
        default_library()


@pytest.mark.parametrize("variant", RETRIEVAL)
def test_retrieval_variants_take_the_default_library(variant: str) -> None:
    assert retrieves(variant)
    assert library_for([variant]) == default_library()
    assert library_for([variant], Path("mine")) == Path("mine")
    assert library_for([variant], no_library=True) is None


@pytest.mark.parametrize("variant", NO_RETRIEVAL)
def test_other_variants_never_get_a_library(variant: str) -> None:
    assert not retrieves(variant)
    assert library_for([variant]) is None and library_for([variant], Path("mine")) is None


def test_library_and_no_library_conflict_and_unknown_variants_are_named() -> None:
    assert library_for(["direct", "amr"]) == default_library()  # one retrieval variant among them is enough
    with pytest.raises(ConfigError, match="--library mine and --no-library: give one of them"):
        library_for(["amr"], Path("mine"), no_library=True)
    with pytest.raises(ConfigError, match="unknown variant 'gpt4'"):
        retrieves("gpt4")


def test_the_seed_library_has_one_id_however_it_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(REPO)
    assert library_id(default_library()).startswith(SEED_ID)
    assert library_id(Path("artifacts/library/minilm-mbpp-bcb-train")) == library_id(default_library())
    assert library_id(tmp_path) == f"{tmp_path} (modules sha256 unknown)"


def test_opening_a_missing_library_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--library .*nowhere: no such library \(build one with"):
        open_library(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------
# the commands


class _Stop(Exception):
    """Ends a command once it has built its program: no sandbox run, no teacher."""


class _Opened:
    """Stands in for ``resources.open_library`` (no index or embedding model): records what was opened."""

    def __init__(self) -> None:
        self.directories: list[Path] = []

    def __call__(self, directory: Path) -> object:
        self.directories.append(directory)
        return self


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> _Opened:
    stand_in = _Opened()
    monkeypatch.setattr(resources, "open_library", stand_in)
    return stand_in


def _invoke(*args: str) -> object:
    from amr_dspy.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "library"),
    [
        (["--variant", "amr"], "default"),
        (["--variant", "amr-verified", "--library", "mine"], "mine"),
        (["--variant", "amr", "--no-library"], None),
        (["--variant", "direct", "--library", "mine"], None),  # never opened by a variant that does not retrieve
    ],
)
def test_eval_retrieves_from_the_default_library_unless_told_otherwise(
    args: list[str], library: str | None, opened: _Opened, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import amr_dspy.programs

    use_humaneval_fixture(monkeypatch, tmp_path)
    built: list[object] = []

    def build(variant: str, **kwargs: object) -> dspy.Module:
        if "executor" not in kwargs:  # eval's early check of the variant, before anything is opened
            return dspy.Module()
        built.append(kwargs.get("library"))
        raise _Stop

    monkeypatch.setattr(amr_dspy.programs, "build_program", build)
    result = _invoke("eval", "-b", "humaneval+", "--workers", "1", "--out", str(tmp_path / "out"), *args)
    assert isinstance(result.exception, _Stop), result.output
    expected = {"default": [default_library()], "mine": [Path("mine")], None: []}[library]
    assert opened.directories == expected and built == [opened if expected else None]


def test_eval_refuses_library_and_no_library_together() -> None:
    result = _invoke("eval", "--variant", "amr", "--library", "mine", "--no-library")
    assert isinstance(result.exception, ConfigError) and "give one of them" in str(result.exception)
    result = _invoke("eval", "--samples", "x.jsonl", "--no-library")
    assert isinstance(result.exception, ConfigError) and "--no-library" in str(result.exception)


class _Fixed(dspy.Module):
    """Answers every task the same (no teacher) and remembers the library it was built with."""

    def __init__(self, library: object) -> None:
        super().__init__()
        self.library = library

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        return dspy.Prediction(response="no idea", code=None)


@pytest.mark.parametrize("no_library", [False, True])
def test_compare_gives_the_default_library_to_retrieval_variants_only_and_records_it(
    no_library: bool, opened: _Opened, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import amr_dspy.evaluation
    import amr_dspy.programs

    use_humaneval_fixture(monkeypatch, tmp_path)
    built: dict[str, object] = {}

    def build(variant: str, **kwargs: object) -> dspy.Module:
        built[variant] = kwargs.get("library")
        return _Fixed(kwargs.get("library"))

    @contextmanager
    def no_teacher(spec: object) -> Iterator[None]:
        yield None

    monkeypatch.setattr(amr_dspy.run, "teacher_session", no_teacher)
    monkeypatch.setattr(amr_dspy.programs, "build_program", build)
    monkeypatch.setattr(amr_dspy.evaluation, "raise_if_all_failed", lambda results: None)  # every answer fails
    out = tmp_path / "cmp"
    result = _invoke("compare", "--variants", "direct,amr", "-b", "humaneval+", "--workers", "1", "--out", str(out),
                     *(["--no-library"] if no_library else []))  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = {v: json.loads((out / v / "results.json").read_text())["library"] for v in ("direct", "amr")}
    if no_library:
        assert opened.directories == [] and built == {"direct": None, "amr": None}
        assert recorded == {"direct": None, "amr": None}
    else:
        assert opened.directories == [default_library()] and built == {"direct": None, "amr": opened}
        assert recorded["direct"] is None and recorded["amr"].startswith(SEED_ID)


@pytest.mark.parametrize(
    ("args", "library"),
    [([], "default"), (["--no-library"], None), (["--variant", "direct"], None)],
)
def test_compile_retrieves_from_the_default_library_unless_told_otherwise(
    args: list[str], library: str | None, opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amr_dspy.cli.compile as compile_cli
    import optimize.compile
    from tests.compile_helpers import fake_task

    seen: list[tuple[object, object]] = []

    def compile_program(variant: str, *args: object, program_options: dict[str, object], library: object,
                        **kwargs: object) -> None:  # fmt: skip
        seen.append((program_options["library"], library))
        raise _Stop

    monkeypatch.setattr(amr_dspy.run, "teacher_session", lambda spec: nullcontext())
    monkeypatch.setattr(compile_cli, "load_tasks", lambda spec, limit=None: [fake_task(k, spec) for k in (1, 2, 3)])
    monkeypatch.setattr(optimize.compile, "compile_program", compile_program)
    result = _invoke("compile", "--variant", "amr", "--recipe", "bootstrap", "--workers", "1", *args)
    assert isinstance(result.exception, _Stop), result.output
    ((handle, ident),) = seen
    if library is None:
        assert opened.directories == [] and handle is None and ident is None
    else:
        assert opened.directories == [default_library()] and handle is opened and ident.startswith(SEED_ID)


@pytest.mark.parametrize(
    ("args", "artifact", "use_library"),
    [
        ([], "amr", True),
        (["--no-library"], "amr", False),
        (["--uncompiled"], None, True),
        (["--variant", "amr-select"], None, True),  # no compiled program bundled for it
        (["--variant", "cot"], "cot", True),
    ],
)
def test_synthesize_defaults_to_the_bundled_program_and_library(
    args: list[str], artifact: str | None, use_library: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import amr_dspy.synthesis

    jobs: list[amr_dspy.synthesis.SynthesisJob] = []

    def prepare(job: amr_dspy.synthesis.SynthesisJob) -> None:
        jobs.append(job)
        raise _Stop

    monkeypatch.setattr(amr_dspy.synthesis, "prepare", prepare)
    result = _invoke("synthesize", "--input", "sample", "--out", str(tmp_path / "run"), *args)
    assert isinstance(result.exception, _Stop), result.output
    (job,) = jobs
    assert job.artifact == (default_program(artifact) if artifact else None)
    assert job.use_library is use_library and job.seed_library is None


def test_synthesize_refuses_contradicting_options(tmp_path: Path) -> None:
    result = _invoke("synthesize", "--input", "sample", "--out", str(tmp_path / "run"), "--uncompiled",
                     "--program", "x.json")  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "give one of them" in str(result.exception)


@pytest.mark.parametrize("command", ["eval", "compare", "compile", "synthesize"])
def test_every_command_that_retrieves_offers_no_library(command: str) -> None:
    from amr_dspy.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    assert result.exit_code == 0 and "--no-library" in result.output and "--library" in result.output
    assert "bundled" in result.output  # the help says what the default library is
