"""A local, non-AWS Python base image for build tests: no image can be pulled here.

The busybox rootfs of tests/dockerd.py plus the Python that runs the tests: its interpreter,
the shared libraries `ldd` names for it and for its extension modules, and its standard
library (without tests, IDLE, tkinter, site-packages or bytecode caches), each at the same
absolute path as on the host so that Python finds its prefix by itself. Nothing in it sets
PYTHONPATH or knows /opt: whatever a layer's library needs must come from the Dockerfile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from dockerd import DockerDaemon, DockerUnavailable, _tar_rootfs, build_busybox_rootfs

PYTHON_TAG = "extpack-test/python:latest"
_SKIPPED = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
            "dist-packages", "__pycache__", "pydoc_data"}
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def _shared_libraries(binary: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    return {Path(match) for match in _LDD_PATH.findall(out)}


def _copy_with_links(path: Path, root: Path) -> None:
    """Copy `path` to the same place under `root`, and every symlink on the way to its file."""
    while True:
        dest = root / path.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            return
        if path.is_symlink():
            target = os.readlink(path)
            os.symlink(target, dest)
            path = (path.parent / target) if not os.path.isabs(target) else Path(target)
            continue
        shutil.copy2(path, dest)
        return


def build_python_rootfs(dest: Path) -> Path:
    build_busybox_rootfs(dest)
    interpreter = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    _copy_with_links(interpreter, dest)
    binaries = [interpreter]
    for folder, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _SKIPPED and not d.startswith("config-")]
        for name in files:
            path = Path(folder) / name
            if name.endswith((".pyc", ".a")) or "_tkinter" in name:
                continue
            _copy_with_links(path, dest)
            if name.endswith(".so"):
                binaries.append(path)
    for binary in binaries:
        for library in _shared_libraries(binary):
            _copy_with_links(library, dest)
    link = dest / "usr/local/bin/python3"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(str(interpreter), link)
    # The busybox rootfs keeps /root private; the copied Python may live under it (pyenv).
    for path in (interpreter, stdlib):
        for parent in path.parents:
            inside = dest / parent.relative_to("/")
            if parent != Path("/") and inside.is_dir():
                os.chmod(inside, 0o755)
    return dest


def make_python_base(daemon: DockerDaemon, tag: str = PYTHON_TAG) -> str:
    """Import the rootfs into `daemon` as `tag` (once); a Python that cannot start in it is
    DockerUnavailable with the reason."""
    if daemon.image_exists(tag):
        return tag
    if shutil.which("ldd") is None:
        raise DockerUnavailable("ldd not found: it lists the shared libraries the Python base needs")
    with tempfile.TemporaryDirectory(prefix="extpack-python-base-") as tmp:
        root = build_python_rootfs(Path(tmp) / "rootfs")
        data = _tar_rootfs(root)
    daemon.docker("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "--change", 'CMD ["/bin/sh"]', "-", tag, input=data, timeout=300)
    probe = daemon.docker("run", "--rm", "--network", "none", tag, "python3", "-c",
                          "import json, http.client, sys; print(sys.version_info[0])", check=False)
    if probe.returncode != 0 or probe.stdout.strip() != "3":
        raise DockerUnavailable(f"the local Python base does not start Python: {probe.stderr.strip()[-500:]}")
    return tag
