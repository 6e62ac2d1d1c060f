"""Command-line entry point: parse arguments, call the pipeline, print results.

Every ExtpackError becomes one line on stderr and its documented exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import signal
import sys
from pathlib import Path

import click

from extpack import __version__
from extpack.exceptions import ExtpackError, printable
from extpack.model import ARCH_NAMES

ARCH_CHOICE = click.Choice(ARCH_NAMES)


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


def _fetch_options(ctx, sources, *, stage_dir=None, lock_path=None, frozen=False, arch=None, profile=None,
                   endpoint_url=None, jobs=None, cache_dir=None, use_cache=True, max_layer_size=None, link=None):
    """FetchOptions from flags, then config, then defaults."""
    from extpack.cache import default_cache_dir
    from extpack.config import parse_size
    from extpack.fetch import DEFAULT_JOBS, FetchOptions
    from extpack.unpack import DEFAULT_MAX_LAYER_SIZE

    from extpack.lock import read_lock

    config = _config(ctx)
    if sources and config.get("layers"):
        click.echo(f"warning: using the {len(sources)} layer(s) given on the command line instead of the "
                   f"{len(config.get('layers'))} listed in {config.path}; the lock will hold these", err=True)
    lock_path = _pick(lock_path, config, "lock", Path("extpack.lock"))
    if arch is None and config.get("arch") is None:  # the lock's arch sticks until --arch or the config says otherwise
        arch = getattr(read_lock(lock_path), "arch", None)
    return FetchOptions(
        sources=list(sources) or list(config.get("layers", [])),
        stage_dir=_pick(stage_dir, config, "stage-dir", Path(".extpack")),
        lock_path=lock_path,
        frozen=frozen,
        arch=_pick(arch, config, "arch", "x86_64"),
        profile=_pick(profile, config, "profile"),
        endpoint_url=_pick(endpoint_url, config, "endpoint-url"),
        jobs=_pick(jobs, config, "jobs", DEFAULT_JOBS),
        cache_dir=_pick(cache_dir, config, "cache-dir") or default_cache_dir(),
        use_cache=use_cache,
        max_layer_size=parse_size(_pick(max_layer_size, config, "max-layer-size", DEFAULT_MAX_LAYER_SIZE)),
        # Relative zip paths in a config file are relative to that file, not to the cwd.
        base_dir=config.base_dir if not sources else Path("."),
        config_path=config.path,
        link=_pick(link, config, "link", True),
    )


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
@click.option("--strict", is_flag=True, help="Treat doctor's warnings about the stage as errors.")
@click.option("--link/--no-link", default=None, help="Where reflinks are not available: hard-link cached files "
              "into the stage (default), or copy them so no stage shares an inode with another.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def fetch(ctx, sources, stage_dir, lock_path, frozen, arch, region, profile, endpoint_url, jobs, cache_dir,
          no_cache, max_layer_size, strict, link, as_json):
    """Fetch layers (ARNs, .zip paths or https:// URLs) and stage them under STAGE/opt."""
    from extpack.fetch import Fetcher
    from extpack.report import LogProgress, TerminalProgress, fetch_json, fetch_table, override_lines

    options = _fetch_options(ctx, sources, stage_dir=stage_dir, lock_path=lock_path, frozen=frozen, arch=arch,
                             profile=profile, endpoint_url=endpoint_url, jobs=jobs, cache_dir=cache_dir,
                             use_cache=not no_cache, max_layer_size=max_layer_size, link=link)
    options.strict = strict
    progress = TerminalProgress() if sys.stderr.isatty() else LogProgress()
    with progress if isinstance(progress, TerminalProgress) else contextlib.nullcontext():
        result = Fetcher(options, progress).run()
    for line in override_lines(result):
        click.echo(printable(line), err=True)
    for warning in result.warnings:  # they quote paths and link targets from the layers
        click.echo(f"warning: {printable(warning)}", err=True)
    for hint in result.wrappers:
        click.echo(f"hint: {printable(hint)}", err=True)
    click.echo(fetch_json(result) if as_json else fetch_table(result))


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
    sys.exit(0)


@cli.command()
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

    config = _config(ctx)
    # Flags win over config; the header records these effective settings, however given.
    options = rendering.options_from({
        "stage-dir": _pick(stage_dir, config, "stage-dir", Path(".extpack")),
        "lock": _pick(lock_path, config, "lock", Path("extpack.lock")),
        "template": _pick(template, config, "template", "aws-base"),
        "base": _pick(base, config, "base"),
        "platform": _pick(platform, config, "platform"),
        "output": str(_pick(output, config, "output", "Dockerfile")),
        "context": _pick(context, config, "context"),
        "rie": _pick(rie, config, "rie", False),
        "rie-binary": _pick(rie_binary, config, "rie-binary"),
        "copy": list(copies) or config.get("copy", []),
        "env": list(env) or config.get("env", []),
        "entrypoint": _pick(entrypoint, config, "entrypoint"),
        "cmd": _pick(cmd, config, "cmd"),
        "handler": _pick(handler, config, "handler"),
        "app-dir": _pick(app_dir, config, "app-dir"),
        "from-image": _pick(from_image, config, "from-image"),
        "wrapper": _pick(wrapper, config, "wrapper"),
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


@cli.command(name="ls")
@click.option("--stage-dir", type=click.Path(path_type=Path), help="The stage to list (default .extpack).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ls_command(ctx, stage_dir, as_json):
    """List what is staged: layers, extensions and their CPU, sizes."""
    import json

    from extpack.listing import ls_json, staged
    from extpack.report import human_size, table
    from extpack.shapes import shapes_of

    stage_dir = _pick(stage_dir, _config(ctx), "stage-dir", Path(".extpack"))
    manifest, extensions = staged(stage_dir)
    shapes = shapes_of(manifest, stage_dir)
    if as_json:
        click.echo(json.dumps(ls_json(stage_dir, manifest, extensions, shapes), indent=2))
        return
    click.echo(table(["#", "LAYER", "VERSION", "ARCH", "ZIP", "UNZIPPED", "FILES", "SHA256"], [
        [str(layer.index + 1), layer.label, str(layer.version or "-"),
         ",".join(layer.architectures) or "-", human_size(layer.size), human_size(layer.unzipped_size),
         str(layer.files), layer.sha256[:12]]
        for layer in manifest.layers]))
    click.echo()
    if extensions:
        click.echo(table(["EXTENSION", "CPU", "SIZE"], [
            [printable(f"/opt/extensions/{ext.name}" + (f" -> {ext.target}" if ext.target else "")), ext.cpu,
             human_size(ext.size)] for ext in extensions]))
    else:
        click.echo("no extensions in /opt/extensions")
    if shapes.wrappers:
        click.echo()
        click.echo(table(["WRAPPER", "LAYER", "USE WITH"], [
            [w.path, str(w.layer + 1), f"extpack render --wrapper {w.path}"] for w in shapes.wrappers]))
    if shapes.library_roots:
        click.echo()
        click.echo(table(["LIBRARY ROOT", "RUNTIME", "ON", "LAYERS"], [
            [r.path, r.runtime, r.variable, ",".join(str(i + 1) for i in r.layers) or "-"]
            for r in shapes.library_roots]))
    click.echo(f"\ntotal: {len(manifest.files)} entries, {human_size(manifest.total_size)} unzipped "
               f"({manifest.arch})")


@cli.command()
@click.option("--stage-dir", type=click.Path(path_type=Path), help="The stage to check (default .extpack).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file (default extpack.lock).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Blob cache to check.")
@click.option("--no-cache", is_flag=True, help="Do not check the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def verify(ctx, stage_dir, lock_path, cache_dir, no_cache, as_json):
    """Check the stage against its manifest and the lock, and cached zips against their sha256."""
    import json

    from extpack.cache import Cache, default_cache_dir
    from extpack.exceptions import DriftError
    from extpack.verify import verify as run_verify

    config = _config(ctx)
    stage_dir = _pick(stage_dir, config, "stage-dir", Path(".extpack"))
    cache = None if no_cache else Cache(_pick(cache_dir, config, "cache-dir") or default_cache_dir())
    result = run_verify(stage_dir, _pick(lock_path, config, "lock", Path("extpack.lock")), cache)
    if as_json:
        click.echo(json.dumps({"schema": "extpack.verify/v1", "ok": not result.differences,
                               "differences": result.differences, "notes": result.notes,
                               "files_checked": result.files_checked, "blobs_checked": result.blobs_checked},
                              indent=2))
    else:
        for line in result.differences:  # they name what is on disk: names and link targets are data
            click.echo(printable(line))
        for note in result.notes:
            click.echo(f"note: {printable(note)}", err=True)
    if result.differences:
        raise DriftError(f"{len(result.differences)} difference(s) between {stage_dir}, its lock and the cache: "
                         "run extpack fetch to restore the stage")
    if not as_json:
        click.echo(f"ok: {result.files_checked} entries and {result.blobs_checked} cached zips match")


@cli.group()
def cache():
    """Inspect or prune the cache of layer zips and their unpacked trees."""


def _cache_from(ctx, cache_dir):
    from extpack.cache import Cache, default_cache_dir

    return Cache(_pick(cache_dir, _config(ctx), "cache-dir") or default_cache_dir())


_cache_dir_option = click.option("--cache-dir", type=click.Path(path_type=Path), help="The cache (default: "
                                 "$EXTPACK_CACHE_DIR or the user cache dir).")


@cache.command(name="path")
@_cache_dir_option
@click.pass_context
def cache_path(ctx, cache_dir):
    """Print where the cache is."""
    click.echo(str(_cache_from(ctx, cache_dir).root))


@cache.command(name="ls")
@_cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def cache_ls(ctx, cache_dir, as_json):
    """List cached layer zips with their sizes, zipped and unpacked."""
    import json
    import time

    from extpack.report import human_size, table

    store = _cache_from(ctx, cache_dir)
    blobs = list(store.blobs())
    unpacked = {b.sha256: store.tree_size(b.sha256) for b in blobs}  # None: no tree kept
    if as_json:
        click.echo(json.dumps({"schema": "extpack.cache/v1", "blobs": [
            {"sha256": b.sha256, "size": b.size, "last_used": int(b.last_used), "unpacked": unpacked[b.sha256]}
            for b in blobs]}, indent=2))
        return
    rows = [[b.sha256[:16], human_size(b.size), "-" if unpacked[b.sha256] is None else human_size(unpacked[b.sha256]),
             time.strftime("%Y-%m-%d %H:%M", time.gmtime(b.last_used))] for b in blobs]
    click.echo(table(["SHA256", "SIZE", "UNPACKED", "LAST USED (UTC)"], rows))
    trees = sum(size or 0 for size in unpacked.values())
    click.echo(f"{len(blobs)} blobs, {human_size(sum(b.size for b in blobs))}; unpacked trees {human_size(trees)}")


@cache.command(name="prune")
@_cache_dir_option
@click.option("--older-than", type=float, metavar="DAYS", help="Remove zips unused for this many days.")
@click.option("--all", "remove_all", is_flag=True, help="Remove every cached zip.")
@click.pass_context
def cache_prune(ctx, cache_dir, older_than, remove_all):
    """Remove cached zips and their unpacked trees (all, or those unused for DAYS)."""
    from extpack.exceptions import UsageError
    from extpack.report import human_size

    if remove_all == (older_than is not None):
        raise UsageError("cache prune needs exactly one of --all or --older-than DAYS")
    removed = _cache_from(ctx, cache_dir).prune(older_than_days=None if remove_all else older_than)
    click.echo(f"removed {len(removed)} blobs, {human_size(sum(b.size for b in removed))}")


@cli.command()
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

    from extpack.exceptions import UsageError
    from extpack.image import build_to

    if output is None and push_ref is None:
        raise UsageError("extpack image needs --output PATH, --push REF, or both")
    stage_dirs = list(stage_dirs) or [_pick(None, _config(ctx), "stage-dir", Path(".extpack"))]
    if len(stage_dirs) > 1 and image_format == "docker-archive":
        raise UsageError("a docker-archive holds one architecture: use --format oci for several stages")
    result = build_to(stage_dirs, output=output, image_format=image_format, tag=tag, push_ref=push_ref,
                      insecure_registry=insecure_registry, source_date_epoch=source_date_epoch)
    pushed = result.pushed
    report = {"schema": "extpack.image/v1", "digest": result.digest, "tag": tag, "format": image_format,
              "output": str(output) if output else None, "platforms": result.platforms,
              "pushed": None if pushed is None else {"digest": pushed.digest, "reference": pushed.reference,
                                                     "uploaded": pushed.uploaded, "skipped": pushed.skipped}}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    # stdout is the digest alone, for DIGEST=$(extpack image ...); what was done goes to stderr.
    if output is not None:
        click.echo(f"wrote {image_format} {output} ({tag}) {report['digest']}", err=True)
    if push_ref is not None:
        click.echo(f"pushed {report['pushed']['reference']}", err=True)
    click.echo(report["digest"])


@cli.command(name="lock")
@click.argument("sources", nargs=-1)
@click.option("--upgrade", "upgrade_all", is_flag=True, help="Move unversioned layer ARNs to their newest version.")
@click.option("--layer", "upgrade_only", multiple=True,
              help="With --upgrade: only this layer (name or ARN). Repeatable.")
@click.option("--to-latest", is_flag=True, help="With --upgrade: move versioned layer ARNs to their newest version "
              "too (ListLayerVersions).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), help="Lock file (default extpack.lock).")
@click.option("--arch", type=ARCH_CHOICE, help="Target CPU (default x86_64).")
@click.option("--profile", help="AWS profile.")
@click.option("--endpoint-url", help="Lambda API endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def lock_command(ctx, sources, upgrade_all, upgrade_only, to_latest, lock_path, arch, profile, endpoint_url, as_json):
    """Resolve the layers and write the lock without staging them (--upgrade moves pins)."""
    import json

    from extpack.exceptions import UsageError
    from extpack.fetch import Fetcher
    from extpack.report import lock_changes

    if (upgrade_only or to_latest) and not upgrade_all:
        raise UsageError("--layer and --to-latest go with --upgrade")
    options = _fetch_options(ctx, sources, lock_path=lock_path, arch=arch, profile=profile,
                             endpoint_url=endpoint_url)
    old, new = Fetcher(options).lock_only(list(upgrade_only) if upgrade_all else None, to_latest=to_latest)
    changes = lock_changes(old, new)
    if as_json:
        click.echo(json.dumps({"schema": "extpack.lock-changes/v1", "lock": str(options.lock_path),
                               "changes": changes}, indent=2))
        return
    for change in changes:
        click.echo(f"{change['source']}: {change['from'] or 'new'} -> {change['to'] or 'removed'}")
    click.echo(f"{options.lock_path}: {'updated' if changes else 'unchanged'}")


@cli.command()
@click.option("--makefile", is_flag=True, help="Also print a Makefile snippet for the build step.")
@click.option("--force", is_flag=True, help="Overwrite an existing extpack.toml.")
@click.argument("layers", nargs=-1)
def init(makefile, force, layers):
    """Write a commented starter extpack.toml (optionally with LAYERS filled in)."""
    from extpack.exceptions import UsageError
    from extpack.source import parse_source
    from extpack.starter import MAKEFILE_SNIPPET, starter_config

    for layer in layers:
        parse_source(layer)
    target = Path("extpack.toml")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists: edit it, or pass --force to overwrite it")
    target.write_text(starter_config(list(layers)))
    click.echo(f"wrote {target}")
    if makefile:
        click.echo(MAKEFILE_SNIPPET, nl=False)


@cli.command()
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
    from extpack.manifest import read as read_manifest

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
            stage_dir = stage_dir or _pick(None, _config(ctx), "stage-dir", Path(".extpack"))
            view, target = rootfs.StageView(stage_dir), f"stage {stage_dir}"
            manifest = read_manifest(stage_dir)
        arch = arch or (manifest and manifest.arch) or view.arch or "x86_64"
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


@cli.command()
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
