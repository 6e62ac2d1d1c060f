"""What several commands share: their common options, and the project config they read."""

from __future__ import annotations

from pathlib import Path

import click

ARCH_CHOICE = click.Choice(["x86_64", "arm64"])


def project_config(ctx: click.Context):
    from extpack.config import load_config

    return load_config(ctx.obj["config_path"])


def pick(flag, config, key, default=None):
    """Flags win over config, config over defaults."""
    return flag if flag is not None else config.get(key, default)


def fetch_options(ctx, sources, *, stage_dir=None, lock_path=None, frozen=False, arch=None, profile=None,
                   endpoint_url=None, jobs=None, cache_dir=None, use_cache=True, max_layer_size=None, link=None):
    """FetchOptions from flags, then config, then defaults."""
    from extpack.cache import default_cache_dir
    from extpack.config import parse_size
    from extpack.fetch import DEFAULT_JOBS, FetchOptions
    from extpack.unpack import DEFAULT_MAX_LAYER_SIZE

    from extpack.lock import read_lock

    config = project_config(ctx)
    if sources and config.get("layers"):
        click.echo(f"warning: using the {len(sources)} layer(s) given on the command line instead of the "
                   f"{len(config.get('layers'))} listed in {config.path}; the lock will hold these", err=True)
    lock_path = pick(lock_path, config, "lock", Path("extpack.lock"))
    if arch is None and config.get("arch") is None:  # the lock's arch sticks until --arch or the config says otherwise
        arch = getattr(read_lock(lock_path), "arch", None)
    return FetchOptions(
        sources=list(sources) or list(config.get("layers", [])),
        stage_dir=pick(stage_dir, config, "stage-dir", Path(".extpack")),
        lock_path=lock_path,
        frozen=frozen,
        arch=pick(arch, config, "arch", "x86_64"),
        profile=pick(profile, config, "profile"),
        endpoint_url=pick(endpoint_url, config, "endpoint-url"),
        jobs=pick(jobs, config, "jobs", DEFAULT_JOBS),
        cache_dir=pick(cache_dir, config, "cache-dir") or default_cache_dir(),
        use_cache=use_cache,
        max_layer_size=parse_size(pick(max_layer_size, config, "max-layer-size", DEFAULT_MAX_LAYER_SIZE)),
        # Relative zip paths in a config file are relative to that file, not to the cwd.
        base_dir=config.base_dir if not sources else Path("."),
        config_path=config.path,
        link=pick(link, config, "link", True),
    )


cache_dir_option = click.option("--cache-dir", type=click.Path(path_type=Path), help="The cache (default: "
                                "$EXTPACK_CACHE_DIR or the user cache dir).")
