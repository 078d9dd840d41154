"""Teacher selection: one ``--teacher`` string becomes a configured ``dspy.LM``.

Accepted forms: ``local`` (the embedded Qwen2.5-Coder-0.5B-Instruct), ``local:0.5b``, ``local:1.5b`` (optional
extra), or any LiteLLM model string ``<provider>/<model>`` such as ``openai/gpt-4o-mini``,
``hosted_vllm/Qwen/Qwen2.5-Coder-7B-Instruct`` or ``ollama_chat/qwen2.5-coder`` with ``--api-base``/``--api-key``.
Local and remote teachers take the same path: an OpenAI-compatible endpoint behind ``dspy.LM``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dspy
from pydantic import BaseModel, SecretStr

from amr_dspy.errors import TeacherSpecError
from amr_dspy.model_files import EMBEDDED_MODELS, assemble_model
from amr_dspy.prefix_gate import PrefixGate
from amr_dspy.server import LocalServer, ServerConfig

__all__ = ["TeacherSpec", "open_teacher", "ACCEPTED_FORMS", "DEFAULT_TEACHER"]

DEFAULT_TEACHER = "local"
ACCEPTED_FORMS = (
    "local (embedded Qwen2.5-Coder-0.5B-Instruct), local:0.5b, local:1.5b, "
    "or a LiteLLM model string <provider>/<model> such as openai/gpt-4o-mini, "
    "hosted_vllm/<model>, ollama_chat/<model> (with --api-base/--api-key)"
)
_REMOTE = re.compile(r"^(?P<provider>[a-z0-9_]+)/(?P<model>\S+)$")


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
    # ChatAdapter by default: asked for JSON, the 0.5B teacher drops the code block from its answer.
    adapter: Literal["chat", "json"] = "chat"  # "json" applies to remote teachers only

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
            return cls(kind="local", model=key, **settings)  # type: ignore[arg-type]
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
        return dspy.ChatAdapter(use_json_adapter_fallback=self.kind == "remote")

    def make_lm(self, api_base: str | None = None) -> dspy.LM:
        """The ``dspy.LM`` for this teacher; ``api_base`` overrides (the local server's URL)."""
        if self.kind == "local":
            # DSPy's OpenAI-chat preset for local servers (vLLM's wire shape, which llama.cpp's server speaks):
            # it sends max_tokens, and cache hits keep their stored usage, unlike an extra_body request.
            model, key = f"hosted_vllm/{self.name}", "sk-local"
        else:
            model, key = self.model, self.api_key.get_secret_value() if self.api_key else None
            if key is None and (api_base or self.api_base):
                key = "EMPTY"  # OpenAI-compatible servers (vLLM, llama.cpp, ...) often take no key, LiteLLM wants one
        base = api_base or self.api_base
        # For openai/ DSPy sends OpenAI's newer ``max_completion_tokens``, which llama.cpp's server ignores: one
        # degenerate answer then ran to the context limit (7,652 tokens, 6 minutes). Compatible servers read
        # max_tokens; prefer hosted_vllm/<model> for them (this extra_body loses the usage of cache hits).
        extra = {"extra_body": {"max_tokens": self.max_tokens}} if base and model.startswith("openai/") else {}
        # The local server answers one request at a time; the gate orders them so prompt prefixes get reused.
        callbacks = [PrefixGate()] if self.kind == "local" else None
        return dspy.LM(
            model,
            api_base=base,
            api_key=key,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            cache=self.cache,
            num_retries=self.num_retries,
            timeout=self.timeout_s,
            callbacks=callbacks,
            **extra,
        )


@contextmanager
def open_teacher(spec: TeacherSpec, *, n_ctx: int = 8192) -> Iterator[dspy.LM]:
    """Yield a ready ``dspy.LM``; for a local teacher, assemble the model and serve it for the block's duration."""
    if spec.kind == "remote":
        yield spec.make_lm()
        return
    model = EMBEDDED_MODELS[spec.model]
    path = assemble_model(model)
    with LocalServer(ServerConfig(model_path=path, alias=model.alias, n_ctx=n_ctx)) as server:
        lm = spec.make_lm(api_base=server.api_base)
        try:
            yield lm
        finally:  # calls still queued (after Ctrl-C, say) must not wait their turn for a server about to stop
            for callback in lm.callbacks:
                if isinstance(callback, PrefixGate):
                    callback.close()
