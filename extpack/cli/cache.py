"""cache: inspect or prune the cache of layer zips and their unpacked trees."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from extpack.cli.options import cache_dir_option, json_option, project_settings

if TYPE_CHECKING:
    from extpack.cache import CachedBlob


@click.group()
def cache():
    """Inspect or prune the cache of layer zips and their unpacked trees."""


def _cache_from(ctx, cache_dir):
    from extpack.cache import Cache, default_cache_dir

    return Cache(project_settings(ctx, cache_dir=cache_dir).cache_dir or default_cache_dir())


_cache_dir_option = cache_dir_option("The cache (default: $EXTPACK_CACHE_DIR or the user cache dir).")


@cache.command(name="path")
@_cache_dir_option
@click.pass_context
def cache_path(ctx, cache_dir):
    """Print where the cache is."""
    click.echo(str(_cache_from(ctx, cache_dir).root))


@cache.command(name="ls")
@_cache_dir_option
@json_option()
@click.pass_context
def cache_ls(ctx, cache_dir, as_json):
    """List cached layer zips with their sizes, zipped and unpacked."""
    store = _cache_from(ctx, cache_dir)
    blobs = list(store.blobs())
    unpacked = {b.sha256: store.tree_size(b.sha256) for b in blobs}  # None: no tree kept
    click.echo(cache_json(blobs, unpacked) if as_json else cache_table(blobs, unpacked))


def cache_json(blobs: list[CachedBlob], unpacked: dict[str, int | None]) -> str:
    return json.dumps({"schema": "extpack.cache/v1", "blobs": [
        {"sha256": b.sha256, "size": b.size, "last_used": int(b.last_used), "unpacked": unpacked[b.sha256]}
        for b in blobs]}, indent=2)


def cache_table(blobs: list[CachedBlob], unpacked: dict[str, int | None]) -> str:
    from extpack.report import human_size, table

    rows = [[b.sha256[:16], human_size(b.size), "-" if unpacked[b.sha256] is None else human_size(unpacked[b.sha256]),
             time.strftime("%Y-%m-%d %H:%M", time.gmtime(b.last_used))] for b in blobs]
    trees = sum(size or 0 for size in unpacked.values())
    return (table(["SHA256", "SIZE", "UNPACKED", "LAST USED (UTC)"], rows) + "\n"
            f"{len(blobs)} blobs, {human_size(sum(b.size for b in blobs))}; unpacked trees {human_size(trees)}")


@cache.command(name="prune")
@_cache_dir_option
@click.option("--older-than", type=float, metavar="DAYS", help="Remove zips unused for this many days.")
@click.option("--all", "remove_all", is_flag=True, help="Remove every cached zip.")
@click.pass_context
def cache_prune(ctx, cache_dir, older_than, remove_all):
    """Remove cached zips and their unpacked trees (all, or those unused for DAYS)."""
    from extpack.exceptions import UsageError
    from extpack.report import human_size

    if remove_all == (older_than is not None):
        raise UsageError("cache prune needs exactly one of --all or --older-than DAYS")
    removed = _cache_from(ctx, cache_dir).prune(older_than_days=None if remove_all else older_than)
    click.echo(f"removed {len(removed)} blobs, {human_size(sum(b.size for b in removed))}")
