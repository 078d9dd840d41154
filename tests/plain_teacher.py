"""A teacher that answers raw prompts (no field markers) and keeps the messages of every call, for ``direct-plain``."""

from __future__ import annotations

from typing import Any

from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils import DummyLM

PROMPT_TOKENS, COMPLETION_TOKENS = 7, 3


class _Engine(DummyEngine):
    def _complete_messages(self, messages: list[dict[str, Any]]) -> Response:
        self.owner.sent.append(messages)
        return Response(
            id=None,
            model="plain",
            message=Message.assistant([TextPart(self.owner.reply(messages[-1]["content"]))]),
            finish_reason="stop",
            usage=Usage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS,
                        total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS),  # fmt: skip
        )


class PlainTeacher(DummyLM):
    """Answers with ``answers`` (one text, or the text of the first key found in the prompt, else "I do not know.")."""

    def __init__(self, answers: str | dict[str, str]) -> None:
        super().__init__([])
        self.replies = answers
        self.sent: list[list[dict[str, Any]]] = []
        self._engine_spec = _Engine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def reply(self, prompt: str) -> str:
        if isinstance(self.replies, str):
            return self.replies
        return next((text for key, text in self.replies.items() if key in prompt), "I do not know.")
