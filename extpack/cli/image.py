"""image: turn stages into an OCI image of /opt, written or pushed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from extpack.cli.options import PATH, json_option, project_settings
from extpack.config import DEFAULT_STAGE_DIR

if TYPE_CHECKING:
    from extpack.image import ImageResult


@click.command()
@click.option("--stage-dir", "stage_dirs", multiple=True, type=PATH,
              help=f"Stage to convert (default {DEFAULT_STAGE_DIR}). Give one per architecture for a multi-arch index.")
@click.option("--output", "-o", type=PATH, help="Where to write the image.")
@click.option("--format", "image_format", type=click.Choice(["oci", "oci-archive", "docker-archive"]), default="oci",
              show_default=True, help="An OCI layout folder, the same as a tar, or a tar for docker load.")
@click.option("--tag", default="extpack-opt:latest", show_default=True, help="NAME:TAG of the image.")
@click.option("--push", "push_ref", help="Push to this registry reference (REGISTRY/REPO:TAG).")
@click.option("--insecure-registry", is_flag=True, help="Talk plain HTTP to the registry (loopback registries).")
@click.option("--source-date-epoch", type=int, help="Timestamp for every entry (default $SOURCE_DATE_EPOCH or 0).")
@json_option()
@click.pass_context
def image(ctx, stage_dirs, output, image_format, tag, push_ref, insecure_registry, source_date_epoch, as_json):
    """Turn the stage into an OCI image holding only /opt, for COPY --from=IMAGE /opt /opt."""
    from extpack.exceptions import UsageError
    from extpack.image import build_to

    if output is None and push_ref is None:
        raise UsageError("extpack image needs --output PATH, --push REF, or both")
    stage_dirs = list(stage_dirs) or [project_settings(ctx).stage_dir]
    if len(stage_dirs) > 1 and image_format == "docker-archive":
        raise UsageError("a docker-archive holds one architecture: use --format oci for several stages")
    result = build_to(stage_dirs, output=output, image_format=image_format, tag=tag, push_ref=push_ref,
                      insecure_registry=insecure_registry, source_date_epoch=source_date_epoch)
    if as_json:
        click.echo(image_json(result))
    else:
        print_image(result)


def image_json(result: ImageResult) -> str:
    pushed = result.pushed
    return json.dumps({"schema": "extpack.image/v1", "digest": result.digest, "tag": result.tag,
                       "format": result.format, "output": str(result.output) if result.output else None,
                       "platforms": result.platforms,
                       "pushed": None if pushed is None else {"digest": pushed.digest, "reference": pushed.reference,
                                                              "uploaded": pushed.uploaded, "skipped": pushed.skipped}},
                      indent=2)


def print_image(result: ImageResult) -> None:
    # stdout is the digest alone, for DIGEST=$(extpack image ...); what was done goes to stderr.
    if result.output is not None:
        click.echo(f"wrote {result.format} {result.output} ({result.tag}) {result.digest}", err=True)
    if result.pushed is not None:
        click.echo(f"pushed {result.pushed.reference}", err=True)
    click.echo(result.digest)
