"""init: write a starter extpack.toml."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--makefile", is_flag=True, help="Also print a Makefile snippet for the build step, alone on stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing extpack.toml, or write one beside [tool.extpack].")
@click.argument("layers", nargs=-1)
def init(makefile, force, layers):
    """Write a commented starter extpack.toml (optionally with LAYERS filled in) and say what to do next.

    It never overwrites a config without --force, and when the folder has a Dockerfile extpack did not
    write, it points render at Dockerfile.extpack instead.
    """
    from extpack.source import parse_source
    from extpack.starter import init_project

    for layer in layers:
        parse_source(layer)
    result = init_project(Path("."), list(layers), force=force)
    for note in result.notes:
        click.echo(note, err=True)
    if makefile:  # alone on stdout: extpack init --makefile >> Makefile
        click.echo(result.makefile, nl=False)
