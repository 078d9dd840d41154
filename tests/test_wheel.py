"""The wheel: built from this tree and installed outside it, it holds the bundled resources (not the reports) and
runs ``synthesize`` with its own compiled program and seed library, never the checkout's files.

Slow-ish (a build, an install and one synthesize run against the fake teacher, about a minute), no model needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_openai_server import FakeOpenAI
from tests.test_synthesis import benchmark_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# What the build reads. It runs on a copy: a build in the checkout writes build/ and *.egg-info into it.
SOURCES = ("pyproject.toml", "README.md", "amr_dspy", "optimize", "signatures", "artifacts")
PACKAGES = ("amr_dspy", "optimize", "signatures")
BUNDLED = [
    *(f"local-0.5b/{v}-bootstrap-2core{kind}.json" for v in ("amr", "cot", "direct") for kind in ("", ".manifest")),
    *(f"local-0.5b/direct-select-bootstrap-val40{kind}.json" for kind in ("", ".manifest")),
    *(f"library/minilm-mbpp-bcb-train/{name}" for name in ("index.faiss", "manifest.json", "modules.jsonl")),
]
STEP_TIMEOUT_S = 300


def _run(args: list[str], *, what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
                              **kwargs)  # type: ignore[call-overload]  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{what} took over {STEP_TIMEOUT_S} s: {args}") from exc
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        else:
            shutil.copy2(origin, source / name)
    # no build isolation: it would fetch setuptools from an index, and the tests run offline
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(work / "dist"), str(source)], what="pip wheel")  # fmt: skip
    (built,) = (work / "dist").glob("amr_dspy-*.whl")
    return built


@pytest.fixture(scope="module")
def target(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    installed = tmp_path_factory.mktemp("installed") / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(installed),
          str(wheel)], what="pip install --target")  # fmt: skip
    return installed


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _environment(target: Path, home: Path) -> dict[str, str]:
    """The install target first on the path, so the checkout's source cannot be what is imported."""
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "AMR_DSPY_HOME": str(home), "COLUMNS": "200"}


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def test_the_wheel_ships_the_bundled_resources_but_not_the_reports(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f"amr_dspy/bundled/{name}" for name in BUNDLED if f"amr_dspy/bundled/{name}" not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    bundled = {n for n in names if n.startswith("amr_dspy/bundled/")}
    assert bundled == {f"amr_dspy/bundled/{name}" for name in BUNDLED}, sorted(bundled)  # no reports/, no eval/
    assert {"amr_dspy/data/sample_instructions.jsonl", "optimize/recipes/bootstrap-2core.toml"} <= names


def test_every_source_package_is_in_the_wheel(wheel: Path) -> None:
    """pyproject lists the packages by hand (amr_dspy.bundled has no source folder): a new one must be listed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = [p.parent.relative_to(REPO).as_posix() for top in PACKAGES for p in (REPO / top).rglob("__init__.py")
                if "__pycache__" not in p.parts]  # fmt: skip
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_the_installed_wheel_synthesizes_with_its_own_program_and_library(
    target: Path, fake: FakeOpenAI, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # the working directory: outside the checkout, no artifacts/ in it
    elsewhere.mkdir()
    env = _environment(target, tmp_path / "home")
    probe = _run([sys.executable, "-c", "import json, amr_dspy, optimize, amr_dspy.resources as r; print(json.dumps("
                  "[amr_dspy.__file__, optimize.__file__, str(r.default_library()), str(r.default_program('amr'))]))"],
                 what="the import probe", cwd=elsewhere, env=env)  # fmt: skip
    resolved = json.loads(probe.stdout.strip().splitlines()[-1])
    assert all(_inside(p, target) for p in resolved), f"not from the install target {target}: {resolved}"

    out = tmp_path / "run"
    _run([sys.executable, "-m", "amr_dspy", "synthesize", "--input", "sample", "--limit", "1",
          "--teacher", "openai/fake", "--api-base", fake.api_base, "--api-key", "test", "--out", str(out),
          "--no-cache", "--decontam-against", str(benchmark_file(tmp_path / "bench.jsonl")),
          "--embedding-model", "hashing-256", "--workers", "1", "--concurrency", "1", "--lm-retries", "1",
          "--request-timeout", "60"], what="synthesize from the installed wheel", cwd=elsewhere, env=env)  # fmt: skip

    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 1, f"expected one record, got {len(lines)}"
    record, summary = json.loads(lines[0]), json.loads((out / "summary.json").read_text())
    program = target / "amr_dspy" / "bundled" / "local-0.5b" / "amr-bootstrap-2core.json"
    assert record["artifact"] == summary["artifact"] == str(program), "not the wheel's compiled program"
    checkout_program = REPO / "artifacts" / "local-0.5b" / "amr-bootstrap-2core.json"
    assert summary["artifact_sha256"] == hashlib.sha256(checkout_program.read_bytes()).hexdigest()
    seed = json.loads((out / "run.json").read_text())["seed_library"]
    assert _inside(seed, target) and seed.endswith("minilm-mbpp-bcb-train"), f"seed library {seed} is not the wheel's"
    seeded = json.loads((target / "amr_dspy" / "bundled" / "library" / "minilm-mbpp-bcb-train" / "manifest.json")
                        .read_text())["count"]  # fmt: skip
    assert summary["records"] == 1 and summary["library_start"] == seeded > 0
    assert "retrieval skipped: no module library" not in record["notes"]
    assert (out / "library" / "manifest.json").is_file() and (out / "sft.jsonl").exists()
