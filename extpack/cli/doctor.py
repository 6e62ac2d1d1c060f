"""doctor: find what will break in Lambda, in a stage or an image."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import click

from extpack.exceptions import printable
from extpack.cli.options import ARCH_CHOICE, pick, project_config


@click.command()
@click.argument("stage_dir", required=False, type=click.Path(path_type=Path))
@click.option("--image", "image_ref", help="Check a local Docker image (read with docker save).")
@click.option("--oci", "oci_dir", type=click.Path(path_type=Path, file_okay=False), help="Check an OCI layout.")
@click.option("--arch", type=ARCH_CHOICE, help="The function's CPU (default: the stage's, else the image's).")
@click.option("--strict", is_flag=True, help="Warnings count as errors (exit 6).")
@click.option("--fix", "apply_fixes", is_flag=True, help="Apply the safe fixes to a stage (read bits, junk files).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor(ctx, stage_dir, image_ref, oci_dir, arch, strict, apply_fixes, as_json):
    """Find what will break in Lambda: extension binaries, modes, links, sizes."""
    import json

    from extpack import doctor as checks
    from extpack import rootfs
    from extpack.exceptions import DriftError, UsageError
    from extpack.stage import read_manifest

    if sum(x is not None for x in (stage_dir, image_ref, oci_dir)) > 1:
        raise UsageError("give one of STAGE, --image or --oci")
    if apply_fixes and (image_ref or oci_dir):
        raise UsageError("--fix works on a stage, not on an image")
    with rootfs.temporary_workdir() as workdir:
        manifest = None
        if image_ref:
            view, target = rootfs.docker_image_view(image_ref, Path(workdir)), f"image {image_ref}"
        elif oci_dir:
            view, target = rootfs.oci_layout_view(oci_dir, arch), f"OCI layout {oci_dir}"
        else:
            stage_dir = stage_dir or pick(None, project_config(ctx), "stage-dir", Path(".extpack"))
            view, target = rootfs.StageView(stage_dir), f"stage {stage_dir}"
            manifest = read_manifest(stage_dir)
        arch = arch or (manifest or {}).get("arch") or view.arch or "x86_64"
        findings = checks.diagnose(view, arch, manifest)
        fixed = checks.fix(view, findings) if apply_fixes else []
    if fixed:
        from extpack.stage import refresh_manifest

        refresh_manifest(stage_dir)
        findings = checks.diagnose(rootfs.StageView(stage_dir), arch, read_manifest(stage_dir))
    if as_json:
        click.echo(json.dumps({**checks.doctor_json(findings, target), "fixed": fixed}, indent=2))
    else:
        for line in fixed:
            click.echo(f"fixed: {printable(line)}")
        for finding in findings:  # a finding quotes paths and link targets from the layers
            click.echo(dataclasses.replace(finding, path=finding.path and printable(finding.path),
                                           message=printable(finding.message), fix=printable(finding.fix)).line())
        counts = {s: sum(f.severity == s for f in findings) for s in checks.SEVERITIES}
        click.echo(f"{target}: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)")
    failing = [f for f in findings if f.severity == checks.ERROR or (strict and f.severity == checks.WARNING)]
    if failing:
        raise DriftError(f"doctor found {len(failing)} problem(s) in the {target}: apply the fixes listed above")
