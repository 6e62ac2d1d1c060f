"""image: turn stages into an OCI image of /opt, written or pushed."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.cli.options import pick, project_config


@click.command()
@click.option("--stage-dir", "stage_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Stage to convert (default .extpack). Give one per architecture for a multi-arch index.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Where to write the image.")
@click.option("--format", "image_format", type=click.Choice(["oci", "oci-archive", "docker-archive"]), default="oci",
              show_default=True, help="An OCI layout folder, the same as a tar, or a tar for docker load.")
@click.option("--tag", default="extpack-opt:latest", show_default=True, help="NAME:TAG of the image.")
@click.option("--push", "push_ref", help="Push to this registry reference (REGISTRY/REPO:TAG).")
@click.option("--insecure-registry", is_flag=True, help="Talk plain HTTP to the registry (loopback registries).")
@click.option("--source-date-epoch", type=int, help="Timestamp for every entry (default $SOURCE_DATE_EPOCH or 0).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def image(ctx, stage_dirs, output, image_format, tag, push_ref, insecure_registry, source_date_epoch, as_json):
    """Turn the stage into an OCI image holding only /opt, for COPY --from=IMAGE /opt /opt."""
    import json

    from extpack import oci
    from extpack.exceptions import UsageError
    from extpack.image import build_image
    from extpack.stage import require_unshared_unchanged

    if output is None and push_ref is None:
        raise UsageError("extpack image needs --output PATH, --push REF, or both")
    stage_dirs = list(stage_dirs) or [pick(None, project_config(ctx), "stage-dir", Path(".extpack"))]
    if len(stage_dirs) > 1 and image_format == "docker-archive":
        raise UsageError("a docker-archive holds one architecture: use --format oci for several stages")
    for stage in stage_dirs:
        require_unshared_unchanged(stage)
    builds = [build_image(stage, source_date_epoch=source_date_epoch) for stage in stage_dirs]
    try:
        report = {"schema": "extpack.image/v1", "digest": None, "tag": tag, "format": image_format,
                  "output": str(output) if output else None,
                  "platforms": [build.platform for build in builds], "pushed": None}
        if output is not None:
            writers = {"oci": oci.write_oci_layout, "oci-archive": oci.write_oci_archive,
                       "docker-archive": oci.write_docker_archive}
            report["digest"] = writers[image_format](builds if len(builds) > 1 else builds[0], output, tag)
        if push_ref is not None:
            from extpack.registry import push_image, registry_json

            pushed = push_image(builds if len(builds) > 1 else builds[0], push_ref, insecure=insecure_registry)
            report["digest"] = report["digest"] or pushed.digest
            report["pushed"] = registry_json(pushed)
    finally:
        for build in builds:
            build.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    # stdout is the digest alone, for DIGEST=$(extpack image ...); what was done goes to stderr.
    if output is not None:
        click.echo(f"wrote {image_format} {output} ({tag}) {report['digest']}", err=True)
    if push_ref is not None:
        click.echo(f"pushed {report['pushed']['reference']}", err=True)
    click.echo(report["digest"])
