"""Step 6: check the unpacked tree, describe it in a manifest, and swap it into place.

A stage is built beside the old one and swapped in at the end, so a failed or
interrupted fetch leaves the previous stage and lock exactly as they were.
"""

from __future__ import annotations

import os
import signal
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import manifest as manifests
from extpack import nofollow
from extpack.atomic import discard, write_atomically
from extpack.exceptions import UsageError
from extpack.manifest import Manifest, StagedFile, StagedLayer, StagedTask
from extpack.model import STAGED_TYPE_NAMED, Arch, EntryType
from extpack.shapes import detect_in_manifest, detect_in_tree

if TYPE_CHECKING:
    from extpack.overlay import StageTree

OPT_DIR = "opt"
TASK_DIR = "task"  # a converted function's own code (fetch --function --with-code)


def manifest_of(tree: StageTree, arch: Arch, layers: list[StagedLayer], max_layer_size: int) -> Manifest:
    """The manifest of a built tree: every entry, and the shapes it takes."""
    files = tuple(
        StagedFile(path, STAGED_TYPE_NAMED[node.type], node.mode, node.size, node.target, node.layer, node.sha256,
                   node.mtime, tuple(node.overrode))
        for path, node in sorted(tree.nodes.items()))
    shapes = detect_in_tree(files, tree.root)
    return Manifest.of(arch, tuple(layers), files, max_layer_size=max_layer_size, shapes=shapes)


def open_stage(stage_dir: Path) -> int:
    """The stage dir's descriptor, for commands that read a stage: a symlinked stage dir is
    refused (extpack never reads, changes or deletes through a link), a missing one too."""
    try:
        return nofollow.open_dir(stage_dir)
    except FileNotFoundError:
        raise UsageError(f"no stage at {stage_dir}: run extpack fetch first") from None
    except OSError:
        if stage_dir.is_symlink():
            raise UsageError(f"{stage_dir} is a symlink: extpack does not follow links out of a stage; give "
                             "the directory itself (or remove the link and run extpack fetch)") from None
        raise UsageError(f"{stage_dir} is not a stage directory: run extpack fetch first") from None


def refuse_symlinked_stage(stage_dir: Path) -> None:
    """fetch replaces a stage, never what a symlinked stage dir points to: refuse it up front."""
    if stage_dir.is_symlink():
        raise UsageError(f"{stage_dir} is a symlink: extpack does not write through links; give --stage-dir the "
                         "directory itself (or remove the link)")


def check_stage(stage_dir: Path) -> None:
    """Refuse, with a clear line, a stage dir or opt that is missing or a symlink."""
    os.close(open_stage_opt(stage_dir))


def open_stage_opt(stage_dir: Path) -> int:
    """The descriptor of `<stage>/opt`, for a command that reads a stage (the caller closes it)."""
    stage_fd = open_stage(stage_dir)
    try:
        return open_opt(stage_dir, stage_fd)
    finally:
        os.close(stage_fd)


def open_opt(stage_dir: Path, stage_fd: int) -> int:
    """The descriptor of `<stage>/opt`; one that is a symlink (fetch never makes one) is refused."""
    try:
        return nofollow.open_dir(OPT_DIR, stage_fd)
    except FileNotFoundError:
        raise UsageError(f"no stage at {stage_dir}: run extpack fetch first") from None
    except OSError:
        raise UsageError(f"{stage_dir}/{OPT_DIR} is not a directory (a symlink?): extpack does not follow links "
                         "out of a stage; run extpack fetch again to rebuild it") from None


def stage_differences(stage_dir: Path, manifest: Manifest | StagedTask, *, limit: int = 50,
                      contents: bool = False, subdir: str = OPT_DIR) -> list[str]:
    """What on disk differs from the manifest: missing, extra or changed entries (under
    `<stage>/opt`, or for a converted function's code, its StagedTask under `<stage>/task`).

    By stat (type, mode, size, mtime, link target) unless `contents`, which also hashes files.
    Links are compared as links, never followed (nor is a symlinked stage dir or opt).
    """
    expected = {entry.path: entry for entry in manifest.files}
    problems: list[str] = []
    actual: set[str] = set()
    try:
        stage_fd = nofollow.open_dir(stage_dir)
    except OSError:
        return [f"{stage_dir} is not a directory"]
    try:
        opt_fd = nofollow.open_dir(subdir, stage_fd)
    except OSError:
        return [f"{stage_dir / subdir} is missing or not a directory"]
    finally:
        os.close(stage_fd)

    unreadable: list[str] = []

    def cannot_read(rel: str, exc: OSError) -> None:
        unreadable.append(rel + "/")
        problems.append(f"unreadable: /{subdir}/{rel} ({exc.strerror})")

    try:
        for item in nofollow.walk(opt_fd, on_error=cannot_read):
            actual.add(item.rel)
            entry = expected.get(item.rel)
            if entry is None:
                problems.append(f"extra: /{subdir}/{item.rel}")
            else:
                problem = _entry_difference(item, entry, contents)
                if problem:
                    problems.append(f"changed: /{subdir}/{item.rel} ({problem})")
            if len(problems) >= limit:
                return problems
    finally:
        os.close(opt_fd)
    problems.extend(f"missing: /{subdir}/{path}" for path in sorted(set(expected) - actual)
                    if not path.startswith(tuple(unreadable)))
    return problems[:limit]


def require_unshared_unchanged(stage_dir: Path, manifest: Manifest | None = None) -> None:
    """Exit 6 when a file the stage shares with the cache (a hard link) no longer has the size,
    mode and mtime it was staged with: it was edited or chmod-ed here or in another stage linked
    from the same cache tree. Cheap (one lstat a file, links never followed): run before every
    render and image. A file of the stage's own is the user's to change."""
    from extpack.exceptions import DriftError

    manifest = manifest or manifests.read(stage_dir)
    if manifest is None:
        return  # no stage: the command reports that itself
    files = {entry.path: entry for entry in manifest.files if entry.type is EntryType.FILE}
    try:
        opt_fd = open_stage_opt(stage_dir)
    except UsageError:
        return  # the command itself reports a missing or symlinked stage
    try:
        for item in nofollow.walk(opt_fd, on_error=lambda rel, exc: None):
            entry = files.get(item.rel)
            if entry is None or item.stat.st_nlink < 2:
                continue
            problem = _entry_difference(item, entry, contents=False)
            if problem:
                raise DriftError(f"the stage {stage_dir} no longer matches its manifest (/opt/{entry.path}: "
                                 f"{problem}; it shares its inode with the cache and other stages): run extpack "
                                 "fetch to restore it, and fetch --no-link for a stage of its own")
    finally:
        os.close(opt_fd)


def _entry_difference(item: nofollow.Item, entry: StagedFile, contents: bool) -> str | None:
    st = item.stat
    kind = EntryType.of_mode(st.st_mode)
    if kind != entry.type:
        return f"is a {kind}, expected a {entry.type}"
    if kind is EntryType.SYMLINK:
        target = item.readlink()
        return None if target == entry.target else f"points to {target}, expected {entry.target}"
    mode = stat.S_IMODE(st.st_mode)  # compared as numbers, written as the manifest writes them
    if mode != entry.mode:
        return f"mode {mode:04o}, expected {entry.mode_text}"
    if kind is EntryType.DIR:
        return None
    if st.st_size != entry.size:
        return f"size {st.st_size}, expected {entry.size}"
    if contents:
        from extpack.cache import sha256_fd

        try:
            digest = sha256_fd(item.open())
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        return None if digest == entry.sha256 else "content differs"
    if int(st.st_mtime) != (int(st.st_mtime) if entry.mtime is None else entry.mtime):
        return "modified since it was staged"
    return None


def new_build_dir(stage_dir: Path) -> Path:
    """A fresh directory beside the stage (same filesystem, so the final swap is a rename)."""
    parent = stage_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{stage_dir.name}.build-", dir=parent))
    os.chmod(build, 0o755)  # mkdtemp makes it private; a stage is meant to be read by builds
    return build


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
            os.utime(stage_dir / manifests.NAME)  # the stage is never older than its lock
    if retired is not None:
        discard(retired)


def refresh_manifest(stage_dir: Path) -> None:
    """After `doctor --fix`: drop removed entries and record the new modes (links not followed)."""
    manifest = manifests.read(stage_dir)
    if manifest is None:
        return
    opt_fd = open_stage_opt(stage_dir)
    try:
        present = {item.rel: item.stat for item in nofollow.walk(opt_fd, on_error=lambda rel, exc: None)}
    finally:
        os.close(opt_fd)
    kept = tuple(entry if entry.type is EntryType.SYMLINK else
                 replace(entry, mode=stat.S_IMODE(present[entry.path].st_mode))
                 for entry in manifest.files if entry.path in present)
    refreshed = Manifest.of(manifest.arch, manifest.layers, kept, max_layer_size=manifest.max_layer_size)
    refreshed = replace(refreshed, shapes=detect_in_manifest(refreshed, stage_dir))
    manifests.write(stage_dir, refreshed)
