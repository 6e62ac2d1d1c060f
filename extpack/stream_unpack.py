"""Unpack a layer zip while its byte ranges arrive, into the layer's private tree.

A zip's central directory is at its end, and ranged downloads fetch the tail early: as soon as
the directory has arrived it is read and validated (extpack/unpack.py's checks), the tree's
directories are made, and each entry is inflated as soon as every byte between its offset and
the next entry's has arrived (its local header is checked then, as for a whole zip), on a pool
shared by every layer of the fetch. The tree stays private: the caller puts it in the cache or
a stage only after the whole zip's size and sha256 matched, and every byte used was read from
a range that was final by then (a resumed range only adds bytes after its cursor; a restarted
download turns this unpack off).

Best effort by design: anything unexpected (a restart, a zip that fails a check, an entry that
does not inflate) turns it off and the tree is thrown away; the caller then unpacks the verified
zip as usual, which reports a real problem with its usual message.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import zipfile
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from pathlib import Path

from extpack.atomic import discard
from extpack.priority_pool import PriorityPool
from extpack.unpack import Entry, LayerTree, LayerWriter, read_directory
from extpack.zipcheck import END_RECORD_WINDOW, check_local_header, directory_start, entry_spans, span_end

# Only a zip this large is unpacked while it arrives. Measured on the benchmark's S3 link model
# (benchmarks/RESULTS.md): unpacking the 19 and 24 MB layers early as well made the four-layer
# fetch slower (1.64 s against 1.56 s), and on loopback every early unpack costs (1.30 s against
# 1.21 s): a smaller zip is over in a fraction of a second on eight connections, and unpacked
# after that it still overlaps the large layers' downloads, without its Python work contending
# with theirs for the interpreter lock.
WORTH_STREAMING = 64 << 20
# Ready entries go to the pool in batches: one task an entry would cost more than small
# entries take to inflate.
BATCH_BYTES = 1 << 20
BATCH_ENTRIES = 64


@dataclass(frozen=True)
class _Span:
    """An entry's bytes in the zip: its local header and data lie in [start, end)."""

    start: int
    end: int
    info: zipfile.ZipInfo
    following: zipfile.ZipInfo | None
    entry: Entry | None  # None: nothing to write (a directory, or a name that is only "./")


class _Arrived:
    """The byte ranges of the file that are final, merged."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self._ends, start)  # the first range that ends at or after `start`
        j = bisect.bisect_right(self._starts, end)  # past the last range that starts at or before `end`
        if i < j:
            start, end = min(start, self._starts[i]), max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def covers(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end


class StreamingUnpack:
    """One layer's zip unpacked into `root` (made here; it must not exist) as it arrives.

    `arrived` and `restarted` are the download's calls (extpack.transfer.Arrivals), `finish`
    and `discard` the caller's, all from one thread; entries are written on `pool`."""

    def __init__(self, zip_path: Path, size: int, root: Path, *, name: str, max_size: int, pool: PriorityPool,
                 priority: int, cancelled: threading.Event) -> None:
        self.zip_path = zip_path
        self.size = size
        self.root = root
        self.name = name
        self.max_size = max_size
        self.pool = pool
        self.priority = priority  # the layer's place in the fetch: earlier layers are written first
        self.cancelled = cancelled
        self.off = False
        self._arrived = _Arrived()
        self._directory_start: int | None = None
        self._data_end = 0  # where the central directory begins: no entry's data may reach it
        self._resources = contextlib.ExitStack()
        self._writer: LayerWriter | None = None
        self._entries: list[Entry] = []
        self._declared = 0
        self._spans: list[_Span] = []
        self._span_starts: list[int] = []
        self._scheduled: list[bool] = []
        self._fd = -1
        self._tasks: list[Future] = []
        self._failure: BaseException | None = None
        self._written: dict[str, object] = {}

    # The download's side.

    def arrived(self, start: int, end: int) -> None:
        """Bytes [start, end) of the zip are in the file and will not change in this attempt."""
        if self.off:
            return
        self._arrived.add(start, end)
        try:
            if self._writer is None:
                self._read_directory()
            if self._writer is not None:
                self._schedule(start, end)
        except Exception as exc:  # noqa: BLE001 - best effort: the verified zip is unpacked as usual
            self._give_up(exc)

    def restarted(self) -> None:
        """The download starts again from byte 0: what arrived so far is void."""
        self._give_up(None)

    # The caller's side, once the download is verified.

    def finish(self) -> LayerTree | None:
        """The layer's tree, or None (nothing left in `root`) when this unpack was turned off."""
        if not self.off:
            self.arrived(0, self.size)  # every byte is here now
        wait_for(self._tasks)
        if self.off or self._failure is not None or self._writer is None:
            self.discard()
            return None
        writer = self._writer
        for entry in self._entries:
            if entry.type != "dir":
                writer.nodes[entry.path] = self._written[entry.path]
        tree = writer.tree(self._declared)
        self._resources.close()
        tree.check_size(self.max_size, self.name)
        return tree

    def discard(self) -> None:
        """Stop, wait for the entries being written, and remove `root`."""
        self.off = True
        wait_for(self._tasks)
        self._resources.close()
        with contextlib.suppress(FileNotFoundError):
            discard(self.root)

    # Inside.

    def _give_up(self, failure: BaseException | None) -> None:
        self.off = True
        if self._failure is None:
            self._failure = failure

    def _read_directory(self) -> None:
        if not self._arrived.covers(max(0, self.size - END_RECORD_WINDOW), self.size):
            return
        if self._directory_start is None:
            with open(self.zip_path, "rb") as handle:
                self._directory_start = directory_start(handle)
            if self._directory_start is None:
                raise ValueError("no end record")
        if not self._arrived.covers(self._directory_start, self.size):
            return
        archive, self._entries, self._declared = read_directory(self.zip_path, self.name, self.max_size,
                                                                local_headers=False)
        self._resources.enter_context(archive)
        self._fd = os.open(self.zip_path, os.O_RDONLY | os.O_CLOEXEC)
        self._resources.callback(os.close, self._fd)
        self._data_end = archive.start_dir
        writable = {id(entry.info): entry for entry in self._entries if entry.type != "dir"}
        for info, following in entry_spans(archive.infolist(), archive.start_dir):
            if info.header_offset < 0:
                raise ValueError("an entry before the start of the file")
            self._spans.append(_Span(info.header_offset, span_end(following, archive.start_dir), info, following,
                                     writable.get(id(info))))
        self._span_starts = [span.start for span in self._spans]
        self._scheduled = [False] * len(self._spans)
        self.root.mkdir(parents=True)
        writer = LayerWriter(self.root, archive, self.name, 1, self.cancelled)
        self._resources.enter_context(writer.opened())
        writer.prepare(self._entries)
        self._writer = writer
        self._schedule(0, self.size)  # whatever arrived before the directory

    def _schedule(self, start: int, end: int) -> None:
        """Hand the entries that [start, end) completed to the pool, in batches."""
        first = max(0, bisect.bisect_right(self._span_starts, start) - 1)
        batch: list[_Span] = []
        batch_bytes = 0
        for index in range(first, len(self._spans)):
            span = self._spans[index]
            if span.start >= end:
                break
            if self._scheduled[index] or not self._arrived.covers(span.start, span.end):
                continue
            self._scheduled[index] = True
            batch.append(span)
            batch_bytes += span.info.compress_size
            if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_ENTRIES:
                self._tasks.append(self.pool.submit(self.priority, self._write, batch))
                batch, batch_bytes = [], 0
        if batch:
            self._tasks.append(self.pool.submit(self.priority, self._write, batch))

    def _write(self, batch: list[_Span]) -> None:
        """Runs on the pool: check each entry's local header, then write it."""
        try:
            for span in batch:
                if self.off:
                    return
                check_local_header(self._fd, span.info, span.following, self._data_end, self.name)
                if span.entry is not None:
                    self._written[span.entry.path] = self._writer.write_entry(self._fd, span.entry)
        except BaseException as exc:  # noqa: BLE001 - reported by finish(): the usual unpack then runs
            self._give_up(exc)

