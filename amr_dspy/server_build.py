"""Build llama.cpp's ``llama-server`` once, from the source the pinned ``llama-cpp-python`` sdist vendors.

``llama_cpp.server`` answers one request at a time; llama.cpp's own server decodes several requests per step
(``--parallel`` slots, continuous batching), which on a memory-bound CPU multiplies aggregate tokens/s. No
binary is fetched from anywhere: the sdist comes from the package registry by its exact pinned version, only
its ``vendor/llama.cpp`` tree is unpacked, and the static binary is renamed into the user cache atomically,
keyed by that version, so every later run reuses it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from amr_dspy.errors import TeacherUnavailableError
from amr_dspy.model_files import amr_home

__all__ = ["LLAMA_SERVER_ENV", "llama_cpp_version", "server_binary_path", "find_server_binary", "build_server"]

LLAMA_SERVER_ENV = "AMR_DSPY_LLAMA_SERVER"  # a llama-server binary to use instead of the built one
_DIST = "llama-cpp-python"
# Offline and self-contained: no HTTPS, no web UI (its prebuilt assets would be downloaded), one static binary.
_CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


def llama_cpp_version() -> str:
    """The installed ``llama-cpp-python`` version, whose vendored llama.cpp the server is built from."""
    return importlib.metadata.version(_DIST)


def server_binary_path(home: Path | None = None) -> Path:
    """Keyed by the llama-cpp-python version and the build flags, so a change of either builds anew."""
    flags = hashlib.sha256("\0".join([*_CMAKE_FLAGS, *_native_flags()]).encode()).hexdigest()[:8]
    return (home or amr_home()) / "bin" / f"llama-server-{llama_cpp_version()}-{flags}"


def find_server_binary(home: Path | None = None) -> Path | None:
    """``$AMR_DSPY_LLAMA_SERVER`` if set, else the built binary if present; None when neither exists."""
    override = os.environ.get(LLAMA_SERVER_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TeacherUnavailableError(f"${LLAMA_SERVER_ENV}={override}: not an executable file")
        return path
    path = server_binary_path(home)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def build_server(
    *, home: Path | None = None, jobs: int | None = None, force: bool = False, say: Callable[[str], None] = print
) -> Path:
    """Build ``llama-server`` into the user cache (a no-op when it is there already) and return its path."""
    target = server_binary_path(home)
    if target.is_file() and not force:
        say(f"llama-server already built: {target}")
        return target
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise TeacherUnavailableError(f"cannot build llama-server: {tool} is not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amr-dspy-llama-build-", dir=target.parent) as scratch:
        work = Path(scratch)
        source = _unpack_vendored_source(_download_sdist(work, say), work / "src")
        built = _compile(source, work / "build", jobs or os.cpu_count() or 1, say)
        staged = target.with_name(target.name + ".tmp")
        shutil.copy2(built, staged)
        os.replace(staged, target)
    say(f"built {target}")
    return target


def _download_sdist(work: Path, say: Callable[[str], None]) -> Path:
    version = llama_cpp_version()
    say(f"downloading the {_DIST}=={version} sdist (its vendored llama.cpp source)")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"{_DIST}=={version}", "-d", str(work)]  # fmt: skip
    _run(command, "pip download")
    found = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise TeacherUnavailableError(f"cannot build llama-server: pip download left no {_DIST} sdist in {work}")
    return found[0]


def _unpack_vendored_source(sdist: Path, dest: Path) -> Path:
    """Only ``vendor/llama.cpp`` of the sdist, with tarfile's data filter (no links out, no absolute paths)."""
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        archive.extractall(dest, members=members, filter="data")
    roots = list(dest.glob("*/vendor/llama.cpp"))
    if not roots or not (roots[0] / "tools" / "server").is_dir():
        raise TeacherUnavailableError(f"cannot build llama-server: {sdist.name} vendors no llama.cpp server source")
    return roots[0]


def _native_flags() -> list[str]:
    """Native code but no AMX on x86: on this project's Xeon VMs cpuinfo lists AMX, yet llama.cpp's AMX kernels
    crash (SIGSEGV in ggml_backend_amx_mul_mat on the first decode); ``--no-repack`` avoided it at half the speed."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    no_amx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    return [f"-DCMAKE_C_FLAGS={no_amx}", f"-DCMAKE_CXX_FLAGS={no_amx}"]


def _compile(source: Path, build: Path, jobs: int, say: Callable[[str], None]) -> Path:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    say(f"configuring llama.cpp ({source.name}) with cmake")
    _run(["cmake", "-S", str(source), "-B", str(build), *generator, *_CMAKE_FLAGS, *_native_flags()],
         "cmake configure")  # fmt: skip
    say(f"compiling llama-server with {jobs} job(s); this takes several minutes on 2 cores")
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)], "cmake build")
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise TeacherUnavailableError(f"cannot build llama-server: the build left no {binary}")
    return binary


def _run(command: list[str], step: str) -> None:
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise TeacherUnavailableError(f"cannot build llama-server: {step} exited with {result.returncode}: {tail}")
