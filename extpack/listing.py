"""The `ls` command: what is staged — layers, extensions (with their CPU), sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extpack import manifest as manifests
from extpack.elf import HEADER_BYTES, elf_arch
from extpack.exceptions import ExtpackError
from extpack.manifest import Manifest
from extpack.rootfs import ManifestView
from extpack.shapes import Shapes, shapes_of
from extpack.stage import check_stage


@dataclass(frozen=True)
class Extension:
    name: str
    type: str
    cpu: str  # from the ELF header; "script" for #! files, "-" when neither
    size: int
    target: str | None


def staged(stage_dir: Path) -> tuple[Manifest, list[Extension]]:
    check_stage(stage_dir)
    manifest = manifests.load(stage_dir)
    view = ManifestView(stage_dir, manifest)
    extensions = [Extension(entry.path.rpartition("/")[2], entry.type, _cpu(view, entry.path), entry.size,
                            entry.target)
                  for entry in manifest.extensions()]
    return manifest, extensions


def _cpu(view: ManifestView, path: str) -> str:
    # Through a link to what Lambda would run, resolved inside the stage, never followed on disk.
    final_path, final = view.resolve(f"opt/{path}")
    if final is None or final.type != "file" or not final_path.startswith("opt/"):
        return "-"
    try:
        head = view.read(final_path, 0, HEADER_BYTES)
    except ExtpackError:
        return "-"
    if head.startswith(b"#!"):
        return "script"
    return elf_arch(head) or "-"



@dataclass(frozen=True)
class Listing:
    stage_dir: Path
    manifest: Manifest
    extensions: list[Extension]
    shapes: Shapes


def list_stage(stage_dir: Path) -> Listing:
    """What `ls` shows: the stage's manifest, its extensions with their CPU, its shapes."""
    manifest, extensions = staged(stage_dir)
    return Listing(stage_dir, manifest, extensions, shapes_of(manifest, stage_dir))
