"""The OCI image layout directory: write builds into one, and read images back out of one.

Writing is deterministic: JSON is serialised canonically (sorted keys, no spaces), so the same
builds always give the same bytes. Reading opens any layout (extpack's, skopeo's, umoci's),
checks every JSON document it reads against the sha256 digest its descriptor names (layers are
not read whole), and returns the types of `extpack.image.types`: `doctor --oci` and the tests
read images this way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extpack.atomic import write_atomically
from extpack.exceptions import UsageError
from extpack.image.reference import check_ref_name
from extpack.image.types import (
    ANNOTATION_REF_NAME,
    MEDIA_INDEX,
    Blob,
    Descriptor,
    ImageBuild,
    Platform,
    Target,
    canonical_json,
    sha256_digest,
    target_for,
)
from extpack.model import Arch
from extpack.replaceable import refuse_unless_replaceable

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
# OCI's digest grammar; it also keeps a digest read from a layout from naming a path outside it.
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


def index_json(entries: Sequence[dict[str, Any]]) -> Blob:
    """A layout's index.json (an OCI image index) listing `entries` (descriptors as JSON)."""
    return Blob.from_json(MEDIA_INDEX, {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": list(entries)})


def tagged(target: Target, tag: str) -> Descriptor:
    """The index entry that names `target` by `tag`."""
    return target.top.descriptor(target.platform, {ANNOTATION_REF_NAME: tag})


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _put_blob(blobs_dir: Path, blob: Blob) -> None:
    dest = blobs_dir / blob.hex
    if dest.is_file() and dest.stat().st_size == blob.size:
        return  # content-addressed: same name and size means same content
    if blob.data is not None:
        write_atomically(dest, blob.data)
        return
    assert blob.path is not None
    tmp = dest.with_name(f".{blob.hex}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(blob.path, tmp)  # same filesystem: no copy of a large layer
    except OSError:
        shutil.copyfile(blob.path, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def write_oci_layout(builds: ImageBuild | Sequence[ImageBuild], path: Path, tag: str) -> str:
    """Write (or add to) an OCI image layout directory; return the tagged digest.

    Several builds (one per architecture) are written as an image index tagged once.
    An existing layout keeps its other tags; an existing entry with the same tag is replaced.
    """
    check_ref_name(tag)
    target = target_for(builds)
    path = Path(path)
    refuse_unless_replaceable(path, ours=lambda folder: (folder / "oci-layout").is_file(), what="an OCI layout",
                              option="--output")
    blobs_dir = path / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    for blob in target.blobs:
        _put_blob(blobs_dir, blob)

    manifests: list[dict[str, Any]] = []  # another tag's entry is kept as it is, fields we do not know included
    index_path = path / "index.json"
    if index_path.is_file():
        try:
            old = json.loads(index_path.read_text())
            manifests = [
                m for m in old.get("manifests", []) if m.get("annotations", {}).get(ANNOTATION_REF_NAME) != tag
            ]
        except (ValueError, AttributeError) as e:
            raise UsageError(f"{index_path} is not valid JSON ({e}): remove it or choose another --output") from e
    manifests.append(tagged(target, tag).to_json())
    write_atomically(path / "oci-layout", OCI_LAYOUT)
    write_atomically(index_path, index_json(manifests).data or b"")
    return target.digest


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutImage:
    """One image of a layout: its manifest's descriptor, its config, and its layer blobs (bottom first)."""

    descriptor: Descriptor
    config: dict[str, Any]
    layers: tuple[Path, ...]

    @property
    def platform(self) -> Platform:
        return Platform.from_json(self.config)


@dataclass(frozen=True)
class Layout:
    """An OCI image layout directory as read: the entries of its index.json."""

    path: Path
    manifests: tuple[Descriptor, ...]

    def tags(self) -> list[str]:
        return [m.ref_name for m in self.manifests if m.ref_name]

    def blob_path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise UsageError(f"{self.path} names a blob by {digest!r}, which is not a digest: it is not a valid "
                             "OCI layout")
        algorithm, _, hexdigest = digest.partition(":")
        return self.path / "blobs" / algorithm / hexdigest

    def read_json(self, descriptor: Descriptor) -> dict[str, Any]:
        """The JSON document `descriptor` points at, checked against its digest."""
        try:
            data = self.blob_path(descriptor.digest).read_bytes()
        except OSError as exc:
            raise UsageError(f"{self.path} lacks blob {descriptor.digest} ({exc.strerror}): the layout is "
                             "incomplete; write it again") from None
        if descriptor.digest.startswith("sha256:") and sha256_digest(data) != descriptor.digest:
            raise UsageError(f"blob {descriptor.digest} in {self.path} does not match its digest: the layout is "
                             "damaged; write it again")
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"blob {descriptor.digest} in {self.path} is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise UsageError(f"blob {descriptor.digest} in {self.path} is not a JSON object")
        return document

    def image(self, tag: str | None = None, arch: Arch | None = None) -> LayoutImage:
        """The image tagged `tag` (default: the first entry); in an index, the one for `arch`, else its first."""
        entries = [m for m in self.manifests if tag is None or m.ref_name == tag]
        if not entries:
            raise UsageError(f"{self.path} holds no image" + (f" tagged {tag}" if tag else ""))
        return self._image(entries[0], arch)

    def _image(self, descriptor: Descriptor, arch: Arch | None) -> LayoutImage:
        document = self.read_json(descriptor)
        if "layers" in document:
            config, = self._descriptors(descriptor, [document.get("config")])
            layers = self._descriptors(descriptor, document["layers"])
            return LayoutImage(descriptor, self.read_json(config), tuple(self.blob_path(d.digest) for d in layers))
        manifests = self._descriptors(descriptor, document.get("manifests", []))  # an index: choose one
        if not manifests:
            raise UsageError(f"{self.path} holds no image")
        wanted = arch.oci if arch else None
        chosen = next((m for m in manifests if wanted and m.platform and m.platform.architecture == wanted),
                      manifests[0])
        return self._image(chosen, arch)

    def _descriptors(self, owner: Descriptor, items: Any) -> list[Descriptor]:
        """The descriptors a manifest or an index lists (a UsageError when they are not descriptors)."""
        try:
            return [Descriptor.from_json(item) for item in items]
        except (TypeError, ValueError, AttributeError):
            raise UsageError(f"blob {owner.digest} in {self.path} is neither an image manifest nor an index: "
                             "the layout is damaged; write it again") from None


def read_layout(path: Path) -> Layout:
    """Open the OCI image layout at `path` (a UsageError when it is not one)."""
    path = Path(path)
    try:
        index = json.loads((path / "index.json").read_text())
        manifests = tuple(Descriptor.from_json(m) for m in index.get("manifests", []))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise UsageError(f"{path} is not an OCI image layout ({exc})") from None
    return Layout(path, manifests)
