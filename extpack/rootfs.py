"""Read-only views of a filesystem tree for `doctor`: a stage on disk, or an image's layers.

Both answer the same questions (what is at a path, read some bytes of it), so every check
runs the same way on a stage, an OCI layout or a local Docker image.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import nofollow
from extpack.exceptions import UsageError
from extpack.model import STAGED_TYPE_NAMED, Arch, EntryType, TreeEntry
from extpack.stage import open_stage_opt

if TYPE_CHECKING:
    from extpack.manifest import Manifest

OPT = "opt"


class View:
    """A tree; `has_rootfs` says whether paths outside /opt (interpreters) can be checked."""

    has_rootfs = False
    arch: Arch | None = None

    def entries(self) -> dict[str, TreeEntry]:
        raise NotImplementedError

    def read(self, path: str, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def resolve(self, path: str, hops: int = 40) -> tuple[str, TreeEntry | None]:
        """Follow symlinks (absolute ones from the root); returns the final path and entry."""
        entries = self.entries()
        for _ in range(hops):
            parts = path.split("/")
            # Resolve symlinked parents first, then the entry itself.
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                node = entries.get(parent)
                if node is not None and node.type == "symlink":
                    path = _join(parent, node.target, "/".join(parts[depth:]))
                    break
            else:
                node = entries.get(path)
                if node is None or node.type != "symlink":
                    return path, node
                path = _join(path, node.target, "")
        return path, None


def _join(link_path: str, target: str | None, rest: str) -> str:
    target = target or ""
    base = "" if target.startswith("/") else posixpath.dirname(link_path)
    joined = posixpath.normpath(posixpath.join(base, target.lstrip("/"), rest))
    return "" if joined == "." else joined.lstrip("/")


class StageView(View):
    """A stage on disk, read through descriptors: no symlink in it (nor a symlinked stage dir
    or opt) is ever followed; links are reported as links and resolved inside the view."""

    def __init__(self, stage_dir: Path) -> None:
        self.root = stage_dir
        os.close(self.open_opt())  # refuses a missing or symlinked stage (or opt) up front
        self._entries: dict[str, TreeEntry] | None = None

    def open_opt(self) -> int:
        """A descriptor of the stage's opt (the caller closes it)."""
        return open_stage_opt(self.root)

    def entries(self) -> dict[str, TreeEntry]:
        if self._entries is None:
            found = {}
            opt_fd = self.open_opt()
            try:
                for item in nofollow.walk(opt_fd, on_error=_skip_unreadable):
                    st = item.stat
                    rel = f"{OPT}/{item.rel}"
                    found[rel] = TreeEntry(rel, EntryType.of_mode(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                                           item.readlink() if stat.S_ISLNK(st.st_mode) else None)
            finally:
                os.close(opt_fd)
            self._entries = found
        return self._entries

    def read(self, path: str, offset: int, size: int) -> bytes:
        opt_fd = self.open_opt()
        try:
            fd = nofollow.open_beneath(opt_fd, path[len(OPT) + 1:])
        except OSError as exc:
            raise UsageError(f"cannot read /{path} in the stage {self.root} ({exc.strerror}): it changed, or a "
                             "directory on its way is a symlink; run extpack fetch again") from None
        finally:
            os.close(opt_fd)
        with open(fd, "rb") as handle:
            return os.pread(handle.fileno(), size, offset)


def _skip_unreadable(rel: str, exc: OSError) -> None:
    """A directory the user cannot list shows as empty; its own entry still has its mode."""


class TreeView(StageView):
    """A stage being built, described by the unpacker's in-memory index (no directory walk)."""

    def __init__(self, stage_dir: Path, nodes: dict) -> None:
        self.root = stage_dir
        self._entries = {f"{OPT}/{path}": TreeEntry(f"{OPT}/{path}", STAGED_TYPE_NAMED[node.type], node.mode, node.size,
                                                    node.target)
                         for path, node in nodes.items()}


class ManifestView(StageView):
    """A stage described by its manifest (no directory walk), read like a StageView."""

    def __init__(self, stage_dir: Path, manifest: Manifest) -> None:
        self.root = stage_dir
        self._entries = {f"{OPT}/{f.path}": TreeEntry(f"{OPT}/{f.path}", f.type, f.mode, f.size, f.target)
                         for f in manifest.files}


class LayersView(View):
    """The merged filesystem of an image's layer tars (whiteouts applied), read lazily."""

    has_rootfs = True

    def __init__(self, layer_paths: list[Path], arch: Arch | None = None) -> None:
        self.arch = arch  # from the image config
        self._entries: dict[str, TreeEntry] = {}
        self._where: dict[str, tuple[Path, str]] = {}
        for layer in layer_paths:
            self._apply(layer)

    def _apply(self, layer: Path) -> None:
        with tarfile.open(layer, "r:*") as archive:
            for member in archive:
                name = posixpath.normpath(member.name.lstrip("./").lstrip("/")) if member.name not in (".", "./") else ""
                if not name or name == ".":
                    continue
                head, base = posixpath.split(name)
                if base == ".wh..wh..opq":
                    self._remove_under(head, keep_self=True)
                    continue
                if base.startswith(".wh."):
                    self._remove_under(posixpath.join(head, base[4:]), keep_self=False)
                    continue
                kind = EntryType.FILE if member.isreg() or member.islnk() else EntryType.DIR if member.isdir() \
                    else EntryType.SYMLINK if member.issym() else EntryType.OTHER
                source = member.linkname if member.islnk() else member.name
                self._entries[name] = TreeEntry(name, kind, member.mode & 0o7777, member.size,
                                                member.linkname if member.issym() else None)
                if kind == "file":
                    self._where[name] = (layer, self._where.get(member.linkname, (layer, source))[1]
                                         if member.islnk() else source)

    def _remove_under(self, path: str, *, keep_self: bool) -> None:
        prefix = path + "/"
        for name in [n for n in self._entries if n.startswith(prefix) or (n == path and not keep_self)]:
            del self._entries[name]
            self._where.pop(name, None)

    def entries(self) -> dict[str, TreeEntry]:
        return self._entries

    def read(self, path: str, offset: int, size: int) -> bytes:
        layer, member = self._where[path]
        with tarfile.open(layer, "r:*") as archive:
            handle = archive.extractfile(member)
            if handle is None:
                return b""
            handle.seek(offset)
            return handle.read(size)


def oci_layout_view(layout: Path, arch: str | None) -> LayersView:
    """The image in an OCI layout (the first manifest, or the one for `arch` in an index)."""
    from extpack.image.layout import read_layout  # only doctor --oci pays for the image package

    image = read_layout(layout).image(arch=Arch.parse(arch) if arch else None)
    return LayersView(list(image.layers), _lambda_arch(image.config))


def _lambda_arch(config: dict) -> Arch | None:
    try:
        return Arch.parse(config.get("architecture"))
    except UsageError:
        return None  # a CPU Lambda does not run


def docker_image_view(ref: str, workdir: Path) -> LayersView:
    """A local Docker image, through `docker save` (works with any 20.10+ daemon)."""
    archive = workdir / "image.tar"
    docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    try:
        subprocess.run([docker, "save", "-o", str(archive), ref], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("docker is not installed: use --oci DIR with a layout from extpack image") from None
    except subprocess.CalledProcessError as exc:
        message = (exc.stderr or "").strip().splitlines()[-1:] or ["docker save failed"]
        raise UsageError(f"cannot read image {ref}: {message[0]}") from None
    unpacked = workdir / "saved"
    with tarfile.open(archive) as saved:
        # The data filter refuses paths that leave the folder, where this Python has it.
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        saved.extractall(unpacked, **kwargs)
    manifest = json.loads((unpacked / "manifest.json").read_text())[0]
    config = json.loads((unpacked / manifest["Config"]).read_text())
    return LayersView([unpacked / layer for layer in manifest["Layers"]], _lambda_arch(config))


def temporary_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="extpack-doctor-")


__all__ = ["View", "StageView", "LayersView", "oci_layout_view", "docker_image_view"]
