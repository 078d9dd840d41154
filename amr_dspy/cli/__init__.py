"""The ``amr-dspy`` command line. Each command lives in its own module and registers on ``app``."""

from __future__ import annotations

import sys

from amr_dspy.cli._app import app, err_console
from amr_dspy.errors import AmrDspyError

# Importing a command module registers its commands on ``app``, in this order (the order of --help).
# isort: off
from amr_dspy.cli import teacher as _teacher  # noqa: F401
from amr_dspy.cli import generate as _generate  # noqa: F401
from amr_dspy.cli import eval as _eval  # noqa: F401
from amr_dspy.cli import library as _library  # noqa: F401
from amr_dspy.cli import bench as _bench  # noqa: F401
from amr_dspy.cli import compare as _compare  # noqa: F401
from amr_dspy.cli import compile as _compile  # noqa: F401
from amr_dspy.cli import synthesize as _synthesize  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: run the app, turning every ``AmrDspyError`` into one red line and exit code 1."""
    try:
        app()
    except AmrDspyError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
