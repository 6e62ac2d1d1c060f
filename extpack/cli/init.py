"""init: write a starter extpack.toml."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.config import CONFIG_FILE


@click.command()
@click.option("--makefile", is_flag=True, help="Also print a Makefile snippet for the build step.")
@click.option("--force", is_flag=True, help="Overwrite an existing extpack.toml.")
@click.argument("layers", nargs=-1)
def init(makefile, force, layers):
    """Write a commented starter extpack.toml (optionally with LAYERS filled in)."""
    from extpack.exceptions import UsageError
    from extpack.source import parse_source
    from extpack.starter import MAKEFILE_SNIPPET, starter_config

    for layer in layers:
        parse_source(layer)
    target = Path(CONFIG_FILE)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists: edit it, or pass --force to overwrite it")
    target.write_text(starter_config(list(layers)))
    click.echo(f"wrote {target}")
    if makefile:
        click.echo(MAKEFILE_SNIPPET, nl=False)
