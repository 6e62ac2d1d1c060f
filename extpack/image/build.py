"""Build the extension image from a stage: one gzip layer holding `opt/`, a config, a manifest.

Every timestamp (the layer's tar entries, the config's `created` and history) is the build
epoch: `SOURCE_DATE_EPOCH` when set, else 0 (1970-01-01T00:00:00Z), the convention of
reproducible-builds.org, ko and Bazel; see `layer` for what else makes the bytes repeatable.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from extpack import manifest as manifests
from extpack.exceptions import UsageError
from extpack.image.layer import build_layer
from extpack.image.types import MEDIA_CONFIG, MEDIA_MANIFEST, Blob, ImageBuild, Platform
from extpack.manifest import StagedLayer
from extpack.model import DEFAULT_ARCH, Arch
from extpack.stage import check_stage

DEFAULT_EPOCH = 0


def label_value(layer: StagedLayer) -> dict[str, Any]:
    """What the image labels say about one source layer."""
    # Only location-independent facts: a local zip's path would differ between machines.
    return {"index": layer.index, "name": layer.name, "version": layer.version, "arn": layer.arn,
            "sha256": layer.sha256, "size": layer.size}


@dataclass(frozen=True)
class Stage:
    """What a build reads from a stage: where its `opt/` is, its arch and the layers it holds."""

    root: Path
    arch: Arch
    layers: tuple[StagedLayer, ...]

    @property
    def opt(self) -> Path:
        return self.root / "opt"


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
) -> ImageBuild:
    """Build the image for the stage at `stage_dir`.

    `arch` checks the stage's architecture (a mismatch is a UsageError); the stage's own
    arch is used otherwise. `source_date_epoch` overrides `SOURCE_DATE_EPOCH`. The layer
    is written to a temporary directory; close the returned build to remove it.
    """
    stage = read_stage(Path(stage_dir), arch)
    epoch = resolve_epoch(source_date_epoch)
    created = rfc3339(epoch)
    platform = Platform.of(stage.arch)

    tmp = tempfile.TemporaryDirectory(prefix="extpack-image-")
    try:
        layer = build_layer(stage.opt, Path(tmp.name) / "layer.tar.gz", epoch)
        labels = image_labels(stage, created)
        config = Blob.from_json(
            MEDIA_CONFIG,
            {
                **platform.to_json(),
                "created": created,
                "config": {"Labels": labels},
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                # one entry, so `docker history` shows where the layer came from; no host, no version
                "history": [{"created": created, "created_by": "extpack image", "comment": "staged /opt"}],
            },
        )
        manifest = Blob.from_json(
            MEDIA_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config.descriptor().to_json(),
                "layers": [layer.blob.descriptor().to_json()],
                "annotations": labels,
            },
        )
    except BaseException:
        tmp.cleanup()
        raise
    return ImageBuild(platform, epoch, layer.blob, layer.diff_id, config, manifest, tmp)
