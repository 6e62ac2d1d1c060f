"""lock: resolve the layers and write the lock without staging them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from extpack.cli.options import (
    arch_option,
    endpoint_url_option,
    fetch_options,
    json_option,
    lock_option,
    profile_option,
)


@click.command(name="lock")
@click.argument("sources", nargs=-1)
@click.option("--upgrade", "upgrade_all", is_flag=True, help="Move unversioned layer ARNs to their newest version.")
@click.option("--layer", "upgrade_only", multiple=True,
              help="With --upgrade: only this layer (name or ARN). Repeatable.")
@click.option("--to-latest", is_flag=True, help="With --upgrade: move versioned layer ARNs to their newest version "
              "too (ListLayerVersions).")
@lock_option()
@arch_option()
@profile_option("AWS profile.")
@endpoint_url_option("Lambda API endpoint.")
@json_option()
@click.pass_context
def lock_command(ctx, sources, upgrade_all, upgrade_only, to_latest, lock_path, arch, profile, endpoint_url, as_json):
    """Resolve the layers and write the lock without staging them (--upgrade moves pins)."""
    from extpack.exceptions import UsageError
    from extpack.fetch import Fetcher
    from extpack.lock import lock_changes

    if (upgrade_only or to_latest) and not upgrade_all:
        raise UsageError("--layer and --to-latest go with --upgrade")
    options = fetch_options(ctx, sources, lock=lock_path, arch=arch, profile=profile, endpoint_url=endpoint_url)
    changes = lock_changes(*Fetcher(options).lock_only(list(upgrade_only) if upgrade_all else None,
                                                        to_latest=to_latest))
    click.echo(changes_json(options.lock_path, changes) if as_json else changes_text(options.lock_path, changes))


def changes_json(lock_path: Path, changes: list[dict]) -> str:
    return json.dumps({"schema": "extpack.lock-changes/v1", "lock": str(lock_path), "changes": changes}, indent=2)


def changes_text(lock_path: Path, changes: list[dict]) -> str:
    lines = [f"{change['source']}: {change['from'] or 'new'} -> {change['to'] or 'removed'}" for change in changes]
    return "\n".join([*lines, f"{lock_path}: {'updated' if changes else 'unchanged'}"])
