"""The stage's manifest.json: its types, the one reader and the one writer.

A manifest sits in a work tree anyone may edit: its paths, ARNs and names reach file
operations, messages and Dockerfiles, so the reader checks each field against its grammar
and hands out typed values (frozen, but for the thousands of file entries: see TreeEntry); no
other module reads the JSON. Fields extpack can do without are optional (older stages and
hand-made ones lack some).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path

from extpack import nofollow, validate
from extpack.atomic import write_atomically
from extpack.exceptions import UsageError
from extpack.model import STAGED_TYPE_NAMED, Arch, EntryType, SourceKind, TreeEntry, is_extension
from extpack.shapes import Shapes

SCHEMA = "extpack.manifest/v1"
NAME = "manifest.json"
SHAPES_KEY = "shapes"  # optional: manifests written before shapes were recorded lack it
TASK_KEY = "task"  # only in the stage of a converted function fetched with its code


@dataclass(frozen=True, slots=True)
class StagedLayer:
    """One source layer as the stage records it (index: its place in Lambda's order)."""

    index: int
    source: str  # what the user named: an ARN, a zip path, a (redacted) URL
    kind: SourceKind | None
    arn: str | None
    name: str | None
    version: int | None
    sha256: str
    size: int | None
    unzipped_size: int
    architectures: tuple[Arch, ...]
    files: int

    @property
    def label(self) -> str:
        """How messages name the layer."""
        return self.arn or self.source

    def to_json(self) -> dict:
        return {"index": self.index, "source": self.source, "kind": self.kind, "arn": self.arn, "name": self.name,
                "version": self.version, "sha256": self.sha256, "size": self.size,
                "unzipped_size": self.unzipped_size, "architectures": list(self.architectures),
                "files": self.files}


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see TreeEntry
class StagedFile(TreeEntry):
    """One path under /opt (relative to it), as staged."""

    sha256: str | None = None  # a file's
    mtime: int | None = None
    overrode: tuple[int, ...] = ()  # the earlier layers whose file at this path it replaced

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"

    @property
    def is_extension(self) -> bool:
        return is_extension(self.path)

    def to_json(self) -> dict:
        return {"path": self.path, "type": self.type, "mode": f"{self.mode:04o}", "size": self.size,
                "sha256": self.sha256, "target": self.target, "mtime": self.mtime, "layer": self.layer,
                "overrode": list(self.overrode)}

    def json_line(self) -> str:
        """to_json() as the manifest writes it (json's encoder, sorted keys), formatted directly:
        an encoder call per entry was half the time of writing a manifest of thousands."""
        return (f'{{"layer": {self.layer}, "mode": "{self.mode:04o}", "mtime": {_json_int(self.mtime)}, '
                f'"overrode": [{", ".join(map(str, self.overrode))}], "path": {_json_str(self.path)}, '
                f'"sha256": {_json_str(self.sha256)}, "size": {self.size}, "target": {_json_str(self.target)}, '
                f'"type": "{self.type}"}}')


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(value)


def _json_str(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)  # what json.dumps writes for a str


@dataclass(frozen=True)
class StagedTask:
    """A converted zip function's own code, unpacked under <stage>/task (fetch --function --with-code)."""

    sha256: str  # the code zip's, as the lock's function record holds it
    size: int
    unzipped_size: int
    files: tuple[StagedFile, ...]  # paths relative to task/ (their `layer` is unused)

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "unzipped_size": self.unzipped_size,
                "files": [f.to_json() for f in self.files]}


@dataclass(frozen=True)
class Manifest:
    arch: Arch | None
    layers: tuple[StagedLayer, ...] = ()
    files: tuple[StagedFile, ...] = ()
    total_size: int = 0
    max_layer_size: int | None = None
    shapes: Shapes | None = None  # None: not recorded (or damaged): detect from the stage
    task: StagedTask | None = None

    @classmethod
    def of(cls, arch: Arch, layers: tuple[StagedLayer, ...], files: tuple[StagedFile, ...], *,
           max_layer_size: int | None = None, shapes: Shapes | None = None) -> Manifest:
        """A manifest whose total is its files' sizes."""
        return cls(arch, tuple(layers), tuple(files), sum(f.size for f in files), max_layer_size, shapes)

    def extensions(self) -> list[StagedFile]:
        return [f for f in self.files if f.is_extension]

    def to_json(self, *, files: bool = True) -> dict:
        """The manifest's JSON; without `files`, all but the files (text() writes those itself)."""
        data = {"schema": SCHEMA, "arch": self.arch, "layers": [layer.to_json() for layer in self.layers],
                "total_size": self.total_size}
        if files:
            data["files"] = [f.to_json() for f in self.files]
        if self.max_layer_size is not None:
            data["max_layer_size"] = self.max_layer_size
        if self.shapes is not None:
            data[SHAPES_KEY] = self.shapes.to_json()
        if self.task is not None:
            data[TASK_KEY] = self.task.to_json()
        return data


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def read(stage_dir: Path) -> Manifest | None:
    """The stage's manifest; None when there is none (or it, or the stage dir, is a symlink, or it
    is not extpack's); exit 2 when a field has the wrong shape."""
    data = _read_json(stage_dir)
    return None if data is None else parse(data, stage_dir / NAME)


def is_stage(stage_dir: Path) -> bool:
    """Whether the folder holds extpack's manifest (even one with damaged fields): the cheap
    test, without checking its thousands of entries."""
    return _read_json(stage_dir) is not None


def _read_json(stage_dir: Path) -> dict | None:
    try:
        stage_fd = nofollow.open_dir(stage_dir)
    except OSError:
        return None
    try:
        fd = os.open(NAME, nofollow.FILE_FLAGS, dir_fd=stage_fd)
        with open(fd, "rb") as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    finally:
        os.close(stage_fd)
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def load(stage_dir: Path) -> Manifest:
    """The stage's manifest, for a command that needs one: exit 2 when there is none."""
    manifest = read(stage_dir)
    if manifest is None:
        raise UsageError(f"no stage at {stage_dir}: run extpack fetch first")
    return manifest


def parse(data: object, path: Path) -> Manifest:
    """A manifest from its JSON; exit 2 naming the file and the field when one has the wrong shape."""
    try:
        return _manifest(data)
    except validate.Invalid as exc:
        raise UsageError(f"manifest {path}: field {exc}: run extpack fetch to rebuild the stage") from None


def _manifest(data: object) -> Manifest:
    validate.mapping(data, "(top level)")
    arch = Arch.of_field(data["arch"], "arch") if "arch" in data else None
    counts = {key: validate.count(data[key], key) for key in ("total_size", "max_layer_size") if key in data}
    layers = tuple(_layer(layer, index) for index, layer in enumerate(validate.sequence(data.get("layers", []),
                                                                                        "layers")))
    files = tuple(_file(entry, index) for index, entry in enumerate(validate.sequence(data.get("files", []),
                                                                                      "files")))
    total = counts.get("total_size")
    return Manifest(arch, layers, files, sum(f.size for f in files) if total is None else total,
                    counts.get("max_layer_size"), _shapes(data.get(SHAPES_KEY)), _task(data.get(TASK_KEY)))


def _task(task: object) -> StagedTask | None:
    if task is None:
        return None
    validate.mapping(task, TASK_KEY)
    files = validate.sequence(task.get("files", []), f"{TASK_KEY}.files")
    return StagedTask(sha256=validate.sha256_hex(task.get("sha256"), f"{TASK_KEY}.sha256"),
                      size=validate.count(task.get("size"), f"{TASK_KEY}.size"),
                      unzipped_size=validate.count(task.get("unzipped_size", 0), f"{TASK_KEY}.unzipped_size"),
                      files=tuple(_file(entry, index, f"{TASK_KEY}.files") for index, entry in enumerate(files)))


def _shapes(recorded: object) -> Shapes | None:
    if not isinstance(recorded, dict):
        return None
    try:
        return Shapes.from_json(recorded)
    except (ValueError, KeyError, TypeError):
        return None  # hand-edited or damaged: the stage itself says what it holds


def _layer(layer: object, position: int) -> StagedLayer:
    where = f"layers[{position}]"
    validate.mapping(layer, where)

    def counted(key: str, default: int | None) -> int | None:
        return validate.count(layer[key], f"{where}.{key}") if key in layer else default

    kind = layer.get("kind")
    return StagedLayer(
        index=counted("index", position),
        source=validate.text(layer.get("source"), f"{where}.source"),
        kind=None if kind is None else SourceKind(validate.one_of(kind, tuple(SourceKind), f"{where}.kind")),
        arn=validate.optional_layer_version_arn(layer.get("arn"), f"{where}.arn"),
        name=validate.optional_text(layer.get("name"), f"{where}.name"),
        version=validate.optional_version(layer.get("version"), f"{where}.version"),
        sha256=validate.sha256_hex(layer.get("sha256"), f"{where}.sha256"),
        size=counted("size", None),
        unzipped_size=counted("unzipped_size", 0),
        architectures=Arch.list_of_field(layer.get("architectures", []), f"{where}.architectures"),
        files=counted("files", 0),
    )


_DEFAULT_MODES = {EntryType.FILE: 0o644, EntryType.DIR: 0o755, EntryType.SYMLINK: 0o777}
_MODES: dict[str, int] = {}  # "0644" -> 0o644, filled as modes are read (a stage has a handful)


def _file(entry: object, index: int, where: str = "files") -> StagedFile:
    # A stage has thousands of entries: each field gets a cheap test first, and only a field
    # that fails it goes to the validator that names it and explains the problem.
    if type(entry) is not dict:
        validate.mapping(entry, f"{where}[{index}]")
    path = entry.get("path")
    if type(path) is not str or not path or not (path.isascii() and path.isprintable()) and (
            validate.CONTROL_RE.search(path)) or (
            (path[0] in "/." or path[-1] == "/" or "//" in path or "/." in path)
            and validate.BAD_RELATIVE_PATH_RE.search(path)):
        validate.relative_path(path, f"{where}[{index}].path")
    kind_text = entry.get("type")
    kind = STAGED_TYPE_NAMED.get(kind_text) if type(kind_text) is str else None
    if kind is None:
        validate.one_of(kind_text, tuple(STAGED_TYPE_NAMED), f"{where}[{index}].type")
    mode_text = entry.get("mode")
    mode = _DEFAULT_MODES[kind] if mode_text is None else _MODES.get(mode_text) if type(mode_text) is str else None
    if mode is None:
        mode = _mode(mode_text, f"{where}[{index}].mode")
    sha = entry.get("sha256")
    if sha is not None and not (type(sha) is str and validate.SHA256_RE.fullmatch(sha)):
        validate.sha256_hex(sha, f"{where}[{index}].sha256")
    target = entry.get("target")
    if target is not None and type(target) is not str:
        raise validate.Invalid(f"{where}[{index}].target", f"must be a string, not {type(target).__name__}")
    size, mtime, layer = entry.get("size"), entry.get("mtime"), entry.get("layer")
    if not ((size is None or type(size) is int and size >= 0) and (mtime is None or type(mtime) is int and mtime >= 0)
            and (layer is None or type(layer) is int and layer >= 0)):
        for key in ("size", "mtime", "layer"):
            value = entry.get(key)
            if value is not None:
                validate.count(value, f"{where}[{index}].{key}")
    overrode = entry.get("overrode") or ()
    if overrode:
        for position, earlier in enumerate(validate.sequence(overrode, f"{where}[{index}].overrode")):
            validate.count(earlier, f"{where}[{index}].overrode[{position}]")
    # Positional: a keyword call is measurably slower over thousands of entries.
    return StagedFile(path, kind, mode, size or 0, target, layer or 0, sha, mtime, tuple(overrode))


def _mode(text: object, field: str) -> int:
    """A mode as the manifest writes it (four octal digits), the first time it is seen."""
    if not (type(text) is str and validate.MODE_RE.fullmatch(text)):
        raise validate.Invalid(field, f"is not four octal digits: {validate.shown(text)}")
    _MODES[text] = int(text, 8)
    return _MODES[text]


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def write(stage_dir: Path, manifest: Manifest) -> None:
    """Write (or replace, in one step) `<stage_dir>/manifest.json`."""
    write_atomically(stage_dir / NAME, text(manifest))


def text(manifest: Manifest) -> str:
    """Sorted keys, one file (or layer) per line: diffs read well, and json's C encoder
    writes it (an indented dump goes through the much slower Python encoder); the files'
    lines, thousands of them, StagedFile.json_line writes."""
    data = manifest.to_json(files=False)
    encode = json.JSONEncoder(sort_keys=True).encode
    rows = {key: list(map(encode, value)) for key, value in data.items() if isinstance(value, list)}
    rows["files"] = [entry.json_line() for entry in manifest.files]
    fields = []
    for key in sorted(data.keys() | rows.keys()):
        if rows.get(key):
            lines = ",\n  ".join(rows[key])
            fields.append(f' {encode(key)}: [\n  {lines}\n ]')
        else:
            fields.append(f" {encode(key)}: {encode(data.get(key, []))}")
    return "{\n" + ",\n".join(fields) + "\n}\n"
