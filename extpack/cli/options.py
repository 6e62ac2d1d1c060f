"""What several commands share: their common options, and the project settings they read.

Each option is declared once here; a command passes only its own help text (what "the stage"
is differs between fetch, render and ls). Defaults are not given here but in config.Settings,
so a flag left out is None and the config can still set it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from extpack.config import DEFAULT_LOCK, DEFAULT_STAGE_DIR
from extpack.model import ARCH_NAMES, DEFAULT_ARCH

if TYPE_CHECKING:
    from extpack.config import Settings
    from extpack.fetch import FetchOptions

ARCH_CHOICE = click.Choice(ARCH_NAMES)
PATH = click.Path(path_type=Path)


def stage_dir_option(what: str):
    """--stage-dir; `what` says what the stage is to this command ("The stage to list")."""
    return click.option("--stage-dir", type=PATH, help=f"{what} (default {DEFAULT_STAGE_DIR}).")


def lock_option(help: str = f"Lock file (default {DEFAULT_LOCK})."):  # noqa: A002 - click's own parameter name
    return click.option("--lock", "lock_path", type=PATH, help=help)


def arch_option(help: str = f"Target CPU (default {DEFAULT_ARCH})."):  # noqa: A002
    return click.option("--arch", type=ARCH_CHOICE, help=help)


def cache_dir_option(help: str):  # noqa: A002
    return click.option("--cache-dir", type=PATH, help=help)


def json_option(help: str = "Print JSON."):  # noqa: A002
    return click.option("--json", "as_json", is_flag=True, help=help)


def profile_option(help: str):  # noqa: A002
    return click.option("--profile", help=help)


def endpoint_url_option(help: str):  # noqa: A002
    return click.option("--endpoint-url", help=help)


def project_settings(ctx: click.Context, **flags) -> Settings:
    """The settings of this run: each flag given, else the project config's key, else the default."""
    from extpack.config import load_config

    return load_config(ctx.obj["config_path"]).settings(**flags)


def fetch_options(ctx: click.Context, sources: tuple[str, ...], *, frozen: bool = False, use_cache: bool = True,
                  **flags) -> FetchOptions:
    """FetchOptions from flags, then config, then defaults; `flags` are named as in Settings."""
    from extpack.cache import default_cache_dir
    from extpack.config import load_config, parse_size
    from extpack.fetch import FetchOptions
    from extpack.lock import read_lock
    from extpack.unpack import DEFAULT_MAX_LAYER_SIZE

    config = load_config(ctx.obj["config_path"])
    if sources and config.get("layers"):
        click.echo(f"warning: using the {len(sources)} layer(s) given on the command line instead of the "
                   f"{len(config.get('layers'))} listed in {config.path}; the lock will hold these", err=True)
    settings = config.settings(layers=sources, **flags)
    # The lock's arch sticks until --arch or the config says otherwise.
    arch = settings.arch or getattr(read_lock(settings.lock), "arch", None) or DEFAULT_ARCH
    return FetchOptions(
        sources=list(settings.layers),
        stage_dir=settings.stage_dir,
        lock_path=settings.lock,
        frozen=frozen,
        arch=arch,
        profile=settings.profile,
        endpoint_url=settings.endpoint_url,
        jobs=settings.jobs,
        cache_dir=settings.cache_dir or default_cache_dir(),
        use_cache=use_cache,
        max_layer_size=(DEFAULT_MAX_LAYER_SIZE if settings.max_layer_size is None
                        else parse_size(settings.max_layer_size)),
        # Relative zip paths in a config file are relative to that file, not to the cwd.
        base_dir=config.base_dir if not sources else Path("."),
        config_path=config.path,
        link=settings.link,
        explicit_arch=settings.arch is not None,  # a function's own arch must agree with it
        region=settings.region,
    )
