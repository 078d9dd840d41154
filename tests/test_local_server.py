"""The real embedded teacher: it starts, answers through dspy.LM, stops, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import dspy
import pytest

from amr_dspy.errors import TeacherUnavailableError
from amr_dspy.model_files import EMBEDDED_MODELS, assemble_model
from amr_dspy.server import LocalServer, ServerConfig
from amr_dspy.teacher import TeacherSpec, open_teacher
from tests.conftest import llama_server_pids

pytestmark = pytest.mark.teacher


def _wait_gone(pids: set[int], timeout_s: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while pids & llama_server_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids & llama_server_pids()


def test_answers_a_chat_completion_through_dspy_and_stops() -> None:
    before = llama_server_pids()
    spec = TeacherSpec.parse("local", cache=False, max_tokens=64)
    with open_teacher(spec) as lm:
        started = llama_server_pids() - before
        assert len(started) == 1
        answer = lm("Write a Python function add(a, b) returning a + b.")
        assert "def add" in answer[0]
        assert lm.history[-1]["usage"]["completion_tokens"] > 0
    assert _wait_gone(started) == set()


def test_a_dspy_program_runs_on_the_local_teacher(local_teacher: dspy.LM) -> None:
    from amr_dspy.programs import build_program

    with dspy.context(lm=local_teacher, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        prediction = build_program("direct")(instruction="Write a Python function `square(x)` returning x * x.")
    assert prediction.code is not None and "def square" in prediction.code


def test_server_stops_when_the_body_raises() -> None:
    before = llama_server_pids()
    spec = TeacherSpec.parse("local", cache=False)
    with pytest.raises(RuntimeError, match="boom"), open_teacher(spec):
        started = llama_server_pids() - before
        assert len(started) == 1
        raise RuntimeError("boom")
    assert _wait_gone(started) == set()


def test_server_dies_with_a_sigkilled_parent() -> None:
    """A parent killed with SIGKILL runs no cleanup: PR_SET_PDEATHSIG must take the server down."""
    script = textwrap.dedent(
        """
        import sys, time
        from amr_dspy.teacher import TeacherSpec, open_teacher
        with open_teacher(TeacherSpec.parse("local")) as lm:
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


def test_a_broken_model_file_fails_fast_with_the_log_tail(tmp_path) -> None:
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 1024)
    before = llama_server_pids()
    with pytest.raises(TeacherUnavailableError, match="exited with code .* log tail"):
        LocalServer(ServerConfig(model_path=bogus, alias="broken", startup_timeout_s=60)).start()
    assert _wait_gone(llama_server_pids() - before) == set()


def test_the_embedded_model_assembles_to_the_published_hash() -> None:
    path = assemble_model(EMBEDDED_MODELS["0.5b"])
    assert path.stat().st_size == 491_400_064
