"""Fetch: resolve, download, verify and stage layers under STAGE/opt."""

from __future__ import annotations

import contextlib
import sys

from pathlib import Path

import click

from extpack.exceptions import printable
from extpack.cli.options import ARCH_CHOICE, fetch_options


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--stage-dir", type=click.Path(path_type=Path), help="Where to stage (default .extpack).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file (default extpack.lock).")
@click.option("--frozen", is_flag=True, help="Use the lock as the truth: no resolution, fail on any difference.")
@click.option("--arch", type=ARCH_CHOICE, help="Target CPU (default x86_64).")
@click.option("--region", help="AWS region for sources that do not name one (an ARN's own region wins).")
@click.option("--profile", help="AWS profile (default: AWS_PROFILE / the standard chain).")
@click.option("--endpoint-url", help="Lambda API endpoint (default: AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL).")
@click.option("--jobs", "-j", type=int, help="Layers downloaded in parallel (default 4).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Blob cache (default $EXTPACK_CACHE_DIR or "
              "the user cache dir).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--max-layer-size", help="Refuse a layer that unzips to more than this (default 250MB).")
@click.option("--strict", is_flag=True, help="Treat doctor's warnings about the stage as errors.")
@click.option("--link/--no-link", default=None, help="Where reflinks are not available: hard-link cached files "
              "into the stage (default), or copy them so no stage shares an inode with another.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def fetch(ctx, sources, stage_dir, lock_path, frozen, arch, region, profile, endpoint_url, jobs, cache_dir,
          no_cache, max_layer_size, strict, link, as_json):
    """Fetch layers (ARNs, .zip paths or https:// URLs) and stage them under STAGE/opt."""
    from extpack.fetch import Fetcher
    from extpack.report import LogProgress, TerminalProgress, fetch_json, fetch_table, override_lines

    options = fetch_options(ctx, sources, stage_dir=stage_dir, lock_path=lock_path, frozen=frozen, arch=arch,
                             profile=profile, endpoint_url=endpoint_url, jobs=jobs, cache_dir=cache_dir,
                             use_cache=not no_cache, max_layer_size=max_layer_size, link=link)
    options.strict = strict
    progress = TerminalProgress() if sys.stderr.isatty() else LogProgress()
    with progress if isinstance(progress, TerminalProgress) else contextlib.nullcontext():
        result = Fetcher(options, progress).run()
    for line in override_lines(result):
        click.echo(printable(line), err=True)
    for warning in result.warnings:  # they quote paths and link targets from the layers
        click.echo(f"warning: {printable(warning)}", err=True)
    for hint in result.wrappers:
        click.echo(f"hint: {printable(hint)}", err=True)
    click.echo(fetch_json(result) if as_json else fetch_table(result))
