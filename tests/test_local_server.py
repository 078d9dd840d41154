"""The real embedded teacher on both servers: it starts, answers through dspy.LM (concurrently on llama-server),
stops, and never outlives its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import dspy
import pytest

from amr_dspy.errors import TeacherUnavailableError
from amr_dspy.model_files import EMBEDDED_MODELS, assemble_model
from amr_dspy.server import LocalServer, ServerConfig, ServerSettings
from amr_dspy.server_build import find_server_binary
from amr_dspy.teacher import TeacherSpec, open_teacher
from tests.conftest import llama_server_pids

pytestmark = pytest.mark.teacher
SERVERS = ["llama-server", "llama-cpp-python"]


@pytest.fixture(scope="module", autouse=True)
def _llama_server_is_built() -> None:
    """`make test` builds llama-server first; a suite without it would silently test only the fallback."""
    if find_server_binary() is None:
        pytest.fail("llama-server is not built: run `amr-dspy teacher build-server` (make setup does)")


def _wait_gone(pids: set[int], timeout_s: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while pids & llama_server_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids & llama_server_pids()


@pytest.mark.parametrize("server", SERVERS)
def test_answers_a_chat_completion_through_dspy_and_stops(server: str) -> None:
    before = llama_server_pids()
    spec = TeacherSpec.parse("local", cache=False, max_tokens=64, server=server)
    with open_teacher(spec) as lm:
        started = llama_server_pids() - before
        assert len(started) == 1
        assert lm.server.kind == server
        answer = lm("Write a Python function add(a, b) returning a + b.")
        assert "def add" in answer[0]
        assert lm.history[-1]["usage"]["completion_tokens"] > 0
    assert _wait_gone(started) == set()


def test_a_dspy_program_runs_on_the_local_teacher(local_teacher: dspy.LM) -> None:
    from amr_dspy.programs import build_program

    with dspy.context(lm=local_teacher, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        prediction = build_program("direct")(instruction="Write a Python function `square(x)` returning x * x.")
    assert prediction.code is not None and "def square" in prediction.code


def _busy_slots(url: str) -> int:
    with urllib.request.urlopen(f"{url}/slots", timeout=5) as response:
        return sum(bool(slot.get("is_processing")) for slot in json.loads(response.read()))


def test_llama_server_decodes_concurrent_requests_together() -> None:
    """Four requests from four threads: all answered, and the server works on more than one at once."""
    spec = TeacherSpec.parse("local", cache=False, max_tokens=96, server="llama-server", slots=4)
    with open_teacher(spec) as lm:
        url = lm.kwargs["api_base"].removesuffix("/v1")
        answers: dict[int, str] = {}
        threads = [threading.Thread(target=lambda i=i: answers.update(
            {i: lm(f"Write a Python function f{i}(x) that returns x + {i}.")[0]})) for i in range(4)]  # fmt: skip
        for thread in threads:
            thread.start()
        most = 0
        while any(t.is_alive() for t in threads):
            most = max(most, _busy_slots(url))
            time.sleep(0.05)
        for thread in threads:
            thread.join()
    assert sorted(answers) == [0, 1, 2, 3] and all(f"def f{i}" in answers[i] for i in range(4))
    assert most >= 2
    assert lm.callbacks[0].most_in_flight >= 2


@pytest.mark.parametrize("server", SERVERS)
def test_server_stops_when_the_body_raises(server: str) -> None:
    before = llama_server_pids()
    spec = TeacherSpec.parse("local", cache=False, server=server)
    with pytest.raises(RuntimeError, match="boom"), open_teacher(spec):
        started = llama_server_pids() - before
        assert len(started) == 1
        raise RuntimeError("boom")
    assert _wait_gone(started) == set()


@pytest.mark.parametrize("server", SERVERS)
def test_server_dies_with_a_sigkilled_parent(server: str) -> None:
    """A parent killed with SIGKILL runs no cleanup: PR_SET_PDEATHSIG must take the server down."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from amr_dspy.teacher import TeacherSpec, open_teacher
        with open_teacher(TeacherSpec.parse("local", server="{server}")) as lm:
            print("READY", flush=True)
            time.sleep(600)
        """
    )
    before = llama_server_pids()
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "READY"
        started = llama_server_pids() - before
        assert len(started) == 1
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(started) == set()
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.parametrize("server", SERVERS)
def test_a_broken_model_file_fails_fast_with_the_log_tail(tmp_path, server: str) -> None:
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 1024)
    before = llama_server_pids()
    config = ServerConfig(model_path=bogus, alias="broken", startup_timeout_s=60, settings=ServerSettings(kind=server),
                          binary=find_server_binary())  # fmt: skip
    with pytest.raises(TeacherUnavailableError, match=r"exited with code .* log tail"):
        LocalServer(config).start()
    assert _wait_gone(llama_server_pids() - before) == set()


def test_the_embedded_model_assembles_to_the_published_hash() -> None:
    path = assemble_model(EMBEDDED_MODELS["0.5b"])
    assert path.stat().st_size == 491_400_064
