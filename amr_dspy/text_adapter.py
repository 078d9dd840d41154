"""A chat adapter that sends a one-text-in, one-text-out signature as a plain conversation.

ChatAdapter wraps every input and output in ``[[ ## field ## ]]`` markers and asks the model to repeat them.
A 0.5B teacher then loses to the one plain message a user would send (issue 18: 38.5% vs 46.2% on mbpp+:dev):
it echoes stubs and spends its attention on the format. For a signature with a single ``str`` input and a single
``str`` output (``DirectResponse``, ``DescribeModule``) this adapter sends what a chat model is trained on: each
demo as a user/assistant turn and the input as the last user message, the signature's instructions leading the
first user message; the whole reply is the output. There is no system message, so the model's chat template keeps
the system prompt it was trained with: with the instructions as the system message (Qwen's template then drops
its own) direct scored 118 of the 308 MBPP+ train and dev tasks (prose and stubs), with them in the first user
turn 125, prose 55 → 67 of 154. A framed stub carries its own instruction (``amr_dspy.framing``) and goes without
the signature's: the request is then the plain prompt's. The instructions and demos stay what DSPy's optimizers
compile. Every other signature goes through ChatAdapter unchanged.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.signatures.signature import Signature
from dspy.utils.exceptions import AdapterParseError

from amr_dspy.framing import carries_its_own_instruction
from amr_dspy.salvage import strip_field_markers

__all__ = ["TextAdapter", "is_text_signature"]


def is_text_signature(signature: type[Signature]) -> bool:
    """Whether ``signature`` has exactly one input and one output, both plain ``str``."""
    fields = (*signature.input_fields.values(), *signature.output_fields.values())
    return len(signature.input_fields) == 1 and len(signature.output_fields) == 1 and all(
        field.annotation is str for field in fields
    )


class TextAdapter(dspy.ChatAdapter):  # type: ignore[misc]  # dspy ships no types
    """Plain conversations for text-to-text signatures, ChatAdapter for the rest."""

    def format(self, signature: type[Signature], demos: list[dict[str, Any]],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
        if not is_text_signature(signature):
            formatted: list[dict[str, Any]] = super().format(signature, demos, inputs)
            return formatted
        (given,), (wanted,) = signature.input_fields, signature.output_fields
        messages: list[dict[str, Any]] = []
        for demo in demos:
            if demo.get(given) and demo.get(wanted):  # a demo missing either side would teach an empty turn
                messages += [{"role": "user", "content": str(demo[given])},
                             {"role": "assistant", "content": str(demo[wanted])}]  # fmt: skip
        messages.append({"role": "user", "content": str(inputs[given])})
        if not carries_its_own_instruction(messages[-1]["content"]):
            messages[0]["content"] = f"{signature.instructions}\n\n{messages[0]['content']}"
        return messages

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        if not is_text_signature(signature):
            parsed: dict[str, Any] = super().parse(signature, completion)
            return parsed
        (wanted,) = signature.output_fields
        text = strip_field_markers(completion)  # demos compiled under ChatAdapter may teach its markers
        if not text:
            raise AdapterParseError(adapter_name="TextAdapter", signature=signature, lm_response=completion,
                                    message="the reply is empty")  # fmt: skip
        return {wanted: text}
