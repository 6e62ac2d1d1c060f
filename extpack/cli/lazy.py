"""A click group that imports a command's module only when that command runs.

`extpack --help` lists every command from the static short help given here, so it
imports none of them (nor what they import); `extpack CMD ...` imports `CMD`'s module alone.
This is the "LazyGroup" pattern of click's documentation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click
from click.utils import make_default_short_help


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives ("extpack.cli.fetch:fetch") and the one line `--help` shows for it."""

    target: str
    short_help: str


class LazyGroup(click.Group):
    def __init__(self, *args, lazy_commands: dict[str, LazyCommand], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            return load(self.lazy_commands[cmd_name])
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's own, shortened the same way, but from the static help: no module is imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self._short_help(ctx, name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str, limit: int) -> str:
        if name in self.lazy_commands:
            return make_default_short_help(self.lazy_commands[name].short_help, limit).strip()
        return super().get_command(ctx, name).get_short_help_str(limit)


def load(lazy: LazyCommand) -> click.Command:
    module_name, attribute = lazy.target.split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{lazy.target} is not a click command")
    return command
