"""Artifacts: signature fingerprints, demo stripping, checked loading and its refusals, ``program show``."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

import amr_dspy.cli.compile  # noqa: F401  (registers `compile` and `program show` on the app)
from amr_dspy.cli import app
from amr_dspy.errors import ArtifactError
from amr_dspy.programs import build_program
from optimize.artifact import (
    ArtifactManifest,
    TeacherInfo,
    Usage,
    load_artifact,
    manifest_path,
    read_manifest,
    save_program,
    signature_fingerprint,
    signature_shapes,
    strip_demos,
    write_manifest,
)
from tests.compile_helpers import fake_task
from tests.evalplus_helpers import use_humaneval_fixture

DEMO = {"instruction": "Write f_2(x).", "response": "```python\ndef f_2(x):\n    return x + 2\n```"}


def compiled_direct() -> dspy.Module:
    program = build_program("direct")
    program.respond.signature = program.respond.signature.with_instructions("Answer with one code block.")
    program.respond.demos = [dspy.Example(**DEMO, augmented=True)]
    return program


def make_artifact(path: Path, variant: str = "direct", program: dspy.Module | None = None) -> Path:
    program = program if program is not None else compiled_direct()
    sha = save_program(program, path)
    shapes = signature_shapes(program)
    manifest = ArtifactManifest(
        program_file=path.name, program_sha256=sha, variant=variant, teacher=TeacherInfo(name="t", slug="t"),
        recipe="bootstrap", optimizer="bootstrap", recipe_config={}, dspy_version=dspy.__version__,
        amr_dspy_version="0.1.0", signatures=shapes, signature_fingerprint=signature_fingerprint(shapes), data={},
        valset="dev", usage={"total": Usage(lm_calls=3)}, wall_s=1.0,
    )  # fmt: skip
    write_manifest(manifest, path)
    return path


def edit_manifest(path: Path, **changes: object) -> None:
    data = json.loads(manifest_path(path).read_text())
    data.update(changes)
    manifest_path(path).write_text(json.dumps(data))


def test_manifest_sits_next_to_the_program() -> None:
    assert manifest_path(Path("artifacts/local-0.5b/amr-mipro.json")) == Path(
        "artifacts/local-0.5b/amr-mipro.manifest.json"
    )


def test_fingerprint_follows_field_shapes_not_instructions() -> None:
    program = build_program("amr")
    shapes = signature_shapes(program)
    assert set(shapes) == {"respond", "decompose", "generate", "evolve", "write_tests"}
    decompose = {f.name: (f.io, f.type) for f in shapes["decompose"].fields}
    assert decompose["modules"][0] == "output" and decompose["modules"][1].startswith("list[ModuleSpec{name: str")
    before = signature_fingerprint(shapes)
    program.respond.signature = program.respond.signature.with_instructions("Something else entirely.")
    assert signature_fingerprint(signature_shapes(program)) == before
    program.respond.signature = program.respond.signature.append("notes", dspy.OutputField(), type_=str)
    assert signature_fingerprint(signature_shapes(program)) != before
    cot = signature_shapes(build_program("cot"))
    assert [f.name for f in cot["respond.predict"].fields] == ["instruction", "reasoning", "response"]


def test_saved_demos_keep_only_signature_fields(tmp_path: Path) -> None:
    task = fake_task(2)
    program = build_program("direct")
    labeled = dspy.Example(instruction=task.instruction, entry_point=task.entry_point, task=task).with_inputs(
        "instruction", "entry_point"
    )
    program.respond.demos = [labeled, dspy.Example(**DEMO, augmented=True)]
    save_program(program, tmp_path / "p.json")
    text = (tmp_path / "p.json").read_text()
    assert '"task"' not in text and "entry_point" not in text and "base_0" not in text
    demos = json.loads(text)["respond"]["demos"]
    assert demos == [{"instruction": task.instruction}, {**DEMO, "augmented": True}]
    strip_demos(program)  # idempotent on an already stripped program
    assert [set(d.keys()) for d in program.respond.demos] == [{"instruction"}, {"instruction", "response", "augmented"}]


def test_load_restores_instructions_and_demos(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "direct-bootstrap.json")
    loaded = load_artifact(path, "direct")
    assert loaded.respond.signature.instructions == "Answer with one code block."
    assert loaded.respond.demos == [{**DEMO, "augmented": True}]  # dspy loads demos as plain dicts
    existing = build_program("direct")
    assert load_artifact(path, "direct", program=existing) is existing
    assert existing.respond.demos and read_manifest(path).usage["total"].lm_calls == 3


def test_refuses_another_variant(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "a.json")
    program = build_program("cot")
    with pytest.raises(ArtifactError, match=r"compiled for variant 'direct', not 'cot'; run with --variant direct"):
        load_artifact(path, "cot", program=program)
    assert program.respond.predict.demos == []  # refused before anything was loaded


def test_refuses_changed_signatures(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "a.json")
    manifest = read_manifest(path)
    manifest.signatures["respond"].fields[1].type = "list[str]"  # as if compiled when `response` was a list
    write_manifest(manifest, path)
    with pytest.raises(ArtifactError, match=r"predictor 'respond' signature changed: artifact \[instruction: str, "
                                            r"response: list\[str\] \(out\)\], code \[.*response: str \(out\)\]"):
        load_artifact(path, "direct")
    edit_manifest(path, signatures={"answer": manifest.signatures["respond"].model_dump()})
    with pytest.raises(ArtifactError, match=r"predictors differ \(artifact has answer; program has respond\)"):
        load_artifact(path, "direct")


def test_refuses_another_dspy_minor_version_but_not_a_patch(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "a.json")
    major, minor, *_ = dspy.__version__.split(".")
    edit_manifest(path, dspy_version=f"{major}.{int(minor) + 1}.0")
    with pytest.raises(ArtifactError, match=rf"compiled with dspy {major}\.{int(minor) + 1}\.0, this environment has "
                                            rf"dspy {dspy.__version__} \(major\.minor must match\)"):
        load_artifact(path, "direct")
    edit_manifest(path, dspy_version=f"{major}.{minor}.999")
    assert load_artifact(path, "direct").respond.demos


def test_refuses_without_a_valid_manifest_or_with_a_changed_program(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "a.json")
    state = json.loads(path.read_text())
    state["respond"]["demos"] = []
    path.write_text(json.dumps(state))
    with pytest.raises(ArtifactError, match=r"the program file does not match its manifest"):
        load_artifact(path, "direct")
    manifest_path(path).write_text('{"variant": "direct"}')
    with pytest.raises(ArtifactError, match=r"a\.manifest\.json: not a valid artifact manifest \(program_file: Field"):
        load_artifact(path, "direct")
    manifest_path(path).unlink()
    with pytest.raises(ArtifactError, match=r"no manifest a\.manifest\.json next to it"):
        load_artifact(path, "direct")
    with pytest.raises(ArtifactError, match=r"missing\.json: no such artifact"):
        load_artifact(tmp_path / "missing.json", "direct")


def test_program_show_prints_manifest_instructions_and_demos(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "direct-bootstrap.json")
    result = CliRunner().invoke(app, ["program", "show", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("variant", "direct", "bootstrap", "respond: 1 demos", "Answer with one code block.",
                 "Write f_2(x).", "return x + 2"):  # fmt: skip
        assert text in result.output
    hidden = CliRunner().invoke(app, ["program", "show", str(path), "--max-demos", "0"], terminal_width=200)
    assert "1 not shown" in hidden.output and "Write f_2(x)." not in hidden.output


def test_eval_refuses_a_mismatched_artifact_before_starting_the_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_humaneval_fixture(monkeypatch, tmp_path)
    path = make_artifact(tmp_path / "a.json")
    args = ["eval", "--variant", "cot", "--program", str(path), "-b", "humaneval+", "--out", str(tmp_path / "ev")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, ArtifactError)
    assert "compiled for variant 'direct', not 'cot'" in str(result.exception)
