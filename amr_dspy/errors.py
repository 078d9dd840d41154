"""The one exception hierarchy of amr-dspy.

Every error a user can cause (bad input, a broken model file, an unreachable teacher) is an
``AmrDspyError`` whose message is one line naming the input and, where known, the location.
The CLI prints that line and exits non-zero; library callers catch the subclass they care about.
"""

from __future__ import annotations

__all__ = [
    "AmrDspyError",
    "ConfigError",
    "TeacherSpecError",
    "ModelAssemblyError",
    "TeacherUnavailableError",
    "DataError",
    "SandboxError",
    "LibraryError",
    "ArtifactError",
]


class AmrDspyError(Exception):
    """Base class: a one-line, user-facing error."""


class ConfigError(AmrDspyError):
    """An invalid option, configuration file or environment variable."""


class TeacherSpecError(ConfigError):
    """A ``--teacher`` value that is not one of the accepted forms."""


class ModelAssemblyError(AmrDspyError):
    """The embedded model could not be assembled from its chunk packages (missing, wrong size or hash)."""


class TeacherUnavailableError(AmrDspyError):
    """The teacher server could not be started or does not answer."""


class DataError(AmrDspyError):
    """Malformed input data: the message names the file (or dataset) and the line (or row)."""


class SandboxError(AmrDspyError):
    """The sandbox itself failed (not the code under test, whose failures are outcomes)."""


class LibraryError(AmrDspyError):
    """A function-module library on disk is missing, corrupted or inconsistent."""


class ArtifactError(AmrDspyError):
    """A compiled-program artifact does not match the variant, signatures or dspy version."""
