"""amr-dspy: AMR-Evol (Adaptive Modular Response Evolution) as a compiled DSPy program.

The public surface is re-exported here lazily, so ``amr-dspy --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Offline first: never reach for a hub or a remote price map at run time (both have bundled copies).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

__version__ = "0.1.0"

_EXPORTS = {
    "TeacherSpec": "amr_dspy.teacher",
    "open_teacher": "amr_dspy.teacher",
    "build_program": "amr_dspy.programs",
    "VARIANTS": "amr_dspy.programs",
    "AmrDspyError": "amr_dspy.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'amr_dspy' has no attribute {name!r}")
