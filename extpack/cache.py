"""Step 4: a content-addressed store of verified layer zips, and of their unpacked trees.

Blobs live at `blobs/sha256/<hex>` and only ever appear by an atomic rename of a file
whose hash was checked, so concurrent fetches sharing one cache cannot see a partial blob.
Beside a blob, `trees/v1/<hex>` may hold the layer unpacked (with an index of every path):
a new stage hard-links its files instead of inflating the zip again. A tree also appears
by one rename, and is used only while every file still has the size, mode and mtime it
was unpacked with; otherwise it is removed and the layer unpacked again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from extpack import nofollow
from extpack.atomic import discard, write_atomically
from extpack.exceptions import UsageError
from extpack.unpack import LayerTree

HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    env = os.environ.get("EXTPACK_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("extpack", appauthor=False))


def _stat_stamp(path: Path) -> str:
    st = os.lstat(path)
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def sha256_file(path: Path) -> str:
    return sha256_fd(os.open(path, os.O_RDONLY | os.O_CLOEXEC))


def sha256_fd(fd: int) -> str:
    """The sha256 of what `fd` reads (it is closed)."""
    digest = hashlib.sha256()
    with open(fd, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


STAMPS_NAME = "stamps.json"


@dataclass
class VerifiedTree(LayerTree):
    """A cached tree that passed `Cache.tree`'s checks, with the inode each file had then."""

    inodes: dict[str, int] = field(default_factory=dict)


def _read_text(dir_fd: int, name: str) -> str:
    with open(os.open(name, nofollow.FILE_FLAGS, dir_fd=dir_fd), "rb") as handle:
        return handle.read().decode()


def _read_stamps(folder_fd: int) -> dict[str, list[int]]:
    try:
        stamps = json.loads(_read_text(folder_fd, STAMPS_NAME))
    except FileNotFoundError:
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _verified_inodes(folder_fd: int, tree: LayerTree, stamps: dict[str, list[int]]) -> dict[str, int] | None:
    """path -> inode of every file when the tree on disk is what `tree` says, else None."""
    opt_fd = nofollow.open_dir("opt", folder_fd)
    inodes: dict[str, int] = {}
    directories = 0
    try:
        for item in nofollow.walk(opt_fd):
            node = tree.nodes.get(item.rel)
            if node is None or node.type == "symlink":
                continue  # never linked: a stage makes its symlinks anew
            st = item.stat
            if node.type == "dir":
                if not stat.S_ISDIR(st.st_mode):
                    return None
                directories += 1
                continue
            # A write through a stage's hard link changes the mtime; a chmod, the mode.
            if not stat.S_ISREG(st.st_mode) or st.st_size != node.size or stat.S_IMODE(st.st_mode) != node.mode \
                    or int(st.st_mtime) != node.mtime:
                return None
            stamp = stamps.get(item.rel)
            if (stamp is None or stamp[0] != st.st_ino or stamp[1] != st.st_ctime_ns) \
                    and sha256_fd(item.open()) != node.sha256:
                return None
            inodes[item.rel] = st.st_ino
    finally:
        os.close(opt_fd)
    expected = sum(1 for node in tree.nodes.values() if node.type == "file")
    expected_dirs = sum(1 for node in tree.nodes.values() if node.type == "dir")
    return inodes if len(inodes) == expected and directories == expected_dirs else None


@dataclass(frozen=True)
class CachedBlob:
    sha256: str
    path: Path
    size: int
    last_used: float


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.tmp_dir = root / "tmp"
        # Beside each blob: the stat it had when its sha256 was last checked (saves re-hashing
        # hundreds of MB on a warm build), and its unpacked tree.
        self.stamp_dir = root / "verified"
        self.tree_dir = root / "trees" / "v1"  # bump when what an unpack writes changes

    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256

    def lookup(self, sha256: str) -> Path | None:
        path = self.blob_path(sha256)
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None  # a link is not a blob
        except OSError:
            return None

    def new_temp(self) -> tuple[int, Path]:
        """An open temporary file on the cache's filesystem, for a download in progress."""
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=self.tmp_dir)
        except OSError as exc:
            raise UsageError(f"cannot write to the cache at {self.root} ({exc.strerror}): point "
                             "EXTPACK_CACHE_DIR or --cache-dir at a writable folder, or fetch with --no-cache") from None
        return fd, Path(name)

    def commit(self, temp_path: Path, sha256: str) -> Path:
        """Move a verified download into place; a concurrent writer of the same blob is harmless."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        final = self.blob_path(sha256)
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, final)
        self._stamp(sha256)
        return final

    def is_intact(self, sha256: str) -> bool:
        """True when the blob hashes to its name; the hash is skipped while its stat is unchanged
        since the last check (any write changes mtime, as make and git rely on)."""
        path = self.blob_path(sha256)
        try:
            if (self.stamp_dir / sha256).read_text() == _stat_stamp(path):
                return True
        except (FileNotFoundError, ValueError):
            pass
        try:
            if sha256_fd(os.open(path, nofollow.FILE_FLAGS)) != sha256:
                return False
        except OSError:  # a link (or unreadable): not a blob
            return False
        self._stamp(sha256)
        return True

    def _stamp(self, sha256: str) -> None:
        write_atomically(self.stamp_dir / sha256, _stat_stamp(self.blob_path(sha256)))

    def touch(self, sha256: str) -> None:
        """Record a use, so `cache prune --older-than` keeps what builds still need."""
        try:
            os.utime(self.blob_path(sha256))
            self._stamp(sha256)
        except OSError:
            pass

    def new_temp_dir(self) -> Path:
        """A private directory on the cache's filesystem, for a tree being unpacked."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="tree-", dir=self.tmp_dir))

    def commit_tree(self, temp_dir: Path, sha256: str, tree: LayerTree) -> LayerTree:
        """Move a tree unpacked at `temp_dir/opt` from the verified blob `sha256` into place."""
        (temp_dir / "index.json").write_text(tree.to_json())
        self.tree_dir.mkdir(parents=True, exist_ok=True)
        final = self.tree_dir / sha256
        try:
            os.rename(temp_dir, final)
        except OSError:  # a concurrent fetch stored the same tree first: use that one
            discard(temp_dir)
            stored = self.tree(sha256)
            if stored is None:
                raise
            return stored
        return tree.moved_to(final / "opt")

    def tree_size(self, sha256: str) -> int | None:
        """Bytes in the blob's unpacked tree, None when it has none (not checked: for listings)."""
        folder = self.tree_dir / sha256
        try:
            folder_fd = nofollow.open_dir(folder)
        except OSError:
            return None
        try:
            return LayerTree.from_json(folder / "opt", _read_text(folder_fd, "index.json")).unzipped_size
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        finally:
            os.close(folder_fd)

    def tree(self, sha256: str) -> VerifiedTree | None:
        """The unpacked tree of blob `sha256`, if there is one and it is intact.

        Intact means: every directory is a directory (not a link), and every file has the
        size, mode and mtime it was unpacked with and either the inode and ctime recorded
        when it was last linked (a write, even one that sets the mtime back, changes the
        ctime) or, when those moved (a stage linking it was removed, the cache was copied),
        the sha256 it was unpacked with. Anything else: the tree is removed, and the layer
        is unpacked again from its verified zip."""
        folder = self.tree_dir / sha256
        try:
            folder_fd = nofollow.open_dir(folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link or a file where the tree should be
                with contextlib.suppress(OSError):
                    discard(folder)
            return None
        try:
            tree = LayerTree.from_json(folder / "opt", _read_text(folder_fd, "index.json"))
            stamps = _read_stamps(folder_fd)
            inodes = _verified_inodes(folder_fd, tree, stamps)
        except (OSError, ValueError, KeyError, TypeError, IndexError):  # a link in it, or not what we wrote
            inodes = None
        finally:
            os.close(folder_fd)
        if inodes is None:
            with contextlib.suppress(OSError):  # another user's tree, say: unpack the blob instead
                discard(folder)
            return None
        return VerifiedTree(**tree.__dict__, inodes=inodes)

    def current_stamps(self, sha256: str, linked: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        """The (inode, ctime) of files just linked, now: after the old stage went, for example.
        A file that is no longer the inode that was linked is left out (hashed on next use)."""
        stamps = {}
        try:
            opt_fd = nofollow.open_dir(self.tree_dir / sha256 / "opt")
        except OSError:
            return {}
        try:
            for path, (inode, _) in linked.items():
                try:
                    st = os.stat(path, dir_fd=opt_fd, follow_symlinks=False)
                except OSError:
                    continue
                if st.st_ino == inode:
                    stamps[path] = (inode, st.st_ctime_ns)
        finally:
            os.close(opt_fd)
        return stamps

    def record_links(self, sha256: str, stamps: dict[str, tuple[int, int]]) -> None:
        """After linking a tree's files into a stage (which changes their ctime): what they are now."""
        if stamps:
            write_atomically(self.tree_dir / sha256 / STAMPS_NAME,
                             json.dumps(stamps, separators=(",", ":")), mode=0o600)

    def evict(self, sha256: str) -> None:
        for path in (self.blob_path(sha256), self.stamp_dir / sha256):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        discard(self.tree_dir / sha256)  # a tree, or a link where one should be (removed, not followed)

    def blobs(self) -> Iterator[CachedBlob]:
        if not self.blob_dir.is_dir():
            return
        for entry in sorted(os.scandir(self.blob_dir), key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                yield CachedBlob(entry.name, Path(entry.path), stat.st_size, stat.st_mtime)

    def prune(self, *, older_than_days: float | None = None) -> list[CachedBlob]:
        """Remove blobs (all, or those unused for N days) and stale temporary files."""
        cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
        removed = []
        for blob in list(self.blobs()):
            if cutoff is None or blob.last_used < cutoff:
                self.evict(blob.sha256)
                removed.append(blob)
        if self.tree_dir.is_dir():  # a tree is only ever used beside its blob
            for entry in os.scandir(self.tree_dir):
                if not self.blob_path(entry.name).is_file():
                    discard(Path(entry.path))
        self._remove_stale_temps()
        return removed

    def _remove_stale_temps(self) -> None:
        # A temp file untouched for a day belongs to a fetch that was killed, not one running.
        if not self.tmp_dir.is_dir():
            return
        for entry in os.scandir(self.tmp_dir):
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > 86400:
                try:
                    discard(Path(entry.path)) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
                except OSError:
                    pass
