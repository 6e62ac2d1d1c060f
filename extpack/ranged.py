"""Byte-range GETs of a zip of known size and sha256: concurrent for a large one, resumed
where a failure cut them for any.

One GET stream is limited (S3 gives one connection ~50-90 MB/s; AWS's guidance for large
objects is concurrent byte-range GETs), so a large zip is fetched as ranges over several
connections at once, each range written at its offset in the file (nothing is buffered
beyond a chunk per connection). The first range is also the probe: its answer says whether
the server honours Range (206) or ignores it (200: that one answer then carries the whole
zip, on one stream). Every later range is asked with If-Match on the first answer's ETag,
and must come back 206 with exactly the Content-Range asked for and the same ETag: a
changed object is never stitched from two versions. A range cut off (or refused for an
expired URL, which is then refreshed) resumes where it stopped. The sha256 is computed over
the whole file, in order, as its prefix completes; the caller trusts nothing before it matched.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from extpack import retry, transfer
from extpack.exceptions import DownloadError
from extpack.retry import Transient

MiB = 1 << 20
# Measured on the benchmark's S3 link model (benchmarks/RESULTS.md, "link model"): a range
# pays a first byte (~20 ms) per request, i.e. ~11% of an 8 MiB range at 50 MB/s on its own
# connection, hidden by the other connections streaming meanwhile; bigger ranges leave one
# slow straggler at the end, smaller ones pay the first byte more often. Eight connections
# fill a runner's NIC (4 x 50 MB/s fill 200 MB/s) with room for the gaps between ranges and
# for faster links, without opening dozens of sockets per layer.
TARGET_PART = 8 * MiB
MAX_CONNECTIONS = 8
# Below two ranges one range is as fast: a 16 MiB zip takes ~0.3 s on one S3 connection.
MIN_RANGED = 2 * TARGET_PART
TAIL_PART = TARGET_PART // 2
TAIL_BYTES = MAX_CONNECTIONS * TAIL_PART
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(frozen=True)
class Part:
    index: int
    start: int
    end: int  # inclusive, as in a Range header


def plan(size: int | None) -> list[Part] | None:
    """Ranges of about TARGET_PART bytes, then smaller ones for the last TAIL_BYTES, so the
    connections finish close together instead of all waiting on one last full-size range."""
    if size is None or size == 0:
        return None
    if size < MIN_RANGED:  # one range: a cut-off download still resumes
        return [Part(0, 0, size - 1)]
    tail = min(size, TAIL_BYTES)
    bounds = _even(0, size - tail, TARGET_PART) + _even(size - tail, size, TAIL_PART)
    return [Part(i, start, end - 1) for i, (start, end) in enumerate(bounds)]


def _even(start: int, end: int, target: int) -> list[tuple[int, int]]:
    """[start, end) cut into equal pieces of at most about `target` bytes."""
    if end <= start:
        return []
    count = -(-(end - start) // target)
    step = -(-(end - start) // count)
    return [(at, min(end, at + step)) for at in range(start, end, step)]


class RangesUnreliable(Transient):
    """The server answered a range with other bytes than asked: fetch on one stream instead."""


class ObjectChanged(Transient):
    """The object changed between two ranges (412 on If-Match, or another ETag): start over."""


def fetch_ranged(location: transfer.Location, fd: int, expected: transfer.Expected, parts: list[Part], timeout,
                 check: Callable[[int], None], budget: retry.Budget, arrivals: transfer.Arrivals | None = None) -> str:
    """Fetch `parts` into `fd` over up to MAX_CONNECTIONS connections; return the sha256.

    A connection that fails (cut off, timed out, a 5xx) resumes its range where it stopped,
    with If-Match, after the shared retry policy's backoff; an expired URL is replaced by a
    fresh one and the range resumes. A changed object, ranges answered wrongly, or no
    attempt left end the whole fetch (the caller decides what next). `check` is called with
    every chunk's size, and with 0 while waiting, in this thread only; `arrivals` is told of
    every chunk once it is written, also in this thread. The last range is asked for right
    after the probe: it holds the zip's central directory, which an unpack needs first.
    """
    job = _Job(location, fd, expected, timeout, budget)
    job.start_workers([parts[0]], 1)
    hasher = _PrefixHasher(fd, parts)
    try:
        while not hasher.complete:
            kind, value = job.next_event(check)
            if kind == "progress":
                start, end = value
                check(end - start)
                if arrivals is not None:
                    arrivals.arrived(start, end)
            elif kind == "head":  # the probe's answer: one stream (the server ignores ranges), or ranges
                if value:
                    hasher.parts = [Part(0, 0, expected.size - 1)]
                else:
                    rest = parts[-1:] + parts[1:-1] if len(parts) > 2 else parts[1:]
                    job.start_workers(rest, min(MAX_CONNECTIONS - 1, len(rest)))
            elif kind == "done":
                hasher.done(value)
            else:
                raise value
    finally:
        job.halt()
    sha = hasher.hexdigest()
    if sha != expected.sha256:
        raise Transient(f"checksum mismatch (got sha256 {sha[:12]}…, expected {expected.sha256[:12]}…)")
    return sha


class _PrefixHasher:
    """sha256 of the file's completed prefix, read back in order as ranges complete."""

    def __init__(self, fd: int, parts: list[Part]) -> None:
        self.fd = fd
        self.parts = parts
        self._done: set[int] = set()
        self._next = 0
        self._digest = hashlib.sha256()

    @property
    def complete(self) -> bool:
        return self._next == len(self.parts)

    def done(self, index: int) -> None:
        self._done.add(index)
        while self._next in self._done and self._next < len(self.parts):
            part = self.parts[self._next]
            offset = part.start
            while offset <= part.end:
                data = os.pread(self.fd, min(transfer.CHUNK, part.end + 1 - offset), offset)
                if not data:
                    raise Transient("the download file ended early")
                self._digest.update(data)
                offset += len(data)
            self._next += 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _Job:
    """The connections of one ranged fetch. Workers report through one queue, which only
    the calling thread reads: it alone reports progress and decides what an error means."""

    def __init__(self, location: transfer.Location, fd: int, expected: transfer.Expected, timeout,
                 budget: retry.Budget) -> None:
        self.location = location
        self.fd = fd
        self.size = expected.size
        self.cap = expected.byte_cap
        self.timeout = timeout
        self.budget = budget
        self.layer = location.layer
        self.host = location.host
        self.etag: str | None = None  # the first answer's; None until it came
        self.stop = threading.Event()
        # Held around every write and around halt(): once halt() returned, no worker writes
        # to the file again (the caller may retry into it, or close the fd for another file).
        self._writing = threading.Lock()
        self.events: queue.Queue = queue.Queue()
        self._parts: queue.SimpleQueue = queue.SimpleQueue()

    def start_workers(self, parts: list[Part], count: int) -> None:
        for part in parts:
            self._parts.put(part)
        for _ in range(count):
            threading.Thread(target=self._work, name="extpack-range", daemon=True).start()

    def halt(self) -> None:
        with self._writing:
            self.stop.set()

    def next_event(self, check: Callable[[int], None]):
        while True:
            try:
                return self.events.get(timeout=transfer.POLL_SECONDS)
            except queue.Empty:
                check(0)

    def _work(self) -> None:
        import requests

        try:
            with requests.Session() as session:
                session.trust_env = True
                while not self.stop.is_set():
                    try:
                        part = self._parts.get_nowait()
                    except queue.Empty:
                        return
                    self._fetch(session, part)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which sorts retryable from fatal
            self.events.put(("error", exc))

    def _fetch(self, session, part: Part) -> None:
        """Fetch one range, resuming it where it stopped after a failure."""
        import requests

        cursor = _Cursor(part, part.start)
        while not self.stop.is_set():
            url = self.location.url
            try:
                self._stream(session, url, cursor)
            except transfer.Expired:
                self.location.refresh(url)
                continue
            except (ObjectChanged, RangesUnreliable, transfer.NotAZip):
                raise  # resuming cannot cure these: start over
            except (Transient, requests.exceptions.RequestException, OSError) as exc:
                if not isinstance(exc, Transient):
                    transfer.network_problem(exc, self.host, self.layer)  # raises what is not a network fault
                failures = self.budget.spend()
                if failures is None:
                    raise
                if self.stop.wait(retry.backoff(failures)):
                    return
                continue
            self.events.put(("done", cursor.part.index))
            return

    def _stream(self, session, url: str, cursor: _Cursor) -> None:
        part = cursor.part
        headers = {"Range": f"bytes={cursor.offset}-{part.end}"}
        if self.etag:
            headers["If-Match"] = self.etag
        with session.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True) as response:
            self._check_answer(response, cursor)
            part = cursor.part  # the whole zip, when the probe was answered 200
            for chunk in response.iter_content(transfer.CHUNK):
                if cursor.offset == 0 and chunk[: len(transfer.ZIP_MAGIC)] != transfer.ZIP_MAGIC:
                    raise transfer.not_a_zip(self.host, response)
                if cursor.offset + len(chunk) > part.end + 1:
                    raise DownloadError(f"the server sent more than the expected {self.cap} bytes: refusing it",
                                        layer=self.layer) if part.end + 1 == self.size else \
                        RangesUnreliable(f"{self.host} sent more bytes than the range asked for")
                with self._writing:
                    if self.stop.is_set():
                        return
                    _pwrite_all(self.fd, chunk, cursor.offset)
                self.events.put(("progress", (cursor.offset, cursor.offset + len(chunk))))
                cursor.offset += len(chunk)
        if cursor.offset != part.end + 1:
            raise Transient(f"the download was truncated ({cursor.offset - part.start} of "
                            f"{part.end + 1 - part.start} bytes of a range)")

    def _check_answer(self, response, cursor: _Cursor) -> None:
        """Accept the answer for `cursor` (the probe's 200 turns it into the whole zip), or raise."""
        status = response.status_code
        first = self.etag is None
        if status == 412:
            raise ObjectChanged(f"the object at {self.host} changed during the download")
        if status == 200 and first:
            transfer.refuse_over(transfer.declared_length(response), self.cap, self.layer)
            self.etag = response.headers.get("ETag") or ""
            cursor.part = Part(0, 0, self.size - 1)
            self.events.put(("head", True))
            return
        if status == 200:
            raise RangesUnreliable(f"{self.host} stopped honouring byte ranges")
        if status != 206:
            transfer.raise_for_status(status, response.url or self.location.url, self.layer)
            raise Transient(f"{self.host} answered HTTP {status} to a byte range")
        found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if found is None or (int(found[1]), int(found[2])) != (cursor.offset, cursor.part.end):
            raise RangesUnreliable(f"{self.host} answered a byte range with other bytes than asked for")
        total = int(found[3])
        transfer.refuse_over(total, self.cap, self.layer)
        if total != self.size:
            raise ObjectChanged(f"{self.host} has {total} bytes, not the expected {self.size}")
        etag = response.headers.get("ETag") or ""
        if first:
            self.etag = etag
            self.events.put(("head", False))
        elif etag != self.etag:
            raise ObjectChanged(f"the object at {self.host} changed during the download")


@dataclass
class _Cursor:
    """A range being fetched, and how far it has arrived."""

    part: Part
    offset: int


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
