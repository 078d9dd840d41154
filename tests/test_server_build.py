"""Finding, building and choosing the local server, without starting one (the teacher tests start both)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from amr_dspy.errors import TeacherUnavailableError
from amr_dspy.server import LocalServer, ServerConfig, ServerSettings
from amr_dspy.server_build import (
    LLAMA_SERVER_ENV,
    _unpack_vendored_source,
    build_server,
    find_server_binary,
    server_binary_path,
)
from amr_dspy.teacher import TeacherSpec, resolve_server, served_by


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMR_DSPY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(LLAMA_SERVER_ENV, raising=False)
    return tmp_path / "home"


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_binary_is_found_in_the_cache_by_llama_cpp_python_version(home: Path) -> None:
    assert find_server_binary() is None
    binary = _executable(server_binary_path())
    assert binary.parent == home / "bin" and binary.name.startswith("llama-server-0.")
    assert find_server_binary() == binary


def test_an_override_that_is_not_executable_is_a_one_line_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "llama-server"
    plain.write_text("")
    monkeypatch.setenv(LLAMA_SERVER_ENV, str(plain))
    with pytest.raises(TeacherUnavailableError, match=r"AMR_DSPY_LLAMA_SERVER=.*not an executable"):
        find_server_binary()
    monkeypatch.setenv(LLAMA_SERVER_ENV, str(_executable(tmp_path / "mine")))
    assert find_server_binary() == tmp_path / "mine"


def test_without_a_binary_auto_falls_back_to_llama_cpp_server_and_says_so(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, binary = resolve_server(TeacherSpec.parse("local"))
    assert (settings.kind, settings.slots, binary) == ("llama-cpp-python", 1, None)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "llama-server is not built" in err[0] and "llama_cpp.server" in err[0]


def test_asking_for_llama_server_without_a_binary_fails(home: Path) -> None:
    with pytest.raises(TeacherUnavailableError, match="build-server"):
        resolve_server(TeacherSpec.parse("local", server="llama-server"))


def test_with_a_binary_auto_serves_with_llama_server_and_its_slots(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _executable(server_binary_path())
    monkeypatch.setenv("AMR_DSPY_SLOTS", "3")
    settings, found = resolve_server(TeacherSpec.parse("local"))
    assert (settings.kind, settings.slots, found) == ("llama-server", 3, binary)
    assert capsys.readouterr().err == ""
    settings, found = resolve_server(TeacherSpec.parse("local", server="llama-cpp-python"))
    assert (settings.kind, found) == ("llama-cpp-python", None)


def test_each_llama_server_slot_gets_its_own_kv_cache_of_n_ctx(tmp_path: Path) -> None:
    settings = ServerSettings(kind="llama-server", slots=4, threads=2, ubatch_size=256)
    config = ServerConfig(model_path=tmp_path / "m.gguf", alias="m", n_ctx=8192, settings=settings,
                          binary=tmp_path / "llama-server")  # fmt: skip
    command = LocalServer(config)._command()
    flag = {command[i]: command[i + 1] for i in range(1, len(command) - 1) if command[i].startswith("--")}
    assert command[0] == str(tmp_path / "llama-server")
    assert (flag["--parallel"], flag["--ctx-size"], flag["--threads"], flag["--ubatch-size"]) == (
        "4", "32768", "2", "256")  # fmt: skip
    assert "--no-kv-unified" in command and "--cont-batching" in command
    assert (flag["--repeat-penalty"], flag["--spec-type"]) == ("1.1", "ngram-simple")
    fallback = LocalServer(ServerConfig(model_path=tmp_path / "m.gguf", alias="m"))._command()
    assert fallback[1:3] == ["-m", "llama_cpp.server"]


def test_the_server_is_recorded_in_words(tmp_path: Path) -> None:
    lm = TeacherSpec.parse("local").make_lm(api_base="http://127.0.0.1:9/v1",
                                            server=ServerSettings(kind="llama-server", slots=8, threads=2))
    assert served_by(lm) == "llama-server (8 slots, 2 threads, batch 2048/512, ngram-simple drafts)"
    assert served_by(TeacherSpec.parse("openai/gpt-4o-mini").make_lm()) is None


def test_a_built_binary_is_not_rebuilt(home: Path) -> None:
    binary = _executable(server_binary_path())
    lines: list[str] = []
    assert build_server(say=lines.append) == binary
    assert lines == [f"llama-server already built: {binary}"]


def _sdist(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            data = b"x"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_only_the_vendored_llama_cpp_tree_is_unpacked(tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "llama_cpp_python-9.9.9.tar.gz", [
        "llama_cpp_python-9.9.9/pyproject.toml",
        "llama_cpp_python-9.9.9/vendor/llama.cpp/CMakeLists.txt",
        "llama_cpp_python-9.9.9/vendor/llama.cpp/tools/server/server.cpp",
    ])  # fmt: skip
    root = _unpack_vendored_source(sdist, tmp_path / "src")
    assert root == tmp_path / "src" / "llama_cpp_python-9.9.9" / "vendor" / "llama.cpp"
    assert (root / "tools" / "server" / "server.cpp").is_file()
    assert not (tmp_path / "src" / "llama_cpp_python-9.9.9" / "pyproject.toml").exists()


def test_an_sdist_without_the_server_source_is_refused(tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "llama_cpp_python-9.9.9.tar.gz", ["llama_cpp_python-9.9.9/vendor/llama.cpp/README.md"])
    with pytest.raises(TeacherUnavailableError, match=r"vendors no llama.cpp server source"):
        _unpack_vendored_source(sdist, tmp_path / "src")


@pytest.mark.parametrize(("var", "value"), [("AMR_DSPY_SERVER", "vllm"), ("AMR_DSPY_SLOTS", "zero")])
def test_a_bad_server_setting_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    from amr_dspy.errors import TeacherSpecError

    monkeypatch.setenv(var, value)
    with pytest.raises(TeacherSpecError, match=f"\\${var}='{value}'"):
        TeacherSpec.parse("local")
