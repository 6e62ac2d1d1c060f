"""Step 6a: lay unpacked layer trees over each other in Lambda's order, into the stage's `opt`.

A later layer's file replaces an earlier one's; the replacement is recorded. Every clash
between layers (a write through an earlier layer's symlink, a file where a directory is)
is refused before the layer's first entry is placed. Files are hard-linked from a cached
tree (no byte is copied) or renamed from a scratch tree; directories and symlinks are
made anew, so a stage never shares a directory or a link with the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from extpack import nofollow
from extpack.clone import Place, hard_link
from extpack.exceptions import LayerContentError
from extpack.unpack import LayerTree, Node


@dataclass(frozen=True)
class Override:
    path: str
    layer: int
    previous_layer: int


@dataclass
class LayerResult:
    files: int = 0
    unzipped_size: int = 0
    overrides: list[Override] = field(default_factory=list)
    linked: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (inode, ctime_ns) once linked


class StageTree:
    """The `opt` directory being built, with an in-memory index of every path in it.

    Every operation is relative to the descriptors of `opt` and of the layer's tree, so a
    path counts from there (however deep the stage lives) and no symlink above it matters."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {}
        self.layer_names: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        self.fd = nofollow.open_dir(root)

    def add(self, layer: LayerTree, index: int, *, name: str, link: bool, share: Place | None = None,
            inodes: dict[str, int] | None = None) -> LayerResult:
        """Place `layer` over what is staged. `link`: the tree is kept (a cache's), its files are
        placed with `share` (a hard link by default, a reflink or a copy); otherwise they are
        moved out of it. `inodes`: what each shared file must be (a cached tree's, as verified):
        a file swapped since is refused, not staged."""
        paths = sorted(layer.nodes)  # parents sort before their children
        self._check(layer, paths, name)
        source_fd = nofollow.open_dir(layer.root)
        try:
            return self._place(layer, paths, index, name, (share or hard_link) if link else None, source_fd, inodes)
        finally:
            os.close(source_fd)

    def _place(self, layer: LayerTree, paths: list[str], index: int, name: str, share: Place | None,
               source_fd: int, inodes: dict[str, int] | None) -> LayerResult:
        dest_fd = self.fd
        result = LayerResult(layer.files, layer.unzipped_size)
        for path in paths:
            node = layer.nodes[path]
            previous = self.nodes.get(path)
            if node.type == "dir":
                if previous is None:
                    os.mkdir(path, 0o700, dir_fd=dest_fd)
                    self.nodes[path] = Node("dir", node.mode, index, mtime=node.mtime)
                elif not node.implicit:  # a later layer's directory entry sets the mode, as unzip does
                    previous.mode, previous.mtime = node.mode, node.mtime or previous.mtime
                continue
            if previous is not None:
                os.unlink(path, dir_fd=dest_fd)
                result.overrides.append(Override(path, index, previous.layer))
            if node.type == "symlink":
                os.symlink(node.target, path, dir_fd=dest_fd)
                os.utime(path, (node.mtime, node.mtime), dir_fd=dest_fd, follow_symlinks=False)
            elif share is not None:
                placed = share(path, source_fd, dest_fd)
                if inodes is not None and inodes.get(path) != placed:
                    raise LayerContentError(f"the cache's copy of {path!r} changed while it was being staged "
                                            "(a file or directory swapped in the cache): run the fetch again",
                                            layer=name)
                if share is hard_link:  # the cache's inode now has a new ctime: recorded after the commit
                    linked = os.stat(path, dir_fd=dest_fd, follow_symlinks=False)
                    result.linked[path] = (linked.st_ino, linked.st_ctime_ns)
            else:
                os.rename(path, path, src_dir_fd=source_fd, dst_dir_fd=dest_fd)
            self.nodes[path] = Node(node.type, node.mode, index, size=node.size, sha256=node.sha256,
                                    target=node.target, mtime=node.mtime,
                                    overrode=[*previous.overrode, previous.layer] if previous else [])
        return result

    def _check(self, layer: LayerTree, paths: list[str], name: str) -> None:
        cleared: set[str] = set()  # parents already checked: a deep tree is checked in linear time
        for path in paths:
            node = layer.nodes[path]
            parent, _, _ = path.rpartition("/")
            while parent and parent not in cleared:
                kind = self.nodes[parent].type if parent in self.nodes else None
                if kind == "symlink":
                    raise LayerContentError(f"entry {path!r} would be written through the symlink {parent!r} "
                                            f"of an earlier layer", layer=name)
                if kind == "file":
                    raise LayerContentError(f"entry {path!r} needs {parent!r} to be a directory, but an earlier "
                                            "layer has a file there", layer=name)
                cleared.add(parent)
                parent, _, _ = parent.rpartition("/")
            existing = self.nodes.get(path)
            # An implicit directory's children report the clash, naming the entry that has it.
            if existing and (existing.type == "dir") != (node.type == "dir") and not node.implicit:
                raise LayerContentError(
                    f"entry {path!r} is a {node.type} but an earlier layer has a {existing.type} there", layer=name
                )

    def finish(self) -> None:
        """Apply directory modes last, so a read-only directory did not block writes into it."""
        for path in sorted(self.nodes, key=lambda p: -p.count("/")):
            node = self.nodes[path]
            if node.type == "dir":
                os.chmod(path, node.mode, dir_fd=self.fd)
                if node.mtime:
                    os.utime(path, (node.mtime, node.mtime), dir_fd=self.fd)
        os.close(self.fd)
