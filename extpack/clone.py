"""How a stage gets a cached tree's files: a reflink, a hard link, or a copy.

A reflink (FICLONE: btrfs, XFS, bcachefs, ...) shares the blocks but not the inode, so a
`chmod` or an edit in one stage cannot reach another stage or the cache. A hard link shares
the inode; extpack then checks before `render` and `image` that the stage still matches its
manifest, and `link = false` (`fetch --no-link`) copies instead.

Every function works relative to directory descriptors and never follows a link at the
file itself; each returns the inode of the cache's file it placed, so the caller can hold
it to the inode that was verified (a file swapped in the cache is refused, not staged).
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

from extpack import nofollow

FICLONE = 0x40049409  # _IOW(0x94, 9, int), from linux/fs.h; Python's fcntl has no name for it
_CHUNK = 1 << 20
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# (path relative to both directories, source dir fd, destination dir fd) -> the source's inode
Place = Callable[[str, int, int], int]


def hard_link(path: str, source_fd: int, dest_fd: int) -> int:
    os.link(path, path, src_dir_fd=source_fd, dst_dir_fd=dest_fd, follow_symlinks=False)
    return os.stat(path, dir_fd=dest_fd, follow_symlinks=False).st_ino


def copy_file(path: str, source_fd: int, dest_fd: int, *, clone_only: bool = False) -> int:
    """A new file with the bytes, mode and mtime of the source: cloned when the filesystem
    can, else copied (or OSError with `clone_only`). The destination must not exist."""
    src = os.open(path, nofollow.FILE_FLAGS, dir_fd=source_fd)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(path)
        out = os.open(path, _NEW_FILE, 0o600, dir_fd=dest_fd)
        try:
            try:
                fcntl.ioctl(out, FICLONE, src)
            except OSError:
                if clone_only:
                    os.unlink(path, dir_fd=dest_fd)
                    raise
                while os.sendfile(out, src, None, _CHUNK):
                    pass
            os.fchmod(out, st.st_mode & 0o7777)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
        return st.st_ino
    finally:
        os.close(src)


def _clone_only(path: str, source_fd: int, dest_fd: int) -> int:
    return copy_file(path, source_fd, dest_fd, clone_only=True)


def sharing(probe_dir: Path, dest_dir: Path, *, allow_hard_links: bool) -> Place | None:
    """How files of a tree in the cache (probed with a file made in `probe_dir`) can reach
    `dest_dir`: a clone where the filesystem has reflinks, else a hard link (when allowed)
    or a copy; None when the two are not on one filesystem (the layer is then unpacked
    straight into the stage)."""
    name = ".link-probe"
    source_fd = nofollow.open_dir(probe_dir)
    dest_fd = nofollow.open_dir(dest_dir)
    try:
        os.close(os.open(name, _NEW_FILE, 0o600, dir_fd=source_fd))
        for place in (_clone_only, hard_link):
            try:
                place(name, source_fd, dest_fd)
            except OSError:
                continue
            os.unlink(name, dir_fd=dest_fd)
            if place is _clone_only:
                return copy_file
            return hard_link if allow_hard_links else copy_file
        return None
    finally:
        os.close(source_fd)
        os.close(dest_fd)
