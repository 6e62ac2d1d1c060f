"""Render: write the Dockerfile that copies the staged /opt into the image."""

from __future__ import annotations

from pathlib import Path

import click

from extpack.exceptions import ExtpackError
from extpack.cli.options import pick, project_config


@click.command()
@click.option("--stage-dir", type=click.Path(path_type=Path), help="The stage to render from (default .extpack).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file named in the header.")
@click.option("--template", "-t", help="aws-base (default), alpine-rie, python, nodejs, or a path to a .j2 file.")
@click.option("--base", help="Base image of the final stage (default depends on the template).")
@click.option("--platform", help="linux/amd64 or linux/arm64 (default: from the stage's --arch).")
@click.option("--output", "-o", help="Where to write (default Dockerfile; - for stdout).")
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
    from extpack import render as rendering
    from extpack.exceptions import UsageError

    config = project_config(ctx)
    # Flags win over config; the header records these effective settings, however given.
    options = rendering.options_from({
        "stage-dir": pick(stage_dir, config, "stage-dir", Path(".extpack")),
        "lock": pick(lock_path, config, "lock", Path("extpack.lock")),
        "template": pick(template, config, "template", "aws-base"),
        "base": pick(base, config, "base"),
        "platform": pick(platform, config, "platform"),
        "output": str(pick(output, config, "output", "Dockerfile")),
        "context": pick(context, config, "context"),
        "rie": pick(rie, config, "rie", False),
        "rie-binary": pick(rie_binary, config, "rie-binary"),
        "copy": list(copies) or config.get("copy", []),
        "env": list(env) or config.get("env", []),
        "entrypoint": pick(entrypoint, config, "entrypoint"),
        "cmd": pick(cmd, config, "cmd"),
        "handler": pick(handler, config, "handler"),
        "app-dir": pick(app_dir, config, "app-dir"),
        "from-image": pick(from_image, config, "from-image"),
        "wrapper": pick(wrapper, config, "wrapper"),
    })
    output, context, from_image = options.output, options.context, options.from_image
    result = rendering.render(options)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if output == "-":
        click.echo(result.dockerfile, nl=False)
        if result.entry_script is not None:
            click.echo(f"note: the Dockerfile COPYs {rendering.ENTRY_SCRIPT}, which only --output FILE writes",
                       err=True)
        return
    target = Path(output)
    if not from_image:
        problem = rendering.dockerignore_problem((context or target.absolute().parent), options.stage_dir)
        if problem:
            raise UsageError(problem)
    if check:
        try:
            rendering.check_drift(result, target)
        except ExtpackError as exc:
            for line in getattr(exc, "details", []):
                click.echo(line, nl=False)
            raise
        click.echo(f"{target} is up to date", err=True)
        return
    if not force:
        rendering.refuse_hand_written(result, target)
    for path in rendering.write(result, target):
        click.echo(f"wrote {path}")
