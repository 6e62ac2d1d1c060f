"""Build the extension image from a stage: one gzip layer holding `opt/`, a config, a manifest.

Determinism: nothing is read from the disk but names, contents, modes and symlink
targets. Owners are 0/0 with empty names, every mtime (tar entries, gzip header excepted,
which is 0, and the config's `created`) is the build epoch: `SOURCE_DATE_EPOCH` when set,
else 0 (1970-01-01T00:00:00Z), the convention of reproducible-builds.org, ko and Bazel.
Entries are sorted by their UTF-8 path bytes; headers are POSIX.1-2001 (pax) so long
and non-ASCII names are exact; hard links are written as separate files, so a cache that
hard-links staged files does not change the bytes. The compressed bytes depend on zlib
(gzip level 6, no name, mtime 0): identical for the same zlib, which CPython builds ship.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from extpack import manifest as manifests
from extpack import nofollow
from extpack.exceptions import LayerContentError, UsageError
from extpack.manifest import StagedLayer
from extpack.model import DEFAULT_ARCH, Arch
from extpack.image.layout import MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, Blob
from extpack.stage import check_stage

DEFAULT_EPOCH = 0
GZIP_LEVEL = 6
_CHUNK = 1 << 20
_BLOCK = 512


def label_value(layer: StagedLayer) -> dict[str, Any]:
    """What the image labels say about one source layer."""
    # Only location-independent facts: a local zip's path would differ between machines.
    return {"index": layer.index, "name": layer.name, "version": layer.version, "arn": layer.arn,
            "sha256": layer.sha256, "size": layer.size}


@dataclass(frozen=True)
class Stage:
    root: Path
    arch: Arch
    layers: tuple[StagedLayer, ...]

    @property
    def opt(self) -> Path:
        return self.root / "opt"


@dataclass
class ImageBuild:
    """A built image: blobs in memory (JSON) and a temporary file (the layer).

    Use as a context manager, or call `close()`, to remove the temporary layer file.
    """

    arch: Arch
    platform: dict[str, str]  # OCI platform: {"architecture", "os", ["variant"]}
    epoch: int
    layer: Blob
    diff_id: str
    uncompressed_size: int
    config: Blob
    manifest: Blob
    labels: dict[str, str]
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def platform_key(self) -> str:
        p = self.platform
        return "/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ImageBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_epoch(source_date_epoch: int | None = None) -> int:
    """The explicit value, else `SOURCE_DATE_EPOCH`, else 0."""
    if source_date_epoch is not None:
        value: int | str = source_date_epoch
    else:
        value = os.environ.get("SOURCE_DATE_EPOCH", "").strip() or DEFAULT_EPOCH
    try:
        epoch = int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds: unset it or fix it") from None
    if not 0 <= epoch < 8**11:  # the largest mtime a plain ustar header holds
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch} is out of range: use seconds since 1970")
    return epoch


def read_stage(stage_dir: Path, arch: str | None = None) -> Stage:
    """The stage to build from; `arch` (any spelling) must be the one it was fetched for."""
    root = Path(stage_dir)
    check_stage(root)  # a symlinked stage dir or opt is refused, not followed
    manifest = manifests.load(root)
    want = Arch.parse(arch) if arch else None
    if manifest.arch and want and want != manifest.arch:
        raise UsageError(
            f"the stage at {root} was fetched for {manifest.arch}, not {want}: run extpack fetch --arch {want}"
        )
    return Stage(root, manifest.arch or want or DEFAULT_ARCH, manifest.layers)


# ---------------------------------------------------------------------------
# The layer: a streamed, hashed, deterministic tar.gz
# ---------------------------------------------------------------------------


class _HashingWriter:
    """Counts and hashes what passes through to `sink` (the tar stream, then the gzip stream)."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


@dataclass(frozen=True)
class _Staged:
    rel: str
    stat: os.stat_result
    target: str | None  # a symlink's


def _walk_sorted(opt_fd: int) -> list[_Staged]:
    """Every path under opt/, relative, sorted by bytes (parents sort before children);
    iterative and through descriptors, so no link is followed and no depth is too deep."""
    def fail(rel: str, err: OSError) -> None:  # never skip an unreadable directory silently
        raise LayerContentError(f"cannot read the stage: opt/{rel}: {err.strerror}: check its permissions or run "
                                "extpack fetch again")

    found = [_Staged(item.rel, item.stat, item.readlink() if stat.S_ISLNK(item.stat.st_mode) else None)
             for item in nofollow.walk(opt_fd, on_error=fail)]
    return sorted(found, key=lambda staged: os.fsencode(staged.rel))


def _open_staged(opt_fd: int, staged: _Staged) -> int:
    """Open a walked file; it must still be the very inode the walk saw (no link swapped in on the way)."""
    try:
        fd = os.open(staged.rel, nofollow.FILE_FLAGS, dir_fd=opt_fd)
    except OSError as err:
        raise LayerContentError(f"cannot read staged file opt/{staged.rel}: {err.strerror}: run extpack fetch "
                                "again") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (staged.stat.st_dev, staged.stat.st_ino):
        os.close(fd)
        raise LayerContentError(f"staged file opt/{staged.rel} changed while the image was built: run extpack "
                                "fetch again")
    return fd


def _tarinfo(name: str, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _write_layer_tar(opt: Path, out: _HashingWriter, epoch: int) -> None:
    opt_fd = nofollow.open_dir(opt)
    try:
        _write_entries(opt_fd, out, epoch)
    finally:
        os.close(opt_fd)


def _write_entries(opt_fd: int, out: _HashingWriter, epoch: int) -> None:
    root = _tarinfo("opt", epoch)
    root.type, root.mode = tarfile.DIRTYPE, 0o755  # the stage dir's own mode is an artefact of how it was made
    out.write(_header(root))
    for staged in _walk_sorted(opt_fd):
        rel, st = staged.rel, staged.stat
        if any(part.startswith(".wh.") for part in rel.split("/")):
            raise LayerContentError(
                f"staged file opt/{rel} would be read as an OCI whiteout (.wh. prefix): remove it from the layer"
            )
        info = _tarinfo("opt/" + rel, epoch)
        # setuid/setgid are dropped, as fetch drops them; the rest of the mode is kept as staged
        mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
        if stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, mode
            out.write(_header(info))
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, staged.target
            out.write(_header(info))
        elif stat.S_ISREG(st.st_mode):
            with open(_open_staged(opt_fd, staged), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                info.type, info.mode, info.size = tarfile.REGTYPE, mode, size
                out.write(_header(info))
                left = size
                while left:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        raise LayerContentError(f"staged file opt/{rel} shrank while being read: run extpack fetch again")
                    out.write(chunk)
                    left -= len(chunk)
            if size % _BLOCK:
                out.write(b"\0" * (_BLOCK - size % _BLOCK))
        else:
            raise LayerContentError(
                f"staged path opt/{rel} is neither a file, a directory nor a symlink: run extpack fetch again"
            )
    out.write(b"\0" * (2 * _BLOCK))  # end-of-archive marker


def _build_layer(opt: Path, dest: Path, epoch: int) -> tuple[Blob, str, int]:
    """Stream tar -> gzip -> file, hashing both sides; nothing large is held in memory."""
    with open(dest, "wb") as raw:
        compressed = _HashingWriter(raw)
        # mtime=0 and no file name: the gzip header then carries nothing machine- or time-specific
        with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=compressed, mtime=0) as gz:
            uncompressed = _HashingWriter(gz)  # type: ignore[arg-type]
            _write_layer_tar(opt, uncompressed, epoch)
    blob = Blob(MEDIA_LAYER_GZIP, compressed.digest, compressed.size, path=dest)
    return blob, uncompressed.digest, uncompressed.size


# ---------------------------------------------------------------------------
# Config and manifest
# ---------------------------------------------------------------------------


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_labels(stage: Stage, created: str) -> dict[str, str]:
    """Labels (and manifest annotations) naming the source layers, per the OCI conventions.

    `org.opencontainers.image.*` for the standard keys; `io.extpack.*` (reverse DNS) for
    ours: the full list as JSON, plus one `io.extpack.layer.N.{arn,sha256}` per layer so a
    `docker inspect --format '{{ index .Config.Labels "io.extpack.layer.0.arn" }}'` works.
    """
    names = [
        f"{layer.name}:{layer.version}" if layer.name and layer.version is not None else (layer.name or f"#{layer.index}")
        for layer in stage.layers
    ]
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": "AWS Lambda layer contents for /opt",
        "org.opencontainers.image.description": (
            f"/opt as AWS Lambda lays it out for {stage.arch} from "
            f"{len(stage.layers)} layer(s): {', '.join(names) or 'none'}. Use: COPY --from=IMAGE /opt /opt"
        ),
        "io.extpack.arch": stage.arch,
        "io.extpack.layers": json.dumps(
            [label_value(layer) for layer in stage.layers], sort_keys=True, separators=(",", ":")
        ),
    }
    for layer in stage.layers:
        if layer.arn:
            labels[f"io.extpack.layer.{layer.index}.arn"] = layer.arn
        if layer.sha256:
            labels[f"io.extpack.layer.{layer.index}.sha256"] = layer.sha256
    return labels


def build_image(
    stage_dir: Path,
    *,
    arch: str | None = None,
    source_date_epoch: int | None = None,
    workdir: Path | None = None,
) -> ImageBuild:
    """Build the image for the stage at `stage_dir`.

    `arch` checks the stage's architecture (a mismatch is a UsageError); the stage's own
    arch is used otherwise. `source_date_epoch` overrides `SOURCE_DATE_EPOCH`. The layer
    is written to a temporary directory under `workdir` (default: the system temp dir);
    close the returned build to remove it.
    """
    stage = read_stage(Path(stage_dir), arch)
    epoch = resolve_epoch(source_date_epoch)
    created = rfc3339(epoch)
    platform = {"architecture": stage.arch.oci, "os": "linux"}
    if stage.arch.oci_variant:
        platform["variant"] = stage.arch.oci_variant

    tmp = tempfile.TemporaryDirectory(prefix="extpack-image-", dir=workdir)
    try:
        layer, diff_id, raw_size = _build_layer(stage.opt, Path(tmp.name) / "layer.tar.gz", epoch)
        labels = image_labels(stage, created)
        config = Blob.from_json(
            MEDIA_CONFIG,
            {
                **platform,
                "created": created,
                "config": {"Labels": labels},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                # one entry, so `docker history` shows where the layer came from; no host, no version
                "history": [{"created": created, "created_by": "extpack image", "comment": "staged /opt"}],
            },
        )
        manifest = Blob.from_json(
            MEDIA_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
                "annotations": labels,
            },
        )
    except BaseException:
        tmp.cleanup()
        raise
    return ImageBuild(stage.arch, platform, epoch, layer, diff_id, raw_size, config, manifest, labels, tmp)
