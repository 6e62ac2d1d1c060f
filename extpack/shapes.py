"""What shapes a staged /opt takes: extensions, wrapper scripts, and runtime library roots.

Real layers come in three shapes: a pure extension (`/opt/extensions/NAME`), a wrapper script
that only runs when AWS_LAMBDA_EXEC_WRAPPER points at it (ADOT's `/opt/otel-instrument`), and
a library under one of the folders Lambda's managed runtimes put on their search paths
(`/opt/python`, `/opt/nodejs/node_modules`, ...). Detection is pure: it reads the staged
entries (path, type, mode) and, for the few executables directly under /opt, their first
bytes through `read_head`.

The wrapper heuristic: an executable regular file directly under /opt whose first line is a
`#!` line and that hands its own arguments on to another program: a line (not a comment)
that runs `exec ... "$@"` (any spelling of `$@`: `"$@"`, `"${@}"`, `$@`), a last command
line that passes `"$@"` on (ADOT's Python `otel-instrument` ends `python3 ... "$@"` without
exec), or, in another language, an `os.exec*`/`execvp` call that passes argv on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import nofollow
from extpack.model import EntryType, TreeEntry, is_extension

if TYPE_CHECKING:
    from extpack.manifest import Manifest

HEAD_BYTES = 64 * 1024  # wrapper scripts are short; a bigger file is read only this far

# Lambda's "Layer paths for each Lambda runtime" table
# (https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html#packaging-layers-paths):
# folder under /opt -> (runtime, variable the managed runtime puts it on).
LIBRARY_ROOTS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"python"), "python", "PYTHONPATH"),
    (re.compile(r"python/lib/python3\.\d+/site-packages"), "python", "PYTHONPATH"),
    (re.compile(r"nodejs/node_modules"), "nodejs", "NODE_PATH"),
    (re.compile(r"nodejs/node\d+/node_modules"), "nodejs", "NODE_PATH"),
    (re.compile(r"java/lib"), "java", "CLASSPATH"),
    (re.compile(r"ruby/gems/\d+\.\d+\.\d+"), "ruby", "GEM_PATH"),
    (re.compile(r"ruby/lib"), "ruby", "RUBYLIB"),
    (re.compile(r"bin"), "all", "PATH"),
    (re.compile(r"lib"), "all", "LD_LIBRARY_PATH"),
)

_SHELL_PASSES_ARGS = re.compile(r"^[^#\n]*\bexec\b[^#\n]*\$(?:@|\{@\})", re.M)
_PASSES_ARGS = re.compile(r"\$(?:@|\{@\})")
_NOT_A_RUN = re.compile(r"\s*(?:for|set|echo|printf|local|export|shift)\b")
_OTHER_PASSES_ARGS = re.compile(r"\b(?:os\.exec\w*|execvp?e?|exec)\s*\([^)\n]*\bargv\b")


@dataclass(frozen=True)
class Wrapper:
    path: str  # "/opt/otel-instrument"
    layer: int  # index of the layer the file came from


@dataclass(frozen=True)
class LibraryRoot:
    path: str  # "/opt/python/lib/python3.12/site-packages"
    runtime: str  # python, nodejs, java, ruby, or "all"
    variable: str  # the variable Lambda's runtimes put it on
    layers: tuple[int, ...]  # the layers with files under it


@dataclass(frozen=True)
class Shapes:
    extensions: tuple[str, ...] = ()
    wrappers: tuple[Wrapper, ...] = ()
    library_roots: tuple[LibraryRoot, ...] = ()

    def to_json(self) -> dict:
        return {"extensions": list(self.extensions), "wrappers": [asdict(w) for w in self.wrappers],
                "library_roots": [{**asdict(r), "layers": list(r.layers)} for r in self.library_roots]}

    @classmethod
    def from_json(cls, data: dict) -> Shapes:
        """The manifest's record, checked: its paths reach Dockerfiles and terminals, so a
        path that detection could not have produced is a ValueError (the caller detects anew)."""
        extensions = tuple(_checked_path(path, _EXTENSION) for path in data.get("extensions", []))
        wrappers = tuple(Wrapper(_checked_path(w["path"], _TOP_LEVEL), _checked_layer(w["layer"]))
                         for w in data.get("wrappers", []))
        roots = []
        for root in data.get("library_roots", []):
            runtime, variable = _root_kind(_checked_path(root["path"], _OPT)[len("/opt/"):])
            roots.append(LibraryRoot(root["path"], runtime, variable, tuple(map(_checked_layer, root["layers"]))))
        return cls(extensions, wrappers, tuple(roots))


def detect(entries: Iterable[TreeEntry], read_head: Callable[[str], bytes]) -> Shapes:
    """The shapes of a staged tree. `read_head(path)` gives a file's first bytes."""
    entries = sorted(entries, key=lambda e: e.path)
    extensions = tuple(f"/opt/{e.path}" for e in entries if is_extension(e.path))
    wrappers = tuple(Wrapper(f"/opt/{e.path}", e.layer) for e in entries
                     if _may_be_wrapper(e) and is_wrapper_script(read_head(e.path)))
    return Shapes(extensions, wrappers, _library_roots(entries))


def is_wrapper_script(head: bytes) -> bool:
    if not head.startswith(b"#!"):
        return False
    text = head.decode("utf-8", "replace")
    if _SHELL_PASSES_ARGS.search(text) or _OTHER_PASSES_ARGS.search(text):
        return True
    commands = [line for line in text.splitlines()[1:] if line.strip() and not line.lstrip().startswith("#")]
    last = commands[-1] if commands else ""
    return bool(_PASSES_ARGS.search(last)) and not _NOT_A_RUN.match(last)


def _may_be_wrapper(entry: TreeEntry) -> bool:
    return "/" not in entry.path and entry.type == EntryType.FILE and bool(entry.mode & 0o111)


_OPT = re.compile(r"/opt/[^\x00-\x1f\x7f]+")
_TOP_LEVEL = re.compile(r"/opt/[^/\x00-\x1f\x7f]+")
_EXTENSION = re.compile(r"/opt/extensions/[^/\x00-\x1f\x7f]+")


def _checked_path(path: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(path, str) or not pattern.fullmatch(path):
        raise ValueError(f"not a path detection gives: {path!r}")
    return path


def _checked_layer(layer: object) -> int:
    if type(layer) is not int or layer < 0:
        raise ValueError(f"not a layer index: {layer!r}")
    return layer


def _root_kind(path: str) -> tuple[str, str]:
    """(runtime, variable) of a library folder relative to /opt; ValueError if it is none."""
    for pattern, runtime, variable in LIBRARY_ROOTS:
        if pattern.fullmatch(path):
            return runtime, variable
    raise ValueError(f"not a library root: {path!r}")


def _library_roots(entries: list[TreeEntry]) -> tuple[LibraryRoot, ...]:
    roots = {}
    for entry in entries:
        if entry.type != EntryType.DIR:
            continue
        try:
            roots[entry.path] = _root_kind(entry.path)
        except ValueError:
            continue
    layers: dict[str, set[int]] = {path: set() for path in roots}
    by_top: dict[str, list[str]] = {}  # a stage has thousands of files and a few roots
    for path in roots:
        by_top.setdefault(path.split("/", 1)[0], []).append(path)
    for entry in entries:
        candidates = by_top.get(entry.path.split("/", 1)[0]) if entry.type != EntryType.DIR else None
        for path in candidates or ():
            if entry.path.startswith(path + "/"):
                layers[path].add(entry.layer)
    # An empty folder puts nothing on a path: only roots that hold something count.
    return tuple(LibraryRoot(f"/opt/{path}", *roots[path], tuple(sorted(layers[path])))
                 for path in sorted(roots) if layers[path])


def detect_in_tree(entries: Iterable[TreeEntry], opt: Path) -> Shapes:
    """Detect over `entries`, reading the files from the staged `opt` folder (never through a link)."""
    try:
        opt_fd = nofollow.open_dir(opt)
    except OSError:
        return detect(entries, lambda path: b"")
    try:
        return detect(entries, lambda path: _read_head(opt_fd, path))
    finally:
        os.close(opt_fd)


def detect_in_manifest(manifest: Manifest, stage_dir: Path) -> Shapes:
    """Detect from the manifest's `files` and the staged files on disk."""
    return detect_in_tree(manifest.files, stage_dir / "opt")


def _read_head(opt_fd: int, path: str) -> bytes:
    try:
        with open(nofollow.open_beneath(opt_fd, path), "rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError:
        return b""


def shapes_of(manifest: Manifest, stage_dir: Path) -> Shapes:
    """The manifest's recorded shapes; for a manifest written before they were recorded (or
    whose record is damaged), detected from the stage now."""
    return manifest.shapes if manifest.shapes is not None else detect_in_manifest(manifest, stage_dir)


def wrapper_hints(shapes: Shapes) -> list[str]:
    return [f"layer {w.layer + 1} ships {w.path}, a wrapper: set AWS_LAMBDA_EXEC_WRAPPER={w.path} "
            f"(extpack render --wrapper {w.path})" for w in shapes.wrappers]
