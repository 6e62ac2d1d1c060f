"""Replace a file in one step (readers see the old file or the new one, never half of it),
and remove a tree whatever modes it holds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from extpack import nofollow


def write_atomically(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def discard(path: Path) -> None:
    """Remove a tree, even one holding read-only directories, never following a link in it."""
    nofollow.remove(path)
