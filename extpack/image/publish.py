"""`extpack image` as one library call: build each stage, then write the image, push it, or both."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from extpack.exceptions import UsageError
from extpack.image.archive import write_docker_archive, write_oci_archive
from extpack.image.build import build_image
from extpack.image.layout import write_oci_layout
from extpack.stage import require_unshared_unchanged

if TYPE_CHECKING:
    from extpack.image.registry import PushResult

WRITERS = {"oci": write_oci_layout, "oci-archive": write_oci_archive, "docker-archive": write_docker_archive}


@dataclass(frozen=True)
class ImageResult:
    """What `build_to` wrote or pushed: one image, or an index of one per stage."""

    digest: str
    tag: str
    format: str
    output: Path | None
    platforms: list[dict[str, str]]  # as the JSON report prints them
    pushed: PushResult | None = None


def build_to(stage_dirs: list[Path], *, output: Path | None, image_format: str, tag: str, push_ref: str | None,
             insecure_registry: bool = False, source_date_epoch: int | None = None) -> ImageResult:
    """Build the image of each stage (several make a multi-arch index) and write it to `output`
    in `image_format`, push it to `push_ref`, or both; the temporary layers are removed."""
    if output is None and push_ref is None:
        raise UsageError("extpack image needs --output PATH, --push REF, or both")
    for stage in stage_dirs:
        require_unshared_unchanged(stage)
    with ExitStack() as builds_open:
        builds = [builds_open.enter_context(build_image(stage, source_date_epoch=source_date_epoch))
                  for stage in stage_dirs]
        image = builds if len(builds) > 1 else builds[0]
        digest, pushed = "", None
        if output is not None:
            digest = WRITERS[image_format](image, output, tag)
        if push_ref is not None:
            from extpack.image.registry import push_image  # requests is slow to import: only for a push

            pushed = push_image(image, push_ref, insecure=insecure_registry)
            digest = digest or pushed.digest
    return ImageResult(digest, tag, image_format, output, [build.platform.to_json() for build in builds], pushed)
