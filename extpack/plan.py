"""The plan of a fetch: which sources, pinned to what, and whether the stage already holds it.

The sources come from the command line or the config (after a function's layers), or with
`--frozen` from the lock alone; each is pinned to the lock's record when the lock is for the same
arch (`--frozen` insists the lock and the sources agree). When everything is pinned and the stage
already holds exactly that, nothing needs building (`up_to_date`). `extpack lock` resolves the
pins and writes the lock without staging (`lock_only`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import manifest as manifests
from extpack import stage as staging
from extpack.cache import sha256_file
from extpack.exceptions import DriftError, UsageError
from extpack.fetch_types import FetchOptions
from extpack.lock import Lock, LockedLayer, read_lock
from extpack.manifest import Manifest
from extpack.model import SourceKind
from extpack.obtain import Obtainer
from extpack.resolve import LambdaResolver
from extpack.source import Source, parse_source

if TYPE_CHECKING:
    from extpack.function import FunctionPlan


@dataclass
class Plan:
    """What one fetch stages: its sources in order, each one's pin (None: resolve afresh), the lock
    read at the start, and the zip function converted (fetch --function, or a lock that has one)."""

    sources: list[Source]
    pins: list[LockedLayer | None]
    lock: Lock | None
    function: FunctionPlan | None

    def new_lock(self, arch: str, layers: Iterable[LockedLayer]) -> Lock:
        return Lock(arch, tuple(layers), self.function.record if self.function else None)

    def code_sha256(self) -> str | None:
        """The function code the stage must hold under task/ (None: no code)."""
        return self.function.record.code_sha256 if self.function and self.function.with_code else None


def make_plan(options: FetchOptions, lock: Lock | None, function: FunctionPlan | None) -> Plan:
    # The function's layers come first, in its order; the command line's after them.
    if function is not None and not (options.frozen and not options.function):
        options.sources = list(function.record.layers) + list(options.sources)
    elif not options.sources and options.frozen and lock is not None:  # the lock alone is enough for CI
        options.sources = [layer.source for layer in lock.layers]
    sources = [parse_source(text, base_dir=options.base_dir) for text in options.sources]
    if not sources and function is None:
        raise UsageError("no layers to fetch: give layer ARNs, .zip paths or URLs, or list them under "
                         "'layers' in extpack.toml")
    staging.refuse_symlinked_stage(options.stage_dir)
    _check_stage_dir(options)
    if options.frozen:
        pins = _frozen_pins(options, sources, lock)
    else:
        usable = lock if lock is not None and lock.arch == options.arch else None
        pins = [usable.find(s.display) if usable else None for s in sources]
    return Plan(sources, pins, lock, function)


def _check_stage_dir(options: FetchOptions) -> None:
    """A fetch replaces the stage folder as a whole: only one that is new, empty or a stage."""
    from extpack.replaceable import refuse_unless_replaceable

    protected = [("the current directory", Path.cwd()), ("the lock file", options.lock_path)]
    if options.config_path is not None:
        protected.append(("the config file", options.config_path))
    refuse_unless_replaceable(options.stage_dir, ours=_is_a_stage,
                              what="a stage made by extpack fetch (no extpack manifest.json)",
                              option="--stage-dir", protected=protected)


def _frozen_pins(options: FetchOptions, sources: list[Source], lock: Lock | None) -> list[LockedLayer]:
    if lock is None:
        raise DriftError(f"--frozen needs a lock file, and {options.lock_path} does not exist: "
                         "run extpack fetch without --frozen and commit the lock")
    differences = []
    if lock.arch != options.arch:
        differences.append(f"arch: the lock is for {lock.arch}, this fetch is for {options.arch}")
    locked_sources = [layer.source for layer in lock.layers]
    wanted = [s.display for s in sources]
    for position in range(max(len(wanted), len(locked_sources))):
        want = wanted[position] if position < len(wanted) else None
        have = locked_sources[position] if position < len(locked_sources) else None
        if want != have:
            differences.append(f"layer {position + 1}: the config asks for {want or 'nothing'}, "
                               f"the lock has {have or 'nothing'}")
    if differences:
        raise DriftError(f"the layers differ from {options.lock_path} ({differences[0]}): "
                         "run extpack fetch without --frozen to update the lock", details=differences)
    return list(lock.layers)


def up_to_date(options: FetchOptions, plan: Plan) -> Manifest | None:
    """The no-op fast path's decision: everything pinned and the stage already holds exactly that
    (its manifest, returned), else None and the stage is built."""
    pins = plan.pins
    if any(pin is None for pin in pins):
        return None
    for source, pin in zip(plan.sources, pins):
        if source.kind == "zip" and sha256_file(source.path) != pin.sha256:
            return None
    try:
        manifest = manifests.read(options.stage_dir)
    except UsageError:  # a damaged manifest: the stage is rebuilt and replaced
        return None
    if manifest is None or manifest.arch != options.arch \
            or manifest.max_layer_size != options.max_layer_size:
        return None
    staged = [(layer.source, layer.sha256) for layer in manifest.layers]
    if staged != [(pin.source, pin.sha256) for pin in pins]:
        return None
    if staging.stage_differences(options.stage_dir, manifest, limit=1):
        return None
    task = manifest.task
    if (task.sha256 if task else None) != plan.code_sha256() or (
            task and staging.stage_differences(options.stage_dir, task, limit=1, subdir=staging.TASK_DIR)):
        return None
    if not options.link and _shares_inodes(options.stage_dir / "opt"):
        return None  # link = false asks for a stage of its own: copy the files this time
    return manifest


def lock_only(options: FetchOptions, obtainer: Obtainer, resolver: LambdaResolver,
              upgrade: list[str] | None, to_latest: bool) -> tuple[Lock | None, Lock]:
    """Resolve and write the lock without staging (see Fetcher.lock_only); the caller holds the stage."""
    from extpack.atomic import write_atomically

    sources = [parse_source(text, base_dir=options.base_dir) for text in options.sources]
    if not sources:
        raise UsageError("no layers to lock: give layer ARNs, .zip paths or URLs, or list them in extpack.toml")
    for item in upgrade or []:
        if not any(_wants_upgrade(source, [item], to_latest) for source in sources):
            raise UsageError(f"--layer {item!r} matches no layer ARN without a version: only those can be "
                             "upgraded (give the name or ARN as listed, or add --to-latest for a versioned "
                             "ARN)")
    old = read_lock(options.lock_path)
    usable = old if old is not None and old.arch == options.arch else None
    entries = []
    for index, source in enumerate(sources):
        pin = usable.find(source.display) if usable else None
        latest = _wants_upgrade(source, upgrade, to_latest)
        if pin is not None and latest:
            pin = None
        entries.append(pin if pin is not None and source.kind != "zip" else
                       _lock_entry(options, obtainer, resolver, index, source, latest=latest))
    # `extpack lock` knows no function: a function record stays while its layers still lead.
    function = old.function if old is not None else None
    kept = function if function is not None and \
        [e.source for e in entries[:len(function.layers)]] == list(function.layers) else None
    new = Lock(options.arch, tuple(entries), kept)
    if new != old:
        write_atomically(options.lock_path, new.to_text())
    else:  # up to date: say so to make, which compares it with extpack.toml
        os.utime(options.lock_path)
    return old, new


def _lock_entry(options: FetchOptions, obtainer: Obtainer, resolver: LambdaResolver, index: int, source: Source,
                *, latest: bool = False) -> LockedLayer:
    if source.kind != "arn":
        item = obtainer.obtain(index, source, None)
        if item.temporary:
            os.unlink(item.blob)
        return item.locked
    arn = source.arn
    if arn.version is None or latest:
        arn = arn.with_version(resolver.newest_version(arn, options.arch))
    resolved = resolver.resolve(Source(SourceKind.ARN, source.text, arn=arn), options.arch)
    return LockedLayer(source.text, "arn", resolved.sha256, resolved.size, arn=resolved.arn,
                       version=resolved.version, architectures=resolved.architectures)


def _is_a_stage(path: Path) -> bool:
    """A folder with extpack's manifest: one whose fields were damaged is still a stage to replace."""
    return manifests.is_stage(path)


def _shares_inodes(opt: Path) -> bool:
    return any(os.lstat(os.path.join(folder, name)).st_nlink > 1
               for folder, _, names in os.walk(opt) for name in names)


def _wants_upgrade(source: Source, upgrade: list[str] | None, to_latest: bool = False) -> bool:
    """Only unversioned ARNs move (versioned ones too with `to_latest`); a zip or a URL is what it is."""
    if upgrade is None or source.kind != "arn" or (source.arn.version is not None and not to_latest):
        return False
    return not upgrade or any(item in (source.text, source.arn.name, source.arn.layer_arn) for item in upgrade)
