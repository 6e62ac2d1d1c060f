"""verify: check the stage against its manifest and lock, and the cache against its hashes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from extpack.cli.options import (
    cache_dir_option,
    json_option,
    lock_option,
    project_settings,
    stage_dir_option,
)
from extpack.exceptions import printable

if TYPE_CHECKING:
    from extpack.verify import Verification


@click.command()
@stage_dir_option("The stage to check")
@lock_option()
@cache_dir_option("Blob cache to check.")
@click.option("--no-cache", is_flag=True, help="Do not check the cache.")
@json_option()
@click.pass_context
def verify(ctx, stage_dir, lock_path, cache_dir, no_cache, as_json):
    """Check the stage against its manifest and the lock, and cached zips against their sha256."""
    from extpack.cache import Cache, default_cache_dir
    from extpack.exceptions import DriftError
    from extpack.verify import verify as run_verify

    settings = project_settings(ctx, stage_dir=stage_dir, lock=lock_path, cache_dir=cache_dir)
    stage_dir = settings.stage_dir
    cache = None if no_cache else Cache(settings.cache_dir or default_cache_dir())
    result = run_verify(stage_dir, settings.lock, cache)
    if as_json:
        click.echo(verify_json(result))
    else:
        print_verify(result)
    if result.differences:
        raise DriftError(f"{len(result.differences)} difference(s) between {stage_dir}, its lock and the cache: "
                         "run extpack fetch to restore the stage")


def verify_json(result: Verification) -> str:
    return json.dumps({"schema": "extpack.verify/v1", "ok": not result.differences,
                       "differences": result.differences, "notes": result.notes,
                       "files_checked": result.files_checked, "blobs_checked": result.blobs_checked}, indent=2)


def print_verify(result: Verification) -> None:
    for line in result.differences:  # they name what is on disk: names and link targets are data
        click.echo(printable(line))
    for note in result.notes:
        click.echo(f"note: {printable(note)}", err=True)
    if not result.differences:
        click.echo(f"ok: {result.files_checked} entries and {result.blobs_checked} cached zips match")
