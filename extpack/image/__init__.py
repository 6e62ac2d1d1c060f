"""The OCI image of /opt, on go-containerregistry's model.

`types` holds the vocabulary and imports no sibling; `layer` and `build` make an image from a
stage; `layout` writes and reads OCI layout folders, `archive` the two tar formats; `reference`
is the one grammar for image names; `registry` pushes, with `credentials` as its login sources;
`publish` is `extpack image` as one call (build, then write and/or push).
What the CLI uses is importable from here; the registry client (and `requests`) loads only
when a push asks for it.
"""

from __future__ import annotations

from typing import Any

from extpack.image.archive import write_docker_archive, write_oci_archive
from extpack.image.build import build_image
from extpack.image.layout import read_layout, write_oci_layout
from extpack.image.publish import ImageResult, build_to
from extpack.image.types import ImageBuild

_FROM_REGISTRY = ("push_image", "PushResult", "RegistryError")

__all__ = ["ImageBuild", "ImageResult", "build_image", "build_to", "read_layout", "write_docker_archive",
           "write_oci_archive", "write_oci_layout", *_FROM_REGISTRY]


def __getattr__(name: str) -> Any:
    if name in _FROM_REGISTRY:
        from extpack.image import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
