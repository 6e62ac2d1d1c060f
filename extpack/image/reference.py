"""Image references: the one grammar for every name extpack gives an image.

`parse_reference` reads `[HOST[:PORT]/]PATH[:TAG][@DIGEST]` as docker does (the grammar of
distribution/reference, as go-containerregistry's `pkg/name`): the first component is a host
only when it holds a `.` or a `:` or is `localhost`; path components are lower case; no host
means Docker Hub, where a one-component path is under `library/`. `check_ref_name` is the
other name an image gets: the tag an OCI layout's index gives it (`org.opencontainers.image.
ref.name`), whose grammar the OCI image-layout spec sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from extpack.exceptions import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}")
# OCI image-layout: components of [A-Za-z0-9] joined by [-._:@+], "--" or "/"
_REF_NAME = re.compile(r"[A-Za-z0-9]+(?:(?:[-._:@+]|--|/)[A-Za-z0-9]+)*")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; `domain` and `path` are as written, the properties add docker's defaults."""

    domain: str | None  # None: Docker Hub
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def registry(self) -> str:
        return self.domain or DOCKER_HUB

    @property
    def repository(self) -> str:
        """The repository as the registry names it: `alpine` on Docker Hub is `library/alpine`."""
        return f"library/{self.path}" if self.registry == DOCKER_HUB and "/" not in self.path else self.path

    @property
    def api_host(self) -> str:
        """Where the registry's API answers (Docker Hub's is not docker.io)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """The name as written, without tag or digest: what `docker images` shows."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def tagged(self) -> Reference:
        """The same reference with `latest` when it names neither a tag nor a digest, as docker reads it."""
        return self if self.tag or self.digest else replace(self, tag=DEFAULT_TAG)

    def familiar(self) -> str:
        """As written, with its tag: `demo-ext` -> `demo-ext:latest` (what `docker load` tags)."""
        ref = self.tagged()
        return ref.name + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")

    def __str__(self) -> str:
        """Fully qualified: `alpine` -> `docker.io/library/alpine` (plus the tag and digest written)."""
        return (f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))


def parse_reference(text: str, *, label: str = "image reference") -> Reference:
    """`[HOST[:PORT]/]PATH[:TAG][@DIGEST]`; a UsageError naming `label` (what the user gave) otherwise."""
    rest, _, digest = text.partition("@")
    first, slash, after = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, after
    else:
        domain, path = None, rest
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if not (
        (domain is None or _DOMAIN.fullmatch(domain))
        and _PATH.fullmatch(path)
        and (tag is None or _TAG.fullmatch(tag))
        and ("@" not in text or _DIGEST.fullmatch(digest))
    ):
        raise UsageError(f"bad {label} {text!r}: use [HOST[:PORT]/]NAME[:TAG] with a lower-case name "
                         "(e.g. demo-ext:1)")
    return Reference(domain, path, tag, digest or None)


def check_ref_name(tag: str) -> None:
    """The tag of an OCI layout's (or oci-archive's) index entry; a UsageError otherwise."""
    if not _REF_NAME.fullmatch(tag):
        raise UsageError(f"bad tag {tag!r}: use letters, digits and - . _ : @ + / (e.g. demo-ext:1)")
