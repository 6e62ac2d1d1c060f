"""doctor: find what will break in Lambda, in a stage or an image."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from extpack.cli.options import PATH, arch_option, json_option, project_settings
from extpack.exceptions import printable

if TYPE_CHECKING:
    from extpack.doctor import Examination


@click.command()
@click.argument("stage_dir", required=False, type=PATH)
@click.option("--image", "image_ref", help="Check a local Docker image (read with docker save).")
@click.option("--oci", "oci_dir", type=click.Path(path_type=Path, file_okay=False), help="Check an OCI layout.")
@arch_option("The function's CPU (default: the stage's, else the image's).")
@click.option("--strict", is_flag=True, help="Warnings count as errors (exit 6).")
@click.option("--fix", "apply_fixes", is_flag=True, help="Apply the safe fixes to a stage (read bits, junk files).")
@json_option()
@click.pass_context
def doctor(ctx, stage_dir, image_ref, oci_dir, arch, strict, apply_fixes, as_json):
    """Find what will break in Lambda: extension binaries, modes, links, sizes."""
    from extpack import doctor as checks
    from extpack.exceptions import DriftError, UsageError

    if sum(x is not None for x in (stage_dir, image_ref, oci_dir)) > 1:
        raise UsageError("give one of STAGE, --image or --oci")
    if apply_fixes and (image_ref or oci_dir):
        raise UsageError("--fix works on a stage, not on an image")
    if not (image_ref or oci_dir):
        stage_dir = stage_dir or project_settings(ctx).stage_dir
    examination = checks.examine(stage_dir=stage_dir, image_ref=image_ref, oci_dir=oci_dir, arch=arch,
                                 apply_fixes=apply_fixes)
    if as_json:
        click.echo(doctor_json(examination))
    else:
        print_doctor(examination)
    failing = examination.failing(strict)
    if failing:
        raise DriftError(f"doctor found {len(failing)} problem(s) in the {examination.target}: apply the fixes "
                         "listed above")


def doctor_json(examination: Examination) -> str:
    return json.dumps({"schema": "extpack.doctor/v1", "target": examination.target, "counts": examination.counts(),
                       "findings": [dataclasses.asdict(f) for f in examination.findings],
                       "fixed": examination.fixed}, indent=2)


def print_doctor(examination: Examination) -> None:
    for line in examination.fixed:
        click.echo(f"fixed: {printable(line)}")
    for finding in examination.findings:  # a finding quotes paths and link targets from the layers
        click.echo(dataclasses.replace(finding, path=finding.path and printable(finding.path),
                                       message=printable(finding.message), fix=printable(finding.fix)).line())
    counts = examination.counts()
    click.echo(f"{examination.target}: {counts['error']} error(s), {counts['warning']} warning(s), "
               f"{counts['info']} note(s)")
