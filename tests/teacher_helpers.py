"""Running a command without a teacher: the run layer's one teacher seam (``amr_dspy.run.teacher_session``)
replaced, for programs that answer from a table and never call an LM."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import amr_dspy.run


def without_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run in this test start no teacher; DSPy's LM stays whatever the test configured (none)."""

    @contextmanager
    def no_teacher(spec: object) -> Iterator[None]:
        yield None

    monkeypatch.setattr(amr_dspy.run, "teacher_session", no_teacher)
