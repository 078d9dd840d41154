"""Serve a local GGUF model with ``llama_cpp.server`` as a child process on loopback.

The child is tied to us three ways: the context manager stops it on exit, Ctrl-C and exceptions; an
``atexit`` hook stops it on a normal interpreter exit; and ``PR_SET_PDEATHSIG`` makes the kernel kill it
when we die abruptly (SIGKILL), so no server is ever orphaned.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel

from amr_dspy.errors import TeacherUnavailableError

__all__ = ["ServerConfig", "LocalServer", "free_port"]

_PR_SET_PDEATHSIG = 1


class ServerConfig(BaseModel):
    model_path: Path
    alias: str
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    n_ctx: int = 8192
    n_threads: int | None = None  # None: all cores
    startup_timeout_s: float = 120.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGKILL when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class LocalServer:
    """``with LocalServer(config) as server: server.api_base`` — a running OpenAI-compatible endpoint."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _command(self) -> list[str]:
        cfg = self.config
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(cfg.model_path),
            "--model_alias", cfg.alias,
            "--host", cfg.host,
            "--port", str(self.port),
            "--n_ctx", str(cfg.n_ctx),
            "--n_threads", str(cfg.n_threads or os.cpu_count() or 1),
        ]  # fmt: skip

    def start(self) -> LocalServer:
        fd, log_name = tempfile.mkstemp(prefix="amr-dspy-llama-", suffix=".log")
        self._log_path = Path(log_name)
        parent = os.getpid()
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: _die_with_parent(parent),
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise TeacherUnavailableError(
                    f"llama_cpp.server exited with code {self._proc.returncode} while starting "
                    f"{self.config.model_path.name}; log tail: {self.log_tail()}"
                )
            if self._answers():
                self._warm_up(deadline)
                return
            time.sleep(0.25)
        raise TeacherUnavailableError(
            f"llama_cpp.server did not answer {self.url}/v1/models within {self.config.startup_timeout_s:.0f}s; "
            f"log tail: {self.log_tail()}"
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/models", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _warm_up(self, deadline: float) -> None:
        """One 1-token completion: the first request pays a large one-off cost that should not land on a caller."""
        body = json.dumps({"model": self.config.alias, "max_tokens": 1,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
        request = urllib.request.Request(f"{self.url}/v1/chat/completions", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=max(1.0, deadline - time.monotonic())) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TeacherUnavailableError(
                f"llama_cpp.server at {self.url} failed its first completion ({exc}); log tail: {self.log_tail()}"
            ) from None

    def log_tail(self, lines: int = 8) -> str:
        if not self._log_path or not self._log_path.exists():
            return "(no log)"
        with self._log_path.open("rb") as log:
            tail = deque(log, maxlen=lines)
        return " | ".join(line.decode("utf-8", "replace").strip() for line in tail) or "(empty log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
