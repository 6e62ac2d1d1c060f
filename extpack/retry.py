"""One retry policy for everything extpack asks of the network.

Lambda API calls retry through botocore's standard mode; layer downloads (and registry
requests) retry here, with the same numbers: ATTEMPTS attempts in all (AWS_MAX_ATTEMPTS,
botocore's own setting, changes both), and before attempt n+1 a wait drawn uniformly from
0 to min(20 s, 1 s x 2^(n-1)), botocore's "standard" backoff (exponential, full jitter).
What failed is told by the exception's type, never by its message text.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator

ATTEMPTS = 5
BACKOFF_CAP = 20.0  # seconds, as botocore's standard mode


def attempts() -> int:
    """How many attempts in all (the first included)."""
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS") or ATTEMPTS))
    except ValueError:
        return ATTEMPTS


def botocore_retries(configured_attempts: object) -> dict:
    """The `retries` of a botocore Config; a max_attempts the user configured (environment or
    profile, given as `configured_attempts`) is left to botocore, which reads it itself."""
    if configured_attempts is not None:
        return {"mode": "standard"}
    return {"mode": "standard", "total_max_attempts": attempts()}


def backoff(failed_attempts: int) -> float:
    """Seconds to wait after `failed_attempts` (>= 1) failures. EXTPACK_RETRY_BACKOFF scales
    the 1 s base (tests make it tiny)."""
    try:
        base = float(os.environ.get("EXTPACK_RETRY_BACKOFF") or 1.0)
    except ValueError:
        base = 1.0
    return random.random() * min(BACKOFF_CAP, base * 2 ** (failed_attempts - 1))


class Budget:
    """The attempts of one download, shared by all its connections: every failure anywhere
    spends one, so a download gives up after the same number of failures however it is split."""

    def __init__(self) -> None:
        self.attempts = attempts()
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def failures(self) -> int:
        return self._failures

    def spend(self) -> int | None:
        """Count a failure: the failures so far, or None when no attempt is left."""
        with self._lock:
            self._failures += 1
            return self._failures if self._failures < self.attempts else None


class Transient(Exception):
    """A failure another attempt may cure; its message names no URL."""


def network_problem(exc: BaseException, host: str) -> Transient | None:
    """What a requests/urllib3 exception means, as a Transient to retry, or None when it is
    not a network fault worth retrying (a TLS certificate refused, or not a network error)."""
    # Imported here, on the first failure: http.client brings ssl and email (~10 ms), which
    # the no-op and warm-cache runs, which download nothing, should not pay for.
    import http.client
    import socket

    import requests
    import urllib3.exceptions as u3

    causes = list(_causes(exc))
    if any(isinstance(c, (requests.exceptions.SSLError, u3.SSLError)) for c in causes):
        return None

    def has(*types: type) -> bool:
        return any(isinstance(c, types) for c in causes)

    if has(u3.NameResolutionError, socket.gaierror):
        return Transient(f"cannot resolve host {host}")
    if has(ConnectionRefusedError):
        return Transient(f"connection to {host} refused")
    if has(requests.exceptions.ConnectTimeout, u3.ConnectTimeoutError):
        return Transient(f"connecting to {host} timed out")
    if has(requests.exceptions.ReadTimeout, u3.ReadTimeoutError, TimeoutError, socket.timeout):
        return Transient(f"{host} stopped sending data (timed out)")
    if has(requests.exceptions.ChunkedEncodingError, u3.ProtocolError, http.client.IncompleteRead,
           http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return Transient(f"connection to {host} dropped mid-download")
    if has(requests.exceptions.ConnectionError, u3.HTTPError, ConnectionError):
        return Transient(f"connection to {host} failed")
    if has(requests.exceptions.RequestException):
        return Transient(f"{type(exc).__name__} talking to {host}")
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: its cause and context, requests' wrapped urllib3
    error (args[0]), and urllib3's MaxRetryError's reason."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None),
                   *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))]
        todo += [w for w in wrapped if isinstance(w, BaseException)]
