"""The `render` command: a multi-stage Dockerfile from a jinja2 template and the stage's manifest.

Output depends only on the inputs (manifest, lock, options, template), never on the clock
or the machine, so `render --check` can guard against drift in CI.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from extpack import manifest as manifests
from extpack import runtime_env, validate
from extpack.exceptions import DriftError, UsageError
from extpack.manifest import Manifest
from extpack.model import DEFAULT_ARCH, Arch
from extpack.render_options import BUILTIN, DEFAULT_BASE, DEFAULT_HANDLERS, RenderOptions
from extpack.shapes import Shapes, shapes_of
from extpack.stage import require_unshared_unchanged

PLATFORMS = tuple(arch.docker_platform for arch in Arch)
RIE_URL = "https://github.com/aws/aws-lambda-runtime-interface-emulator/releases/latest/download/aws-lambda-rie"
ENTRY_SCRIPT = "extpack-entry.sh"
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_ARGUMENT_BREAKERS = re.compile(r"""\s|["']|\\$|^$|^-""")


@dataclass(frozen=True)
class Rendered:
    dockerfile: str
    entry_script: str | None  # text of the RIE entry script, written beside the Dockerfile
    warnings: tuple[str, ...] = ()  # for stderr: what the image would silently lose


def render(options: RenderOptions) -> Rendered:
    staged_manifest = manifests.read(options.stage_dir) if options.from_image else manifests.load(options.stage_dir)
    if not options.from_image:
        require_unshared_unchanged(options.stage_dir, staged_manifest)
        _require_stage_of_lock(options.stage_dir, staged_manifest, options.lock_path)
    manifest = staged_manifest or Manifest(DEFAULT_ARCH)
    context_dir = (options.context or _output_dir(options.output)).absolute()
    from extpack.migrate import with_function_defaults

    # A converted function's code, staged by fetch --function --with-code, as the context names it.
    task_dir = _relative(options.stage_dir / "task", context_dir) \
        if staged_manifest is not None and staged_manifest.task is not None else None
    options, function_warnings = with_function_defaults(options, task_dir)
    environment, template_name = _template(options.template)
    builtin = options.template in BUILTIN
    rie = options.rie or options.template == "alpine-rie" or _extends_alpine_rie(environment, template_name)
    arch = manifest.arch or DEFAULT_ARCH
    if options.platform and options.platform not in PLATFORMS:
        raise UsageError(f"unknown --platform {options.platform!r}: use linux/amd64 or linux/arm64")
    if options.platform and not options.from_image and options.platform != arch.docker_platform:
        raise UsageError(f"--platform {options.platform} contradicts the stage at {options.stage_dir}, fetched for "
                         f"{arch}: leave --platform out, or run extpack fetch --arch "
                         f"{Arch.parse(options.platform)}")
    cmd = options.cmd or ([options.handler or DEFAULT_HANDLERS[options.template]]
                          if options.template in DEFAULT_HANDLERS else [])
    base = options.base or (BUILTIN[options.template][1] if builtin else DEFAULT_BASE)
    wrapping = _wrapping(options, staged_manifest, base, rie)
    values = {
        "base": base,
        "platform": options.platform or arch.docker_platform,
        "arch": arch.value,
        "stage_dir": _relative(options.stage_dir, context_dir),
        "opt_dir": _relative(options.stage_dir / "opt", context_dir),
        "layers": [layer.to_json() for layer in manifest.layers],  # templates see the manifest's JSON
        "extensions": _extensions(manifest),
        "file_count": len(manifest.files),
        "total_size": manifest.total_size,
        "lock_name": options.lock_path.name,
        "lock_sha256": _sha256_or_none(options.lock_path),
        "command": options.command,
        "from_image": options.from_image,
        "rie": rie,
        "rie_binary": options.rie_binary,
        "rie_url": RIE_URL + ("-arm64" if arch is Arch.ARM64 else ""),
        # Written beside the Dockerfile; COPY names it relative to the build context.
        "entry_script": _relative(_output_dir(options.output) / ENTRY_SCRIPT, context_dir)
        if rie or wrapping.needs_entry_script else None,
        "copies": options.copies,
        "env": options.env,
        "entrypoint": options.entrypoint,
        "cmd": cmd,
        "app_dir": options.app_dir,
        "wrapper": options.wrapper,
        "layer_env": wrapping.layer_env,
    }
    _refuse_unsafe_values(options, values)
    import jinja2

    try:
        text = environment.get_template(template_name).render(**values)
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"template {exc.filename or options.template} line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise UsageError(f"template {options.template} failed to render: {exc}") from None
    # Templates stay readable with their own spacing; the output gets at most one blank line.
    text = re.sub(r"\n{3,}", "\n\n", text.strip("\n")) + "\n"
    entry = _builtin_text("entry.sh") if values["entry_script"] else None
    warnings = runtime_env.wrapper_warnings(wrapping.shapes, options.wrapper, wrapping.kind, base, text,
                                            staged=wrapping.staged)
    if not builtin:
        warnings += _dropped_settings(options, cmd, rie, text)
    return Rendered(text, entry, tuple(function_warnings + warnings))


@dataclass(frozen=True)
class _Wrapping:
    shapes: Shapes
    kind: runtime_env.BaseKind
    layer_env: list[tuple[str, str]]
    needs_entry_script: bool  # the base ignores the wrapper, and the entry script can run it
    staged: bool


def _wrapping(options: RenderOptions, manifest: Manifest | None, base: str, rie: bool) -> _Wrapping:
    """The wrapper and layer paths: checked against the stage, and what this base lacks."""
    if any(name == runtime_env.WRAPPER_VARIABLE for name, _ in options.env):
        raise UsageError(f"set the wrapper with --wrapper PATH, not --env {runtime_env.WRAPPER_VARIABLE}=...: "
                         "--wrapper also runs it where the base image does not")
    shapes = shapes_of(manifest, options.stage_dir) if manifest else Shapes()
    if options.wrapper is not None:
        runtime_env.check_wrapper(options.wrapper, manifest, options.stage_dir)
    kind = runtime_env.base_kind(base, rie)
    needs_entry = options.wrapper is not None and kind is not runtime_env.BaseKind.MANAGED and bool(options.entrypoint)
    return _Wrapping(shapes, kind, runtime_env.layer_env(shapes, kind), needs_entry, manifest is not None)


def _refuse_unsafe_values(options: RenderOptions, values: dict) -> None:
    """Nothing that reaches the Dockerfile may change its instructions (exit 2 otherwise).

    Every value must be one line (no control character: a newline starts a new
    instruction, even inside the header's comments). A value written bare as one argument
    (an image, a platform, a path, a stage name) also must not hold whitespace, which adds
    arguments, a quote, which the parser pairs with a later one, start with '-', which makes
    it a flag, or end in a backslash, which joins the next line to its instruction.
    Manifest values were checked when it was read; config values when it was loaded.
    """
    one_line = [("--env", value) for _, value in options.env]
    one_line += [("--entrypoint", part) for part in options.entrypoint]
    one_line += [("--cmd" if options.cmd else "--handler", part) for part in values["cmd"]]
    # Paths that the header names, or that the regenerate line quotes.
    one_line += [("--lock", str(options.lock_path)), ("--stage-dir", str(options.stage_dir)),
                 ("--output", options.output), ("--template", options.template),
                 ("--context", str(options.context or ""))]
    for label, value in one_line:
        _refuse_control_character(label, value)
    for name, _ in options.env:
        if not _ENV_NAME_RE.fullmatch(name):
            raise UsageError(f"bad --env name {validate.shown(name)}: use letters, digits and underscores, "
                             "not starting with a digit")
    arguments = [("--base", values["base"]), ("--platform", values["platform"]), ("--from-image", values["from_image"]),
                 ("--app-dir", values["app_dir"]), ("--rie-binary", values["rie_binary"]),
                 ("--wrapper", values["wrapper"]),
                 ("--stage-dir (relative to --context)", values["opt_dir"]),
                 ("--output (relative to --context)", values["entry_script"])]
    arguments += [("--copy", part) for copy in options.copies for part in (copy.stage, copy.src, copy.dest)]
    for label, value in arguments:
        if value is not None and (validate.CONTROL_RE.search(value) or _BARE_ARGUMENT_BREAKERS.search(value)):
            raise UsageError(f"{label} value {validate.shown(value)} cannot be written into a Dockerfile: it must be "
                             "one word, not starting with '-', without whitespace, quotes, control characters or a "
                             "trailing backslash")
    # Last, so that a flag named above is named in the message: the header's regenerate line.
    _refuse_control_character("the command line", values["command"])


def _refuse_control_character(label: str, value: str) -> None:
    if validate.CONTROL_RE.search(value):
        raise UsageError(f"{label} value {validate.shown(value)} contains a control character: a value in a "
                         "Dockerfile must be one line of text")


def _extends_alpine_rie(environment, template_name: str) -> bool:
    """A user template built on alpine-rie needs the emulator and entry script as alpine-rie does."""
    import jinja2
    from jinja2 import meta

    try:
        source = environment.loader.get_source(environment, template_name)[0]
        referenced = set(meta.find_referenced_templates(environment.parse(source)))
    except jinja2.TemplateError:
        return False  # rendering reports the template's own error
    return bool(referenced & {"alpine-rie", BUILTIN["alpine-rie"][0]})


def _dropped_settings(options: RenderOptions, cmd: list[str], rie: bool, text: str) -> list[str]:
    """What a user template left out of the Dockerfile although it was asked for: said, never dropped."""
    import json

    lines = text.splitlines()
    last = {word: next((line for line in reversed(lines) if line.startswith(word + " ")), "")
            for word in ("ENTRYPOINT", "CMD")}
    missing = [f"--copy {':'.join(filter(None, (c.stage, c.src, c.dest)))}" for c in options.copies
               if f"COPY {'--from=' + c.stage + ' ' if c.stage else ''}{c.src} {c.dest}" not in lines]
    missing += [f"--env {name}" for name, _ in options.env if not any(line.startswith(f"ENV {name}=") for line in lines)]
    if options.entrypoint and ", ".join(map(json.dumps, options.entrypoint)) not in last["ENTRYPOINT"]:
        missing.append("--entrypoint")
    if cmd and last["CMD"] != f"CMD {json.dumps(cmd)}":
        missing.append("--cmd")
    where = f"the template {options.template}"
    warnings = [f"{where} leaves out {', '.join(missing)} (its app block replaces extpack's): add "
                '{% include "_app.j2" %} to the block, or write them there'] if missing else []
    if rie and not last["ENTRYPOINT"].startswith('ENTRYPOINT ["/extpack-entry.sh"'):
        warnings.append(f"{where} has an ENTRYPOINT that does not run /extpack-entry.sh, so the Runtime Interface "
                        'Emulator never starts: begin it with "/extpack-entry.sh", or leave it to --entrypoint')
    return warnings


def _require_stage_of_lock(stage_dir: Path, manifest: Manifest, lock_path: Path) -> None:
    """The Dockerfile's header names the lock: the stage must hold what that lock pins."""
    from extpack.lock import read_lock

    lock = read_lock(lock_path)
    if lock is None:
        return
    if [layer.sha256 for layer in lock.layers] != [layer.sha256 for layer in manifest.layers] \
            or lock.arch != manifest.arch:
        raise DriftError(f"the stage is older than {lock_path.name}: run extpack fetch (the stage {stage_dir} holds "
                         f"other layers than {lock_path} pins)")


def _template(name: str):
    import jinja2

    builtin_loader = jinja2.FunctionLoader(_builtin_source)
    common = {"keep_trailing_newline": True, "undefined": jinja2.StrictUndefined, "autoescape": False}
    if name in BUILTIN:
        return jinja2.Environment(loader=builtin_loader, **common), BUILTIN[name][0]
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"unknown template {name!r}: use one of {', '.join(BUILTIN)} or a path to a .j2 file")
    # A user template can include or extend the built-in ones by name ("aws-base.Dockerfile.j2").
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(path.parent.absolute())), builtin_loader])
    return jinja2.Environment(loader=loader, **common), path.name


# Run from a source checkout (the tests, PYTHONPATH), the templates are the checkout's own
# `dockerfiles/`, not those of whatever extpack is installed; a wheel carries them as
# extpack.dockerfiles.
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "dockerfiles"


def _builtin_text(name: str) -> str:
    if "/" not in name and (_CHECKOUT_TEMPLATES / "_header.j2").is_file():
        return (_CHECKOUT_TEMPLATES / name).read_text()
    return resources.files("extpack.dockerfiles").joinpath(name).read_text()


def _builtin_source(name: str):
    aliases = {key: value[0] for key, value in BUILTIN.items()}
    name = aliases.get(name, name)
    try:
        return _builtin_text(name)
    except (FileNotFoundError, IsADirectoryError):
        return None


def _extensions(manifest: Manifest) -> list[dict]:
    return [{"name": entry.path.split("/", 1)[1], "type": entry.type.value, "size": entry.size,
             "mode": entry.mode_text, "sha256": entry.sha256}
            for entry in manifest.extensions()]


def _output_dir(output: str) -> Path:
    return Path(".") if output == "-" else Path(output).absolute().parent


def _relative(path: Path, start: Path) -> str:
    relative = os.path.relpath(path.absolute(), start)
    if relative.startswith(".."):
        raise UsageError(f"{path} is outside the build context {start}: docker build can only COPY from inside it "
                         "(use --context or move the stage)")
    return Path(relative).as_posix()


def _sha256_or_none(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
