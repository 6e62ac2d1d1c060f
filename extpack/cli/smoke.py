"""smoke: run an image under the Runtime Interface Emulator and invoke it once."""

from __future__ import annotations

from pathlib import Path

import click



@click.command()
@click.argument("image")
@click.option("--event", "event_file", type=click.File("rb"), help="The event to invoke with: a JSON file, or - for "
              "stdin (default {}).")
@click.option("--env", "env", multiple=True, help="NAME=VALUE for the function and its extensions. Repeatable.")
@click.option("--rie", "rie_path", type=click.Path(path_type=Path, dir_okay=False),
              help="An aws-lambda-rie binary to mount (default: the image's own emulator).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds for the extensions to register and the function to answer.")
@click.option("--network", type=click.Choice(["auto", "bridge", "host"]), default="auto", show_default=True,
              help="bridge publishes a 127.0.0.1 port; host is for daemons without a bridge network.")
@click.option("--docker-host", help="The Docker daemon (default: DOCKER_HOST or docker's own default).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def smoke(image, event_file, env, rie_path, timeout, network, docker_host, as_json):
    """Run IMAGE under the Runtime Interface Emulator, invoke it once, report its extensions."""
    import json

    from extpack import render as rendering
    from extpack import smoke as smoking
    from extpack.exceptions import UsageError

    event = event_file.read() if event_file else b"{}"
    try:
        json.loads(event)
    except ValueError:
        raise UsageError(f"--event {event_file.name}: not JSON") from None
    options = smoking.SmokeOptions(image=image, event=event, env=[rendering.parse_env(item) for item in env], rie=rie_path, timeout=timeout,
                                   network=network, docker_host=docker_host)
    report = smoking.smoke(options, smoking.write_progress)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(smoking.report_text(report))
    if not report.ok:
        for line in smoking.log_tail(report):
            click.echo(f"  | {line}", err=True)
    smoking.fail_if_broken(report)
