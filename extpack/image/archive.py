"""The two archives: oci-archive (an OCI layout as one tar) and docker-archive (what `docker load` reads).

Both are deterministic tars: sorted entries, owners 0/0, fixed modes, every mtime the build
epoch, so the same builds always give the same bytes.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from extpack.exceptions import UsageError
from extpack.image.layout import OCI_LAYOUT, index_json, tagged
from extpack.image.reference import check_ref_name, parse_reference
from extpack.image.types import Blob, ImageBuild, Target, as_builds, canonical_json, target_for


@dataclass(frozen=True)
class _Entry:
    name: str
    blob: Blob | None = None  # None: a directory


def _file(name: str, data: bytes) -> _Entry:
    return _Entry(name, Blob("", "", len(data), data=data))


def _layout_entries(target: Target, ref_name: str) -> list[_Entry]:
    entries = [_Entry("blobs/"), _Entry("blobs/sha256/")]
    entries += [_Entry(f"blobs/sha256/{b.hex}", b) for b in target.blobs]
    entries.append(_Entry("index.json", index_json([tagged(target, ref_name).to_json()])))
    entries.append(_file("oci-layout", OCI_LAYOUT))
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
    check_ref_name(tag)
    target = target_for(builds)
    _write_tar(path, _layout_entries(target, tag), target.epoch)
    return target.digest


def docker_tag(name_tag: str) -> str:
    """The tag `docker load` gives the image: `name` -> `name:latest`; a digest is refused."""
    ref = parse_reference(name_tag, label="tag")
    if ref.digest:
        raise UsageError(f"bad tag {name_tag!r}: a docker archive needs NAME:TAG, not a digest")
    return ref.familiar()


def write_docker_archive(build: ImageBuild | Sequence[ImageBuild], path: Path, name_tag: str) -> str:
    """A tar that `docker load` accepts, tagged `name_tag`; return the manifest digest.

    It holds docker's `manifest.json` beside a full OCI layout (as docker 25+ writes), so
    both `docker load` and OCI tools read the same file.
    """
    items = as_builds(build)
    if len(items) != 1:
        raise UsageError("a docker archive holds one architecture: write one archive per stage, or use --format oci")
    name_tag = docker_tag(name_tag)
    b = items[0]
    target = target_for(b)
    docker_manifest = [
        {"Config": f"blobs/sha256/{b.config.hex}", "RepoTags": [name_tag], "Layers": [f"blobs/sha256/{b.layer.hex}"]}
    ]
    entries = _layout_entries(target, name_tag)
    entries.append(_file("manifest.json", canonical_json(docker_manifest)))
    _write_tar(path, entries, target.epoch)
    return target.digest
