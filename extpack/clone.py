"""How a stage gets a cached tree's files: a reflink, a hard link, or a copy.

A reflink (FICLONE: btrfs, XFS, bcachefs, ...) shares the blocks but not the inode, so a
`chmod` or an edit in one stage cannot reach another stage or the cache. A hard link shares
the inode; extpack then checks before `render` and `image` that the stage still matches its
manifest, and `link = false` (`fetch --no-link`) copies instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

FICLONE = 0x40049409  # _IOW(0x94, 9, int), from linux/fs.h; Python's fcntl has no name for it
_CHUNK = 1 << 20

Place = Callable[[str, str], None]


def copy_file(source: str, dest: str, *, clone_only: bool = False) -> None:
    """A new file at `dest` with the bytes, mode and mtime of `source`: cloned when the
    filesystem can, else copied (or OSError with `clone_only`). `dest` must not exist (a
    link there is not followed)."""
    with open(source, "rb") as src:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            try:
                fcntl.ioctl(out.fileno(), FICLONE, src.fileno())
            except OSError:
                if clone_only:
                    os.unlink(dest)
                    raise
                shutil.copyfileobj(src, out, _CHUNK)
        st = os.fstat(src.fileno())
    os.chmod(dest, st.st_mode & 0o7777)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def sharing(probe_file: Path, dest_dir: Path, *, allow_hard_links: bool) -> Place | None:
    """How files of a tree beside `probe_file` can reach `dest_dir`: a clone where the
    filesystem has reflinks, else a hard link (when allowed) or a copy; None when the two
    are not on one filesystem (the layer is then unpacked straight into the stage)."""
    dest = dest_dir / ".link-probe"
    try:
        copy_file(str(probe_file), str(dest), clone_only=True)
        os.unlink(dest)
        return copy_file
    except OSError:
        pass
    try:
        os.link(probe_file, dest)
        os.unlink(dest)
    except OSError:
        return None
    return os.link if allow_hard_links else copy_file
