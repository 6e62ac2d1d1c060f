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


class StageTree:
    """The `opt` directory being built, with an in-memory index of every path in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {}
        self.layer_names: list[str] = []
        root.mkdir(parents=True, exist_ok=True)

    def add(self, layer: LayerTree, index: int, *, name: str, link: bool, share=os.link) -> LayerResult:
        """Place `layer` over what is staged. `link`: the tree is kept, its files are placed
        with `share` (a hard link, a reflink or a copy); otherwise they are moved out of it."""
        paths = sorted(layer.nodes)  # parents sort before their children
        self._check(layer, paths, name)
        place = (share or os.link) if link else os.rename
        source, dest = f"{layer.root}/", f"{self.root}/"  # string joins: cheaper than pathlib per entry
        result = LayerResult(layer.files, layer.unzipped_size)
        for path in paths:
            node = layer.nodes[path]
            previous = self.nodes.get(path)
            if node.type == "dir":
                if previous is None:
                    os.mkdir(dest + path, 0o700)
                    self.nodes[path] = Node("dir", node.mode, index, mtime=node.mtime)
                elif not node.implicit:  # a later layer's directory entry sets the mode, as unzip does
                    previous.mode, previous.mtime = node.mode, node.mtime or previous.mtime
                continue
            if previous is not None:
                os.unlink(dest + path)
                result.overrides.append(Override(path, index, previous.layer))
            if node.type == "symlink":
                os.symlink(node.target, dest + path)
                os.utime(dest + path, (node.mtime, node.mtime), follow_symlinks=False)
            else:
                place(source + path, dest + path)
            self.nodes[path] = Node(node.type, node.mode, index, size=node.size, sha256=node.sha256,
                                    target=node.target, mtime=node.mtime,
                                    overrode=[*previous.overrode, previous.layer] if previous else [])
        return result

    def _check(self, layer: LayerTree, paths: list[str], name: str) -> None:
        for path in paths:
            node = layer.nodes[path]
            parent, _, _ = path.rpartition("/")
            while parent:
                kind = self.nodes[parent].type if parent in self.nodes else None
                if kind == "symlink":
                    raise LayerContentError(f"entry {path!r} would be written through the symlink {parent!r} "
                                            f"of an earlier layer", layer=name)
                if kind == "file":
                    raise LayerContentError(f"entry {path!r} needs {parent!r} to be a directory, but an earlier "
                                            "layer has a file there", layer=name)
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
                os.chmod(self.root / path, node.mode)
                if node.mtime:
                    os.utime(self.root / path, (node.mtime, node.mtime))

