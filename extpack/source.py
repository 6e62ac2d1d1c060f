"""Step 1 of the pipeline: turn what the user typed into a typed layer source.

Validation happens here, before any network call: a malformed ARN is a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from extpack.exceptions import UsageError
from extpack.model import SourceKind
from extpack.validate import Invalid, allowed_url, layer_arn_match


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

    kind: SourceKind
    text: str
    arn: LayerArn | None = None
    path: Path | None = None

    @property
    def display(self) -> str:
        """How to name this layer in messages: URLs lose their query (it may be a credential)."""
        return redact_url(self.text) if self.kind is SourceKind.URL else self.text


def parse_arn(text: str) -> LayerArn:
    try:
        match = layer_arn_match(text, "layer ARN")
    except Invalid as exc:
        raise UsageError(f"malformed layer ARN {text!r}: it {exc.problem}") from None
    version = int(match["version"]) if match["version"] else None
    return LayerArn(match["partition"], match["region"], match["account"], match["name"], version)


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
        return Source(SourceKind.ARN, text, arn=parse_arn(text))
    if "://" in text:
        return Source(SourceKind.URL, text) if allowed_url(text) else _bad_url(text)
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        hint = " (a layer ARN starts with arn:)" if not text.endswith(".zip") else ""
        raise UsageError(f"layer source {text!r} is not an existing file{hint}")
    return Source(SourceKind.ZIP, text, path=path)


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
