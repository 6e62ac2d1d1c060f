"""How results look: plain tables and JSON on stdout, progress on a terminal's stderr."""

from __future__ import annotations

import json
import sys

from extpack.exceptions import printable
from extpack.fetch import FetchResult, Progress
from extpack.lock import Lock

FETCH_SCHEMA = "extpack.fetch/v1"


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


def fetch_json(result: FetchResult) -> str:
    data = {
        "schema": FETCH_SCHEMA,
        "stage": str(result.stage_dir),
        "lock": str(result.lock_path),
        "arch": result.arch,
        "unchanged": result.unchanged,
        "lock_changed": result.lock_changed,
        "files": result.files,
        "total_size": result.total_size,
        "layers": [
            {
                "index": layer.index,
                "source": layer.locked.source,
                "kind": layer.locked.kind,
                "arn": layer.locked.arn,
                "version": layer.locked.version,
                "sha256": layer.locked.sha256,
                "size": layer.locked.size,
                "architectures": list(layer.locked.architectures),
                "files": layer.files,
                "unzipped_size": layer.unzipped_size,
                "from_cache": layer.from_cache,
            }
            for layer in result.layers
        ],
        "overrides": [{"path": path, "layer": layer, "overrode": previous}
                      for path, layer, previous in result.overrides],
        "warnings": result.warnings,
    }
    if result.function is not None:
        from extpack.migrate import migration_json

        data["migration"] = migration_json(result.function)
    return json.dumps(data, indent=2)


def fetch_table(result: FetchResult) -> str:
    rows = [
        [str(layer.index + 1), layer.display, str(layer.locked.version or "-"),
         ",".join(layer.locked.architectures) or "-", human_size(layer.unzipped_size), str(layer.files),
         layer.locked.sha256[:12], "cache" if layer.from_cache else ("local" if layer.locked.kind == "zip" else "download")]
        for layer in result.layers
    ]
    body = table(["#", "LAYER", "VERSION", "ARCH", "UNZIPPED", "FILES", "SHA256", "FROM"], rows)
    state = "already up to date" if result.unchanged else "staged"
    return (f"{body}\n{state}: {result.files} entries, {human_size(result.total_size)} in "
            f"{result.stage_dir}/opt ({result.arch}); lock {result.lock_path}")


def override_lines(result: FetchResult, limit: int = 20) -> list[str]:
    names = {layer.index: layer.display for layer in result.layers}
    lines = [f"override: /opt/{path} from layer {layer + 1} ({names.get(layer)}) replaces layer {previous + 1}'s"
             for path, layer, previous in result.overrides[:limit]]
    if len(result.overrides) > limit:
        lines.append(f"override: … and {len(result.overrides) - limit} more (see manifest.json)")
    return lines


class TerminalProgress(Progress):
    """A rich progress bar on stderr; only used when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=Console(file=sys.stderr), transient=True)
        self._tasks: dict[int, int] = {}

    def __enter__(self):
        self._bar.start()
        return self

    def __exit__(self, *exc):
        self._bar.stop()

    def layer_started(self, index, name, total):
        room = max(MIN_COLUMN, min(48, self._bar.console.width - 50))  # the bar and sizes take ~50 columns
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


def lock_changes(old: Lock | None, new: Lock) -> list[dict]:
    """Per source: the pinned ARN (or sha256 prefix) before and after."""
    def pin(layer):
        return layer.arn or f"sha256:{layer.sha256[:12]}"

    before = {layer.source: pin(layer) for layer in old.layers} if old else {}
    after = {layer.source: pin(layer) for layer in new.layers}
    changes = [{"source": source, "from": before.get(source), "to": value}
               for source, value in after.items() if before.get(source) != value]
    changes += [{"source": source, "from": value, "to": None} for source, value in before.items() if source not in after]
    return changes
