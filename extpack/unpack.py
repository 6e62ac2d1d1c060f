"""Step 5: unpack one layer zip into a directory of its own, refusing anything unsafe.

Keeps what Info-ZIP `unzip` keeps (regular files with their permission bits, directories,
symlinks as symlinks). Every entry is validated before a byte is written, and the tree's
shape is tracked in memory, so a write can never go through a symlink or leave the tree.
Each layer is unpacked on its own (so layers unpack in parallel, and a verified layer's
tree can be kept in the cache); `overlay` then lays the trees over each other in order.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import hashlib
import json
import lzma
import os
import re
import stat
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from extpack import inflate
from extpack.exceptions import DownloadError, ExtpackError, LayerContentError
from extpack.model import LAYER_UNZIPPED_LIMIT, size_limit_text
from extpack.zipcheck import check_central_directory, check_local_headers

DEFAULT_MAX_LAYER_SIZE = LAYER_UNZIPPED_LIMIT  # Lambda refuses to publish a bigger layer
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
MAX_LINK_TARGET = 4095
SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
COPY_CHUNK = 1 << 20
# Below this much compressed data, starting threads costs more than it saves.
PARALLEL_THRESHOLD = 4 << 20
# What reading a damaged entry can raise, from zipfile and the decompressors behind it.
ENTRY_ERRORS = (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, OSError, ValueError,
                zlib.error, lzma.LZMAError)
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Node:
    """What a tree holds at one path, and (in a stage) its history across layers."""

    type: str  # "file" | "dir" | "symlink"
    mode: int
    layer: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    mtime: int = 0
    overrode: list[int] = field(default_factory=list)
    implicit: bool = False  # a parent directory the zip has no entry for


@dataclass
class LayerTree:
    """One layer unpacked into `root`, with an index of every path in it.

    Directories on disk keep the unpacker's private mode; their real modes are in `nodes`
    and are applied only in a stage."""

    root: Path
    nodes: dict[str, Node]
    files: int
    unzipped_size: int
    declared_size: int

    def check_size(self, max_size: int, name: str) -> None:
        if max(self.unzipped_size, self.declared_size) > max_size:
            raise _too_big(name, max_size)

    def to_json(self) -> str:
        rows = [[path, n.type, n.mode, n.size, n.sha256, n.target, n.mtime, n.implicit]
                for path, n in self.nodes.items()]
        return json.dumps({"files": self.files, "unzipped_size": self.unzipped_size,
                           "declared_size": self.declared_size, "nodes": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, root: Path, text: str) -> LayerTree:
        """Raises ValueError (or KeyError/TypeError) when the text is not an index we wrote."""
        data = json.loads(text)
        nodes = {row[0]: Node(row[1], row[2], 0, size=row[3], sha256=row[4], target=row[5], mtime=row[6],
                              implicit=row[7]) for row in data["nodes"]}
        # The index is read back from disk: hold it to what the unpacker itself would write,
        # so even an edited cache cannot place anything outside a stage.
        for path, node in nodes.items():
            parent = nodes.get(path.rpartition("/")[0]) if "/" in path else None
            if node.type not in ("file", "dir", "symlink") or _CONTROL_CHARACTER.search(path) or "\\" in path \
                    or any(part in ("", ".", "..") for part in path.split("/")) \
                    or ("/" in path and (parent is None or parent.type != "dir")):
                raise ValueError(f"not a path the unpacker writes: {path!r}")
        return cls(root, nodes, data["files"], data["unzipped_size"], data["declared_size"])

    def moved_to(self, root: Path) -> LayerTree:
        return replace(self, root=root)


@dataclass(frozen=True)
class Entry:
    info: zipfile.ZipInfo
    path: str
    type: str
    mode: int


class _Cancelled(ExtpackError):
    """The fetch this unpack belongs to has failed or been interrupted."""


def unpack_layer(zip_path: Path, root: Path, *, name: str, max_size: int = DEFAULT_MAX_LAYER_SIZE,
                 workers: int | None = None, cancelled: threading.Event | None = None) -> LayerTree:
    """Unpack `zip_path` into `root` (created; it must not exist). `name` is the layer in messages."""
    archive, entries, declared = read_directory(zip_path, name, max_size, local_headers=True)
    with archive:
        root.mkdir(parents=True)
        writer = LayerWriter(root, archive, name, workers or min(4, os.cpu_count() or 1), cancelled)
        tree = writer.write(entries, declared)
    tree.check_size(max_size, name)  # declared sizes were checked; this is the real count
    return tree


def read_directory(zip_path: Path, name: str, max_size: int, *, local_headers: bool) \
        -> tuple[zipfile.ZipFile, list[Entry], int]:
    """The zip opened, with its validated entries (in the directory's order) and their declared
    unpacked size. Reads the end record and central directory, and every entry's local header
    when `local_headers` (else each must be checked before its entry is written)."""
    check_central_directory(zip_path, name)  # before zipfile reads the whole directory into memory
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DownloadError(f"not a valid zip file ({exc}): is it an error page or a truncated download?",
                            layer=name) from None
    try:
        entries, declared = _validated_entries(archive, name, max_size, local_headers)
        _check_shape(entries, name)
    except BaseException:
        archive.close()
        raise
    return archive, entries, declared


def _check_shape(entries: list[Entry], name: str) -> None:
    """Refuse writes through the layer's own symlinks and file/directory clashes, before writing."""
    planned: dict[str, str] = {}
    for entry in entries:
        # Up to the nearest parent already planned as a directory: linear however deep the tree is.
        parent = entry.path.rpartition("/")[0]
        while parent:
            kind = planned.get(parent)
            if kind == "dir":
                break
            if kind == "symlink":
                raise LayerContentError(f"entry {entry.path!r} would be written through the symlink {parent!r}",
                                        layer=name)
            if kind == "file":
                raise LayerContentError(f"entry {entry.path!r} needs {parent!r} to be a directory, but it is a file",
                                        layer=name)
            planned[parent] = "dir"
            parent = parent.rpartition("/")[0]
        existing = planned.get(entry.path)
        if existing and (existing == "dir") != (entry.type == "dir"):
            raise LayerContentError(
                f"entry {entry.path!r} is a {entry.type} but the layer already has a {existing} there", layer=name
            )
        planned[entry.path] = entry.type


class LayerWriter:
    """Writes one layer's validated entries: directories and symlinks in order, then file
    contents in parallel (entries are distinct paths under directories, checked before)."""

    def __init__(self, root: Path, archive: zipfile.ZipFile, name: str, workers: int,
                 cancelled: threading.Event | None) -> None:
        self.root = root
        self.root_fd = -1  # every write is relative to it: the root's own path never counts
        self.archive = archive
        self.name = name
        self.workers = workers
        self.cancelled = cancelled
        self.nodes: dict[str, Node] = {}

    def write(self, entries: list[Entry], declared: int) -> LayerTree:
        with self.opened():
            return self._write_all(entries, declared)

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """Hold the root open: every write is relative to it."""
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            yield
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # not reachable through a descriptor; refused cleanly anyway
                raise LayerContentError("an entry's path is longer than the filesystem allows", layer=self.name) \
                    from None
            raise
        finally:
            os.close(self.root_fd)

    def _write_all(self, entries: list[Entry], declared: int) -> LayerTree:
        files = self.prepare(entries)
        for entry in entries:
            if entry.type == "symlink":
                self.nodes[entry.path] = self.write_entry(-1, entry)
        fd = os.open(self.archive.filename, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for entry, node in zip(files, self._write_files(fd, files)):
                self.nodes[entry.path] = node
        finally:
            os.close(fd)
        return self.tree(declared)

    def prepare(self, entries: list[Entry]) -> list[Entry]:
        """Make every directory (they need no bytes of the zip); return the files to write.
        Symlinks keep their place in the index, so it reads as the zip's order."""
        files: list[Entry] = []
        for entry in entries:
            self._ensure_parents(entry.path)
            if entry.type == "dir":
                self._make_dir(entry.path, entry.mode, _mtime(entry.info))
            elif entry.type == "symlink":
                self.nodes[entry.path] = Node("symlink", 0o777, 0)
            else:
                files.append(entry)
        return files

    def write_entry(self, fd: int, entry: Entry) -> Node:
        """Write one file or symlink (its bytes must be in the zip already); thread-safe."""
        if self.cancelled is not None and self.cancelled.is_set():
            raise _Cancelled("cancelled", layer=self.name)
        return self._write_symlink(entry) if entry.type == "symlink" else self._write_file(fd, entry)

    def tree(self, declared: int) -> LayerTree:
        leaves = [node for node in self.nodes.values() if node.type != "dir"]
        return LayerTree(self.root, self.nodes, len(leaves), sum(node.size for node in leaves), declared)

    def _write_files(self, fd: int, entries: list[Entry]) -> list[Node]:
        nodes: list[Node | None] = [None] * len(entries)
        total = sum(entry.info.compress_size for entry in entries)
        workers = min(self.workers, len(entries)) if total >= PARALLEL_THRESHOLD else 1
        # Largest first, handed out one at a time: the threads finish close together.
        order = iter(sorted(range(len(entries)), key=lambda i: -entries[i].info.compress_size))
        failure: list[BaseException] = []

        def work() -> None:
            for index in order:  # next() on a shared iterator is atomic under the GIL
                if failure:
                    return
                try:
                    nodes[index] = self.write_entry(fd, entries[index])
                except BaseException as exc:  # handed to the calling thread below
                    failure.append(exc)
                    return

        if workers <= 1:
            work()
        else:
            threads = [threading.Thread(target=work, name=f"extpack-unpack-{n}") for n in range(workers)]
            try:
                # Started inside the try: an interrupt that lands while the threads are
                # being started must still wait for those already writing.
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            except BaseException as interrupt:  # Ctrl-C: let each thread finish its file, then stop
                failure.append(interrupt)
                for thread in threads:
                    try:
                        thread.join()
                    except RuntimeError:  # never started
                        pass
                raise
        if failure:
            raise failure[0]
        return nodes  # type: ignore[return-value]

    def _ensure_parents(self, path: str) -> None:
        # Up to the nearest parent that exists, then down: linear however deep the tree is.
        missing = []
        parent = path.rpartition("/")[0]
        while parent and parent not in self.nodes:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for parent in reversed(missing):
            os.mkdir(parent, 0o700, dir_fd=self.root_fd)
            self.nodes[parent] = Node("dir", 0o755, 0, implicit=True)

    def _make_dir(self, path: str, mode: int, mtime: int) -> None:
        node = self.nodes.get(path)
        if node is None:
            os.mkdir(path, 0o700, dir_fd=self.root_fd)
            self.nodes[path] = Node("dir", mode, 0, mtime=mtime)
        else:  # made as a parent first, or listed twice: the entry's mode wins, as with unzip
            node.mode, node.mtime, node.implicit = mode, mtime or node.mtime, False

    def _write_symlink(self, entry: Entry) -> Node:
        raw = _read_entry(self.archive, entry.info, self.name, MAX_LINK_TARGET + 1)
        if not raw or len(raw) > MAX_LINK_TARGET or b"\x00" in raw:
            raise LayerContentError(f"symlink {entry.path!r} has an invalid target", layer=self.name)
        target = raw.decode("utf-8", "surrogateescape")
        os.symlink(target, entry.path, dir_fd=self.root_fd)
        mtime = _mtime(entry.info)
        os.utime(entry.path, (mtime, mtime), dir_fd=self.root_fd, follow_symlinks=False)
        return Node("symlink", 0o777, 0, target=target, mtime=mtime)

    def _write_file(self, fd: int, entry: Entry) -> Node:
        info = entry.info
        out = os.open(entry.path, _OPEN_FLAGS, 0o600, dir_fd=self.root_fd)
        try:
            if info.compress_type in inflate.FAST_METHODS:
                sha = inflate.extract(fd, info, out, self.archive.start_dir)
            else:
                sha = _extract_with_zipfile(self.archive, info, out)
            os.fchmod(out, entry.mode)
            mtime = _mtime(info)
            os.utime(out, (mtime, mtime))
        except inflate.EntryError as exc:
            raise LayerContentError(f"entry {entry.path!r} is corrupt: {exc}", layer=self.name) from None
        except ENTRY_ERRORS as exc:
            raise LayerContentError(f"entry {entry.path!r} cannot be unpacked ({exc})", layer=self.name) from None
        finally:
            os.close(out)
        return Node("file", entry.mode, 0, size=info.file_size, sha256=sha, mtime=mtime)


def _extract_with_zipfile(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: int) -> str:
    """bzip2 and lzma entries, which are rare in layers: zipfile checks the CRC, we the size."""
    digest = hashlib.sha256()
    written = 0
    with archive.open(info) as source:
        while chunk := source.read(COPY_CHUNK):
            digest.update(chunk)
            written += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
    if written != info.file_size:
        raise inflate.EntryError(f"it holds {written} bytes, not the declared {info.file_size}")
    return digest.hexdigest()


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int) -> bytes:
    try:
        with archive.open(info) as source:
            return source.read(limit)
    except ENTRY_ERRORS as exc:
        raise LayerContentError(f"entry {info.filename!r} is corrupt ({exc})", layer=name) from None


def _too_big(name: str, limit: int) -> LayerContentError:
    return LayerContentError(
        f"layer unzips to more than {size_limit_text(limit)}: raise --max-layer-size if you mean it", layer=name
    )


DOS_EPOCH = 315532800  # 1980-01-01, the earliest time a zip can record


def _mtime(info: zipfile.ZipInfo) -> int:
    # Zip times carry no zone; reading them as UTC keeps the stage the same on every machine.
    # Some writers leave the fields zeroed (month 0): clamp them as unzip does.
    year, month, day, hour, minute, second = info.date_time
    try:
        return calendar.timegm((year, min(max(month, 1), 12), max(day, 1), hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return DOS_EPOCH


def _validated_entries(archive: zipfile.ZipFile, name: str, max_size: int, local_headers: bool) \
        -> tuple[list[Entry], int]:
    infos = archive.infolist()  # no more than MAX_ENTRIES: check_central_directory counted them
    declared = sum(info.file_size for info in infos)
    if declared > max_size:
        raise _too_big(name, max_size)
    if local_headers:
        check_local_headers(archive.fp.fileno(), infos, archive.start_dir, name)
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for info in infos:
        entry = _validated_entry(info, name)
        if entry is None:
            continue
        earlier = seen.get(entry.path)
        if earlier is not None and not (earlier == "dir" == entry.type):
            raise LayerContentError(f"entry {entry.path!r} appears more than once", layer=name)
        seen[entry.path] = entry.type
        entries.append(entry)
    return entries, declared


def _validated_entry(info: zipfile.ZipInfo, name: str) -> Entry | None:
    raw_name = info.orig_filename
    shown = raw_name.replace("\x00", "\\0")
    if "\x00" in raw_name:
        raise LayerContentError(f"entry name {shown!r} contains a NUL byte", layer=name)
    if _CONTROL_CHARACTER.search(raw_name):
        raise LayerContentError(f"entry name {shown!r} contains control characters", layer=name)
    if "\\" in raw_name:
        raise LayerContentError(f"entry name {shown!r} contains a backslash", layer=name)
    if raw_name.startswith("/") or (len(raw_name) > 1 and raw_name[1] == ":"):
        raise LayerContentError(f"entry {shown!r} has an absolute path", layer=name)
    parts = [part for part in raw_name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise LayerContentError(f"entry {shown!r} leaves the stage with '..'", layer=name)
    if not parts:
        return None
    path = "/".join(parts)
    # A UTF-8 character is at most 4 bytes: only names that may be too long are encoded.
    if len(path) * 4 > MAX_NAME_BYTES and (len(path.encode()) > MAX_PATH_BYTES
                                           or any(len(p.encode()) > MAX_NAME_BYTES for p in parts)):
        raise LayerContentError(f"entry {shown[:80]!r}… has a name longer than the filesystem allows", layer=name)
    if info.flag_bits & 0x1:
        raise LayerContentError(f"entry {shown!r} is encrypted", layer=name)
    if info.compress_type not in SUPPORTED_METHODS:
        raise LayerContentError(f"entry {shown!r} uses unsupported compression method {info.compress_type}",
                                layer=name)
    kind, mode = _kind_and_mode(info, shown, name)
    return Entry(info, path, kind, mode)


def _kind_and_mode(info: zipfile.ZipInfo, shown: str, name: str) -> tuple[str, int]:
    unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
    file_type = stat.S_IFMT(unix_mode)
    # setuid/setgid/sticky are dropped: a layer has no business granting privileges.
    permissions = stat.S_IMODE(unix_mode) & 0o777
    # unzip makes every name that ends in "/" a directory (dropping its data) and every other
    # name a file or link, whatever the mode says: anything else it would unpack differently.
    if info.filename.endswith("/"):
        if file_type not in (stat.S_IFDIR, 0) or info.file_size:
            raise LayerContentError(f"entry {shown!r} is named as a directory but is "
                                    f"{'a file with data' if info.file_size else 'not one'}", layer=name)
        return "dir", permissions or 0o755
    if file_type == stat.S_IFDIR:
        raise LayerContentError(f"entry {shown!r} is a directory without the trailing '/' unzip needs", layer=name)
    if file_type == stat.S_IFLNK:
        return "symlink", 0o777
    if file_type in (stat.S_IFREG, 0):
        return "file", permissions or 0o644
    kinds = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
             stat.S_IFSOCK: "a socket"}
    raise LayerContentError(f"entry {shown!r} is {kinds.get(file_type, 'of an unknown type')}", layer=name)
