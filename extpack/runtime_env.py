"""What Lambda's managed runtimes give a function and other bases do not: the exec wrapper
(AWS_LAMBDA_EXEC_WRAPPER) and the layer folders on the runtimes' search paths.

AWS's managed-runtime base images (public.ecr.aws/lambda/python, nodejs, java, ruby, dotnet)
start the runtime through AWS_LAMBDA_EXEC_WRAPPER and already have the layer paths. The
`provided.*` bases (custom runtimes) have /opt/bin and /opt/lib on PATH and LD_LIBRARY_PATH
but run no wrapper: the function's own bootstrap starts first. Any other base (and any
`--rie` image, which is meant for one) has neither.
"""

from __future__ import annotations

import os
import re
import stat
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import nofollow
from extpack.exceptions import UsageError
from extpack.shapes import LibraryRoot, Shapes

if TYPE_CHECKING:
    from extpack.manifest import Manifest

WRAPPER_VARIABLE = "AWS_LAMBDA_EXEC_WRAPPER"
MANAGED_RUNTIMES = ("python", "nodejs", "java", "ruby", "dotnet")
# The repository part of an AWS base image, wherever it is mirrored: ".../lambda/python:3.12"
# or Docker Hub's "amazon/aws-lambda-python:3.12".
_AWS_BASE = re.compile(r"(?:^|/)(?:lambda/|aws-lambda-)(?P<runtime>[a-z]+)(?:[:@]|$)")
# Only names a Dockerfile ENV and the entry script can carry without quoting trouble.
_WRAPPER_PATH = re.compile(r"/opt/[A-Za-z0-9._+@-]+(?:/[A-Za-z0-9._+@-]+)*")
# Docker's own default PATH, for a base that sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables in the order they are written; each lists its folders as Lambda orders them.
VARIABLE_ORDER = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "NODE_PATH", "CLASSPATH", "GEM_PATH", "RUBYLIB")


class BaseKind(Enum):
    MANAGED = "managed"  # honours the wrapper and the layer paths
    CUSTOM = "custom"  # provided.*: layer bin/lib paths, no wrapper
    OTHER = "other"  # neither


def base_kind(base: str, rie: bool) -> BaseKind:
    match = _AWS_BASE.search(base)
    if rie or match is None:
        return BaseKind.OTHER
    return BaseKind.MANAGED if match["runtime"] in MANAGED_RUNTIMES else BaseKind.CUSTOM


def layer_env(shapes: Shapes, kind: BaseKind) -> list[tuple[str, str]]:
    """ENV pairs giving the staged library roots the paths Lambda's runtimes give them.

    Each variable keeps what the base already sets first (as the function's own code comes
    first on Lambda) and appends the layer folders, newest runtime version first.
    """
    if kind is not BaseKind.OTHER:
        return []
    folders: dict[str, list[LibraryRoot]] = {}
    for root in shapes.library_roots:
        folders.setdefault(root.variable, []).append(root)
    pairs = []
    for variable in VARIABLE_ORDER:
        roots = sorted(folders.get(variable, []), key=_lambda_order)
        if not roots:
            continue
        paths = ":".join(root.path + ("/*" if variable == "CLASSPATH" else "") for root in roots)
        if variable == "PATH":
            pairs.append((variable, f"${{PATH:-{DEFAULT_PATH}}}:{paths}"))
        else:  # no empty entry when the base sets none: an empty entry means the working directory
            pairs.append((variable, f"${{{variable}:+${{{variable}}}:}}{paths}"))
    return pairs


def _lambda_order(root: LibraryRoot) -> tuple:
    """Versioned folders (python3.12, node20, gems/3.4.0) before the plain one, newest first."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", root.path))
    return (not numbers, tuple(-n for n in numbers), root.path)


def check_wrapper(path: str, manifest: Manifest | None, stage_dir: Path) -> None:
    """The wrapper must be an executable the stage puts under /opt (exit 2 otherwise)."""
    if not _WRAPPER_PATH.fullmatch(path) or ".." in path.split("/"):
        raise UsageError(f"bad --wrapper {path!r}: give the absolute path of a staged script under /opt, "
                         "e.g. /opt/otel-instrument (letters, digits and ._+@- only)")
    if manifest is None:
        return  # --from-image without a stage: the image's files cannot be checked here
    relative = path[len("/opt/"):]
    if relative not in {entry.path for entry in manifest.files}:
        raise UsageError(f"--wrapper {path} is not in the stage {stage_dir}: give one of its wrappers "
                         "(see extpack ls) or fetch the layer that ships it")
    try:  # the file itself, never a link's target: Lambda runs the staged script
        opt_fd = nofollow.open_dir(stage_dir / "opt")
        try:
            fd = nofollow.open_beneath(opt_fd, relative)
            try:
                mode = os.fstat(fd).st_mode
            finally:
                os.close(fd)
        finally:
            os.close(opt_fd)
    except OSError:
        mode = 0
    if not stat.S_ISREG(mode) or not mode & 0o111:
        raise UsageError(f"--wrapper {path} is not an executable file in the stage {stage_dir}: "
                         "Lambda could not run it; give an executable script (see extpack ls)")


def wrapper_warnings(shapes: Shapes, wrapper: str | None, kind: BaseKind, base: str, dockerfile: str,
                     staged: bool) -> list[str]:
    """What render should say on stderr about wrappers."""
    if wrapper is None:
        return [f"layer {w.layer + 1} ships {w.path}, a wrapper, and no wrapper is set: Lambda runs it only when "
                f"{WRAPPER_VARIABLE} points at it (extpack render --wrapper {w.path})" for w in shapes.wrappers]
    warnings = []
    if not staged:
        warnings.append(f"--wrapper {wrapper} was not checked: there is no stage, and the image's files are not "
                        "read here")
    if kind is not BaseKind.MANAGED and 'ENTRYPOINT ["/extpack-entry.sh"' not in dockerfile:
        warnings.append(f"{base} does not run {WRAPPER_VARIABLE} itself and nothing in the Dockerfile does, so "
                        f"{wrapper} will not run: give --entrypoint (extpack's entry script then execs the wrapper "
                        "before it) or use a managed-runtime base")
    return warnings
