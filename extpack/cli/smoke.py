"""smoke: run an image under the Runtime Interface Emulator and invoke it once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from extpack.cli.options import json_option

if TYPE_CHECKING:
    from extpack.smoke import SmokeReport


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
@json_option("Print the report as JSON.")
def smoke(image, event_file, env, rie_path, timeout, network, docker_host, as_json):
    """Run IMAGE under the Runtime Interface Emulator, invoke it once, report its extensions."""
    from extpack import smoke as smoking

    options = smoking.SmokeOptions.parse(image, event=event_file.read() if event_file else None,
                                         event_name=event_file.name if event_file else None, env=list(env),
                                         rie=rie_path, timeout=timeout, network=network, docker_host=docker_host)
    report = smoking.smoke(options, smoking.write_progress)
    click.echo(smoke_json(report) if as_json else report_text(report))
    if not report.ok:
        for line in smoking.log_tail(report):
            click.echo(f"  | {line}", err=True)
    smoking.fail_if_broken(report)


def smoke_json(report: SmokeReport) -> str:
    data = dataclasses.asdict(report)
    data.pop("log")
    return json.dumps({"schema": "extpack.smoke/v1", "ok": report.ok, **data, "log": report.log}, indent=2)


def report_text(report: SmokeReport) -> str:
    from extpack.container import EXTENSIONS_DIR
    from extpack.report import table

    lines = [f"image     {report.image}", f"emulator  {report.emulator}, network {report.network}"]
    timing = ", ".join(part for part in (_ms("init", report.init_ms), _ms("invoke", report.invoke_ms)) if part)
    if report.function_error:
        lines.append(f"function  FAILED: {report.function_error}" + (f" ({timing})" if timing else ""))
    else:
        lines.append(f"function  answered ({timing}): {report.response}")
    lines.append("")
    if report.extensions:
        lines.append(table(["EXTENSION", "STATUS", "EVENTS"], [
            [f"{EXTENSIONS_DIR}/{e.name}", e.status, ", ".join(e.events) or "-"] for e in report.extensions]))
    else:
        lines.append(f"no extensions in {EXTENSIONS_DIR}")
    lines += [f"note: {note}" for note in report.notes]
    registered = sum(e.registered for e in report.extensions)
    verdict = "ok" if report.ok else "FAILED"
    lines.append(f"\n{verdict}: {registered} of {len(report.extensions)} extension(s) registered; the function "
                 + ("answered without an error" if report.answered and not report.function_error else "failed"))
    return "\n".join(lines)


def _ms(label: str, value: float | None) -> str:
    return f"{label} {value:.1f} ms" if value is not None else ""
