"""Obtaining a layer: its zip from the cache, or resolved and downloaded into a verified blob.

A zip path is hashed where it is; an ARN is resolved (its newest version when it names none),
checked against the lock's pin and looked up in the cache by its sha256; whatever is missing is
downloaded, verified and committed to the cache (or kept in the build's scratch folder when there
is no cache). Workers run this in parallel; the `Workspace` they share with the main thread lets a
cancelled fetch sweep what they left half done and never commit after the cancellation.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import stage as staging
from extpack.cache import Cache, sha256_file
from extpack.download import download
from extpack.exceptions import DownloadError, DriftError, LayerContentError
from extpack.fetch_types import FetchOptions, Progress
from extpack.lock import LockedLayer
from extpack.model import SourceKind
from extpack.resolve import LambdaResolver
from extpack.source import Source
from extpack.transfer import Expected

if TYPE_CHECKING:
    from extpack.stream_unpack import StreamingUnpack


# Starts unpacking a zip about to be downloaded to a path, given its sha256 and size; None: not this one.
EarlyUnpack = Callable[[str, Path, int], "StreamingUnpack | None"]


@dataclass
class Obtained:
    locked: LockedLayer
    blob: Path
    from_cache: bool
    temporary: bool
    unpacking: StreamingUnpack | None = None  # the tree unpacked while it downloaded, to finish


@dataclass
class Workspace:
    """What one fetch's workers share with its main thread: where downloads go without a cache
    (`scratch`, set by the build), the temporary files and trees in progress (removed by the main
    thread on interrupt), and whether the fetch was cancelled."""

    scratch: Path | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    temps: set[Path] = field(default_factory=set)
    temps_lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, temp: Path, display: str) -> Path:
        """Register a temporary file or tree for the sweep; refused once the fetch is cancelled
        (the sweep may already have run, and would never see it)."""
        with self.temps_lock:
            if self.cancelled.is_set():
                remove_quietly(temp)
                raise DownloadError("cancelled", layer=display)
            self.temps.add(temp)
        return temp

    @contextlib.contextmanager
    def committing(self, temp: Path, display: str) -> Iterator[None]:
        """Move a worker's verified blob or tree into the cache, unless the fetch was cancelled.

        The check and the move hold the lock the sweep holds, so a cancelled fetch never
        commits: either the commit happened before the cancellation, or it does not happen.
        """
        with self.temps_lock:
            if self.cancelled.is_set():
                raise DownloadError("cancelled", layer=display)
            yield
            self.temps.discard(temp)

    def untrack(self, temp: Path) -> None:
        with self.temps_lock:
            self.temps.discard(temp)

    def sweep(self) -> None:
        """Remove every temporary still tracked: the main thread's cleanup after a cancellation."""
        with self.temps_lock:
            for temp in self.temps:
                remove_quietly(temp)


class Obtainer:
    """Gets each layer's zip, verified, as a blob: from the cache when it can, else downloaded."""

    def __init__(self, options: FetchOptions, cache: Cache | None, resolver: LambdaResolver, progress: Progress,
                 workspace: Workspace) -> None:
        self.options = options
        self.cache = cache
        self.resolver = resolver
        self.progress = progress
        self.workspace = workspace

    def obtain(self, index: int, source: Source, pin: LockedLayer | None,
               early_unpack: EarlyUnpack | None = None) -> Obtained:
        if source.kind == "zip":
            return self._obtain_zip(source, pin)
        if pin is not None and self.cache is not None:
            cached = self.cached_blob(pin)
            if cached is not None:
                return Obtained(pin, cached, True, False)
        if source.kind == "url":
            return self._download_url(index, source, pin, early_unpack)
        return self._download_arn(index, source, pin, early_unpack)

    def _obtain_zip(self, source: Source, pin: LockedLayer | None) -> Obtained:
        assert source.path is not None
        sha = sha256_file(source.path)
        locked = LockedLayer(source.text, "zip", sha, source.path.stat().st_size)
        if self.options.frozen and pin is not None and pin.sha256 != sha:
            raise DriftError(f"the zip's sha256 is {sha[:12]}…, the lock says {pin.sha256[:12]}…: run extpack fetch "
                             "without --frozen if the change is intended", layer=source.display)
        return Obtained(locked, source.path, False, False)

    def cached_blob(self, pin: LockedLayer) -> Path | None:
        blob = self.cache.lookup(pin.sha256)
        if blob is None:
            return None
        if self.cache.is_intact(pin.sha256):
            self.cache.touch(pin.sha256)
            return blob
        # The lock's sha256 checks the download, so even a frozen fetch may simply download it again.
        self.cache.evict(pin.sha256)
        self.progress.info(f"{pin.arn or pin.source}: cached zip was corrupt; downloading it again")
        return None

    def _download_arn(self, index: int, source: Source, pin: LockedLayer | None,
                      early_unpack: EarlyUnpack | None) -> Obtained:
        arn = source.arn
        if pin is not None and pin.version is not None:
            arn = arn.with_version(pin.version)
        elif arn.version is None:
            arn = arn.with_version(self.resolver.newest_version(arn, self.options.arch))
            self.progress.info(f"{source.text}: newest version is {arn.version}")
        pinned_source = Source(SourceKind.ARN, source.text, arn=arn)
        resolved = self.resolver.resolve(pinned_source, self.options.arch)
        if pin is not None and resolved.sha256 != pin.sha256:
            raise DriftError(f"the Lambda API reports sha256 {resolved.sha256}, the lock says {pin.sha256}: "
                             "the layer changed; check the lock", layer=str(arn))
        locked = LockedLayer(source.text, "arn", resolved.sha256, resolved.size, arn=resolved.arn,
                             version=resolved.version, architectures=resolved.architectures)
        cached = self.cached_blob(locked) if self.cache is not None and pin is None else None
        if cached is not None:  # the same zip under another name or version: no download
            return Obtained(locked, cached, True, False)
        blob, _, temporary, unpacking = self.fetch_to_blob(
            index, resolved.location,
            Expected(resolved.sha256, resolved.size, zip_size_bound(self.options.max_layer_size)),
            display=str(arn), refresh=lambda: self.resolver.resolve(pinned_source, self.options.arch).location,
            early_unpack=early_unpack,
        )
        return Obtained(locked, blob, False, temporary, unpacking)

    def _download_url(self, index: int, source: Source, pin: LockedLayer | None,
                      early_unpack: EarlyUnpack | None) -> Obtained:
        expected = Expected(pin.sha256 if pin else None, pin.size if pin else None,
                            zip_size_bound(self.options.max_layer_size))
        blob, sha, temporary, unpacking = self.fetch_to_blob(index, source.text, expected, display=source.display,
                                                             early_unpack=early_unpack)
        # The lock keeps the URL without its query: a signed query is a credential, and it expires.
        locked = LockedLayer(source.display, "url", sha, blob.stat().st_size)
        return Obtained(locked, blob, False, temporary, unpacking)

    def fetch_to_blob(self, index, url, expected: Expected, *, display: str, refresh=None,
                      early_unpack: EarlyUnpack | None = None) -> tuple[Path, str, bool, StreamingUnpack | None]:
        """Download `url` into a verified blob (in the cache, else the build's scratch folder):
        (its path, sha256, whether it is temporary, the unpack started while it downloaded)."""
        if not url:
            raise DownloadError("the Lambda API returned no download location", layer=display)
        if expected.size is not None and expected.size > expected.max_size:
            # Refused before a byte is fetched: a zip this large cannot unpack within the limit.
            raise LayerContentError(f"the layer zip is {expected.size} bytes, more than a layer within "
                                    f"--max-layer-size {self.options.max_layer_size} can be ({expected.max_size} "
                                    "bytes zipped): raise --max-layer-size if the layer is meant to be this big",
                                    layer=display)
        if self.cache is not None:
            fd, temp = self.cache.new_temp()
        else:
            self.workspace.scratch.mkdir(exist_ok=True)
            temp = self.workspace.scratch / f"layer-{index}.zip"
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self.workspace.track(temp, display)
        except BaseException:
            os.close(fd)
            raise
        self.progress.layer_started(index, display, expected.size)

        def on_progress(amount: int) -> None:
            if self.workspace.cancelled.is_set():
                raise DownloadError("cancelled", layer=display)
            self.progress.advance(index, amount)

        # Unpacking while the bytes arrive needs the sha256 that will vouch for them, and the size.
        unpacking = early_unpack(expected.sha256, temp, expected.size) \
            if early_unpack is not None and expected.sha256 is not None and expected.size else None
        try:
            sha = download(url, fd, expected, layer=display, refresh_url=refresh, on_progress=on_progress,
                           arrivals=unpacking)
            if self.cache is None:
                return temp, sha, True, unpacking
            with self.workspace.committing(temp, display):
                return self.cache.commit(temp, sha), sha, False, unpacking
        except BaseException:
            if unpacking is not None:
                unpacking.discard()
            remove_quietly(temp)
            raise
        finally:
            os.close(fd)
            self.workspace.untrack(temp)


def remove_quietly(path: Path) -> None:
    """Best effort: what brought us here is the error to report (`cache prune` sweeps leftovers)."""
    try:
        staging.discard(path) if path.is_dir() else os.unlink(path)
    except OSError:
        pass


def zip_size_bound(max_layer_size: int) -> int:
    # A zip of incompressible data is slightly larger than its content.
    return max_layer_size + max_layer_size // 10 + (1 << 20)
