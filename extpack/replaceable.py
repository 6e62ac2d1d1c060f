"""Which folders extpack may write over: its own outputs, empty folders, new paths; never a user's files.

`fetch` replaces its stage folder wholesale and `image --output` writes into a layout folder,
so both check here first that the folder is missing, empty, or one extpack made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from extpack.exceptions import UsageError


def refuse_unless_replaceable(path: Path, *, ours: Callable[[Path], bool], what: str, option: str,
                              protected: Iterable[tuple[str, Path]] = ()) -> None:
    """Raise a UsageError unless `path` may be (over)written.

    `ours(path)` says whether a non-empty folder is one extpack made (`what` names it in the
    message); `protected` are (description, path) pairs that must never be inside `path`.
    """
    folder = _real(path)
    for description, item in protected:
        inside = _real(item)
        if inside == folder or folder in inside.parents:
            raise UsageError(f"{option} {path} contains {description} ({item}): extpack replaces that folder "
                             f"as a whole; choose a folder of its own, such as .extpack")
    if not path.exists():
        return
    if not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory: choose another {option}")
    if any(path.iterdir()) and not ours(path):
        raise UsageError(f"{path} is not empty and not {what}: choose an empty or new directory for {option}")


def _real(path: Path) -> Path:
    """The path with every folder above it resolved (the last part is kept: a symlink there is
    replaced, not followed)."""
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute.parent)) / absolute.name if absolute.name else absolute
