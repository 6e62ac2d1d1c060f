"""Fast extraction of one zip entry: read the raw deflate stream and inflate it ourselves.

zipfile inflates with the standard zlib and holds a lock around its shared file object;
reading with pread and inflating with zlib-ng (when installed) is about twice as fast and
releases the GIL, so several entries unpack at once on several cores. The same checks as
zipfile's are made: the output is capped at the declared size and its CRC-32 must match.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile

try:  # zlib-ng is a maintained drop-in with a faster inflater; fall back to the stdlib.
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    import zlib

READ_CHUNK = 1 << 20
OUTPUT_CHUNK = 4 << 20
LOCAL_HEADER = struct.Struct("<4s5H3L2H")
LOCAL_SIGNATURE = b"PK\x03\x04"
FAST_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


class EntryError(Exception):
    """The entry's bytes are not what the central directory promises."""


def data_offset(fd: int, info: zipfile.ZipInfo) -> int:
    """Where the entry's compressed data starts, from its local header."""
    header = os.pread(fd, LOCAL_HEADER.size, info.header_offset)
    if len(header) != LOCAL_HEADER.size:
        raise EntryError("its local header is truncated")
    fields = LOCAL_HEADER.unpack(header)
    if fields[0] != LOCAL_SIGNATURE:
        raise EntryError("its local header is missing (bad offset)")
    name_length, extra_length = fields[9], fields[10]
    return info.header_offset + LOCAL_HEADER.size + name_length + extra_length


def extract(fd: int, info: zipfile.ZipInfo, out_fd: int, data_end: int) -> str:
    """Write the entry's content to `out_fd`; return its sha256.

    Raises EntryError."""
    start = data_offset(fd, info)
    if start + info.compress_size > data_end:
        raise EntryError("its data runs past the end of the zip's data")
    digest = hashlib.sha256()
    crc = 0
    written = 0
    inflater = _inflater() if info.compress_type == zipfile.ZIP_DEFLATED else None
    position, remaining = start, info.compress_size
    while True:
        if inflater is None or inflater.needs_input:
            if not remaining:
                break
            raw = os.pread(fd, min(READ_CHUNK, remaining), position)
            if not raw:
                raise EntryError("the zip is truncated")
            position += len(raw)
            remaining -= len(raw)
        else:  # output is still pending from the input given before
            raw = b""
        # Never produce more than was declared: a lying size cannot make us write more.
        budget = info.file_size - written
        # At most OUTPUT_CHUNK at a time, so a highly compressed entry never sits whole in memory.
        try:
            chunk = inflater.decompress(raw, min(budget + 1, OUTPUT_CHUNK)) if inflater is not None \
                else raw[: budget + 1]
        except zlib.error as exc:
            raise EntryError(f"its compressed data is invalid ({exc})") from None
        if len(chunk) > budget:
            raise EntryError("it holds more data than its declared size")
        crc = zlib.crc32(chunk, crc)
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out_fd, view):]
        written += len(chunk)
        if inflater is not None and inflater.eof:
            break  # bytes after the end of the deflate stream are ignored, as zipfile does
    if inflater is not None and not inflater.eof:
        raise EntryError("its compressed data ends early")
    if written != info.file_size:
        raise EntryError(f"it holds {written} bytes, not the declared {info.file_size}")
    if crc != info.CRC:
        raise EntryError("its CRC-32 does not match (corrupt data)")
    return digest.hexdigest()


def _inflater():
    """A raw-deflate decompressor that releases the GIL while it inflates, so entries inflate
    on several cores at once: zlib-ng's (and Python 3.12's) _ZlibDecompressor; zlib-ng's
    decompressobj holds the GIL (measured: two threads take twice as long as one)."""
    make = getattr(zlib, "_ZlibDecompressor", None)
    return make(-15) if make is not None else _DecompressObj()


class _DecompressObj:
    """The standard zlib.decompressobj (which releases the GIL) behind _ZlibDecompressor's interface."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(-15)

    @property
    def eof(self) -> bool:
        return self._inflater.eof

    @property
    def needs_input(self) -> bool:
        return not self._inflater.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._inflater.decompress(data or self._inflater.unconsumed_tail, max_length)
