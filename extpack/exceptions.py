"""Every error extpack reports, each tied to a documented exit code.

Messages are one line, name the layer when there is one, and say what to do next.
"""

from __future__ import annotations

import re

from extpack.validate import CONTROL_RE

# Text from data is shown on one line with nothing a terminal would act on (see
# CONTROL_RE), so a layer or a server cannot print a fake line or an escape sequence.
_WHITESPACE_RUN_RE = re.compile(r"\s+")


def printable(text: str) -> str:
    """`text` as one safe line: control characters escaped (\\n, \\x1b, \\u202e), whitespace collapsed."""
    escaped = CONTROL_RE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)
    return _WHITESPACE_RUN_RE.sub(" ", escaped)


class ExtpackError(Exception):
    """Base class: an error with a user-facing message and an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, layer: str | None = None) -> None:
        self.layer = layer
        # Messages quote layer names, paths, link targets and servers' words: all data.
        super().__init__(printable(f"{layer}: {message}" if layer else message))


class UsageError(ExtpackError):
    """Bad arguments, malformed ARNs, bad config, missing stage (exit 2)."""

    exit_code = 2


class AwsError(ExtpackError):
    """The Lambda API said no: not found, access denied, throttled, no credentials (exit 3)."""

    exit_code = 3


class DownloadError(ExtpackError):
    """A download or an integrity check failed (exit 4)."""

    exit_code = 4


class LayerContentError(ExtpackError):
    """A layer holds something unsafe or invalid (exit 5)."""

    exit_code = 5


class DriftError(ExtpackError):
    """What is on disk differs from what the lock or the template says (exit 6)."""

    exit_code = 6

    def __init__(self, message: str, *, layer: str | None = None, details: list[str] | None = None) -> None:
        super().__init__(message, layer=layer)
        self.details = details or []


class NotALambdaError(ExtpackError):
    """Run under the Runtime Interface Emulator, the image fails: an extension or the function (exit 7)."""

    exit_code = 7
