"""Step 4: a content-addressed store of verified layer zips, and of their unpacked trees.

Blobs live at `blobs/sha256/<hex>` and only ever appear by an atomic rename of a file
whose hash was checked, so concurrent fetches sharing one cache cannot see a partial blob.
Beside a blob, `trees/v1/<hex>` may hold the layer unpacked (with an index of every path):
a new stage hard-links its files instead of inflating the zip again. A tree also appears
by one rename, and is used only while every file still has the size, mode and mtime it
was unpacked with; otherwise it is removed and the layer unpacked again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from extpack.atomic import discard
from extpack.unpack import LayerTree

HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    env = os.environ.get("EXTPACK_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("extpack", appauthor=False))


def _stat_stamp(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
        return path if path.is_file() else None

    def new_temp(self) -> tuple[int, Path]:
        """An open temporary file on the cache's filesystem, for a download in progress."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=self.tmp_dir)
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
        if sha256_file(path) != sha256:
            return False
        self._stamp(sha256)
        return True

    def _stamp(self, sha256: str) -> None:
        from extpack.atomic import write_atomically

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
            return LayerTree.from_json(folder / "opt", (folder / "index.json").read_text()).unzipped_size
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def tree(self, sha256: str) -> LayerTree | None:
        """The unpacked tree of blob `sha256`, if there is one and it is intact."""
        folder = self.tree_dir / sha256
        try:
            tree = LayerTree.from_json(folder / "opt", (folder / "index.json").read_text())
        except OSError:  # no tree (or none we may read): unpack the blob instead
            return None
        except (ValueError, KeyError, TypeError, IndexError):
            discard(folder)
            return None
        root = str(tree.root) + "/"
        try:
            for path, node in tree.nodes.items():
                if node.type == "file":
                    st = os.lstat(root + path)
                    # A write through a stage's hard link changes the mtime; a chmod, the mode.
                    if not stat.S_ISREG(st.st_mode) or st.st_size != node.size \
                            or stat.S_IMODE(st.st_mode) != node.mode or int(st.st_mtime) != node.mtime:
                        raise FileNotFoundError(path)
        except OSError:
            discard(folder)
            return None
        return tree

    def evict(self, sha256: str) -> None:
        for path in (self.blob_path(sha256), self.stamp_dir / sha256):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if (self.tree_dir / sha256).is_dir():
            discard(self.tree_dir / sha256)

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
