"""render's settings: RenderOptions from flags and config keys, and the `regenerate with`
command the Dockerfile's header records (made from the effective settings, so the same
setting given as a flag or as a config key gives the same header)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from extpack.config import DEFAULT_LOCK, DEFAULT_OUTPUT, DEFAULT_STAGE_DIR, Settings
from extpack.exceptions import UsageError

# The built-in templates and the base image each starts from.
DEFAULT_BASE = "public.ecr.aws/lambda/provided:al2023"
BUILTIN = {
    "aws-base": ("aws-base.Dockerfile.j2", DEFAULT_BASE),
    "alpine-rie": ("alpine-rie.Dockerfile.j2", "alpine:3.20"),
    "python": ("python.Dockerfile.j2", "public.ecr.aws/lambda/python:3.12"),
    "nodejs": ("nodejs.Dockerfile.j2", "public.ecr.aws/lambda/nodejs:20"),
}
DEFAULT_HANDLERS = {"python": "app.handler", "nodejs": "index.handler"}


@dataclass(frozen=True)
class Copy:
    src: str
    dest: str
    stage: str | None = None


@dataclass
class RenderOptions:
    stage_dir: Path = DEFAULT_STAGE_DIR
    lock_path: Path = DEFAULT_LOCK
    template: str | None = None  # None: the lock's function's runtime picks it, else DEFAULT_TEMPLATE
    base: str | None = None
    platform: str | None = None
    output: str = DEFAULT_OUTPUT
    context: Path | None = None
    rie: bool = False
    rie_binary: str | None = None
    copies: list[Copy] = field(default_factory=list)
    env: list[tuple[str, str]] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    handler: str | None = None
    app_dir: str | None = None
    from_image: str | None = None
    command: str = "extpack render"
    wrapper: str | None = None  # AWS_LAMBDA_EXEC_WRAPPER, run by the entry script where the base does not


def parse_copy(text: str) -> Copy:
    """'SRC:DEST' or 'STAGE:SRC:DEST' (the last copies from an earlier build stage)."""
    parts = text.split(":")
    if len(parts) == 2 and all(parts):
        return Copy(parts[0], parts[1])
    if len(parts) == 3 and all(parts):
        return Copy(parts[1], parts[2], stage=parts[0])
    raise UsageError(f"bad --copy {text!r}: use SRC:DEST, or STAGE:SRC:DEST to copy from a build stage")


def parse_env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UsageError(f"bad --env {text!r}: use NAME=VALUE")
    return name, value


def parse_command(text: str | list | None) -> list[str]:
    """A JSON array as Docker writes it, or a shell-like string split into one (a list, from
    the config, is taken as it is)."""
    if isinstance(text, list):
        if not all(isinstance(v, str) for v in text):
            raise UsageError(f"bad command {text!r}: give a list of strings or a plain command line")
        return text
    if not text:
        return []
    text = text.strip()
    if text.startswith("["):
        import json

        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"bad command {text!r}: give a JSON array of strings or a plain command line")
        return value
    return shlex.split(text)


# Render's settings in the order the regenerate command names them (their defaults are Settings').
_SETTING_KEYS = ("stage-dir", "lock", "template", "base", "platform", "output", "context", "rie", "rie-binary", "copy",
                 "env", "entrypoint", "cmd", "handler", "app-dir", "from-image", "wrapper")


def options_from(settings: dict) -> RenderOptions:
    """RenderOptions from the effective settings (flags over config over defaults), keyed as
    the config names them; the header's command is made from them, not from the command line."""
    copies = [parse_copy(text) for text in settings["copy"]]
    env = [parse_env(text) for text in settings["env"]]
    entrypoint, cmd = parse_command(settings["entrypoint"]), parse_command(settings["cmd"])
    # One spelling a setting, so a flag and the same config key give the same header.
    canonical = {**settings, "copy": [":".join(filter(None, (c.stage, c.src, c.dest))) for c in copies],
                 "env": [f"{name}={value}" for name, value in env],
                 "entrypoint": _command_text(entrypoint), "cmd": _command_text(cmd)}
    return RenderOptions(
        stage_dir=Path(settings["stage-dir"]), lock_path=Path(settings["lock"]),
        template=None if settings["template"] is None else str(settings["template"]),
        base=settings["base"], platform=settings["platform"], output=settings["output"],
        context=Path(settings["context"]) if settings["context"] else None, rie=bool(settings["rie"]),
        rie_binary=settings["rie-binary"], copies=copies, env=env, entrypoint=entrypoint, cmd=cmd,
        handler=settings["handler"], app_dir=settings["app-dir"], from_image=settings["from-image"],
        wrapper=settings.get("wrapper"), command=regenerate_command(canonical))


def _command_text(words: list[str]) -> str | None:
    """A command as a plain line when no word needs quoting, else as a JSON array."""
    import json

    if not words:
        return None
    plain = " ".join(words)
    return plain if shlex.join(words) == plain else json.dumps(words)


def regenerate_command(settings: dict) -> str:
    """`extpack render` with every setting that is not its default, in a fixed order.

    --check, --force and --output - do not change what is written: they are left out, so
    `render` and `render --check` produce the same bytes.
    """
    words = ["extpack", "render"]
    defaults = Settings().by_key()
    for key in _SETTING_KEYS:
        value, default = settings.get(key), defaults[key]
        if value in (None, False, [], ()) or str(value) == str(default) or (key == "output" and value == "-"):
            continue
        if value is True:
            words.append(f"--{key}")
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [f"--{key}", str(item)]
    return shlex.join(words)
