"""A link model for the benchmark's loopback server: S3 and the Lambda API as a CI runner sees them.

Loopback delivers a zip at memory speed, so a fetch there is bound by this machine's CPU.
Over a real link it is bound by the link: one S3 GET stream carries ~50-90 MB/s, the
runner's NIC caps all streams together, every download waits tens of milliseconds for its
first byte and every API call for its answer. `LinkModel` is that link; `PacedSender`
sends a response through it (a per-connection and a shared token bucket).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

SEND_CHUNK = 256 * 1024  # pacing granularity: ~5 ms of one connection at 50 MB/s


@dataclass(frozen=True)
class LinkModel:
    name: str
    per_connection: float  # bytes/s one download connection carries at most
    total: float  # bytes/s all connections together carry at most
    first_byte: float  # seconds before the first byte of every download answer
    api_latency: float  # seconds before every Lambda API answer

    def floor(self, zip_bytes: int) -> float:
        """No fetch of `zip_bytes` over this link beats this: every byte at the link's
        total rate, after one API call and one first byte."""
        return zip_bytes / self.total + self.api_latency + self.first_byte

    def describe(self) -> str:
        return (f"each download connection ≤ {self.per_connection / 1e6:.0f} MB/s, all connections together "
                f"≤ {self.total / 1e6:.0f} MB/s (a shared token bucket), {self.first_byte * 1000:.0f} ms before "
                f"the first byte of every download, {self.api_latency * 1000:.0f} ms before every Lambda API answer")


# S3 from a CI runner (issue 15): what one GET stream and a runner's NIC give.
MODELS = {"s3": LinkModel("s3", per_connection=50e6, total=200e6, first_byte=0.020, api_latency=0.050)}


class TokenBucket:
    """A rate limit by reservation: reserve(n) books n bytes and returns how long to wait
    before sending them. Bookings queue up (the bucket goes into debt), so concurrent
    senders share the rate in arrival order instead of all sending at once."""

    def __init__(self, rate: float, burst: int = SEND_CHUNK) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, amount: int) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Link:
    """One link model in force on a server: the shared bucket, and one bucket per connection."""

    def __init__(self, model: LinkModel) -> None:
        self.model = model
        self.shared = TokenBucket(model.total)

    def connection_bucket(self, handler) -> TokenBucket:
        # A keep-alive connection is served by one handler object, request after request.
        bucket = getattr(handler, "link_bucket", None)
        if bucket is None:
            bucket = handler.link_bucket = TokenBucket(self.model.per_connection)
        return bucket

    def send_body(self, handler, body: memoryview) -> None:
        bucket = self.connection_bucket(handler)
        for offset in range(0, len(body), SEND_CHUNK):
            piece = body[offset:offset + SEND_CHUNK]
            wait = max(bucket.reserve(len(piece)), self.shared.reserve(len(piece)))
            if wait > 0:
                time.sleep(wait)
            handler.wfile.write(piece)
