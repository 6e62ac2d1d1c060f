"""OCI building blocks: media types, blobs, descriptors, and the three on-disk outputs.

Everything written here is deterministic: JSON is serialised canonically (sorted keys,
no spaces), tar archives hold sorted entries with fixed owners, modes and mtimes, so the
same builds always give the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from extpack.atomic import write_atomically
from extpack.exceptions import UsageError
from extpack.replaceable import refuse_unless_replaceable

if TYPE_CHECKING:  # image.py imports this module; keep the runtime import one-way
    from extpack.image.build import ImageBuild

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_COPY_CHUNK = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """The one serialisation used for every JSON blob, so digests are stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob, held in memory (JSON) or in a file (the layer)."""

    media_type: str
    digest: str
    size: int
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_json(cls, media_type: str, obj: Any) -> Blob:
        data = canonical_json(obj)
        return cls(media_type, sha256_digest(data), len(data), data=data)

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def open(self) -> IO[bytes]:
        if self.data is not None:
            import io

            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        desc.update({k: v for k, v in extra.items() if v})
        return desc


@dataclass(frozen=True)
class Target:
    """What a tag points at: one image manifest, or an index over several (multi-arch)."""

    top: Blob  # the manifest or index that the tag names
    blobs: tuple[Blob, ...]  # every blob reachable from `top`, `top` included, deduplicated
    platform: dict[str, str] | None  # only for a single-arch target
    epoch: int

    @property
    def digest(self) -> str:
        return self.top.digest


def as_builds(builds: ImageBuild | Sequence[ImageBuild]) -> list[ImageBuild]:
    from extpack.image.build import ImageBuild

    items = [builds] if isinstance(builds, ImageBuild) else list(builds)
    if not items:
        raise UsageError("no image to write: give at least one stage")
    seen: set[str] = set()
    for b in items:
        key = b.platform_key
        if key in seen:
            raise UsageError(f"two stages for the same platform {key}: give one stage per architecture")
        seen.add(key)
    return items


def image_index(builds: Sequence[ImageBuild]) -> Blob:
    """The multi-arch index: one manifest descriptor per platform, sorted by platform."""
    manifests = [b.manifest.descriptor(platform=b.platform) for b in sorted(builds, key=lambda b: b.platform_key)]
    return Blob.from_json(MEDIA_INDEX, {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests})


def target_for(builds: ImageBuild | Sequence[ImageBuild]) -> Target:
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


def _index_json(target: Target, ref_name: str) -> Blob:
    desc = target.top.descriptor(platform=target.platform, annotations={ANNOTATION_REF_NAME: ref_name})
    return Blob.from_json(MEDIA_INDEX, {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [desc]})


_OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def _check_ref_name(tag: str) -> None:
    # OCI ref.name grammar: components of [A-Za-z0-9] joined by [-._:@+] or "/".
    import re

    if not re.fullmatch(r"[A-Za-z0-9]+(?:(?:[-._:@+]|--|/)[A-Za-z0-9]+)*", tag):
        raise UsageError(f"bad tag {tag!r}: use letters, digits and - . _ : @ + / (e.g. demo-ext:1)")


# ---------------------------------------------------------------------------
# OCI image layout directory
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
    _check_ref_name(tag)
    target = target_for(builds)
    path = Path(path)
    refuse_unless_replaceable(path, ours=lambda folder: (folder / "oci-layout").is_file(), what="an OCI layout",
                              option="--output")
    blobs_dir = path / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    for blob in target.blobs:
        _put_blob(blobs_dir, blob)

    manifests: list[dict[str, Any]] = []
    index_path = path / "index.json"
    if index_path.is_file():
        try:
            old = json.loads(index_path.read_text())
            manifests = [
                m for m in old.get("manifests", []) if m.get("annotations", {}).get(ANNOTATION_REF_NAME) != tag
            ]
        except (ValueError, AttributeError) as e:
            raise UsageError(f"{index_path} is not valid JSON ({e}): remove it or choose another --output") from e
    manifests.append(target.top.descriptor(platform=target.platform, annotations={ANNOTATION_REF_NAME: tag}))
    write_atomically(path / "oci-layout", _OCI_LAYOUT)
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    write_atomically(index_path, canonical_json(index))
    return target.digest


# ---------------------------------------------------------------------------
# Archives (oci-archive, docker-archive): deterministic tars of a layout
# ---------------------------------------------------------------------------


@dataclass
class _Entry:
    name: str
    blob: Blob | None = None  # None: a directory
    extra: dict[str, Any] = field(default_factory=dict)


def _layout_entries(target: Target, ref_name: str) -> list[_Entry]:
    entries = [_Entry("blobs/"), _Entry("blobs/sha256/")]
    entries += [_Entry(f"blobs/sha256/{b.hex}", b) for b in target.blobs]
    entries.append(_Entry("index.json", _index_json(target, ref_name)))
    entries.append(_Entry("oci-layout", Blob("", "", len(_OCI_LAYOUT), data=_OCI_LAYOUT)))
    return entries


def _write_tar(path: Path, entries: list[_Entry], epoch: int) -> None:
    """Write a plain tar of `entries`, sorted, root-owned, fixed mtime; atomically."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory: give a file name for the archive")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for e in sorted(entries, key=lambda e: e.name):
                info = tarfile.TarInfo(e.name.rstrip("/"))
                info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
                if e.blob is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    continue
                info.mode, info.size = 0o644, e.blob.size
                with e.blob.open() as f:
                    tar.addfile(info, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_oci_archive(builds: ImageBuild | Sequence[ImageBuild], path: Path, tag: str) -> str:
    """The OCI layout as one tar (`skopeo ... oci-archive:PATH:TAG`); return the tagged digest."""
    _check_ref_name(tag)
    target = target_for(builds)
    _write_tar(path, _layout_entries(target, tag), target.epoch)
    return target.digest


def normalize_name_tag(name_tag: str) -> str:
    """`name` -> `name:latest`; validates the reference loosely, as docker load would."""
    import re

    last = name_tag.rsplit("/", 1)[-1]
    if "@" in name_tag:
        raise UsageError(f"bad tag {name_tag!r}: a docker archive needs NAME:TAG, not a digest")
    if ":" not in last:
        name_tag += ":latest"
    name, tag = name_tag.rsplit(":", 1)
    comp = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    host = r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"
    if not re.fullmatch(host + comp + r"(?:/" + comp + r")*", name) or not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        raise UsageError(f"bad tag {name_tag!r}: use NAME:TAG with a lower-case name (e.g. demo-ext:1)")
    return name_tag


def write_docker_archive(build: ImageBuild | Sequence[ImageBuild], path: Path, name_tag: str) -> str:
    """A tar that `docker load` accepts, tagged `name_tag`; return the manifest digest.

    It holds docker's `manifest.json` beside a full OCI layout (as docker 25+ writes), so
    both `docker load` and OCI tools read the same file.
    """
    items = as_builds(build)
    if len(items) != 1:
        raise UsageError("a docker archive holds one architecture: write one archive per stage, or use --format oci")
    name_tag = normalize_name_tag(name_tag)
    b = items[0]
    target = target_for(b)
    docker_manifest = [
        {"Config": f"blobs/sha256/{b.config.hex}", "RepoTags": [name_tag], "Layers": [f"blobs/sha256/{b.layer.hex}"]}
    ]
    entries = _layout_entries(target, name_tag)
    data = canonical_json(docker_manifest)
    entries.append(_Entry("manifest.json", Blob("", "", len(data), data=data)))
    _write_tar(path, entries, target.epoch)
    return target.digest


def iter_push_order(target: Target) -> Iterator[Blob]:
    """Blobs in the order a registry needs them: layers and configs, then manifests, then the index."""
    rank = {MEDIA_LAYER_GZIP: 0, MEDIA_CONFIG: 0, MEDIA_MANIFEST: 1, MEDIA_INDEX: 2}
    yield from sorted(target.blobs, key=lambda b: (rank.get(b.media_type, 0), b.digest))
