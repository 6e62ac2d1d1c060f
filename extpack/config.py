"""Project configuration: `extpack.toml`, or `[tool.extpack]` in `pyproject.toml`.

Command-line flags win over config, config over defaults: `Config.settings` applies that
rule once, and `Settings` below holds every default. Unknown keys and wrong types are usage
errors that name the key and the file.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from extpack import validate
from extpack.exceptions import UsageError
from extpack.model import ARCH_NAMES

CONFIG_FILE = "extpack.toml"
PYPROJECT = "pyproject.toml"

# The defaults of the settings other modules name too; every other default is in Settings.
DEFAULT_STAGE_DIR = Path(".extpack")
DEFAULT_LOCK = Path("extpack.lock")
DEFAULT_TEMPLATE = "aws-base"
DEFAULT_OUTPUT = "Dockerfile"
DEFAULT_JOBS = 4

# key -> (python type, description) ; paths are resolved against the config file's folder.
KEYS: dict[str, type | tuple[type, ...]] = {
    "layers": list,
    "stage-dir": str,
    "lock": str,
    "arch": str,
    "region": str,
    "profile": str,
    "endpoint-url": str,
    "jobs": int,
    "cache-dir": str,
    "max-layer-size": str,
    "base": str,
    "template": str,
    "output": str,
    "platform": str,
    "wrapper": str,
    "link": bool,
    # render's flags, under the same names
    "copy": list,
    "env": list,
    "entrypoint": (str, list),
    "cmd": (str, list),
    "rie": bool,
    "rie-binary": str,
    "handler": str,
    "app-dir": str,
    "from-image": str,
    "context": str,
}
PATH_KEYS = {"stage-dir", "lock", "cache-dir", "output", "context"}
STRING_LISTS = {"layers": "ARNs, .zip paths or URLs", "copy": "SRC:DEST or STAGE:SRC:DEST",
                "env": "NAME=VALUE", "entrypoint": "the command's words", "cmd": "the command's words"}


@dataclass
class Config:
    path: Path | None = None
    values: dict[str, object] = field(default_factory=dict)
    found_upwards: bool = False  # found from a subfolder: default paths are the config folder's too

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path(".")

    def get(self, key: str, default=None):
        if key not in self.values and key in PATH_KEYS and default is not None and self.found_upwards:
            return self.base_dir / default  # run from a subfolder, the project's stage and lock are still its own
        value = self.values.get(key, default)
        if key in self.values and isinstance(value, str) and (
                key in PATH_KEYS or (key == "template" and value.endswith(".j2"))):
            path = self.base_dir / value
            return str(path) if key == "template" else path
        return value

    def settings(self, **flags) -> Settings:
        """Each flag given (not None, not empty) wins over this config's key, which wins over the default."""
        unknown = set(flags) - {f.name for f in fields(Settings)}
        if unknown:  # a new flag needs its setting (and config key) first, or it would be dropped unseen
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        values = {}
        for f in fields(Settings):
            flag = flags.get(f.name)
            value = flag if flag not in (None, ()) else self.get(_key(f.name), _default(f))
            values[f.name] = str(value) if f.name in ("output", "template") and value is not None else value
        return Settings(**values)


@dataclass(frozen=True)
class Settings:
    """Every setting a command takes from a flag or the config, under the config's key with
    `-` spelled `_`, and its default. Built by `Config.settings`."""

    layers: list[str] = field(default_factory=list)
    stage_dir: Path = DEFAULT_STAGE_DIR
    lock: Path = DEFAULT_LOCK
    arch: str | None = None  # None: the lock's arch, else DEFAULT_ARCH (fetch_options decides)
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    jobs: int = DEFAULT_JOBS
    cache_dir: Path | None = None  # None: cache.default_cache_dir(), from the environment
    max_layer_size: int | str | None = None  # None: Lambda's limit; parse_size'd only by the commands using it
    link: bool = True
    # render's
    template: str | None = None  # None: the lock's function's runtime picks it, else DEFAULT_TEMPLATE
    base: str | None = None
    platform: str | None = None
    output: str = DEFAULT_OUTPUT
    context: Path | None = None
    rie: bool = False
    rie_binary: str | None = None
    copy: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    entrypoint: str | list[str] | None = None
    cmd: str | list[str] | None = None
    handler: str | None = None
    app_dir: str | None = None
    from_image: str | None = None
    wrapper: str | None = None

    def by_key(self) -> dict[str, object]:
        """The settings keyed as the config names them ("stage-dir")."""
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}


def _key(name: str) -> str:
    return name.replace("_", "-")


def _default(f) -> object:
    return f.default_factory() if f.default is MISSING else f.default


def load_config(explicit: Path | None = None, cwd: Path | None = None) -> Config:
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"config file {explicit} does not exist")
        table = _read(explicit, pyproject=explicit.name == PYPROJECT)
        return Config(explicit, _validate(table, explicit))
    # From the current folder up, as git finds its repository: extpack runs from a subfolder too.
    cwd = cwd or Path(".")
    for folder in [cwd, *(_relative_parents(cwd))]:
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return Config(candidate, _validate(_read(candidate, pyproject=False), candidate), folder != cwd)
        pyproject = folder / PYPROJECT
        if pyproject.is_file():
            table = _read(pyproject, pyproject=True)
            if table:
                return Config(pyproject, _validate(table, pyproject), folder != cwd)
    return Config()


def _relative_parents(cwd: Path) -> list[Path]:
    """`..`, `../..`, ... up to the root, spelled relative to cwd (so config paths stay short)."""
    depth = len(cwd.absolute().parents)
    return [Path(*[".."] * level) for level in range(1, depth + 1)]


def _read(path: Path, *, pyproject: bool) -> dict:
    # Imported here, when there is a file to read (~1 ms that a run without a config does not pay).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    if pyproject:
        return data.get("tool", {}).get("extpack", {})
    return data.get("extpack", data) if set(data) == {"extpack"} else data


def _validate(table: dict, path: Path) -> dict:
    where = f"[tool.extpack] in {path}" if path.name == PYPROJECT else str(path)
    for key, value in table.items():
        expected = KEYS.get(key)
        if expected is None:
            raise UsageError(f"unknown key {key!r} in {where}: known keys are {', '.join(sorted(KEYS))}")
        if key == "max-layer-size" and isinstance(value, int):
            continue
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise UsageError(f"key {key!r} in {where} must be a {names}, not {type(value).__name__}")
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise UsageError(f"key {key!r} in {where} must be a list of strings ({STRING_LISTS[key]})")
        # Config values reach paths, messages and Dockerfiles: no control characters.
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and validate.CONTROL_RE.search(item):
                raise UsageError(f"key {key!r} in {where} contains a control character: {validate.shown(item)}")
        if key == "arch" and value not in ARCH_NAMES:
            raise UsageError(f"key 'arch' in {where} must be {' or '.join(ARCH_NAMES)}, "
                             f"not {validate.shown(value)}")
    return dict(table)


def parse_size(text: str | int) -> int:
    """'250MB', '1.5GiB', '1048576' → bytes. MB means 2**20 here, as in Lambda's own limits."""
    if isinstance(text, int):
        return text
    units = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30}
    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGIB")
    unit = cleaned[len(number):].replace("IB", "").replace("B", "") or ""
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"bad size {text!r}: use e.g. 250MB, 300MiB or a number of bytes") from None
    if unit not in units or value <= 0:
        raise UsageError(f"bad size {text!r}: use e.g. 250MB, 300MiB or a number of bytes")
    return int(value * units[unit])
