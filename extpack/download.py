"""Step 3: stream a layer zip to disk, checking size and sha256 as it arrives.

The URL is usually presigned, i.e. a credential: it is never put in a message. Errors
name the host only.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from extpack import retry
from extpack.exceptions import DownloadError
from extpack.retry import Transient
from extpack.transfer import (
    CHUNK,
    POLL_SECONDS,
    ZIP_MAGIC,
    Arrivals,
    Expected,
    Expired,
    Location,
    NotAZip,
    declared_length,
    network_problem,
    not_a_zip,
    raise_for_status,
    refuse_over,
)

QUEUE_CHUNKS = 4  # body chunks buffered between the network thread and the writer
# A download must average at least this many bytes a second (EXTPACK_MIN_RATE) beyond the
# read timeout's grace, so a server trickling a byte a second cannot hold a fetch for days.
DEFAULT_MIN_RATE = 100 * 1024


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


NOT_A_ZIP_ATTEMPTS = 2


def download(
    url: str,
    fd: int,
    expected: Expected,
    *,
    layer: str,
    refresh_url: Callable[[], str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    arrivals: Arrivals | None = None,
) -> str:
    """Write the body of `url` to `fd` (from offset 0) and return its sha256 hex.

    A zip of known size and sha256 arrives as byte ranges (extpack/ranged.py: concurrent
    for a large one, resumed where a failure cut them); any other as one stream. Retries
    connection errors, truncation, 5xx and 429 under the one retry policy (extpack/retry.py);
    a 403 is answered once by a fresh URL from `refresh_url`. A body that is not a complete zip
    (an error page, a download cut short with no size to check it against) is a failed
    attempt, never a result. `on_progress` is also called with 0 while waiting: an
    exception from it (a cancelled fetch) ends the download at once. Each attempt has a
    deadline, twice the read timeout plus its byte cap at the minimum rate: an attempt that
    misses it ends the download (a server that slow is not tried again). `arrivals` is told
    which byte ranges are complete as they complete, and when an attempt starts over.
    """
    import requests

    from extpack import ranged

    check = on_progress or (lambda amount: None)
    # Ranges need the size to split and the sha256 to trust the stitched whole.
    parts = ranged.plan(expected.size) if expected.sha256 is not None else None

    timeout = (10.0, _float_env("EXTPACK_HTTP_TIMEOUT", 60.0))
    location = Location(url, refresh_url, layer)
    host = location.host
    not_zips = 0
    last_problem = "no attempt made"
    budget = retry.Budget()
    with requests.Session() as session:
        session.trust_env = True
        for attempt in itertools.count():
            check(0)
            if attempt and arrivals is not None:
                arrivals.restarted()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            try:
                attempt_check = _with_deadline(check, expected.byte_cap, 2 * timeout[1], host, layer, budget)
                if parts is not None:
                    return ranged.fetch_ranged(location, fd, expected, parts, timeout, attempt_check, budget,
                                              arrivals)
                return _fetch_once(session, location.url, fd, expected, timeout, layer, attempt_check)
            except ranged.RangesUnreliable as problem:
                parts = None  # the next attempt is one plain stream
                last_problem = str(problem)
            except Expired as expired:
                location.refresh(expired.url)
            except NotAZip as problem:
                not_zips += 1
                if not_zips >= NOT_A_ZIP_ATTEMPTS:  # not the network: more retries would only take longer
                    raise DownloadError(f"{problem}: check that the URL serves the layer's zip", layer=layer) from None
                last_problem = str(problem)
            except Transient as problem:
                last_problem = str(problem)
            except (requests.exceptions.RequestException, OSError) as exc:
                last_problem = str(network_problem(exc, host, layer))
            except ValueError:
                # urllib.parse, urllib3 and requests raise it for a Location that does not parse.
                last_problem = f"{host} redirected to a malformed URL"
            failures = budget.spend()
            if failures is None:
                raise DownloadError(f"download failed after {budget.attempts} attempts: {last_problem}; check the "
                                    "network and run again", layer=layer)
            _sleep(retry.backoff(failures), check)


def _fetch_once(session, url, fd, expected: Expected, timeout, layer, check) -> str:
    receiver = _Receiver(session, url, timeout)
    try:
        _, response = receiver.get(check)
        status = response.status_code
        host = urlsplit(url).hostname
        if status != 200:
            raise_for_status(status, url, layer)
        limit = expected.byte_cap
        refuse_over(declared_length(response), limit, layer)
        digest = hashlib.sha256()
        received = 0
        prefix = b""
        while True:
            kind, chunk = receiver.get(check)
            if kind == "end":
                break
            if len(prefix) < len(ZIP_MAGIC):
                prefix += chunk[: len(ZIP_MAGIC) - len(prefix)]
                if len(prefix) == len(ZIP_MAGIC) and prefix != ZIP_MAGIC:
                    raise not_a_zip(host, response)
            received += len(chunk)
            if received > limit:
                raise DownloadError(f"the server sent more than the expected {limit} bytes: refusing it", layer=layer)
            digest.update(chunk)
            _write_all(fd, chunk)
            check(len(chunk))
    finally:
        receiver.abandon()
    if expected.size is not None and received != expected.size:
        raise Transient(f"the download was truncated ({received} of {expected.size} bytes)")
    if prefix != ZIP_MAGIC:
        raise not_a_zip(host, response)
    sha = digest.hexdigest()
    if expected.sha256 is not None and sha != expected.sha256:
        raise Transient(f"checksum mismatch (got sha256 {sha[:12]}…, expected {expected.sha256[:12]}…)")
    if expected.sha256 is None and not _is_complete_zip(fd):
        # Nothing to check the bytes against (a URL source not locked yet): a connection
        # closed early without a Content-Length looks like success, so ask the zip itself.
        raise Transient(f"the download from {host} is not a complete zip (cut short?)")
    return sha


def _with_deadline(check: Callable[[int], None], cap: int, grace: float, host: str, layer: str,
                   budget: retry.Budget) -> Callable[[int], None]:
    """`check`, which also ends the download once this attempt has outlived its deadline.
    A ranged attempt resumes its ranges within itself: each failure so far adds a grace."""
    rate = _float_env("EXTPACK_MIN_RATE", DEFAULT_MIN_RATE)
    started = time.monotonic()
    spent = budget.failures
    received = 0

    def checked(amount: int) -> None:
        nonlocal received
        check(amount)
        received += amount
        graces = grace * (1 + budget.failures - spent)
        allowed = graces + cap / rate if rate > 0 else float("inf")
        if time.monotonic() - started > allowed:
            raise DownloadError(
                f"the download from {host} is too slow: {received} bytes of {cap} in {allowed:.0f} s, its deadline "
                f"({graces:.0f} s, then {rate:.0f} bytes/s): check the network, or lower EXTPACK_MIN_RATE",
                layer=layer)

    return checked


def _is_complete_zip(fd: int) -> bool:
    import zipfile

    with os.fdopen(os.dup(fd), "rb") as handle:  # the caller writes no more, so sharing the offset is fine
        return zipfile.is_zipfile(handle)


def _sleep(seconds: float, check: Callable[[int], None]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, POLL_SECONDS))
        check(0)


class _Receiver:
    """One GET whose network I/O runs in a daemon thread, handed over through a small queue.

    A read from a silent server blocks for the whole read timeout and cannot be
    interrupted; waiting on the queue instead lets the caller notice a cancellation every
    POLL_SECONDS. The caller alone writes the file and reports progress; an abandoned
    thread only finishes its read (or times out) and drops what it got.
    """

    def __init__(self, session, url: str, timeout) -> None:
        self._items: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._abandoned = threading.Event()
        threading.Thread(target=self._run, args=(session, url, timeout), name="extpack-download",
                         daemon=True).start()

    def _run(self, session, url: str, timeout) -> None:
        try:
            with session.get(url, stream=True, timeout=timeout, allow_redirects=True) as response:
                if not self._put(("response", response)) or response.status_code != 200:
                    return
                for chunk in response.iter_content(CHUNK):
                    if not self._put(("chunk", chunk)):
                        return
            self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which sorts retryable from fatal
            self._put(("error", exc))

    def _put(self, item) -> bool:
        while not self._abandoned.is_set():
            try:
                self._items.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                pass
        return False

    def get(self, check: Callable[[int], None]):
        while True:
            try:
                kind, value = self._items.get(timeout=POLL_SECONDS)
            except queue.Empty:
                check(0)
                continue
            if kind == "error":
                raise value
            return kind, value

    def abandon(self) -> None:
        self._abandoned.set()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
