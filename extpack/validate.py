"""The shapes of what extpack reads from files and peers it does not control.

The lock, the manifest and the config are edited in pull requests, and the Lambda API can
lie: each value is checked against its grammar when it is read, before it reaches a path, a
message, the lock or a Dockerfile. The functions here are pure: they return the value or
raise `Invalid` naming the field; the caller names the file or the peer and picks the
exit code.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

PARTITION_REGION_PREFIX = {"aws-cn": "cn-", "aws-us-gov": "us-gov-"}

SHA256_RE = re.compile(r"[0-9a-f]{64}")
LAYER_ARN_RE = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):lambda:"
    r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}):"
    r"(?P<account>\d{12}):layer:"
    r"(?P<name>[A-Za-z0-9_-]{1,140})"
    r"(?::(?P<version>[1-9]\d{0,15}))?"
)
# A function ARN (optionally qualified), as GetFunction takes and answers it.
FUNCTION_ARN_RE = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):lambda:"
    r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}):"
    r"(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]{1,64})"
    r"(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?"
)
FUNCTION_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
QUALIFIER_RE = re.compile(r"\$LATEST|[A-Za-z0-9_-]{1,128}")
FUNCTION_VERSION_RE = re.compile(r"\$LATEST|[1-9]\d{0,15}")
RUNTIME_RE = re.compile(r"[a-z][a-z0-9]*(?:\.[a-z0-9]+)*")
# Lambda's Handler pattern is [^\s]+ (128 at most); it becomes the image's CMD.
HANDLER_RE = re.compile(r"[^\s\\\"']{1,128}")
# Lambda's EnvironmentVariableName.
ENV_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")
# C0 and C1 controls, line and paragraph separators, and the invisible format characters
# that reorder or hide text (bidi overrides, zero-width marks, BOM): none belongs in a
# name, an ARN or a Dockerfile value, and each can forge what a terminal shows.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# A relative path inside a tree: no leading or trailing '/', no empty, '.' or '..' part.
BAD_RELATIVE_PATH_RE = re.compile(r"^/|/$|//|(?:^|/)\.\.?(?:/|$)")


class Invalid(ValueError):
    """`field` does not have the shape it must have; `problem` says which."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def shown(value: object, limit: int = 80) -> str:
    """A value as a message may quote it: repr (which escapes controls), cut to `limit`."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text(value: object, field: str, *, empty: bool = False) -> str:
    """A string without control characters."""
    if not isinstance(value, str):
        raise Invalid(field, f"must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise Invalid(field, "must not be empty")
    if CONTROL_RE.search(value):
        raise Invalid(field, f"contains a control character: {shown(value)}")
    return value


def optional_text(value: object, field: str) -> str | None:
    return None if value is None else text(value, field)


def sha256_hex(value: object, field: str) -> str:
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
        raise Invalid(field, f"is not a sha256 (64 lower-case hex characters): {shown(value)}")
    return value


def optional_sha256_hex(value: object, field: str) -> str | None:
    return None if value is None else sha256_hex(value, field)


def count(value: object, field: str) -> int:
    """A non-negative integer (a size, an index); JSON true/false are not numbers here."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid(field, f"must be a non-negative integer, not {shown(value)}")
    return value


def version(value: object, field: str) -> int:
    """A layer version: a positive integer."""
    if count(value, field) < 1:
        raise Invalid(field, f"must be a positive integer, not {shown(value)}")
    return value


def optional_version(value: object, field: str) -> int | None:
    return None if value is None else version(value, field)


def layer_arn_match(value: object, field: str) -> re.Match:
    """A layer ARN, with or without a version, whose region is in its partition."""
    match = LAYER_ARN_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(field, "is not a layer ARN (arn:PARTITION:lambda:REGION:ACCOUNT:layer:NAME[:VERSION], "
                             "partition aws, aws-cn or aws-us-gov)")
    _region_in_partition(match, field)
    return match


def layer_arn_of(match: re.Match) -> str:
    """The ARN of the layer itself (no version) from a LAYER_ARN_RE match."""
    return f"arn:{match['partition']}:lambda:{match['region']}:{match['account']}:layer:{match['name']}"


def layer_version_arn(value: object, field: str) -> str:
    if layer_arn_match(value, field)["version"] is None:
        raise Invalid(field, f"is a layer ARN without a version: {shown(value)}")
    return value


def optional_layer_version_arn(value: object, field: str) -> str | None:
    return None if value is None else layer_version_arn(value, field)


def code_sha256(value: object, field: str) -> str:
    """The API's CodeSha256 (base64 of the 32-byte digest) as hex."""
    try:
        digest = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise Invalid(field, f"is not base64 of a 32-byte sha256: {shown(value)}")
    return digest.hex()


def one_of(value: object, choices: tuple[str, ...], field: str) -> str:
    if value not in choices:
        raise Invalid(field, f"must be one of {', '.join(choices)}, not {shown(value)}")
    return value


def relative_path(value: object, field: str) -> str:
    """A path inside a tree: relative, without '.', '..' or empty parts."""
    if BAD_RELATIVE_PATH_RE.search(text(value, field)):
        raise Invalid(field, f"is not a path inside the tree: {shown(value)}")
    return value


def mapping(value: object, field: str) -> dict:
    if not isinstance(value, dict):
        raise Invalid(field, f"must be an object, not {type(value).__name__}")
    return value


def sequence(value: object, field: str) -> list:
    if not isinstance(value, list):
        raise Invalid(field, f"must be a list, not {type(value).__name__}")
    return value


def allowed_url(value: str) -> bool:
    """https, or plain http to this machine only (a local mirror, a test server).

    Raises ValueError for a URL that does not parse (a bad port, a broken IPv6 host).
    """
    parts = urlsplit(value)
    parts.port  # noqa: B018 - raises ValueError on a malformed port
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def download_url(value: object, field: str) -> str:
    """A URL to download from. It may be presigned (a credential): never quoted back."""
    if not isinstance(value, str) or not value or CONTROL_RE.search(value):
        raise Invalid(field, "is not a URL (empty, not a string, or with control characters)")
    try:
        allowed = allowed_url(value)
    except ValueError:
        allowed = False
    if not allowed:
        raise Invalid(field, "is not an https:// URL")
    return value


MODE_RE = re.compile(r"[0-7]{4}")  # a file mode as the manifest writes it


def function_arn_match(value: object, field: str) -> re.Match:
    """A function ARN, with or without a qualifier, whose region is in its partition."""
    match = FUNCTION_ARN_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(field, "is not a function ARN (arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])"
                             f": {shown(value)}")
    _region_in_partition(match, field)
    return match


def _region_in_partition(match: re.Match, field: str) -> None:
    partition, region = match["partition"], match["region"]
    expected_prefix = PARTITION_REGION_PREFIX.get(partition)
    in_other_partition = any(region.startswith(p) for p in PARTITION_REGION_PREFIX.values())
    if (expected_prefix and not region.startswith(expected_prefix)) or (not expected_prefix and in_other_partition):
        raise Invalid(field, f"names region {region}, which is not in partition {partition}")


def matching(value: object, pattern: re.Pattern, field: str, what: str) -> str:
    """A string that is wholly `pattern` (`what` names the shape in the message)."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Invalid(field, f"is not {what}: {shown(value)}")
    return value
