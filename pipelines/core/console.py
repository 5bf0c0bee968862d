"""The one owner of how preflens prints to a terminal or a log.

Every string is printed literally: the consoles made here parse no Rich markup (``[bold]``, ``[/]``,
``[link=…]``), no emoji codes (``:thumbs_up:``) and add no highlighting, so a name or message from the data
can never be misread as a style. Styles are given explicitly with :class:`rich.text.Text` (``styled``), which is
never parsed either, whatever console prints it.

When the stream is not a terminal (a pipe, a cron log), text is never hard-wrapped: one message stays on one
line, however narrow the assumed width (``$COLUMNS``, else 80). Layout choices (a table or indented blocks)
still follow :attr:`Console.width`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from rich.console import Console, ConsoleOptions
from rich.text import Text

__all__ = ["Hanging", "Text", "make_console", "styled"]


def make_console(*, stderr: bool = False, file: IO[str] | None = None, width: int | None = None) -> Console:
    """A console that prints strings literally and soft-wraps (never hard-wraps) when not on a terminal."""
    console = Console(stderr=stderr, file=file, width=width, markup=False, emoji=False, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def styled(*parts: str | Text | tuple[str, str]) -> Text:
    """A ``Text`` from plain strings, ``Text`` and ``(text, style)`` pairs; the text is never parsed."""
    return Text.assemble(*parts)


class Hanging:
    """A paragraph wrapped at word boundaries: the first line indented by ``indent``, the others by ``hang``.

    With soft wrapping (``Console.print(soft_wrap=True)``, or any console of :func:`make_console` that is not
    on a terminal) it stays one line, so a log line is never split.
    """

    def __init__(self, text: Text, indent: int = 0, hang: int = 4) -> None:
        self.text, self.indent, self.hang = text, indent, hang

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        if options.no_wrap:
            yield Text(" " * self.indent) + self.text
            return
        width = max(options.max_width - max(self.indent, self.hang), 8)
        for i, line in enumerate(self.text.wrap(console, width, overflow="fold")):
            line.rstrip()
            yield Text(" " * (self.indent if i == 0 else self.hang)) + line
