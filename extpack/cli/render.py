"""Render: write the Dockerfile that copies the staged /opt into the image."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.cli.options import lock_option, project_settings, stage_dir_option
from extpack.config import DEFAULT_OUTPUT, DEFAULT_TEMPLATE
from extpack.exceptions import DriftError


@click.command()
@stage_dir_option("The stage to render from")
@lock_option("Lock file named in the header.")
@click.option("--template", "-t",
              help=f"{DEFAULT_TEMPLATE} (default), alpine-rie, python, nodejs, or a path to a .j2 file.")
@click.option("--base", help="Base image of the final stage (default depends on the template).")
@click.option("--platform", help="linux/amd64 or linux/arm64 (default: from the stage's --arch).")
@click.option("--output", "-o", help=f"Where to write (default {DEFAULT_OUTPUT}; - for stdout).")
@click.option("--context", type=click.Path(path_type=Path, file_okay=False),
              help="The docker build context (default: the output's folder).")
@click.option("--check", is_flag=True, help="Write nothing; exit 6 with a diff if the file on disk differs.")
@click.option("--rie/--no-rie", default=None, help="Add the Runtime Interface Emulator and an entry script "
              "(non-AWS bases).")
@click.option("--rie-binary", help="COPY the emulator from this context path instead of downloading it in the build.")
@click.option("--copy", "copies", multiple=True, help="SRC:DEST, or STAGE:SRC:DEST from a build stage. Repeatable.")
@click.option("--env", "env", multiple=True, help="NAME=VALUE for the final stage. Repeatable.")
@click.option("--entrypoint", help="ENTRYPOINT, as a command line or a JSON array.")
@click.option("--cmd", help="CMD, as a command line or a JSON array.")
@click.option("--handler", help="The handler for the python/nodejs templates (e.g. app.handler).")
@click.option("--app-dir", help="Folder copied into ${LAMBDA_TASK_ROOT} (python/nodejs templates).")
@click.option("--from-image", help="Copy /opt from this extension image (made by extpack image) instead of the stage.")
@click.option("--wrapper", help="Set AWS_LAMBDA_EXEC_WRAPPER to this staged script (e.g. /opt/otel-instrument); "
              "the entry script runs it where the base does not.")
@click.option("--force", is_flag=True, help="Overwrite an output file that extpack did not write.")
@click.pass_context
def render(ctx, stage_dir, lock_path, template, base, platform, output, context, check, rie, rie_binary, copies, env,
           entrypoint, cmd, handler, app_dir, from_image, wrapper, force):
    """Write a multi-stage Dockerfile that copies the staged /opt into the image."""
    from extpack.render import ENTRY_SCRIPT
    from extpack.render_files import render_to
    from extpack.render_options import options_from

    settings = project_settings(ctx, stage_dir=stage_dir, lock=lock_path, template=template, base=base,
                                platform=platform, output=output, context=context, rie=rie, rie_binary=rie_binary,
                                copy=copies, env=env, entrypoint=entrypoint, cmd=cmd, handler=handler,
                                app_dir=app_dir, from_image=from_image, wrapper=wrapper)
    # The header records these effective settings, however given.
    options = options_from(settings.by_key())
    try:
        rendered, written = render_to(options, check=check, force=force,
                                                warn=lambda line: click.echo(f"warning: {line}", err=True))
    except DriftError as exc:
        for line in exc.details:  # the diff, for --check
            click.echo(line, nl=False)
        raise
    if options.output == "-":
        click.echo(rendered.dockerfile, nl=False)
        if rendered.entry_script is not None:
            click.echo(f"note: the Dockerfile COPYs {ENTRY_SCRIPT}, which only --output FILE writes",
                       err=True)
    elif check:
        click.echo(f"{Path(options.output)} is up to date", err=True)
    for path in written:
        click.echo(f"wrote {path}")
