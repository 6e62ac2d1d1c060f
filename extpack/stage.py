"""Step 6: check the unpacked tree, describe it in a manifest, and swap it into place.

A stage is built beside the old one and swapped in at the end, so a failed or
interrupted fetch leaves the previous stage and lock exactly as they were.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from extpack.atomic import discard, write_atomically

if TYPE_CHECKING:
    from extpack.overlay import StageTree

MANIFEST_SCHEMA = "extpack.manifest/v1"
MANIFEST_NAME = "manifest.json"
EXTENSIONS_DIR = "extensions"


@dataclass(frozen=True)
class LayerRecord:
    index: int
    source: str
    kind: str
    arn: str | None
    name: str
    version: int | None
    sha256: str
    size: int
    unzipped_size: int
    architectures: tuple[str, ...]
    files: int

    def to_json(self) -> dict:
        return {**self.__dict__, "architectures": list(self.architectures)}


def manifest_json(tree: StageTree, arch: str, layers: list[LayerRecord], max_layer_size: int) -> dict:
    files = []
    for path in sorted(tree.nodes):
        node = tree.nodes[path]
        files.append({
            "path": path, "type": node.type, "mode": f"{node.mode:04o}", "size": node.size,
            "sha256": node.sha256, "target": node.target, "mtime": node.mtime, "layer": node.layer,
            "overrode": node.overrode,
        })
    return {
        "schema": MANIFEST_SCHEMA,
        "arch": arch,
        "max_layer_size": max_layer_size,
        "layers": [layer.to_json() for layer in layers],
        "files": files,
        "total_size": sum(f["size"] for f in files),
    }


def read_manifest(stage_dir: Path) -> dict | None:
    try:
        data = json.loads((stage_dir / MANIFEST_NAME).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA else None


def stage_differences(stage_dir: Path, manifest: dict, *, limit: int = 50, contents: bool = False) -> list[str]:
    """What on disk differs from the manifest: missing, extra or changed entries.

    By stat (type, mode, size, mtime, link target) unless `contents`, which also hashes files.
    """
    opt = stage_dir / "opt"
    expected = {entry["path"]: entry for entry in manifest.get("files", [])}
    problems: list[str] = []
    actual: set[str] = set()
    if not opt.is_dir():
        return [f"{opt} is missing"]
    for rel, full in _scan(str(opt)):
        actual.add(rel)
        entry = expected.get(rel)
        if entry is None:
            problems.append(f"extra: /opt/{rel}")
        else:
            problem = _entry_difference(full, entry, contents)
            if problem:
                problems.append(f"changed: /opt/{rel} ({problem})")
        if len(problems) >= limit:
            return problems
    problems.extend(f"missing: /opt/{path}" for path in sorted(set(expected) - actual))
    return problems[:limit]


def require_unshared_unchanged(stage_dir: Path, manifest: dict | None = None) -> None:
    """Exit 6 when a file the stage shares with the cache (a hard link) no longer has the size,
    mode and mtime it was staged with: it was edited or chmod-ed here or in another stage linked
    from the same cache tree. Cheap (one lstat a file): run before every render and image.
    A file of the stage's own is the user's to change."""
    from extpack.exceptions import DriftError

    manifest = manifest or read_manifest(stage_dir)
    if manifest is None:
        return  # no stage: the command reports that itself
    opt = f"{stage_dir / 'opt'}/"
    for entry in manifest.get("files", []):
        if entry["type"] != "file":
            continue
        try:
            st = os.lstat(opt + entry["path"])
        except OSError:
            continue  # not a shared file any more
        if st.st_nlink < 2:
            continue
        problem = _entry_difference(opt + entry["path"], entry, contents=False)
        if problem:
            raise DriftError(f"the stage {stage_dir} no longer matches its manifest (/opt/{entry['path']}: {problem}; "
                             "it shares its inode with the cache and other stages): run extpack fetch to restore "
                             "it, and fetch --no-link for a stage of its own")


def _scan(root: str):
    """(path relative to root, full path) of everything below root, links not followed.

    Builds relative paths as it goes: os.walk + relpath costs more than the stat calls.
    """
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                yield rel, entry.path
                if entry.is_dir(follow_symlinks=False):
                    pending.append((rel + "/", entry.path))


def _entry_difference(full: str, entry: dict, contents: bool) -> str | None:
    st = os.lstat(full)
    kind = "symlink" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else \
        "file" if stat.S_ISREG(st.st_mode) else "other"
    if kind != entry["type"]:
        return f"is a {kind}, expected a {entry['type']}"
    if kind == "symlink":
        target = os.readlink(full)
        return None if target == entry["target"] else f"points to {target}, expected {entry['target']}"
    if kind == "dir":
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        return None if mode == entry["mode"] else f"mode {mode}, expected {entry['mode']}"
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    if mode != entry["mode"]:
        return f"mode {mode}, expected {entry['mode']}"
    if st.st_size != entry["size"]:
        return f"size {st.st_size}, expected {entry['size']}"
    if contents:
        from extpack.cache import sha256_file

        return None if sha256_file(Path(full)) == entry["sha256"] else "content differs"
    if int(st.st_mtime) != entry.get("mtime", int(st.st_mtime)):
        return "modified since it was staged"
    return None


def new_build_dir(stage_dir: Path) -> Path:
    """A fresh directory beside the stage (same filesystem, so the final swap is a rename)."""
    parent = stage_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{stage_dir.name}.build-", dir=parent))
    os.chmod(build, 0o755)  # mkdtemp makes it private; a stage is meant to be read by builds
    return build


def write_manifest(build_dir: Path, manifest: dict) -> None:
    (build_dir / MANIFEST_NAME).write_text(manifest_text(manifest))


def manifest_text(manifest: dict) -> str:
    """Sorted keys, one file (or layer) per line: diffs read well, and json's C encoder
    writes it (an indented dump goes through the much slower Python encoder)."""
    encode = json.JSONEncoder(sort_keys=True).encode
    fields = []
    for key in sorted(manifest):
        value = manifest[key]
        if isinstance(value, list) and value:
            rows = ",\n  ".join(map(encode, value))
            fields.append(f' {encode(key)}: [\n  {rows}\n ]')
        else:
            fields.append(f" {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


@contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM while swapping, so an interrupt cannot split stage from lock."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def commit(build_dir: Path, stage_dir: Path, lock_path: Path | None, lock_text: str | None) -> None:
    """Swap the new stage in and write the lock; the old stage is removed last."""
    stage_dir = stage_dir.absolute()
    retired = None
    with _signals_held():
        if stage_dir.exists() or stage_dir.is_symlink():
            retired = Path(tempfile.mkdtemp(prefix=f".{stage_dir.name}.old-", dir=stage_dir.parent))
            os.rename(stage_dir, retired / "stage")
        os.rename(build_dir, stage_dir)
        if lock_path is not None and lock_text is not None:
            write_atomically(lock_path, lock_text)
            os.utime(stage_dir / MANIFEST_NAME)  # the stage is never older than its lock
    if retired is not None:
        discard(retired)


def refresh_manifest(stage_dir: Path) -> None:
    """After `doctor --fix`: drop removed entries and record the new modes."""
    manifest = read_manifest(stage_dir)
    if manifest is None:
        return
    kept = []
    for entry in manifest["files"]:
        full = stage_dir / "opt" / entry["path"]
        if not full.exists() and not full.is_symlink():
            continue
        if entry["type"] != "symlink":
            entry["mode"] = f"{stat.S_IMODE(os.lstat(full).st_mode):04o}"
        kept.append(entry)
    manifest["files"] = kept
    manifest["total_size"] = sum(entry["size"] for entry in kept)
    write_atomically(stage_dir / MANIFEST_NAME, manifest_text(manifest))
