"""Rich renderables for teacher answers, shared by the commands that show them."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

__all__ = ["answer_panel"]


def answer_panel(title: str, instruction: str, response: str, code: str | None, *, footer: str = "") -> Panel:
    """The instruction, the answer's prose and its extracted code, syntax-highlighted."""
    parts: list[RenderableType] = [Text(instruction, style="bold")]
    prose = response.split("```", 1)[0].strip()
    if prose:
        parts.append(Markdown(prose))
    if code:
        parts.append(Syntax(code, "python", theme="ansi_dark", line_numbers=False, word_wrap=True))
    else:
        parts.append(Text("(no code found in the answer)", style="red"))
    return Panel(Group(*parts), title=title, subtitle=footer or None, title_align="left")
