"""Shared fixtures: a clean DSPy configuration per test, and the real local teacher for `teacher` tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import amr_dspy  # noqa: F401  (sets the offline defaults before dspy and litellm are imported)

# isort: split
import dspy
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Tests never read or write the user's LM cache: every call they make is a real one.
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)


@pytest.fixture(autouse=True)
def clean_dspy() -> Iterator[None]:
    """Each test starts with no configured LM or adapter and an empty, disabled cache, as DSPy's own tests do."""
    dspy.configure(lm=None, adapter=None)
    with dspy.context():
        yield
    dspy.configure(lm=None, adapter=None)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)


@pytest.fixture(scope="session")
def local_teacher() -> Iterator[dspy.LM]:
    """The real embedded teacher, served once for the whole session (uncached, greedy)."""
    from amr_dspy.teacher import TeacherSpec, open_teacher

    spec = TeacherSpec.parse("local", cache=False, max_tokens=512)
    with open_teacher(spec) as lm:
        yield lm


def llama_server_pids() -> set[int]:
    """PIDs of every running local model server (``llama_cpp.server`` or ``llama-server``) on this machine."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        program = cmdline.split(b" ", 1)[0].rsplit(b"/", 1)[-1]
        if b"llama_cpp.server" in cmdline or program.startswith(b"llama-server"):
            pids.add(int(proc.name))
    return pids
