"""The OCI image of /opt (moved from image.py, oci.py, registry.py and registry_auth.py)."""

from extpack.image.build import ImageBuild, build_image, read_stage, resolve_epoch

__all__ = ["ImageBuild", "build_image", "read_stage", "resolve_epoch"]
