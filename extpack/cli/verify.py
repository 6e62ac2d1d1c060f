"""verify: check the stage against its manifest and lock, and the cache against its hashes."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.exceptions import printable
from extpack.cli.options import pick, project_config


@click.command()
@click.option("--stage-dir", type=click.Path(path_type=Path), help="The stage to check (default .extpack).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file (default extpack.lock).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Blob cache to check.")
@click.option("--no-cache", is_flag=True, help="Do not check the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def verify(ctx, stage_dir, lock_path, cache_dir, no_cache, as_json):
    """Check the stage against its manifest and the lock, and cached zips against their sha256."""
    import json

    from extpack.cache import Cache, default_cache_dir
    from extpack.exceptions import DriftError
    from extpack.verify import verify as run_verify

    config = project_config(ctx)
    stage_dir = pick(stage_dir, config, "stage-dir", Path(".extpack"))
    cache = None if no_cache else Cache(pick(cache_dir, config, "cache-dir") or default_cache_dir())
    result = run_verify(stage_dir, pick(lock_path, config, "lock", Path("extpack.lock")), cache)
    if as_json:
        click.echo(json.dumps({"schema": "extpack.verify/v1", "ok": not result.differences,
                               "differences": result.differences, "notes": result.notes,
                               "files_checked": result.files_checked, "blobs_checked": result.blobs_checked},
                              indent=2))
    else:
        for line in result.differences:  # they name what is on disk: names and link targets are data
            click.echo(printable(line))
        for note in result.notes:
            click.echo(f"note: {printable(note)}", err=True)
    if result.differences:
        raise DriftError(f"{len(result.differences)} difference(s) between {stage_dir}, its lock and the cache: "
                         "run extpack fetch to restore the stage")
    if not as_json:
        click.echo(f"ok: {result.files_checked} entries and {result.blobs_checked} cached zips match")
