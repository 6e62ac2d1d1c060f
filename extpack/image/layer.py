"""The image's one layer: `opt/` of a stage as a streamed, hashed, deterministic tar.gz.

Nothing is read from the disk but names, contents, modes and symlink targets. Owners are
0/0 with empty names and every mtime is the build epoch (the gzip header's is 0). Entries
are sorted by their UTF-8 path bytes; headers are POSIX.1-2001 (pax) so long and non-ASCII
names are exact; hard links are written as separate files, so a cache that hard-links staged
files does not change the bytes. The compressed bytes depend on zlib (gzip level 6, no name,
mtime 0): identical for the same zlib, which CPython builds ship.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from extpack import nofollow
from extpack.exceptions import LayerContentError
from extpack.image.types import MEDIA_LAYER_GZIP, Blob

GZIP_LEVEL = 6
_CHUNK = 1 << 20
_BLOCK = 512


class _HashingWriter:
    """Counts and hashes what passes through to `sink` (the tar stream, then the gzip stream)."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


@dataclass(frozen=True)
class _Staged:
    rel: str
    stat: os.stat_result
    target: str | None  # a symlink's


def _walk_sorted(opt_fd: int) -> list[_Staged]:
    """Every path under opt/, relative, sorted by bytes (parents sort before children);
    iterative and through descriptors, so no link is followed and no depth is too deep."""
    def fail(rel: str, err: OSError) -> None:  # never skip an unreadable directory silently
        raise LayerContentError(f"cannot read the stage: opt/{rel}: {err.strerror}: check its permissions or run "
                                "extpack fetch again")

    found = [_Staged(item.rel, item.stat, item.readlink() if stat.S_ISLNK(item.stat.st_mode) else None)
             for item in nofollow.walk(opt_fd, on_error=fail)]
    return sorted(found, key=lambda staged: os.fsencode(staged.rel))


def _open_staged(opt_fd: int, staged: _Staged) -> int:
    """Open a walked file; it must still be the very inode the walk saw (no link swapped in on the way)."""
    try:
        fd = os.open(staged.rel, nofollow.FILE_FLAGS, dir_fd=opt_fd)
    except OSError as err:
        raise LayerContentError(f"cannot read staged file opt/{staged.rel}: {err.strerror}: run extpack fetch "
                                "again") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (staged.stat.st_dev, staged.stat.st_ino):
        os.close(fd)
        raise LayerContentError(f"staged file opt/{staged.rel} changed while the image was built: run extpack "
                                "fetch again")
    return fd


def _tarinfo(name: str, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _write_layer_tar(opt: Path, out: _HashingWriter, epoch: int) -> None:
    opt_fd = nofollow.open_dir(opt)
    try:
        _write_entries(opt_fd, out, epoch)
    finally:
        os.close(opt_fd)


def _write_entries(opt_fd: int, out: _HashingWriter, epoch: int) -> None:
    root = _tarinfo("opt", epoch)
    root.type, root.mode = tarfile.DIRTYPE, 0o755  # the stage dir's own mode is an artefact of how it was made
    out.write(_header(root))
    for staged in _walk_sorted(opt_fd):
        rel, st = staged.rel, staged.stat
        if any(part.startswith(".wh.") for part in rel.split("/")):
            raise LayerContentError(
                f"staged file opt/{rel} would be read as an OCI whiteout (.wh. prefix): remove it from the layer"
            )
        info = _tarinfo("opt/" + rel, epoch)
        # setuid/setgid are dropped, as fetch drops them; the rest of the mode is kept as staged
        mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
        if stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, mode
            out.write(_header(info))
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, staged.target
            out.write(_header(info))
        elif stat.S_ISREG(st.st_mode):
            with open(_open_staged(opt_fd, staged), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                info.type, info.mode, info.size = tarfile.REGTYPE, mode, size
                out.write(_header(info))
                left = size
                while left:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        raise LayerContentError(f"staged file opt/{rel} shrank while being read: run extpack fetch again")
                    out.write(chunk)
                    left -= len(chunk)
            if size % _BLOCK:
                out.write(b"\0" * (_BLOCK - size % _BLOCK))
        else:
            raise LayerContentError(
                f"staged path opt/{rel} is neither a file, a directory nor a symlink: run extpack fetch again"
            )
    out.write(b"\0" * (2 * _BLOCK))  # end-of-archive marker


@dataclass(frozen=True)
class Layer:
    """The compressed layer blob (in a file) and what the config says of its uncompressed tar."""

    blob: Blob
    diff_id: str


def build_layer(opt: Path, dest: Path, epoch: int) -> Layer:
    """Stream tar -> gzip -> `dest`, hashing both sides; nothing large is held in memory."""
    with open(dest, "wb") as raw:
        compressed = _HashingWriter(raw)
        # mtime=0 and no file name: the gzip header then carries nothing machine- or time-specific
        with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=compressed, mtime=0) as gz:
            uncompressed = _HashingWriter(gz)  # type: ignore[arg-type]
            _write_layer_tar(opt, uncompressed, epoch)
    blob = Blob(MEDIA_LAYER_GZIP, compressed.digest, compressed.size, path=dest)
    return Layer(blob, uncompressed.digest)
