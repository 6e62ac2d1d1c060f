"""The `doctor` command: find what will break in Lambda before the image is deployed.

Each check looks at a View (a stage, an OCI layout, a local Docker image) and reports
findings with a severity and a one-line fix. `fetch` runs the same checks on the stage it
builds: errors stop it, warnings are printed.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from extpack import nofollow, rootfs
from extpack.elf import ELF_MAGIC, HEADER_BYTES, elf_arch, elf_interpreter
from extpack.manifest import Manifest, StagedFile, StagedLayer
from extpack.model import (
    DEFAULT_ARCH,
    EXTENSIONS_DIR,
    IMAGE_LIMIT,
    LAYER_UNZIPPED_LIMIT,
    MAX_EXTENSIONS,
    Arch,
    Severity,
    TreeEntry,
    is_extension,
    size_limit_text,
)
from extpack.rootfs import View

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
SEVERITIES = tuple(Severity)
EXTENSIONS = f"opt/{EXTENSIONS_DIR}"  # as a finding names it


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    path: str | None
    message: str
    fix: str

    def line(self) -> str:
        where = f"/{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}\n    fix: {self.fix}"


def diagnose(view: View, arch: str, manifest: Manifest | None = None) -> list[Finding]:
    findings: list[Finding] = []
    entries = view.entries()
    extensions = sorted(path for path in entries if _directly_in_extensions(path))
    for path in extensions:
        findings += _check_extension(view, entries[path], arch)
    real = [p for p in extensions if not _is_junk(posixpath.basename(p))]
    if len(real) > MAX_EXTENSIONS:
        findings.append(Finding(ERROR, "too-many-extensions", EXTENSIONS,
                                f"{len(real)} extensions, but Lambda starts at most {MAX_EXTENSIONS}",
                                "drop the layers whose extensions the function does not need"))
    findings += _check_permissions(entries)
    findings += _check_symlinks(view, entries)
    if manifest is not None:
        findings += _check_manifest(view, entries, manifest, arch)
    order = {severity: rank for rank, severity in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (order[f.severity], f.path or "", f.code))


def _directly_in_extensions(path: str) -> bool:
    """`path` is relative to the image's root: "opt/extensions/NAME"."""
    return path.startswith("opt/") and is_extension(path[4:])


def _is_junk(name: str) -> bool:
    return name.startswith("._") or name in (".DS_Store", "Thumbs.db") or name.startswith(".")


def _check_extension(view: View, entry: TreeEntry, arch: str) -> list[Finding]:
    path, name = entry.path, posixpath.basename(entry.path)
    if _is_junk(name):
        return [Finding(ERROR, "junk-extension", path, "a hidden or AppleDouble file in /opt/extensions: Lambda will "
                        "try to start it", f"remove it from the layer (zip -d LAYER.zip 'extensions/{name}'), "
                        "or run extpack doctor --fix")]
    final_path, final = view.resolve(path)
    if final is None and not view.has_rootfs and not final_path.startswith("opt/"):
        return [Finding(WARNING, "extension-outside-opt", path, f"a symlink to {entry.target}, outside /opt: "
                        "it cannot be checked in a stage", "make sure the base image has it (extpack doctor "
                        "--image checks the built image)")]
    if final is None:
        return [Finding(ERROR, "extension-dangling", path, f"a symlink to {entry.target} that does not resolve "
                        "inside the image", "ship the target in a layer, or remove the link")]
    if final.type != "file":
        return [Finding(ERROR, "extension-not-file", path, f"a {final.type}: Lambda starts every entry of "
                        "/opt/extensions as a program", "move it out of /opt/extensions")]
    findings = []
    if not final.mode & 0o111:
        return [Finding(ERROR, "extension-not-executable", path, f"not executable (mode {final.mode:04o}): "
                        "'permission denied' at start", f"chmod 0755 /{final_path} (in the layer zip)")]
    if not final.mode & 0o001 or not final.mode & 0o004:
        findings.append(Finding(ERROR, "extension-not-for-others", path, f"mode {final.mode:04o}: the non-root "
                                "user a container-image function runs as cannot run it",
                                f"chmod 0755 /{final_path}, or run extpack doctor --fix"))
    head = view.read(final_path, 0, 256)
    if head.startswith(ELF_MAGIC):
        findings += _check_elf(view, path, final_path, head, arch)
    elif head.startswith(b"#!"):
        findings += _check_script(view, path, head)
    return findings


def _check_elf(view: View, path: str, final_path: str, head: bytes, arch: str) -> list[Finding]:
    cpu = elf_arch(head[:HEADER_BYTES])
    if cpu != arch:
        other = Arch(arch).other
        return [Finding(ERROR, "extension-wrong-cpu", path, f"built for {cpu}, not {arch}: 'exec format error'",
                        f"use the layer's {arch} build, or --arch {other} if the function is {other}")]
    interpreter = elf_interpreter(lambda offset, size: view.read(final_path, offset, size))
    if interpreter and view.has_rootfs:
        _, found = view.resolve(interpreter.lstrip("/"))
        if found is None:
            return [Finding(ERROR, "elf-interpreter-missing", path, f"needs the loader {interpreter}, which the "
                            "image does not have: 'no such file or directory' at start",
                            "use a base image with that libc, or a statically linked build of the extension")]
    return []


def _check_script(view: View, path: str, head: bytes) -> list[Finding]:
    first_line = head.split(b"\n", 1)[0]
    if first_line.endswith(b"\r"):
        return [Finding(ERROR, "script-crlf", path, "its #! line ends with CRLF: the kernel looks for an "
                        "interpreter named with a trailing \\r", f"sed -i 's/\\r$//' {posixpath.basename(path)} "
                        "before zipping (or set the file's git eol=lf)")]
    words = first_line[2:].decode("utf-8", "replace").split()
    if not words:
        return [Finding(ERROR, "script-no-interpreter", path, "an empty #! line", "name the interpreter, "
                        "e.g. #!/bin/sh")]
    interpreter = words[0]
    if view.has_rootfs and view.resolve(interpreter.lstrip("/"))[1] is None:
        return [Finding(ERROR, "script-interpreter-missing", path, f"its interpreter {interpreter} is not in the "
                        "image: 'no such file or directory' at start", "use a base image that has it, or change "
                        "the #! line")]
    return []


def _check_permissions(entries: dict[str, TreeEntry]) -> list[Finding]:
    findings = []
    for path, entry in sorted(entries.items()):
        if not path.startswith("opt/") or entry.type not in ("file", "dir"):
            continue
        if _directly_in_extensions(path) and entry.type == "file":
            continue  # reported by the extension checks
        needed = 0o005 if entry.type == "dir" else 0o004
        if entry.mode & needed != needed:
            what = "list and enter" if entry.type == "dir" else "read"
            findings.append(Finding(WARNING, "not-readable", path, f"mode {entry.mode:04o}: the function's non-root "
                                    f"user cannot {what} it", "run extpack doctor --fix (adds the read bits)"))
    return findings


def _check_symlinks(view: View, entries: dict[str, TreeEntry]) -> list[Finding]:
    findings = []
    for path, entry in sorted(entries.items()):
        if entry.type != "symlink" or not path.startswith("opt/") or _directly_in_extensions(path):
            continue
        target_path, found = view.resolve(path)
        if not target_path.startswith("opt/") and not (view.has_rootfs and found is not None):
            findings.append(Finding(WARNING, "symlink-outside-opt", path, f"points outside /opt, to {entry.target}",
                                    "make sure the base image has it"))
        elif found is None:
            findings.append(Finding(WARNING, "symlink-dangling", path, f"points to {entry.target}, which does not "
                                    "exist", "ship the target, or drop the link"))
    return findings


def _check_manifest(view: View, entries: dict[str, TreeEntry], manifest: Manifest, arch: str) -> list[Finding]:
    findings = []
    extension_files = manifest.extensions()
    for layer in manifest.layers:
        declared = layer.architectures
        name = layer.label
        cpus = {elf_arch(view.read(path, 0, HEADER_BYTES)) for path in _layer_extensions(extension_files, layer)
                if getattr(entries.get(path), "type", None) == "file"}
        cpus.discard(None)
        if declared and cpus and not cpus <= set(declared):
            findings.append(Finding(WARNING, "architectures-mismatch", None, f"layer {name} declares "
                                    f"{', '.join(declared)} but its extensions are built for {', '.join(sorted(cpus))}",
                                    "tell the layer's publisher; trust the binaries, not the declaration"))
        if layer.unzipped_size > LAYER_UNZIPPED_LIMIT:
            findings.append(Finding(ERROR, "layer-too-large", None, f"layer {name} unzips to "
                                    f"{layer.unzipped_size} bytes, over {size_limit_text(LAYER_UNZIPPED_LIMIT)}",
                                    "split the layer or drop what the function does not use"))
        overridden = [f for f in manifest.files if f.overrode and f.layer == layer.index]
        if overridden:
            sample = ", ".join("/opt/" + f.path for f in overridden[:3])
            findings.append(Finding(INFO, "overrides", None, f"layer {name} replaces {len(overridden)} file(s) of "
                                    f"earlier layers: {sample}{' …' if len(overridden) > 3 else ''}",
                                    "reorder the layers if an override is not intended"))
    if manifest.total_size > IMAGE_LIMIT:
        findings.append(Finding(ERROR, "image-too-large", None, "the staged /opt is over Lambda's 10 GB image limit",
                                "drop layers the function does not need"))
    return findings


def _layer_extensions(extension_files: list[StagedFile], layer: StagedLayer) -> list[str]:
    """The image paths ("opt/extensions/NAME") of the layer's extension files (of the manifest's extensions)."""
    return ["opt/" + f.path for f in extension_files if f.type == "file" and f.layer == layer.index]


def fix(stage_view, findings: list[Finding]) -> list[str]:
    """Apply the safe mechanical fixes on a stage; returns what was done.

    Every change is made through descriptors of the stage's own directories: a symlink in the
    stage (or a symlinked opt) is never followed, so nothing outside the stage is touched."""
    done = []
    opt_fd = stage_view.open_opt()
    try:
        for finding in findings:
            if not (finding.path or "").startswith("opt/"):
                continue
            if finding.code == "junk-extension":
                _in_stage(opt_fd, finding.path, nofollow.remove_entry)
                done.append(f"removed /{finding.path}")
            elif finding.code in ("not-readable", "extension-not-for-others"):
                # Through a link, the target is what must be readable: when it is in the stage.
                final_path, final = stage_view.resolve(finding.path)
                if final is None or not final_path.startswith("opt/"):
                    continue
                mode = _in_stage(opt_fd, final_path, _add_read_bits)
                if mode is not None:
                    done.append(f"chmod {mode:04o} /{finding.path}")
    finally:
        os.close(opt_fd)
    return done


def _in_stage(opt_fd: int, path: str, action):
    """action(directory descriptor, name) for `path` ("opt/..."), reached without following links."""
    parent_fd, name = nofollow.open_parent(opt_fd, path[len("opt/"):])
    try:
        return action(parent_fd, name)
    finally:
        if parent_fd != opt_fd:
            os.close(parent_fd)


def _add_read_bits(dir_fd: int, name: str) -> int | None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        return None
    mode = stat.S_IMODE(st.st_mode)
    mode |= 0o555 if stat.S_ISDIR(st.st_mode) or mode & 0o100 else 0o444
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        _unshare(dir_fd, name, st)
    nofollow.chmod(dir_fd, name, mode)
    return mode


def _unshare(dir_fd: int, name: str, st: os.stat_result) -> None:
    """Give a hard-linked file (a stage shares its files with the cache's trees) its own copy,
    so a chmod changes the stage only. A file its owner cannot read is left shared: the
    cache then sees the new mode and drops that tree."""
    try:
        source = os.open(name, nofollow.FILE_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        return
    temp = f".extpack-{secrets.token_hex(8)}"
    try:
        copy = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=dir_fd)
        try:
            with open(source, "rb", closefd=False) as reader, open(copy, "wb", closefd=False) as writer:
                shutil.copyfileobj(reader, writer)
            os.fchmod(copy, stat.S_IMODE(st.st_mode))
            os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(copy)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    finally:
        os.close(source)



@dataclass(frozen=True)
class Examination:
    target: str  # "stage DIR", "image REF" or "OCI layout DIR", as the summary names it
    findings: list[Finding]
    fixed: list[str]  # what --fix did, one line each

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def failing(self, strict: bool) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR or (strict and f.severity == WARNING)]


def examine(*, stage_dir: Path | None = None, image_ref: str | None = None, oci_dir: Path | None = None,
            arch: str | None = None, apply_fixes: bool = False) -> Examination:
    """Diagnose a local Docker image, an OCI layout or (else) the stage; with `apply_fixes`
    fix the stage and diagnose it again. `arch` defaults to the stage's, else the image's."""
    from extpack.manifest import read as read_manifest
    from extpack.stage import refresh_manifest

    with rootfs.temporary_workdir() as workdir:
        manifest = None
        if image_ref:
            view, target = rootfs.docker_image_view(image_ref, Path(workdir)), f"image {image_ref}"
        elif oci_dir:
            view, target = rootfs.oci_layout_view(oci_dir, arch), f"OCI layout {oci_dir}"
        else:
            view, target = rootfs.StageView(stage_dir), f"stage {stage_dir}"
            manifest = read_manifest(stage_dir)
        arch = arch or (manifest and manifest.arch) or view.arch or DEFAULT_ARCH
        findings = diagnose(view, arch, manifest)
        fixed = fix(view, findings) if apply_fixes else []
    if fixed:
        refresh_manifest(stage_dir)
        findings = diagnose(rootfs.StageView(stage_dir), arch, read_manifest(stage_dir))
    return Examination(target, findings, fixed)
