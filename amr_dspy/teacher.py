"""Teacher selection: one ``--teacher`` string becomes a configured ``dspy.LM``.

Accepted forms: ``local`` (the embedded Qwen2.5-Coder-0.5B-Instruct), ``local:0.5b``, ``local:1.5b`` (optional
extra), or any LiteLLM model string ``<provider>/<model>`` such as ``openai/gpt-4o-mini``,
``hosted_vllm/Qwen/Qwen2.5-Coder-7B-Instruct`` or ``ollama_chat/qwen2.5-coder`` with ``--api-base``/``--api-key``.
Local and remote teachers take the same path: an OpenAI-compatible endpoint behind ``dspy.LM``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import dspy
from pydantic import BaseModel, SecretStr

from amr_dspy.errors import TeacherSpecError, TeacherUnavailableError
from amr_dspy.model_files import EMBEDDED_MODELS, assemble_model
from amr_dspy.server import LocalServer, ServerConfig, ServerSettings
from amr_dspy.server_build import find_server_binary
from amr_dspy.slot_gate import SlotGate
from amr_dspy.text_adapter import TextAdapter

__all__ = [
    "TeacherSpec",
    "LocalLM",
    "open_teacher",
    "resolve_server",
    "served_by",
    "ACCEPTED_FORMS",
    "DEFAULT_TEACHER",
]

DEFAULT_TEACHER = "local"
ACCEPTED_FORMS = (
    "local (embedded Qwen2.5-Coder-0.5B-Instruct), local:0.5b, local:1.5b, "
    "or a LiteLLM model string <provider>/<model> such as openai/gpt-4o-mini, "
    "hosted_vllm/<model>, ollama_chat/<model> (with --api-base/--api-key)"
)
_REMOTE = re.compile(r"^(?P<provider>[a-z0-9_]+)/(?P<model>\S+)$")
ServerChoice = Literal["auto", "llama-server", "llama-cpp-python"]
# Chosen by `amr-dspy bench teacher` on 2 cores (artifacts/reports/bench-teacher/).
DEFAULT_SLOTS = 8


def _known_providers() -> set[str]:
    import litellm

    return {str(getattr(p, "value", p)) for p in litellm.provider_list}


class TeacherSpec(BaseModel):
    """A parsed teacher choice plus the generation settings every call uses."""

    kind: Literal["local", "remote"]
    model: str  # the local key ("0.5b") or the LiteLLM model string
    api_base: str | None = None
    api_key: SecretStr | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    cache: bool = True
    num_retries: int = 3
    timeout_s: float = 600.0
    # "text": plain conversations for text-to-text signatures, ChatAdapter's field markers for the rest (see
    # text_adapter). Asked for JSON, the 0.5B teacher drops the code block from its answer.
    adapter: Literal["text", "chat", "json"] = "text"  # "json" applies to remote teachers only
    # How a local teacher is served (env AMR_DSPY_SERVER, AMR_DSPY_SLOTS); "auto": llama-server when built.
    server: ServerChoice = "auto"
    slots: int = DEFAULT_SLOTS

    @classmethod
    def parse(
        cls, text: str | None = None, *, api_base: str | None = None, api_key: str | None = None, **settings: object
    ) -> TeacherSpec:
        """Parse ``text`` (else ``$AMR_DSPY_TEACHER``, else ``local``); raise TeacherSpecError listing the forms."""
        raw = (text or os.environ.get("AMR_DSPY_TEACHER") or DEFAULT_TEACHER).strip()
        if raw == "local" or raw.startswith("local:"):
            key = raw.partition(":")[2] or "0.5b"
            if key not in EMBEDDED_MODELS:
                raise TeacherSpecError(f"unknown local teacher {raw!r}; accepted: {ACCEPTED_FORMS}")
            serving = {**_server_env(), **settings}
            if serving.get("server", "auto") not in _SERVER_CHOICES:
                raise TeacherSpecError(f"--server {serving['server']!r}: expected one of {', '.join(_SERVER_CHOICES)}")
            return cls(kind="local", model=key, **serving)  # type: ignore[arg-type]
        match = _REMOTE.match(raw)
        if not match or match["provider"] not in _known_providers():
            raise TeacherSpecError(f"unrecognised teacher {raw!r}; accepted: {ACCEPTED_FORMS}")
        key_value = api_key or os.environ.get("AMR_DSPY_API_KEY")
        return cls(
            kind="remote",
            model=raw,
            api_base=api_base or os.environ.get("AMR_DSPY_API_BASE"),
            api_key=SecretStr(key_value) if key_value else None,
            **settings,  # type: ignore[arg-type]
        )

    @property
    def name(self) -> str:
        """What the teacher is called in manifests and reports."""
        return EMBEDDED_MODELS[self.model].alias if self.kind == "local" else self.model

    @property
    def slug(self) -> str:
        """A directory-safe name, e.g. for ``artifacts/<slug>/``."""
        base = f"local-{self.model}" if self.kind == "local" else self.model
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower()

    def make_adapter(self) -> dspy.Adapter:
        """The adapter every program call uses with this teacher.

        Never JSON-constrained decoding on the local server: llama.cpp turns a response schema into a grammar
        checked against the whole vocabulary per token, which dropped the 0.5B teacher to ~1 token/s here.
        """
        if self.adapter == "json" and self.kind == "remote":
            return dspy.JSONAdapter()
        chat = TextAdapter if self.adapter == "text" else dspy.ChatAdapter
        return chat(use_json_adapter_fallback=self.kind == "remote")

    def make_lm(self, api_base: str | None = None, server: ServerSettings | None = None) -> dspy.LM:
        """The ``dspy.LM`` for this teacher; ``api_base`` overrides (the local server's URL), ``server`` says how
        a local teacher is served (default: llama_cpp.server's one slot)."""
        common = {"temperature": self.temperature, "max_tokens": self.max_tokens, "cache": self.cache,
                  "num_retries": self.num_retries, "timeout": self.timeout_s}  # fmt: skip
        if self.kind == "local":
            # DSPy's OpenAI-chat preset for local servers (vLLM's wire shape, which llama.cpp's servers speak):
            # it sends max_tokens, and cache hits keep their stored usage, unlike an extra_body request.
            # As many calls in flight as the server has slots, ordered so that slots reuse their prompt prefixes.
            settings = server or ServerSettings(kind="llama-cpp-python")
            return LocalLM(f"hosted_vllm/{self.name}", server=settings, api_base=api_base or self.api_base,
                           api_key="sk-local", callbacks=[SlotGate(settings.slots)], **common)  # fmt: skip
        key = self.api_key.get_secret_value() if self.api_key else None
        base = api_base or self.api_base
        if key is None and base:
            key = "EMPTY"  # OpenAI-compatible servers (vLLM, llama.cpp, ...) often take no key, LiteLLM wants one
        # For openai/ DSPy sends OpenAI's newer ``max_completion_tokens``, which llama.cpp's server ignores: one
        # degenerate answer then ran to the context limit (7,652 tokens, 6 minutes). Compatible servers read
        # max_tokens; prefer hosted_vllm/<model> for them (this extra_body loses the usage of cache hits).
        extra = {"extra_body": {"max_tokens": self.max_tokens}} if base and self.model.startswith("openai/") else {}
        return dspy.LM(self.model, api_base=base, api_key=key, **common, **extra)


_SERVER_CHOICES = ("auto", "llama-server", "llama-cpp-python")


def _server_env() -> dict[str, object]:
    """``$AMR_DSPY_SERVER`` and ``$AMR_DSPY_SLOTS``, checked here so a bad value is one line, not a traceback."""
    out: dict[str, object] = {}
    if choice := os.environ.get("AMR_DSPY_SERVER"):
        if choice not in _SERVER_CHOICES:
            raise TeacherSpecError(f"$AMR_DSPY_SERVER={choice!r}: expected one of {', '.join(_SERVER_CHOICES)}")
        out["server"] = choice
    if slots := os.environ.get("AMR_DSPY_SLOTS"):
        if not slots.isdigit() or int(slots) < 1:
            raise TeacherSpecError(f"$AMR_DSPY_SLOTS={slots!r}: expected a positive integer")
        out["slots"] = int(slots)
    return out


class LocalLM(dspy.LM):  # type: ignore[misc]  # dspy ships no types
    """A ``dspy.LM`` on the project's local server; ``server`` records how it is served (kind, slots, threads)."""

    def __init__(self, model: str, *, server: ServerSettings, **kwargs: object) -> None:
        super().__init__(model, **kwargs)
        self.server = server


def served_by(lm: object) -> str | None:
    """How a local teacher's LM is served (``ServerSettings.describe()``); None for a remote teacher."""
    server = getattr(lm, "server", None)
    return server.describe() if isinstance(server, ServerSettings) else None


def resolve_server(spec: TeacherSpec) -> tuple[ServerSettings, Path | None]:
    """The server a local teacher gets: llama-server when built (or asked for), else llama_cpp.server."""
    if spec.server == "llama-cpp-python":
        return ServerSettings(kind="llama-cpp-python"), None
    binary = find_server_binary()
    if binary is None:
        if spec.server == "llama-server":
            raise TeacherUnavailableError("llama-server is not built: run `amr-dspy teacher build-server` first")
        print("amr-dspy: llama-server is not built (run `amr-dspy teacher build-server`); serving the teacher with "
              "llama_cpp.server, one request at a time", file=sys.stderr)  # fmt: skip
        return ServerSettings(kind="llama-cpp-python"), None
    return ServerSettings(kind="llama-server", slots=spec.slots), binary


@contextmanager
def open_teacher(spec: TeacherSpec, *, n_ctx: int = 8192) -> Iterator[dspy.LM]:
    """Yield a ready ``dspy.LM``; for a local teacher, assemble the model and serve it for the block's duration."""
    if spec.kind == "remote":
        yield spec.make_lm()
        return
    model = EMBEDDED_MODELS[spec.model]
    path = assemble_model(model)
    settings, binary = resolve_server(spec)
    config = ServerConfig(model_path=path, alias=model.alias, n_ctx=n_ctx, settings=settings, binary=binary)
    with LocalServer(config) as server:
        lm = spec.make_lm(api_base=server.api_base, server=settings)
        try:
            yield lm
        finally:  # calls still queued (after Ctrl-C, say) must not wait their turn for a server about to stop
            for callback in lm.callbacks:
                if isinstance(callback, SlotGate):
                    callback.close()
