"""What a layer download's HTTP answers mean, shared by the one-stream download (download.py)
and the concurrent byte-range one (ranged.py): the expected bytes, where they are (a presigned
URL that may expire), and which answers are transient, fatal or not a zip at all.

The URL is usually presigned, i.e. a credential: it is never put in a message. Errors name
the host only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from extpack import retry
from extpack.exceptions import DownloadError
from extpack.retry import Transient

CHUNK = 1 << 20
# While waiting on the network, on_progress(0) is called this often, so a fetch that was
# cancelled (its on_progress raises) stops promptly even when the server sends nothing.
POLL_SECONDS = 0.1
ZIP_MAGIC = b"PK"  # every zip starts with a local header (PK\3\4) or, empty, its end record (PK\5\6)


@dataclass(frozen=True)
class Expected:
    """What the bytes must be; unknown for a plain URL source that is not locked yet."""

    sha256: str | None
    size: int | None
    max_size: int

    @property
    def byte_cap(self) -> int:
        """No download is ever longer than this: the size announced, within the bound."""
        return self.max_size if self.size is None else min(self.size, self.max_size)


class Arrivals(Protocol):
    """Told, in the downloading thread, which bytes of the file are final (extpack/stream_unpack.py)."""

    def arrived(self, start: int, end: int) -> None:
        """Bytes [start, end) are written and will not change in this attempt."""

    def restarted(self) -> None:
        """The download starts over from byte 0: whatever arrived before is void."""


class NotAZip(Transient):
    """A 200 whose body is not a zip (an error page): tried again once, then reported as such."""


class Expired(Exception):
    """A 403 from an expired presigned URL: ask the API for a fresh one."""

    def __init__(self, url: str) -> None:
        super().__init__("the URL has expired")
        self.url = url


def network_problem(exc: BaseException, host: str, layer: str) -> Transient:
    """The retryable problem a requests/OS error is; raises what is not one."""
    import requests

    problem = retry.network_problem(exc, host)  # never str(exc): it would carry the URL
    if problem is not None:
        return problem
    if isinstance(exc, requests.exceptions.RequestException):
        # A certificate is not a transient fault, and retrying one hides what is wrong.
        raise DownloadError(f"the TLS certificate of {host} was not accepted (certificate verify failed): "
                            "check the system's CA certificates, or set REQUESTS_CA_BUNDLE to a private CA's",
                            layer=layer) from None
    raise exc


class Location:
    """Where a download is: a presigned URL, which a 403 (expired) replaces once by a fresh
    one from the API. Shared by the connections of a ranged download."""

    def __init__(self, url: str, refresh_url: Callable[[], str] | None, layer: str) -> None:
        self.url = url
        self.host = urlsplit(url).hostname or "?"
        self._refresh_url = refresh_url
        self._refreshed = False
        self.layer = layer
        self._lock = threading.Lock()

    def refresh(self, expired: str) -> str:
        """A URL to use instead of `expired`: a fresh one, or the one another connection got."""
        with self._lock:
            if self.url != expired:
                return self.url
            if self._refresh_url is None or self._refreshed:
                raise DownloadError(f"download refused by {self.host} (HTTP 403): the URL has expired or access is "
                                    "denied; run again", layer=self.layer) from None
            self._refreshed = True
            self.url = self._refresh_url()
            return self.url


def declared_length(response) -> int | None:
    declared = response.headers.get("Content-Length")
    return int(declared) if declared and declared.isdigit() else None


def refuse_over(offered: int | None, cap: int, layer: str) -> None:
    """A server offering more than the layer can be is refused before a byte is read."""
    if offered is not None and offered > cap:
        raise DownloadError(f"the server offers {offered} bytes but the layer is {cap} bytes at most: refusing it",
                            layer=layer)


def raise_for_status(status: int, url: str, layer: str) -> None:
    """What an answer other than the one asked for means: a URL to refresh, a transient
    fault, or the end of the download."""
    host = urlsplit(url).hostname
    if status == 403:
        raise Expired(url)
    if status == 429 or status >= 500:
        raise Transient(f"{host} answered HTTP {status}")
    raise DownloadError(f"download failed: {host} answered HTTP {status}", layer=layer)


def not_a_zip(host, response) -> Transient:
    kind = response.headers.get("Content-Type") or "something"
    return NotAZip(f"{host} sent {kind.split(';')[0].strip()} instead of a zip (an error page?)")
