"""Make a stage by hand (what `extpack fetch` writes) for the image and push tests.

The stage is `<dir>/opt/...` plus `<dir>/manifest.json` in the `extpack.manifest/v1`
schema. Tests that need a real fetch use the CLI; these only need a tree to convert.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

DEMO_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:demo:3"
OTHER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:other:1"

# path -> (mode, content) for files; (None, target) for symlinks; (mode, None) for dirs
DEMO_TREE: dict[str, tuple[int | None, bytes | str | None]] = {
    "extensions": (0o755, None),
    "extensions/demo": (0o755, b"#!/bin/sh\necho demo extension\n"),
    "lib": (0o755, None),
    "lib/libx.so.1.0": (0o644, b"\x7fELF not really\n" * 100),
    "lib/libx.so.1": (None, "libx.so.1.0"),
    "bin": (0o755, None),
    "bin/tool": (0o750, b"#!/bin/sh\necho tool\n"),
    "bin/extensions-link": (None, "../extensions"),
    "share": (0o755, None),
    "share/empty": (0o700, None),
    "share/doc.txt": (0o600, b""),
    "python": (0o755, None),
    "python/" + "p" * 120: (0o755, None),  # a path longer than ustar's 100-byte name field
    "python/" + "p" * 120 + "/" + "n" * 90 + ".py": (0o644, b"print('long names')\n"),
    "python/caf\u00e9.txt": (0o644, b"non-ascii name\n"),
}


def make_stage(
    root: Path,
    *,
    arch: str = "x86_64",
    tree: dict[str, tuple[int | None, bytes | str | None]] | None = None,
    layers: list[dict] | None = None,
) -> Path:
    """Write `tree` under `root/opt` and a matching `root/manifest.json`; return `root`."""
    tree = DEMO_TREE if tree is None else tree
    opt = root / "opt"
    opt.mkdir(parents=True, exist_ok=True)
    dirs = []
    for rel in sorted(tree):
        mode, content = tree[rel]
        path = opt / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            os.symlink(str(content), path)
        elif content is None:
            path.mkdir(exist_ok=True)
            dirs.append((path, mode))
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
            os.chmod(path, mode)
    for path, mode in reversed(dirs):  # after filling them: a 0500 dir could not be written to
        os.chmod(path, mode)
    if layers is None:
        layers = [
            {"index": 0, "source": DEMO_ARN, "arn": DEMO_ARN, "name": "demo", "version": 3,
             "sha256": "a" * 64, "size": 1234, "unzipped_size": 5678, "architectures": [arch], "files": 7},
            {"index": 1, "source": "/home/someone/other.zip", "arn": None, "name": "other", "version": None,
             "sha256": "b" * 64, "size": 99, "unzipped_size": 100, "architectures": [], "files": 1},
        ]
    write_manifest(root, arch=arch, layers=layers)
    return root


def write_manifest(root: Path, *, arch: str, layers: list[dict]) -> None:
    files = []
    opt = root / "opt"
    for dirpath, dirnames, filenames in os.walk(opt):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(opt).as_posix()
            entry = {"path": rel, "mode": f"{stat.S_IMODE(st.st_mode):04o}", "size": 0, "sha256": None,
                     "target": None, "layer": 0, "overrode": []}
            if stat.S_ISLNK(st.st_mode):
                entry.update(type="symlink", mode="0777", target=os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                entry.update(type="dir")
            else:
                data = p.read_bytes()
                entry.update(type="file", size=len(data), sha256=hashlib.sha256(data).hexdigest())
            files.append(entry)
    files.sort(key=lambda e: e["path"])
    manifest = {"schema": "extpack.manifest/v1", "arch": arch, "layers": layers, "files": files,
                "total_size": sum(f["size"] for f in files)}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def touch_everything(root: Path, when: float) -> None:
    """Set every staged path's atime/mtime (symlinks themselves too) to `when`."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def snapshot(opt: Path) -> dict[str, tuple]:
    """{relative path: (kind, mode, content-or-target)} for comparing two trees."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(opt):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(opt).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out
