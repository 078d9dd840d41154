"""The DSPy signatures of amr-dspy. Their docstrings are the starting instructions the optimizers rewrite."""

from signatures.amr import (
    DescribeModule,
    ModularDecomposition,
    ModuleAwareGeneration,
    ModuleCode,
    ModuleRegeneration,
    ModuleSpec,
    RepairResponse,
    ResponseEvolution,
    UnitTests,
)
from signatures.direct import DirectResponse

__all__ = [
    "DirectResponse",
    "ModuleSpec",
    "ModuleCode",
    "ModularDecomposition",
    "ModuleAwareGeneration",
    "ResponseEvolution",
    "UnitTests",
    "RepairResponse",
    "ModuleRegeneration",
    "DescribeModule",
]
