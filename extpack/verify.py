"""The `verify` command: the stage against its manifest and the lock, the cache against sha256."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from extpack import manifest as manifests
from extpack import nofollow
from extpack.cache import Cache, sha256_fd
from extpack.lock import Lock, read_lock
from extpack.manifest import Manifest
from extpack.stage import TASK_DIR, check_stage, stage_differences


@dataclass
class Verification:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0
    blobs_checked: int = 0


def verify(stage_dir: Path, lock_path: Path, cache: Cache | None) -> Verification:
    check_stage(stage_dir)
    manifest = manifests.load(stage_dir)
    lock = read_lock(lock_path)
    result = Verification(files_checked=len(manifest.files))
    result.differences += stage_differences(stage_dir, manifest, limit=1000, contents=True)
    if lock is None:
        result.notes.append(f"no lock at {lock_path}: only the stage was checked")
    else:
        staged = [(layer.source, layer.sha256) for layer in manifest.layers]
        locked = [(layer.source, layer.sha256) for layer in lock.layers]
        if lock.arch != manifest.arch:
            result.differences.append(f"arch: the lock says {lock.arch}, the stage is {manifest.arch}")
        for position in range(max(len(staged), len(locked))):
            have = staged[position] if position < len(staged) else None
            want = locked[position] if position < len(locked) else None
            if have != want:
                result.differences.append(
                    f"layer {position + 1}: the lock has {_describe(want)}, the stage has {_describe(have)}")
        result.differences += _function_differences(stage_dir, manifest, lock)
    if cache is not None and lock is not None:
        for layer in lock.layers:
            if layer.kind == "zip":
                continue
            blob = cache.lookup(layer.sha256)
            if blob is None:
                result.notes.append(f"{layer.arn or layer.source}: not in the cache (fetch will download it)")
                continue
            result.blobs_checked += 1
            if sha256_fd(os.open(blob, nofollow.FILE_FLAGS)) != layer.sha256:
                result.differences.append(f"cache: the blob for {layer.arn or layer.source} is corrupt "
                                          "(run extpack cache prune --all, then fetch)")
    return result


def _describe(item: tuple[str, str] | None) -> str:
    return "nothing" if item is None else f"{item[0]} (sha256 {item[1][:12]})"


def _function_differences(stage_dir: Path, manifest: Manifest, lock: Lock) -> list[str]:
    """A converted function's record: its layers lead the lock's, and the staged code is the code it pins."""
    function, task = lock.function, manifest.task
    if function is None:
        return ["task: the stage holds a function's code, the lock has no function"] if task else []
    differences = []
    leading = [layer.arn for layer in lock.layers[:len(function.layers)]]
    if leading != list(function.layers):
        differences.append(f"function: its layers {list(function.layers)} are not the first layers of the lock")
    staged = task.sha256 if task is not None else None
    if staged != function.code_sha256:
        differences.append(f"task: the lock pins the function's code {(function.code_sha256 or 'none')[:12]}, the "
                           f"stage has {(staged or 'none')[:12]}")
    elif task:
        differences += stage_differences(stage_dir, task, limit=1000, contents=True, subdir=TASK_DIR)
    return differences
