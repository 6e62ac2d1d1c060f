"""Command-line entry point: parse arguments, call the pipeline, print results.

One module per command (`extpack/cli/<command>.py`), imported only when that command runs;
COMMANDS below is the list `extpack --help` shows. Every ExtpackError becomes one line on
stderr and its documented exit code.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

import click

from extpack.cli.lazy import LazyCommand, LazyGroup
from extpack.exceptions import ExtpackError, printable

# Each short help is the command's own docstring (a test holds them equal).
COMMANDS = {
    "cache": LazyCommand("extpack.cli.cache:cache",
                         "Inspect or prune the cache of layer zips and their unpacked trees."),
    "doctor": LazyCommand("extpack.cli.doctor:doctor",
                          "Find what will break in Lambda: extension binaries, modes, links, sizes."),
    "fetch": LazyCommand("extpack.cli.fetch:fetch",
                         "Fetch layers (ARNs, .zip paths or https:// URLs) and stage them under STAGE/opt."),
    "image": LazyCommand("extpack.cli.image:image",
                         "Turn the stage into an OCI image holding only /opt, for COPY --from=IMAGE /opt /opt."),
    "init": LazyCommand("extpack.cli.init:init",
                        "Write a commented starter extpack.toml (optionally with LAYERS filled in) and say what to do next."),
    "lock": LazyCommand("extpack.cli.lock:lock_command",
                        "Resolve the layers and write the lock without staging them (--upgrade moves pins)."),
    "ls": LazyCommand("extpack.cli.ls:ls_command",
                      "List what is staged: layers, extensions and their CPU, sizes."),
    "render": LazyCommand("extpack.cli.render:render",
                          "Write a multi-stage Dockerfile that copies the staged /opt into the image."),
    "smoke": LazyCommand("extpack.cli.smoke:smoke",
                         "Run IMAGE under the Runtime Interface Emulator, invoke it once, report its extensions."),
    "verify": LazyCommand("extpack.cli.verify:verify",
                          "Check the stage against its manifest and the lock, and cached zips against their sha256."),
}


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so every cleanup handler runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from extpack import __version__  # worked out only when asked for

        click.echo(f"extpack, version {__version__}")
        ctx.exit()


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (default: ./extpack.toml, or [tool.extpack] in ./pyproject.toml).")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, config_path: Path | None) -> None:
    """Bake AWS Lambda layers and extensions into container images."""
    ctx.obj = {"verbose": verbose, "config_path": config_path}
    if verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
        # urllib3 logs request lines, and presigned URLs are credentials.
        logging.getLogger("urllib3").setLevel(logging.WARNING)
        logging.getLogger("botocore").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    # A run holds tens of thousands of long-lived objects (zip entries, tree nodes, manifest
    # rows) and makes no garbage cycles worth collecting before it exits: the cyclic GC's
    # repeated passes over them cost about 5% of a cold fetch.
    gc.disable()
    signal.signal(signal.SIGTERM, _on_sigterm)
    verbose = "--verbose" in (argv or sys.argv) or "-v" in (argv or sys.argv)
    try:
        cli.main(args=argv, prog_name="extpack", standalone_mode=False)
    except ExtpackError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"extpack: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "extpack"
        click.echo(f"extpack: error: {printable(exc.format_message())} (see {command} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort, _Terminated) as exc:
        click.echo("extpack: interrupted; the previous stage and lock are unchanged", err=True)
        sys.stderr.flush()
        # A download thread may be blocked on a socket; its files are already removed, so
        # exit now rather than wait for it (128 + the signal number, as shells report it).
        os._exit(143 if isinstance(exc, _Terminated) else 130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # the one place an unexpected error is turned into exit 1
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"extpack: internal error: {type(exc).__name__}: {printable(str(exc))} (rerun with --verbose and "
                   "report it)",
                   err=True)
        sys.exit(1)
    if argv is None:  # the process is this command's
        _exit_without_teardown()
    sys.exit(0)


def _exit_without_teardown() -> None:
    """Exit 0 at once. By now every file is closed and the stage committed; what is left is
    the interpreter freeing a run's hundreds of thousands of objects one by one (~50 ms after
    a cold fetch of four layers), which changes nothing."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        os._exit(1)
    os._exit(0)
