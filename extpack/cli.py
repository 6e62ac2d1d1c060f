"""Command-line entry point: parse arguments, call the pipeline, print results.

Every ExtpackError becomes one line on stderr and its documented exit code.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

import click

from extpack import __version__
from extpack.exceptions import ExtpackError

ARCH_CHOICE = click.Choice(["x86_64", "arm64"])


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so every cleanup handler runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (default: ./extpack.toml, or [tool.extpack] in ./pyproject.toml).")
@click.version_option(__version__, prog_name="extpack")
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


def _config(ctx: click.Context):
    from extpack.config import load_config

    return load_config(ctx.obj["config_path"])


def _pick(flag, config, key, default=None):
    """Flags win over config, config over defaults."""
    return flag if flag is not None else config.get(key, default)


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--stage-dir", type=click.Path(path_type=Path), help="Where to stage (default .extpack).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file (default extpack.lock).")
@click.option("--frozen", is_flag=True, help="Use the lock as the truth: no resolution, fail on any difference.")
@click.option("--arch", type=ARCH_CHOICE, help="Target CPU (default x86_64).")
@click.option("--region", help="AWS region for sources that do not name one (an ARN's own region wins).")
@click.option("--profile", help="AWS profile (default: AWS_PROFILE / the standard chain).")
@click.option("--endpoint-url", help="Lambda API endpoint (default: AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL).")
@click.option("--jobs", "-j", type=int, help="Layers downloaded in parallel (default 4).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Blob cache (default $EXTPACK_CACHE_DIR or "
              "the user cache dir).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--max-layer-size", help="Refuse a layer that unzips to more than this (default 250MB).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def fetch(ctx, sources, stage_dir, lock_path, frozen, arch, region, profile, endpoint_url, jobs, cache_dir,
          no_cache, max_layer_size, as_json):
    """Fetch layers (ARNs, .zip paths or https:// URLs) and stage them under STAGE/opt."""
    from extpack.cache import default_cache_dir
    from extpack.config import parse_size
    from extpack.fetch import Fetcher, FetchOptions
    from extpack.report import LogProgress, TerminalProgress, fetch_json, fetch_table, override_lines
    from extpack.unpack import DEFAULT_MAX_LAYER_SIZE

    config = _config(ctx)
    from_config = not sources
    options = FetchOptions(
        sources=list(sources) or list(config.get("layers", [])),
        stage_dir=_pick(stage_dir, config, "stage-dir", Path(".extpack")),
        lock_path=_pick(lock_path, config, "lock", Path("extpack.lock")),
        frozen=frozen,
        arch=_pick(arch, config, "arch", "x86_64"),
        profile=_pick(profile, config, "profile"),
        endpoint_url=_pick(endpoint_url, config, "endpoint-url"),
        jobs=_pick(jobs, config, "jobs", 4),
        cache_dir=_pick(cache_dir, config, "cache-dir") or default_cache_dir(),
        use_cache=not no_cache,
        max_layer_size=parse_size(_pick(max_layer_size, config, "max-layer-size", DEFAULT_MAX_LAYER_SIZE)),
        base_dir=config.base_dir if from_config else Path("."),
    )
    progress = TerminalProgress() if sys.stderr.isatty() else LogProgress()
    with progress if isinstance(progress, TerminalProgress) else contextlib.nullcontext():
        result = Fetcher(options, progress).run()
    for line in override_lines(result):
        click.echo(line, err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(fetch_json(result) if as_json else fetch_table(result))


def main(argv: list[str] | None = None) -> None:
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
    except click.exceptions.Abort:
        click.echo("extpack: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, _Terminated):
        click.echo("extpack: interrupted; the previous stage and lock are unchanged", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # the one place an unexpected error is turned into exit 1
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"extpack: internal error: {type(exc).__name__}: {exc} (rerun with --verbose and report it)",
                   err=True)
        sys.exit(1)
    sys.exit(0)
