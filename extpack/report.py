"""How results look: plain tables and JSON on stdout, progress on a terminal's stderr."""

from __future__ import annotations

import sys

from extpack.exceptions import printable
from extpack.fetch import Progress


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


MIN_COLUMN = 12  # a shortened cell keeps at least this much, whatever the terminal


def terminal_width() -> int | None:
    """The width to fit tables to: a terminal's (or $COLUMNS), None when stdout goes to a file or pipe."""
    import os
    import shutil

    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def table(headers: list[str], rows: list[list[str]], width: int | None = -1) -> str:
    """Aligned columns; on a narrow terminal the widest cells are shortened in the middle."""
    rows = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    width = terminal_width() if width == -1 else width
    while width and sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > MIN_COLUMN:
        widest = widths.index(max(widths))
        widths[widest] = max(MIN_COLUMN, widths[widest] - (sum(widths) + 2 * (len(widths) - 1) - width))
    lines = ["  ".join(_fit(cell, width).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _fit(cell: str, width: int) -> str:
    if len(cell) <= width:
        return cell
    head = (width - 1) // 2
    return cell[:head] + "…" + cell[len(cell) - (width - 1 - head):]


class TerminalProgress(Progress):
    """A rich progress bar on stderr; only used when stderr is a terminal."""

    SIZES_WIDTH, SPEED_WIDTH = 14, 10  # "123.4/250.0 MB", "123.4 MB/s"

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
        from rich.progress import Progress as Bar
        from rich.table import Column

        console = Console(file=sys.stderr)
        # Every column on one line and the bar in what is left, so a line never wraps; the
        # speed only where there is room for it.
        self._room = max(MIN_COLUMN, min(48, console.width - 50))
        with_speed = console.width >= 60
        rest = console.width - self._room - self.SIZES_WIDTH - 2 - (self.SPEED_WIDTH + 1 if with_speed else 0)
        columns = [TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                   BarColumn(bar_width=max(1, min(40, rest - 1))),
                   DownloadColumn(table_column=Column(no_wrap=True))]
        if with_speed:
            columns.append(TransferSpeedColumn(table_column=Column(no_wrap=True)))
        self._bar = Bar(*columns, console=console, transient=True)
        self._tasks: dict[int, int] = {}

    def __enter__(self):
        self._bar.start()
        return self

    def __exit__(self, *exc):
        self._bar.stop()

    def layer_started(self, index, name, total):
        room = self._room
        short = name if len(name) <= room else "…" + name[-(room - 1):]
        self._tasks[index] = self._bar.add_task(short, total=total)

    def advance(self, index, amount):
        if index in self._tasks:
            self._bar.advance(self._tasks[index], amount)

    def layer_done(self, index):
        if index in self._tasks:
            self._bar.remove_task(self._tasks.pop(index))

    def info(self, message):
        self._bar.console.print(printable(message), markup=False, highlight=False)


class LogProgress(Progress):
    """No bar off a terminal: just the notable events, one line each, on stderr."""

    def info(self, message):
        print(printable(message), file=sys.stderr)
