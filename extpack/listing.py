"""The `ls` command: what is staged — layers, extensions (with their CPU), sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extpack.elf import HEADER_BYTES, elf_arch
from extpack.exceptions import ExtpackError
from extpack.rootfs import ManifestView
from extpack.shapes import Shapes
from extpack import manifest as manifests
from extpack.manifest import Manifest
from extpack.stage import check_stage

LS_SCHEMA = "extpack.ls/v1"


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


def ls_json(stage_dir: Path, manifest: Manifest, extensions: list[Extension], shapes: Shapes | None = None) -> dict:
    return {
        "schema": LS_SCHEMA,
        "stage": str(stage_dir),
        "arch": manifest.arch,
        "layers": [{key: value for key, value in layer.to_json().items() if key != "kind"}
                   for layer in manifest.layers],
        "extensions": [ext.__dict__ for ext in extensions],
        "files": len(manifest.files),
        "total_size": manifest.total_size,
        **({} if shapes is None else {key: value for key, value in shapes.to_json().items() if key != "extensions"}),
    }
