"""The zip's layout, checked before anything trusts it: the parser agrees with `unzip` or refuses.

zipfile.ZipFile() reads the whole central directory into ZipInfo objects in its constructor,
so a zip that declares (or holds) millions of entries costs gigabytes before any check of
ours runs. `check_central_directory` reads the end record and walks the central directory
itself, keeping nothing, and refuses too many entries or too big a directory first.

After zipfile has parsed it, `check_local_headers` reads each entry's local header, where
`unzip` and our inflater find the data: its name must be the central directory's name, and
the data it starts must not overlap another entry's or the central directory.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

from extpack.exceptions import LayerContentError

# Memory grows with the entries (zipfile's ZipInfo, the tree's nodes, the manifest: ~2.5 KB an
# entry with their names); these limits keep any accepted zip's fetch under 150 MB (measured:
# 50,000 entries with 95-byte paths, a 6.9 MB directory, peak 149 MB; most real layers hold
# a few thousand entries).
MAX_ENTRIES = 50_000
MAX_CENTRAL_DIRECTORY_BYTES = 6 << 20
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")  # zipfile's structCentralDir
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader
_LOCAL_SIGNATURE = b"PK\x03\x04"
_SCAN_BUFFER = 1 << 20


def check_central_directory(zip_path: Path, name: str) -> None:
    """Refuse a zip with more than MAX_ENTRIES entries or an oversized central directory,
    reading only the end record and the directory's fixed-size headers. A zip without a
    readable end record or directory passes: zipfile then says it is not a valid zip."""
    with open(zip_path, "rb", buffering=_SCAN_BUFFER) as handle:
        try:
            # zipfile's own reader of the end record (and the ZIP64 one), so this check sees
            # exactly the record zipfile will use: a private name, stable since Python 2.6.
            end = zipfile._EndRecData(handle)  # noqa: SLF001
        except (OSError, zipfile.BadZipFile, struct.error):
            return
        if not end:
            return
        if end[zipfile._ECD_DISK_NUMBER] or end[zipfile._ECD_DISK_START]:  # noqa: SLF001
            # zipfile ignores the disk numbers; unzip does not read a spanned archive as one
            raise LayerContentError("the zip's end record says it is one part of a multi-disk (spanned) archive: "
                                    "rebuild the layer as a single zip", layer=name)
        declared = end[zipfile._ECD_ENTRIES_TOTAL]  # noqa: SLF001
        if declared > MAX_ENTRIES:
            raise _too_many(declared, name)
        size = end[zipfile._ECD_SIZE]  # noqa: SLF001
        if size > MAX_CENTRAL_DIRECTORY_BYTES:
            raise LayerContentError(f"the zip's central directory is {size} bytes, more than the "
                                    f"{MAX_CENTRAL_DIRECTORY_BYTES >> 20} MiB extpack accepts", layer=name)
        start = _directory_start(end)
        if start < 0:
            return
        handle.seek(start)
        entries = _count_entries(handle, size, name)
    if entries is not None and entries != declared:
        raise LayerContentError(f"the zip's end record declares {declared} entries but its central directory "
                                f"holds {entries}: refusing a zip that unzip and extpack could read differently",
                                layer=name)


# The end record is in the zip's last 22 bytes, or before a comment of up to 64 KiB; a ZIP64
# zip has its own end record and locator just before it.
END_RECORD_WINDOW = zipfile.sizeEndCentDir + (1 << 16) + zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator


def directory_start(handle) -> int | None:
    """Where the zip's central directory begins in the file (it runs to the end record), from
    the end record as zipfile reads it; None when there is no readable one. Needs only the
    file's last END_RECORD_WINDOW bytes (and the ZIP64 records just before the end record)."""
    try:
        end = zipfile._EndRecData(handle)  # noqa: SLF001
    except (OSError, zipfile.BadZipFile, struct.error):
        return None
    if not end:
        return None
    start = _directory_start(end)
    return start if start >= 0 else None


def _directory_start(end: list) -> int:
    # zipfile's arithmetic: bytes prepended to the zip (a self-extractor) shift every offset.
    start = end[zipfile._ECD_LOCATION] - end[zipfile._ECD_SIZE]  # noqa: SLF001
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # noqa: SLF001
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    return start


def _count_entries(handle, size: int, name: str) -> int | None:
    """Walk the central directory as zipfile will, counting, never holding more than one header.
    None when it is damaged: zipfile then reports it with the usual "not a valid zip" line."""
    entries = position = 0
    while position < size:
        header = handle.read(_CENTRAL_HEADER.size)
        if len(header) != _CENTRAL_HEADER.size or header[:4] != _CENTRAL_SIGNATURE:
            return None
        fields = _CENTRAL_HEADER.unpack(header)
        variable = fields[12] + fields[13] + fields[14]  # name, extra and comment lengths
        handle.seek(variable, 1)
        position += _CENTRAL_HEADER.size + variable
        entries += 1
        if entries > MAX_ENTRIES:
            raise _too_many(f"over {MAX_ENTRIES}", name)
    if position > size:
        # zipfile reads the declared bytes and cuts the last name short where they end; unzip
        # reads on into the end record: two readers, two names.
        raise LayerContentError("the zip's last central directory entry runs past the directory's declared "
                                "end: refusing a zip that unzip and extpack could read differently", layer=name)
    return entries


def _too_many(count: int | str, name: str) -> LayerContentError:
    return LayerContentError(f"layer has {count} entries, more than the {MAX_ENTRIES} extpack accepts", layer=name)


def _shown(info: zipfile.ZipInfo) -> str:
    """An entry's name for a message: quoted (control characters escaped) and cut short."""
    name = info.orig_filename
    return repr(name) if len(name) <= 80 else f"{name[:80]!r}…"


_DATA_DESCRIPTOR_FLAG = 0x8  # CRC and sizes follow the data; the local header may hold zeros
_ZIP64_SIZE = 0xFFFFFFFF  # the size is in the entry's ZIP64 extra field


def _same_checksum_and_sizes(fields: tuple, info: zipfile.ZipInfo) -> bool:
    """unzip checks the data against the local header's CRC and sizes, zipfile against the
    central directory's: they must agree (or be left as zeros to a data descriptor, or a size
    to the ZIP64 field)."""
    deferred = {0} if info.flag_bits & _DATA_DESCRIPTOR_FLAG else set()
    crc, compressed, uncompressed = fields[7], fields[8], fields[9]
    return crc in {info.CRC} | deferred and compressed in {info.compress_size, _ZIP64_SIZE} | deferred \
        and uncompressed in {info.file_size, _ZIP64_SIZE} | deferred


def check_local_headers(fd: int, infos: list[zipfile.ZipInfo], directory_start: int, name: str) -> None:
    """Each entry's local header must agree with the central directory (name, method,
    encryption), and the data it starts must end before the next entry and the directory:
    overlapping entries are the 'overlapping files' zip bomb, and a name or method that
    differs is a zip that two readers unpack differently."""
    for info, following in entry_spans(infos, directory_start):
        check_local_header(fd, info, following, directory_start, name)


def entry_spans(infos: list[zipfile.ZipInfo], directory_start: int) \
        -> list[tuple[zipfile.ZipInfo, zipfile.ZipInfo | None]]:
    """Every entry in the zip's byte order, with the entry after it (None: the central directory
    follows). An entry's local header and data lie between its offset and the next one's."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    return list(zip(ordered, ordered[1:] + [None]))


def span_end(following: zipfile.ZipInfo | None, directory_start: int) -> int:
    return directory_start if following is None else following.header_offset


def check_local_header(fd: int, info: zipfile.ZipInfo, following: zipfile.ZipInfo | None, directory_start: int,
                       name: str) -> None:
    """One entry's share of check_local_headers: its header agrees with the central directory
    and its data ends before `following` (or the directory) begins. Reads only the entry's span."""
    raw_name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    header = os.pread(fd, _LOCAL_HEADER.size + len(raw_name), info.header_offset) \
        if info.header_offset >= 0 else b""
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise LayerContentError(f"entry {_shown(info)} has no local header where the central "
                                "directory says: the zip is corrupt or crafted", layer=name)
    fields = _LOCAL_HEADER.unpack_from(header)
    flags, method, name_length, extra_length = fields[3], fields[4], fields[10], fields[11]
    if flags != info.flag_bits or not _same_checksum_and_sizes(fields, info):
        raise LayerContentError(f"entry {_shown(info)} has other flags, CRC or sizes in its local header: "
                                "refusing a zip that unzip and extpack could read differently", layer=name)
    if header[_LOCAL_HEADER.size:_LOCAL_HEADER.size + name_length] != raw_name \
            or name_length != len(raw_name):
        raise LayerContentError(f"entry {_shown(info)} has another name in its local header: "
                                "refusing a zip that unzip and extpack could read differently", layer=name)
    if method != info.compress_type or (flags & 0x1) != (info.flag_bits & 0x1):
        raise LayerContentError(f"entry {_shown(info)} has another compression method or encryption "
                                "in its local header: the zip is corrupt or crafted", layer=name)
    data_end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + info.compress_size
    if data_end > span_end(following, directory_start):
        where = _shown(following) if following is not None else "the central directory"
        raise LayerContentError(f"entries overlap inside the zip: {_shown(info)} and {where}: "
                                "refusing a zip bomb", layer=name)
