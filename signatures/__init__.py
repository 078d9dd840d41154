"""The DSPy signatures of amr-dspy. Their docstrings are the starting instructions the optimizers rewrite."""

from signatures.direct import DirectResponse

__all__ = ["DirectResponse"]
