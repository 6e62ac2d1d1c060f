"""Fetch: resolve, download, verify and stage layers under STAGE/opt."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING

import click

from extpack.cli.options import (
    arch_option,
    cache_dir_option,
    endpoint_url_option,
    fetch_options,
    json_option,
    lock_option,
    profile_option,
    stage_dir_option,
)
from extpack.config import DEFAULT_JOBS
from extpack.exceptions import printable

if TYPE_CHECKING:
    from extpack.fetch import FetchResult


@click.command()
@click.argument("sources", nargs=-1)
@stage_dir_option("Where to stage")
@lock_option()
@click.option("--frozen", is_flag=True, help="Use the lock as the truth: no resolution, fail on any difference.")
@arch_option()
@click.option("--region", help="AWS region for sources that do not name one (an ARN's own region wins).")
@profile_option("AWS profile (default: AWS_PROFILE / the standard chain).")
@endpoint_url_option("Lambda API endpoint (default: AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL).")
@click.option("--jobs", "-j", type=int, help=f"Layers downloaded in parallel (default {DEFAULT_JOBS}).")
@cache_dir_option("Blob cache (default $EXTPACK_CACHE_DIR or the user cache dir).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--max-layer-size", help="Refuse a layer that unzips to more than this (default 250MB).")
@click.option("--strict", is_flag=True, help="Treat doctor's warnings about the stage as errors.")
@click.option("--link/--no-link", default=None, help="Where reflinks are not available: hard-link cached files "
              "into the stage (default), or copy them so no stage shares an inode with another.")
@click.option("--function", "function", metavar="NAME|ARN", help="Convert this zip function: its layers in its "
              "order (SOURCEs after them), its architecture, runtime and handler into the lock.")
@click.option("--qualifier", help="With --function: a version number or an alias (default $LATEST).")
@click.option("--with-code", is_flag=True, help="With --function: also fetch its code zip into STAGE/task.")
@json_option("Print the result as JSON.")
@click.pass_context
def fetch(ctx, sources, stage_dir, lock_path, frozen, arch, region, profile, endpoint_url, jobs, cache_dir,
          no_cache, max_layer_size, strict, link, function, qualifier, with_code, as_json):
    """Fetch layers (ARNs, .zip paths or https:// URLs) and stage them under STAGE/opt."""
    from extpack.fetch import Fetcher
    from extpack.report import LogProgress, TerminalProgress

    options = fetch_options(ctx, sources, frozen=frozen, use_cache=not no_cache, stage_dir=stage_dir, lock=lock_path,
                            arch=arch, region=region, profile=profile, endpoint_url=endpoint_url, jobs=jobs,
                            cache_dir=cache_dir, max_layer_size=max_layer_size, link=link)
    options.strict = strict
    options.function, options.qualifier, options.with_code = function, qualifier, with_code
    if function:  # the function names its layers; only the command line adds to them
        options.sources = list(sources)
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
    if result.function is not None and not as_json:
        from extpack.migrate import migration_text

        for line in migration_text(result.function, result.stage_dir):
            click.echo(printable(line))


def fetch_json(result: FetchResult) -> str:
    data = {
        "schema": "extpack.fetch/v1",
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
    from extpack.report import human_size, table

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
