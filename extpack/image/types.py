"""The image's vocabulary: media types, blobs, descriptors, platforms, a built image, a tag's target.

Types only (and the pure rules that belong to them), as go-containerregistry's `pkg/v1`: this
module imports no other module of `extpack.image`, so the builder, the layout, the archives and
the registry client all consume it and no cycle can form between them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from extpack.exceptions import UsageError
from extpack.model import Arch

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


def canonical_json(obj: Any) -> bytes:
    """The one serialisation used for every JSON blob, so digests are stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Platform:
    """An OCI platform: what a config and an index entry say the image runs on."""

    architecture: str  # OCI's spelling: amd64, arm64
    os: str = "linux"
    variant: str | None = None

    @classmethod
    def of(cls, arch: Arch) -> Platform:
        return cls(arch.oci, "linux", arch.oci_variant)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Platform:
        return cls(str(data.get("architecture", "")), str(data.get("os", "")), data.get("variant") or None)

    def to_json(self) -> dict[str, str]:
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        return data

    @property
    def key(self) -> str:
        """`os/architecture[/variant]`, as docker writes a platform: linux/arm64/v8."""
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


@dataclass(frozen=True)
class Addressed:
    """Content named by what it is and its hash: what a blob and a descriptor of it share."""

    media_type: str
    digest: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Descriptor(Addressed):
    """What points at a blob (and, in an index, says its platform and tag)."""

    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        platform = data.get("platform")
        return cls(str(data.get("mediaType", "")), str(data.get("digest", "")), int(data.get("size", 0)),
                   Platform.from_json(platform) if isinstance(platform, dict) else None,
                   dict(data.get("annotations") or {}))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            data["platform"] = self.platform.to_json()
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @property
    def ref_name(self) -> str | None:
        """The tag an OCI layout's index gives this entry."""
        return self.annotations.get(ANNOTATION_REF_NAME)


@dataclass(frozen=True)
class Blob(Addressed):
    """A content-addressed blob, held in memory (JSON) or in a file (the layer)."""

    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_json(cls, media_type: str, obj: Any) -> Blob:
        data = canonical_json(obj)
        return cls(media_type, sha256_digest(data), len(data), data=data)

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def descriptor(self, platform: Platform | None = None, annotations: dict[str, str] | None = None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, platform, dict(annotations or {}))


@dataclass
class ImageBuild:
    """A built image: blobs in memory (JSON) and a temporary file (the layer).

    Use as a context manager, or call `close()`, to remove the temporary layer file.
    """

    platform: Platform
    epoch: int
    layer: Blob
    diff_id: str  # the digest of the layer's uncompressed tar, as the config names it
    config: Blob
    manifest: Blob
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ImageBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Target:
    """What a tag points at: one image manifest, or an index over several (multi-arch)."""

    top: Blob  # the manifest or index that the tag names
    blobs: tuple[Blob, ...]  # every blob reachable from `top`, `top` included, deduplicated
    platform: Platform | None  # only for a single-arch target
    epoch: int

    @property
    def digest(self) -> str:
        return self.top.digest


def as_builds(builds: ImageBuild | Sequence[ImageBuild]) -> list[ImageBuild]:
    """One build or several, as a list; at least one, and at most one per platform."""
    items = [builds] if isinstance(builds, ImageBuild) else list(builds)
    if not items:
        raise UsageError("no image to write: give at least one stage")
    seen: set[str] = set()
    for b in items:
        key = b.platform.key
        if key in seen:
            raise UsageError(f"two stages for the same platform {key}: give one stage per architecture")
        seen.add(key)
    return items


def image_index(builds: Sequence[ImageBuild]) -> Blob:
    """The multi-arch index: one manifest descriptor per platform, sorted by platform."""
    manifests = [b.manifest.descriptor(b.platform).to_json() for b in sorted(builds, key=lambda b: b.platform.key)]
    return Blob.from_json(MEDIA_INDEX, {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests})


def target_for(builds: ImageBuild | Sequence[ImageBuild]) -> Target:
    """The manifest (one build) or the index (several) a tag names, with every blob it reaches."""
    items = as_builds(builds)
    blobs: dict[str, Blob] = {}
    for b in items:
        for blob in (b.layer, b.config, b.manifest):
            blobs.setdefault(blob.digest, blob)
    epoch = max(b.epoch for b in items)
    if len(items) == 1:
        return Target(items[0].manifest, tuple(blobs.values()), items[0].platform, epoch)
    index = image_index(items)
    blobs[index.digest] = index
    return Target(index, tuple(blobs.values()), None, epoch)
