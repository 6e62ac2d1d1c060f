"""ls: list what is staged."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from extpack.cli.options import json_option, project_settings, stage_dir_option
from extpack.exceptions import printable

if TYPE_CHECKING:
    from extpack.listing import Listing


@click.command(name="ls")
@stage_dir_option("The stage to list")
@json_option()
@click.pass_context
def ls_command(ctx, stage_dir, as_json):
    """List what is staged: layers, extensions and their CPU, sizes."""
    from extpack.listing import list_stage

    listing = list_stage(project_settings(ctx, stage_dir=stage_dir).stage_dir)
    click.echo(ls_json(listing) if as_json else ls_text(listing))


def ls_json(listing: Listing) -> str:
    manifest = listing.manifest
    return json.dumps({
        "schema": "extpack.ls/v1",
        "stage": str(listing.stage_dir),
        "arch": manifest.arch,
        "layers": [{key: value for key, value in layer.to_json().items() if key != "kind"}
                   for layer in manifest.layers],
        "extensions": [ext.__dict__ for ext in listing.extensions],
        "files": len(manifest.files),
        "total_size": manifest.total_size,
        **{key: value for key, value in listing.shapes.to_json().items() if key != "extensions"},
    }, indent=2)


def ls_text(listing: Listing) -> str:
    from extpack.report import human_size, table

    manifest, extensions, shapes = listing.manifest, listing.extensions, listing.shapes
    lines = [table(["#", "LAYER", "VERSION", "ARCH", "ZIP", "UNZIPPED", "FILES", "SHA256"], [
        [str(layer.index + 1), layer.label, str(layer.version or "-"),
         ",".join(layer.architectures) or "-", human_size(layer.size), human_size(layer.unzipped_size),
         str(layer.files), layer.sha256[:12]]
        for layer in manifest.layers]), ""]
    if extensions:
        lines.append(table(["EXTENSION", "CPU", "SIZE"], [
            [printable(f"/opt/extensions/{ext.name}" + (f" -> {ext.target}" if ext.target else "")), ext.cpu,
             human_size(ext.size)] for ext in extensions]))
    else:
        lines.append("no extensions in /opt/extensions")
    if shapes.wrappers:
        lines += ["", table(["WRAPPER", "LAYER", "USE WITH"], [
            [w.path, str(w.layer + 1), f"extpack render --wrapper {w.path}"] for w in shapes.wrappers])]
    if shapes.library_roots:
        lines += ["", table(["LIBRARY ROOT", "RUNTIME", "ON", "LAYERS"], [
            [r.path, r.runtime, r.variable, ",".join(str(i + 1) for i in r.layers) or "-"]
            for r in shapes.library_roots])]
    lines.append(f"\ntotal: {len(manifest.files)} entries, {human_size(manifest.total_size)} unzipped "
                 f"({manifest.arch})")
    return "\n".join(lines)
