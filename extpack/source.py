"""Step 1 of the pipeline: turn what the user typed into a typed layer source.

Validation happens here, before any network call: a malformed ARN is a usage error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from extpack.exceptions import UsageError

PARTITION_REGION_PREFIX = {"aws-cn": "cn-", "aws-us-gov": "us-gov-"}

_ARN_RE = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):lambda:"
    r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}):"
    r"(?P<account>\d{12}):layer:"
    r"(?P<name>[A-Za-z0-9_-]{1,140})"
    r"(?::(?P<version>[1-9]\d{0,15}))?"
)
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class LayerArn:
    partition: str
    region: str
    account: str
    name: str
    version: int | None

    @property
    def layer_arn(self) -> str:
        """The ARN of the layer itself, without a version."""
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:layer:{self.name}"

    def with_version(self, version: int) -> LayerArn:
        return LayerArn(self.partition, self.region, self.account, self.name, version)

    def __str__(self) -> str:
        return self.layer_arn if self.version is None else f"{self.layer_arn}:{self.version}"


@dataclass(frozen=True)
class Source:
    """One layer as the user named it: an ARN, a local zip, or a URL of a zip."""

    kind: str  # "arn" | "zip" | "url"
    text: str
    arn: LayerArn | None = None
    path: Path | None = None

    @property
    def display(self) -> str:
        """How to name this layer in messages: URLs lose their query (it may be a credential)."""
        return redact_url(self.text) if self.kind == "url" else self.text


def parse_arn(text: str) -> LayerArn:
    match = _ARN_RE.fullmatch(text)
    if not match:
        raise UsageError(
            f"malformed layer ARN {text!r}: expected "
            "arn:PARTITION:lambda:REGION:ACCOUNT:layer:NAME[:VERSION] (partition aws, aws-cn or aws-us-gov)"
        )
    partition, region = match["partition"], match["region"]
    expected_prefix = PARTITION_REGION_PREFIX.get(partition)
    in_other_partition = any(region.startswith(p) for p in PARTITION_REGION_PREFIX.values())
    if (expected_prefix and not region.startswith(expected_prefix)) or (not expected_prefix and in_other_partition):
        raise UsageError(f"malformed layer ARN {text!r}: region {region} is not in partition {partition}")
    version = int(match["version"]) if match["version"] else None
    return LayerArn(partition, region, match["account"], match["name"], version)


def parse_source(text: str, *, base_dir: Path | None = None) -> Source:
    """Classify and validate one SOURCE argument or config entry."""
    try:
        return _parse_source(text, base_dir)
    except (ValueError, RuntimeError, OSError) as exc:
        # urlsplit, ports, ~user expansion and over-long names all raise on odd input.
        shown = redact_url(text) if "://" in text else text
        raise UsageError(f"layer source {shown[:200]!r} is not usable ({exc}): give a layer ARN, a .zip path "
                         "or an https:// URL") from None


def _parse_source(text: str, base_dir: Path | None) -> Source:
    text = text.strip()
    if not text:
        raise UsageError("empty layer source: give a layer ARN, a path to a .zip, or an https:// URL")
    if text.startswith("arn:"):
        return Source("arn", text, arn=parse_arn(text))
    if "://" in text:
        return Source("url", text) if _is_allowed_url(text) else _bad_url(text)
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        hint = " (a layer ARN starts with arn:)" if not text.endswith(".zip") else ""
        raise UsageError(f"layer source {text!r} is not an existing file{hint}")
    return Source("zip", text, path=path)


def _is_allowed_url(text: str) -> bool:
    parts = urlsplit(text)
    parts.port  # raises ValueError on a malformed port, which parse_source reports
    if parts.scheme == "https" and parts.hostname:
        return True
    # Plain http only to this machine: a local mirror or a test server, never across a network.
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def _bad_url(text: str) -> Source:
    raise UsageError(f"layer URL {redact_url(text)!r} is not allowed: use an https:// URL of a zip")


def redact_url(url: str) -> str:
    """Drop the query and credentials of a URL: presigned URLs carry their signature there."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
