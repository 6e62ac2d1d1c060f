"""ls: list what is staged."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.exceptions import printable
from extpack.cli.options import pick, project_config


@click.command(name="ls")
@click.option("--stage-dir", type=click.Path(path_type=Path), help="The stage to list (default .extpack).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ls_command(ctx, stage_dir, as_json):
    """List what is staged: layers, extensions and their CPU, sizes."""
    import json

    from extpack.listing import ls_json, staged
    from extpack.report import human_size, table
    from extpack.shapes import shapes_of

    stage_dir = pick(stage_dir, project_config(ctx), "stage-dir", Path(".extpack"))
    manifest, extensions = staged(stage_dir)
    shapes = shapes_of(manifest, stage_dir)
    if as_json:
        click.echo(json.dumps(ls_json(stage_dir, manifest, extensions, shapes), indent=2))
        return
    click.echo(table(["#", "LAYER", "VERSION", "ARCH", "ZIP", "UNZIPPED", "FILES", "SHA256"], [
        [str(layer["index"] + 1), layer["arn"] or layer["source"], str(layer["version"] or "-"),
         ",".join(layer["architectures"]) or "-", human_size(layer["size"]), human_size(layer["unzipped_size"]),
         str(layer["files"]), layer["sha256"][:12]]
        for layer in manifest["layers"]]))
    click.echo()
    if extensions:
        click.echo(table(["EXTENSION", "CPU", "SIZE"], [
            [printable(f"/opt/extensions/{ext.name}" + (f" -> {ext.target}" if ext.target else "")), ext.cpu,
             human_size(ext.size)] for ext in extensions]))
    else:
        click.echo("no extensions in /opt/extensions")
    if shapes.wrappers:
        click.echo()
        click.echo(table(["WRAPPER", "LAYER", "USE WITH"], [
            [w.path, str(w.layer + 1), f"extpack render --wrapper {w.path}"] for w in shapes.wrappers]))
    if shapes.library_roots:
        click.echo()
        click.echo(table(["LIBRARY ROOT", "RUNTIME", "ON", "LAYERS"], [
            [r.path, r.runtime, r.variable, ",".join(str(i + 1) for i in r.layers) or "-"]
            for r in shapes.library_roots]))
    click.echo(f"\ntotal: {len(manifest['files'])} entries, {human_size(manifest['total_size'])} unzipped "
               f"({manifest['arch']})")
