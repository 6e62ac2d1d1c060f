"""lock: resolve the layers and write the lock without staging them."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.cli.options import ARCH_CHOICE, fetch_options


@click.command(name="lock")
@click.argument("sources", nargs=-1)
@click.option("--upgrade", "upgrade_all", is_flag=True, help="Move unversioned layer ARNs to their newest version.")
@click.option("--layer", "upgrade_only", multiple=True,
              help="With --upgrade: only this layer (name or ARN). Repeatable.")
@click.option("--to-latest", is_flag=True, help="With --upgrade: move versioned layer ARNs to their newest version "
              "too (ListLayerVersions).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file (default extpack.lock).")
@click.option("--arch", type=ARCH_CHOICE, help="Target CPU (default x86_64).")
@click.option("--profile", help="AWS profile.")
@click.option("--endpoint-url", help="Lambda API endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def lock_command(ctx, sources, upgrade_all, upgrade_only, to_latest, lock_path, arch, profile, endpoint_url, as_json):
    """Resolve the layers and write the lock without staging them (--upgrade moves pins)."""
    import json

    from extpack.exceptions import UsageError
    from extpack.fetch import Fetcher
    from extpack.report import lock_changes

    if (upgrade_only or to_latest) and not upgrade_all:
        raise UsageError("--layer and --to-latest go with --upgrade")
    options = fetch_options(ctx, sources, lock_path=lock_path, arch=arch, profile=profile,
                             endpoint_url=endpoint_url)
    old, new = Fetcher(options).lock_only(list(upgrade_only) if upgrade_all else None, to_latest=to_latest)
    changes = lock_changes(old, new)
    if as_json:
        click.echo(json.dumps({"schema": "extpack.lock-changes/v1", "lock": str(options.lock_path),
                               "changes": changes}, indent=2))
        return
    for change in changes:
        click.echo(f"{change['source']}: {change['from'] or 'new'} -> {change['to'] or 'removed'}")
    click.echo(f"{options.lock_path}: {'updated' if changes else 'unchanged'}")
