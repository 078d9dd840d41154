"""Serve a local GGUF model on loopback as a child process: llama.cpp's ``llama-server`` or ``llama_cpp.server``.

``llama-server`` (built once by ``amr_dspy.server_build``) decodes up to ``slots`` requests per step with
continuous batching and keeps each slot's prompt cached; a request goes to the idle slot whose cached prompt
shares the most with it, so calls of one predictor keep reusing their system message and demos.
``llama_cpp.server`` is the fallback: one request at a time.

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
from typing import Literal

from pydantic import BaseModel

from amr_dspy.errors import TeacherUnavailableError

__all__ = ["ServerKind", "ServerSettings", "ServerConfig", "LocalServer", "free_port", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


ServerKind = Literal["llama-server", "llama-cpp-python"]


class ServerSettings(BaseModel):
    """How the local model is served: recorded with every result, since batching can change greedy outputs."""

    kind: ServerKind
    slots: int = 1  # requests decoded together (llama-server's --parallel); llama_cpp.server has one
    threads: int | None = None  # None: all cores
    batch_size: int = 2048  # logical batch (llama.cpp's -b)
    ubatch_size: int = 512  # physical batch (llama.cpp's -ub)
    # llama_cpp.server's default for chat completions (requests do not set it), where every committed result was
    # made; llama-server's own default is 1.0, which alone changed most greedy answers. Same sampler on both.
    repeat_penalty: float = 1.1
    # Drafts from n-grams already in the context (prompt lookup), checked by the model in one step: AMR's
    # generation and evolution copy long runs of the code they were shown. Greedy answers stay the model's own.
    speculative: Literal["none", "ngram-simple"] = "ngram-simple"

    def describe(self) -> str:
        if self.kind == "llama-cpp-python":
            return "llama_cpp.server (one request at a time)"
        drafts = "" if self.speculative == "none" else f", {self.speculative} drafts"
        return (f"llama-server ({self.slots} slots, {self.threads or os.cpu_count()} threads, "
                f"batch {self.batch_size}/{self.ubatch_size}{drafts})")  # fmt: skip


class ServerConfig(BaseModel):
    model_path: Path
    alias: str
    settings: ServerSettings = ServerSettings(kind="llama-cpp-python")
    binary: Path | None = None  # the llama-server executable (kind "llama-server")
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    n_ctx: int = 8192  # per request: each llama-server slot gets this many tokens of KV cache
    startup_timeout_s: float = 120.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent(parent_pid: int) -> None:
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

    @property
    def name(self) -> str:
        return "llama-server" if self.config.settings.kind == "llama-server" else "llama_cpp.server"

    def _command(self) -> list[str]:
        cfg, settings = self.config, self.config.settings
        threads = str(settings.threads or os.cpu_count() or 1)
        if settings.kind == "llama-cpp-python":
            return [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(cfg.model_path),
                "--model_alias", cfg.alias,
                "--host", cfg.host,
                "--port", str(self.port),
                "--n_ctx", str(cfg.n_ctx),
                "--n_threads", threads,
            ]  # fmt: skip
        if cfg.binary is None:
            raise TeacherUnavailableError("llama-server: no binary given (run `amr-dspy teacher build-server`)")
        # n_ctx per slot. Not --kv-unified: with one cache shared by the slots, every decode step attended over
        # all slots' tokens (masked), and 8 AMR calls of ~2k tokens each decoded at ~2 tokens/s per slot.
        return [
            str(cfg.binary),
            "--model", str(cfg.model_path),
            "--alias", cfg.alias,
            "--host", cfg.host,
            "--port", str(self.port),
            "--ctx-size", str(cfg.n_ctx * settings.slots),
            "--no-kv-unified",
            "--parallel", str(settings.slots),
            "--cont-batching",
            "--threads", threads,
            "--threads-batch", threads,
            "--batch-size", str(settings.batch_size),
            "--ubatch-size", str(settings.ubatch_size),
            "--repeat-penalty", str(settings.repeat_penalty),
            "--spec-type", settings.speculative,
            "--no-webui",
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
                preexec_fn=lambda: die_with_parent(parent),
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
                    f"{self.name} exited with code {self._proc.returncode} while starting "
                    f"{self.config.model_path.name}; log tail: {self.log_tail()}"
                )
            if self._answers():
                self._warm_up(deadline)
                return
            time.sleep(0.25)
        raise TeacherUnavailableError(
            f"{self.name} did not answer {self.url}/v1/models within {self.config.startup_timeout_s:.0f}s; "
            f"log tail: {self.log_tail()}"
        )

    def _answers(self) -> bool:
        # llama-server answers /v1/models while it still loads the model; /health says 200 only when ready.
        path = "/health" if self.config.settings.kind == "llama-server" else "/v1/models"
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=2) as response:
                status: int = response.status
                return status == 200
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
                f"{self.name} at {self.url} failed its first completion ({exc}); log tail: {self.log_tail()}"
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
