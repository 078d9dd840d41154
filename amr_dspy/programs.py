"""The prompt variants as ``dspy.Module``s with one output contract, so eval, compile and compare treat them alike.

Every program is called as ``program(instruction=..., entry_point=None)`` and returns a ``dspy.Prediction`` with
``response`` (the final markdown answer), ``code`` (the extracted code, or None), ``direct_response`` and ``notes``
(why any step was skipped or which answer was kept).
"""

from __future__ import annotations

from collections.abc import Callable

import dspy

from amr_dspy.errors import ConfigError
from amr_dspy.extract import extract_code
from signatures import DirectResponse

__all__ = ["DirectProgram", "CoTProgram", "VARIANTS", "build_program"]


def _prediction(response: str, entry_point: str | None, *, direct: str | None = None, **extra: object) -> dspy.Prediction:
    return dspy.Prediction(
        response=response,
        code=extract_code(response, entry_point),
        direct_response=direct if direct is not None else response,
        **{"notes": [], **extra},
    )


class DirectProgram(dspy.Module):
    """The teacher answers the instruction once (the paper's "direct" baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict(DirectResponse)

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        response = self.respond(instruction=instruction).response
        return _prediction(response, entry_point)


class CoTProgram(dspy.Module):
    """The teacher reasons step by step before answering (the paper's CoT baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.ChainOfThought(DirectResponse)

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        answer = self.respond(instruction=instruction)
        return _prediction(answer.response, entry_point, reasoning=answer.reasoning)


VARIANTS: dict[str, Callable[..., dspy.Module]] = {
    "direct": DirectProgram,
    "cot": CoTProgram,
}


def build_program(variant: str, **kwargs: object) -> dspy.Module:
    """Instantiate a variant by name; unknown names get a one-line error listing the known ones."""
    try:
        factory = VARIANTS[variant]
    except KeyError:
        raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}") from None
    return factory(**kwargs)
