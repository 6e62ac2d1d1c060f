"""The `fetch` command: sources → resolve → download → cache → unpack → stage.

Each layer is obtained (resolve, cache lookup, download) and unpacked into a tree of its
own in parallel with the others; the trees are laid over each other in the order given as
soon as each is ready. With a cache on the stage's filesystem, a layer's tree is kept in
the cache and its files are hard-linked into every stage built from it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field, replace
from pathlib import Path

from extpack import manifest as manifests
from extpack import stage as staging
from extpack.cache import Cache, sha256_file
from extpack.download import download
from extpack.transfer import Expected
from extpack.exceptions import DownloadError, DriftError, LayerContentError, UsageError
from extpack.config import DEFAULT_JOBS, DEFAULT_LOCK, DEFAULT_STAGE_DIR
from extpack.lock import Lock, LockedFunction, LockedLayer, read_lock
from extpack.manifest import Manifest, StagedLayer, StagedTask
from extpack.model import ARCH_NAMES, DEFAULT_ARCH, Arch, SourceKind
from extpack.overlay import StageTree
from extpack.resolve import LambdaResolver
from extpack.rootfs import StageView, TreeView
from extpack.shapes import shapes_of, wrapper_hints
from extpack.source import Source, parse_source
from extpack.stagelock import holding_stage
from extpack.unpack import DEFAULT_MAX_LAYER_SIZE, LayerTree, unpack_layer

INTERRUPT_GRACE = 2.0  # seconds an interrupted fetch waits for its workers to stop
_DOCTOR_FIX_ADVICE = ", or run extpack doctor --fix"


class Progress:
    """What fetch tells the user while it works; the CLI supplies a terminal-aware one."""

    def layer_started(self, index: int, name: str, total: int | None) -> None: ...

    def advance(self, index: int, amount: int) -> None: ...

    def layer_done(self, index: int) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass
class FetchOptions:
    sources: list[str]
    stage_dir: Path = DEFAULT_STAGE_DIR
    lock_path: Path = DEFAULT_LOCK
    frozen: bool = False
    arch: str = DEFAULT_ARCH
    profile: str | None = None
    endpoint_url: str | None = None
    jobs: int = DEFAULT_JOBS
    cache_dir: Path | None = None
    use_cache: bool = True
    max_layer_size: int = DEFAULT_MAX_LAYER_SIZE
    base_dir: Path = Path(".")
    strict: bool = False  # doctor's warnings stop the fetch too
    link: bool = True  # hard-link cached files into the stage when reflinks are not available
    config_path: Path | None = None  # the project config: never inside the stage it replaces
    # fetch --function: a zip function's layers (then `sources`), and with `with_code` its code
    function: str | None = None
    qualifier: str | None = None
    with_code: bool = False
    region: str | None = None  # for a function named without its ARN
    explicit_arch: bool = False  # --arch (or the config's arch) was given: a function must agree


@dataclass
class LayerSummary:
    index: int
    locked: LockedLayer
    display: str
    files: int = 0
    unzipped_size: int = 0
    from_cache: bool = False


@dataclass
class FetchResult:
    stage_dir: Path
    lock_path: Path
    arch: str
    layers: list[LayerSummary]
    overrides: list[tuple[str, int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    total_size: int = 0
    unchanged: bool = False
    lock_changed: bool = False
    wrappers: list[str] = field(default_factory=list)  # hints: staged wrapper scripts to point the env at
    function: LockedFunction | None = None  # the zip function converted (fetch --function)


@dataclass
class _Obtained:
    locked: LockedLayer
    blob: Path
    from_cache: bool
    temporary: bool


@dataclass
class _Prepared:
    """A layer ready to be laid over the stage: `linked` trees are the cache's, to link from."""

    obtained: _Obtained
    tree: LayerTree
    linked: bool


class Fetcher:
    def __init__(self, options: FetchOptions, progress: Progress | None = None) -> None:
        if options.arch not in ARCH_NAMES:
            raise UsageError(f"unknown --arch {options.arch!r}: use x86_64 or arm64")
        if options.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        self.options = options
        self.progress = progress or Progress()
        self.cache = Cache(options.cache_dir) if options.use_cache and options.cache_dir else None
        self.resolver = LambdaResolver(profile=options.profile, endpoint_url=options.endpoint_url)
        self._cancelled = threading.Event()
        self._scratch: Path | None = None
        self._unpacked: Path | None = None
        self._link_from_cache = False
        self._share = None  # how a cached tree's files reach the stage: clone, hard link or copy
        self._unpack_workers = 1
        self._temps: set[Path] = set()  # downloads in progress, removed by the main thread on interrupt
        self._temps_lock = threading.Lock()
        self._function = None  # a FunctionPlan, for fetch --function (or a lock that has one)

    # -- planning ---------------------------------------------------------------------------

    def run(self) -> FetchResult:
        # The lock is read and the stage and lock written under one lock: the same run's.
        with holding_stage(self.options.stage_dir, on_wait=self.progress.info):
            return self._run()

    def _run(self) -> FetchResult:
        options = self.options
        lock = read_lock(options.lock_path)
        from extpack.function import plan_function

        # The function's layers come first, in its order; the command line's after them.
        self._function = plan_function(options, lock, self.resolver)
        if self._function is not None and not (options.frozen and not options.function):
            options.sources = list(self._function.record.layers) + list(options.sources)
        elif not options.sources and options.frozen and lock is not None:  # the lock alone is enough for CI
            options.sources = [layer.source for layer in lock.layers]
        sources = [parse_source(text, base_dir=options.base_dir) for text in options.sources]
        if not sources and self._function is None:
            raise UsageError("no layers to fetch: give layer ARNs, .zip paths or URLs, or list them under "
                             "'layers' in extpack.toml")
        staging.refuse_symlinked_stage(options.stage_dir)
        self._check_stage_dir()
        if options.frozen:
            pins = self._frozen_pins(sources, lock)
        else:
            usable = lock if lock is not None and lock.arch == options.arch else None
            pins = [usable.find(s.display) if usable else None for s in sources]

        fast = self._unchanged_result(sources, pins, lock)
        if fast is not None:
            return fast
        return self._build(sources, pins, lock)

    def _check_stage_dir(self) -> None:
        """A fetch replaces the stage folder as a whole: only one that is new, empty or a stage."""
        from extpack.replaceable import refuse_unless_replaceable

        options = self.options
        protected = [("the current directory", Path.cwd()), ("the lock file", options.lock_path)]
        if options.config_path is not None:
            protected.append(("the config file", options.config_path))
        refuse_unless_replaceable(options.stage_dir, ours=_is_a_stage,
                                  what="a stage made by extpack fetch (no extpack manifest.json)",
                                  option="--stage-dir", protected=protected)

    def lock_only(self, upgrade: list[str] | None = None, to_latest: bool = False) -> tuple[Lock | None, Lock]:
        """Resolve and write the lock without staging: `extpack lock [--upgrade [LAYER ...]]`.

        `upgrade` None keeps every pin; an empty list moves every unversioned ARN to its newest
        version; names or ARNs limit the upgrade to those layers. `to_latest` moves versioned
        ARNs too (the lock then pins a newer version than the config names).
        """
        with holding_stage(self.options.stage_dir, on_wait=self.progress.info):
            return self._lock_only(upgrade, to_latest)

    def _lock_only(self, upgrade: list[str] | None, to_latest: bool) -> tuple[Lock | None, Lock]:
        from extpack.atomic import write_atomically

        sources = [parse_source(text, base_dir=self.options.base_dir) for text in self.options.sources]
        if not sources:
            raise UsageError("no layers to lock: give layer ARNs, .zip paths or URLs, or list them in extpack.toml")
        for item in upgrade or []:
            if not any(_wants_upgrade(source, [item], to_latest) for source in sources):
                raise UsageError(f"--layer {item!r} matches no layer ARN without a version: only those can be "
                                 "upgraded (give the name or ARN as listed, or add --to-latest for a versioned "
                                 "ARN)")
        old = read_lock(self.options.lock_path)
        usable = old if old is not None and old.arch == self.options.arch else None
        entries = []
        for index, source in enumerate(sources):
            pin = usable.find(source.display) if usable else None
            latest = _wants_upgrade(source, upgrade, to_latest)
            if pin is not None and latest:
                pin = None
            entries.append(pin if pin is not None and source.kind != "zip" else
                           self._lock_entry(index, source, latest=latest))
        # `extpack lock` knows no function: a function record stays while its layers still lead.
        function = old.function if old is not None else None
        kept = function if function is not None and \
            [e.source for e in entries[:len(function.layers)]] == list(function.layers) else None
        new = Lock(self.options.arch, tuple(entries), kept)
        if new != old:
            write_atomically(self.options.lock_path, new.to_text())
        else:  # up to date: say so to make, which compares it with extpack.toml
            os.utime(self.options.lock_path)
        return old, new

    def _lock_entry(self, index: int, source: Source, *, latest: bool = False) -> LockedLayer:
        if source.kind != "arn":
            item = self._obtain(index, source, None)
            if item.temporary:
                os.unlink(item.blob)
            return item.locked
        arn = source.arn
        if arn.version is None or latest:
            arn = arn.with_version(self.resolver.newest_version(arn, self.options.arch))
        resolved = self.resolver.resolve(Source(SourceKind.ARN, source.text, arn=arn), self.options.arch)
        return LockedLayer(source.text, "arn", resolved.sha256, resolved.size, arn=resolved.arn,
                           version=resolved.version, architectures=resolved.architectures)

    def _frozen_pins(self, sources: list[Source], lock: Lock | None) -> list[LockedLayer]:
        if lock is None:
            raise DriftError(f"--frozen needs a lock file, and {self.options.lock_path} does not exist: "
                             "run extpack fetch without --frozen and commit the lock")
        differences = []
        if lock.arch != self.options.arch:
            differences.append(f"arch: the lock is for {lock.arch}, this fetch is for {self.options.arch}")
        locked_sources = [layer.source for layer in lock.layers]
        wanted = [s.display for s in sources]
        for position in range(max(len(wanted), len(locked_sources))):
            want = wanted[position] if position < len(wanted) else None
            have = locked_sources[position] if position < len(locked_sources) else None
            if want != have:
                differences.append(f"layer {position + 1}: the config asks for {want or 'nothing'}, "
                                   f"the lock has {have or 'nothing'}")
        if differences:
            raise DriftError(f"the layers differ from {self.options.lock_path} ({differences[0]}): "
                             "run extpack fetch without --frozen to update the lock", details=differences)
        return list(lock.layers)

    def _unchanged_result(self, sources, pins, lock) -> FetchResult | None:
        """The no-op fast path: everything pinned and the stage already holds exactly that."""
        if any(pin is None for pin in pins):
            return None
        for source, pin in zip(sources, pins):
            if source.kind == "zip" and sha256_file(source.path) != pin.sha256:
                return None
        try:
            manifest = manifests.read(self.options.stage_dir)
        except UsageError:  # a damaged manifest: the stage is rebuilt and replaced
            return None
        if manifest is None or manifest.arch != self.options.arch \
                or manifest.max_layer_size != self.options.max_layer_size:
            return None
        staged = [(layer.source, layer.sha256) for layer in manifest.layers]
        if staged != [(pin.source, pin.sha256) for pin in pins]:
            return None
        if staging.stage_differences(self.options.stage_dir, manifest, limit=1):
            return None
        task = manifest.task
        if (task.sha256 if task else None) != self._code_sha256() or (
                task and staging.stage_differences(self.options.stage_dir, task, limit=1, subdir=staging.TASK_DIR)):
            return None
        if not self.options.link and _shares_inodes(self.options.stage_dir / "opt"):
            return None  # link = false asks for a stage of its own: copy the files this time
        warnings = self._doctor(StageView(self.options.stage_dir), manifest)  # --strict holds here too
        # Make sees the stage as fresh again (Makefiles depend on manifest.json, not on opt/).
        os.utime(self.options.stage_dir / manifests.NAME)
        new_lock = self._new_lock(pins)
        lock_changed = lock != new_lock
        if lock_changed:
            from extpack.atomic import write_atomically
            write_atomically(self.options.lock_path, new_lock.to_text())
        layers = [LayerSummary(i, pin, s.display, layer.files, layer.unzipped_size, True)
                  for i, (pin, s, layer) in enumerate(zip(pins, sources, manifest.layers))]
        return FetchResult(self.options.stage_dir, self.options.lock_path, self.options.arch, layers,
                           overrides=_overrides_of(manifest),
                           warnings=warnings,
                           files=len(manifest.files), total_size=manifest.total_size, unchanged=True,
                           lock_changed=lock_changed,
                           wrappers=wrapper_hints(shapes_of(manifest, self.options.stage_dir)),
                           function=self._function.record if self._function else None)

    def _new_lock(self, layers) -> Lock:
        return Lock(self.options.arch, tuple(layers), self._function.record if self._function else None)

    def _code_sha256(self) -> str | None:
        """The function code the stage must hold under task/ (None: no code)."""
        return self._function.record.code_sha256 if self._function and self._function.with_code else None

    # -- building ---------------------------------------------------------------------------

    def _build(self, sources: list[Source], pins: list[LockedLayer | None], lock: Lock | None) -> FetchResult:
        options = self.options
        build_dir = staging.new_build_dir(options.stage_dir)
        self._scratch = build_dir / "downloads"
        self._unpacked = build_dir / "layers"  # layer trees that are not kept in the cache
        self._share = _sharing(self.cache, build_dir, options.link) \
            if self.cache is not None and any(s.kind != "zip" for s in sources) else None
        self._link_from_cache = self._share is not None
        # Layers unpack side by side, each on its share of the cores: more threads than cores
        # only fight over the GIL (four layers on two cores: one thread each is ~20% faster).
        workers = max(1, min(options.jobs, len(sources)))  # a function may have no layers
        self._unpack_workers = max(1, (os.cpu_count() or 1) // workers)
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="extpack",
                                      initializer=_leave_signals_to_the_main_thread)
        obtained: list[_Obtained] = []
        futures: list[Future] = []
        try:
            futures += [executor.submit(self._prepare, i, s, pin) for i, (s, pin) in enumerate(zip(sources, pins))]
            tree = StageTree(build_dir / "opt")
            tree.layer_names = [s.display for s in sources]
            result = FetchResult(options.stage_dir, options.lock_path, options.arch, [])
            records = []
            linked: list[tuple[str, dict[str, tuple[int, int]]]] = []
            for index, (source, future) in enumerate(zip(sources, futures)):
                prepared: _Prepared = future.result()
                item = prepared.obtained
                obtained.append(item)
                display = item.locked.arn or source.display
                added = tree.add(prepared.tree, index, name=display, link=prepared.linked, share=self._share,
                                 inodes=getattr(prepared.tree, "inodes", None))
                if added.linked:
                    linked.append((item.locked.sha256, added.linked))
                self.progress.layer_done(index)
                result.layers.append(LayerSummary(index, item.locked, display, added.files, added.unzipped_size,
                                                  item.from_cache))
                result.overrides.extend((o.path, o.layer, o.previous_layer) for o in added.overrides)
                records.append(_layer_record(index, source, item.locked, added.files, added.unzipped_size))
            tree.finish()
            manifest = staging.manifest_of(tree, Arch(options.arch), records, options.max_layer_size)
            result.warnings = self._doctor(TreeView(build_dir, tree.nodes), manifest)
            if self._code_sha256():
                manifest = replace(manifest, task=self._stage_code(build_dir, len(sources)))
            result.function = self._function.record if self._function else None
            for scratch in (self._scratch, self._unpacked):
                if scratch.exists():
                    staging.discard(scratch)
            manifests.write(build_dir, manifest)
            new_lock = self._new_lock(item.locked for item in obtained)
            result.lock_changed = new_lock != lock
            # An unchanged lock is left alone, so Makefiles that depend on it stay satisfied.
            replaced = options.stage_dir.exists()
            staging.commit(build_dir, options.stage_dir, options.lock_path,
                           new_lock.to_text() if result.lock_changed else None)
            for sha256, stamps in linked:  # linking (and removing the old stage) moved the files' ctime
                self.cache.record_links(sha256, self.cache.current_stamps(sha256, stamps) if replaced else stamps)
            result.files = len(manifest.files)
            result.total_size = manifest.total_size
            result.wrappers = wrapper_hints(shapes_of(manifest, options.stage_dir))
        except BaseException as exc:
            # Workers stop at their next file or chunk. A failure waits for them, so nothing is
            # left behind; an interrupt waits a moment only (a call may be stuck on the network).
            self._cancelled.set()
            executor.shutdown(wait=False, cancel_futures=True)
            wait_for(futures, timeout=None if isinstance(exc, Exception) else INTERRUPT_GRACE)
            with self._temps_lock:
                for temp in self._temps:
                    _remove_quietly(temp)
            try:
                staging.discard(build_dir)
            except OSError:  # best effort: the error that brought us here is the one to report
                pass
            raise
        executor.shutdown(wait=True)
        return result

    def _prepare(self, index: int, source: Source, pin: LockedLayer | None) -> _Prepared:
        """Obtain a layer and unpack it (or find its tree in the cache); runs in a worker."""
        item = self._obtain(index, source, pin)
        display = item.locked.arn or source.display
        max_size = self.options.max_layer_size
        if self._link_from_cache and item.locked.kind != "zip" and not item.temporary:
            tree = self.cache.tree(item.locked.sha256)
            if tree is not None:
                tree.check_size(max_size, display)
                return _Prepared(item, tree, True)
            temp = self._track(self.cache.new_temp_dir(), display)
            try:
                tree = unpack_layer(item.blob, temp / "opt", name=display, max_size=max_size,
                                    workers=self._unpack_workers, cancelled=self._cancelled)
                with self._committing(temp, display):
                    tree = self.cache.commit_tree(temp, item.locked.sha256, tree)
                return _Prepared(item, tree, True)
            except BaseException:
                _remove_quietly(temp)
                raise
            finally:
                self._untrack(temp)
        tree = unpack_layer(item.blob, self._unpacked / str(index), name=display,
                            max_size=max_size, workers=self._unpack_workers, cancelled=self._cancelled)
        if item.temporary:
            os.unlink(item.blob)
        return _Prepared(item, tree, False)

    def _stage_code(self, build_dir: Path, index: int) -> StagedTask:
        """The function's code zip: from the cache or Code.Location, verified against CodeSha256 and
        CodeSize, unpacked with the layers' safe unpacker into <stage>/task."""
        from extpack.function import stage_task

        plan = self._function
        record = plan.record
        blob = self._cached_blob(LockedLayer(plan.display, "url", record.code_sha256, record.code_size)) \
            if self.cache is not None else None
        temporary = False
        if blob is None:
            expected = Expected(record.code_sha256, record.code_size, _zip_size_bound(self.options.max_layer_size))
            blob, _, temporary = self._fetch_to_blob(index, plan.code_location(self.resolver), expected,
                                                     display=plan.display,
                                                     refresh=lambda: plan.fresh_location(self.resolver))
        tree = unpack_layer(blob, build_dir / staging.TASK_DIR, name=plan.display, max_size=self.options.max_layer_size,
                            workers=self._unpack_workers, cancelled=self._cancelled)
        if temporary:
            os.unlink(blob)
        return stage_task(tree, build_dir / staging.TASK_DIR, record.code_sha256, record.code_size)

    def _track(self, temp: Path, display: str) -> Path:
        """Register a temporary file or tree for the sweep; refused once the fetch is cancelled
        (the sweep may already have run, and would never see it)."""
        with self._temps_lock:
            if self._cancelled.is_set():
                _remove_quietly(temp)
                raise DownloadError("cancelled", layer=display)
            self._temps.add(temp)
        return temp

    @contextlib.contextmanager
    def _committing(self, temp: Path, display: str) -> Iterator[None]:
        """Move a worker's verified blob or tree into the cache, unless the fetch was cancelled.

        The check and the move hold the lock the sweep holds, so a cancelled fetch never
        commits: either the commit happened before the cancellation, or it does not happen.
        """
        with self._temps_lock:
            if self._cancelled.is_set():
                raise DownloadError("cancelled", layer=display)
            yield
            self._temps.discard(temp)

    def _untrack(self, temp: Path) -> None:
        with self._temps_lock:
            self._temps.discard(temp)

    def _doctor(self, view, manifest: Manifest) -> list[str]:
        """doctor's checks on a stage (the new one, or the unchanged one): errors stop the fetch,
        warnings are returned."""
        from extpack.doctor import ERROR, WARNING, diagnose

        findings = diagnose(view, self.options.arch, manifest)
        blocking = [f for f in findings if f.severity == ERROR or (self.options.strict and f.severity == WARNING)]
        if blocking:
            first = blocking[0]
            entry = next((f for f in manifest.files if f"opt/{f.path}" == first.path), None) \
                if first.path else None
            layer = manifest.layers[entry.layer].source if entry is not None else None
            more = f" ({len(blocking) - 1} more: see extpack doctor)" if len(blocking) > 1 else ""
            where = f"/{first.path}: " if first.path else ""
            # A refused layer is never staged, so there is nothing for doctor --fix to fix.
            fix = first.fix.replace(_DOCTOR_FIX_ADVICE, "") if first.severity == ERROR else \
                "fix the modes in the layer zip, or fetch without --strict and run extpack doctor --fix"
            raise LayerContentError(f"{where}{first.message}; fix: {fix}{more}", layer=layer)
        return [f"/{f.path}: {f.message}" if f.path else f.message for f in findings if f.severity == WARNING]

    def _obtain(self, index: int, source: Source, pin: LockedLayer | None) -> _Obtained:
        if source.kind == "zip":
            return self._obtain_zip(source, pin)
        if pin is not None and self.cache is not None:
            cached = self._cached_blob(pin)
            if cached is not None:
                return _Obtained(pin, cached, True, False)
        if source.kind == "url":
            return self._download_url(index, source, pin)
        return self._download_arn(index, source, pin)

    def _obtain_zip(self, source: Source, pin: LockedLayer | None) -> _Obtained:
        assert source.path is not None
        sha = sha256_file(source.path)
        locked = LockedLayer(source.text, "zip", sha, source.path.stat().st_size)
        if self.options.frozen and pin is not None and pin.sha256 != sha:
            raise DriftError(f"the zip's sha256 is {sha[:12]}…, the lock says {pin.sha256[:12]}…: run extpack fetch "
                             "without --frozen if the change is intended", layer=source.display)
        return _Obtained(locked, source.path, False, False)

    def _cached_blob(self, pin: LockedLayer) -> Path | None:
        blob = self.cache.lookup(pin.sha256)
        if blob is None:
            return None
        if self.cache.is_intact(pin.sha256):
            self.cache.touch(pin.sha256)
            return blob
        # The lock's sha256 checks the download, so even a frozen fetch may simply download it again.
        self.cache.evict(pin.sha256)
        self.progress.info(f"{pin.arn or pin.source}: cached zip was corrupt; downloading it again")
        return None

    def _download_arn(self, index: int, source: Source, pin: LockedLayer | None) -> _Obtained:
        arn = source.arn
        if pin is not None and pin.version is not None:
            arn = arn.with_version(pin.version)
        elif arn.version is None:
            arn = arn.with_version(self.resolver.newest_version(arn, self.options.arch))
            self.progress.info(f"{source.text}: newest version is {arn.version}")
        pinned_source = Source(SourceKind.ARN, source.text, arn=arn)
        resolved = self.resolver.resolve(pinned_source, self.options.arch)
        if pin is not None and resolved.sha256 != pin.sha256:
            raise DriftError(f"the Lambda API reports sha256 {resolved.sha256}, the lock says {pin.sha256}: "
                             "the layer changed; check the lock", layer=str(arn))
        locked = LockedLayer(source.text, "arn", resolved.sha256, resolved.size, arn=resolved.arn,
                             version=resolved.version, architectures=resolved.architectures)
        cached = self._cached_blob(locked) if self.cache is not None and pin is None else None
        if cached is not None:  # the same zip under another name or version: no download
            return _Obtained(locked, cached, True, False)
        blob, _, temporary = self._fetch_to_blob(
            index, resolved.location,
            Expected(resolved.sha256, resolved.size, _zip_size_bound(self.options.max_layer_size)),
            display=str(arn), refresh=lambda: self.resolver.resolve(pinned_source, self.options.arch).location,
        )
        return _Obtained(locked, blob, False, temporary)

    def _download_url(self, index: int, source: Source, pin: LockedLayer | None) -> _Obtained:
        expected = Expected(pin.sha256 if pin else None, pin.size if pin else None,
                            _zip_size_bound(self.options.max_layer_size))
        blob, sha, temporary = self._fetch_to_blob(index, source.text, expected, display=source.display)
        # The lock keeps the URL without its query: a signed query is a credential, and it expires.
        locked = LockedLayer(source.display, "url", sha, blob.stat().st_size)
        return _Obtained(locked, blob, False, temporary)

    def _fetch_to_blob(self, index, url, expected: Expected, *, display: str, refresh=None) -> tuple[Path, str, bool]:
        if not url:
            raise DownloadError("the Lambda API returned no download location", layer=display)
        if expected.size is not None and expected.size > expected.max_size:
            # Refused before a byte is fetched: a zip this large cannot unpack within the limit.
            raise LayerContentError(f"the layer zip is {expected.size} bytes, more than a layer within "
                                    f"--max-layer-size {self.options.max_layer_size} can be ({expected.max_size} "
                                    "bytes zipped): raise --max-layer-size if the layer is meant to be this big",
                                    layer=display)
        if self.cache is not None:
            fd, temp = self.cache.new_temp()
        else:
            self._scratch.mkdir(exist_ok=True)
            temp = self._scratch / f"layer-{index}.zip"
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self._track(temp, display)
        except BaseException:
            os.close(fd)
            raise
        self.progress.layer_started(index, display, expected.size)

        def on_progress(amount: int) -> None:
            if self._cancelled.is_set():
                raise DownloadError("cancelled", layer=display)
            self.progress.advance(index, amount)

        try:
            sha = download(url, fd, expected, layer=display, refresh_url=refresh, on_progress=on_progress)
            if self.cache is None:
                return temp, sha, True
            with self._committing(temp, display):
                return self.cache.commit(temp, sha), sha, False
        except BaseException:
            _remove_quietly(temp)
            raise
        finally:
            os.close(fd)
            self._untrack(temp)


def _leave_signals_to_the_main_thread() -> None:
    """Block SIGINT/SIGTERM in a worker (and the threads it starts, which inherit the mask).

    Python runs signal handlers on the main thread only; when the kernel delivers the signal
    to a worker instead, the main thread, blocked waiting for a layer, would not notice it
    until that layer was done (and committed to the cache). Blocked here, the signal goes to
    the main thread and interrupts its wait at once.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _remove_quietly(path: Path) -> None:
    """Best effort: what brought us here is the error to report (`cache prune` sweeps leftovers)."""
    try:
        staging.discard(path) if path.is_dir() else os.unlink(path)
    except OSError:
        pass


def _sharing(cache: Cache, build_dir: Path, allow_hard_links: bool):
    """How the cache's trees can be shared with the stage (see extpack.clone), None when they cannot."""
    from extpack.clone import sharing

    try:
        probe = cache.new_temp_dir()
    except OSError:
        return None
    try:
        return sharing(probe, build_dir, allow_hard_links=allow_hard_links)
    except OSError:
        return None
    finally:
        staging.discard(probe)


def _is_a_stage(path: Path) -> bool:
    """A folder with extpack's manifest: one whose fields were damaged is still a stage to replace."""
    try:
        return manifests.read(path) is not None
    except UsageError:
        return True


def _overrides_of(manifest: Manifest) -> list[tuple[str, int, int]]:
    """(path, layer, the layer it replaced) for every override the manifest records, as a build reports them."""
    found = []
    for entry in manifest.files:
        chain = [*entry.overrode, entry.layer]
        found += [(entry.path, later, earlier) for earlier, later in zip(chain, chain[1:])]
    return sorted(found, key=lambda item: (item[1], item[0]))


def _shares_inodes(opt: Path) -> bool:
    return any(os.lstat(os.path.join(folder, name)).st_nlink > 1
               for folder, _, names in os.walk(opt) for name in names)


def _wants_upgrade(source: Source, upgrade: list[str] | None, to_latest: bool = False) -> bool:
    """Only unversioned ARNs move (versioned ones too with `to_latest`); a zip or a URL is what it is."""
    if upgrade is None or source.kind != "arn" or (source.arn.version is not None and not to_latest):
        return False
    return not upgrade or any(item in (source.text, source.arn.name, source.arn.layer_arn) for item in upgrade)


def _zip_size_bound(max_layer_size: int) -> int:
    # A zip of incompressible data is slightly larger than its content.
    return max_layer_size + max_layer_size // 10 + (1 << 20)


def _layer_record(index: int, source: Source, locked: LockedLayer, files: int, unzipped: int) -> StagedLayer:
    if source.arn is not None:
        name = source.arn.name
    elif source.path is not None:
        name = source.path.stem
    else:
        name = Path(source.display.rstrip("/")).stem or "layer"
    return StagedLayer(index, source.display, source.kind, locked.arn, name, locked.version, locked.sha256,
                       locked.size, unzipped, tuple(map(Arch, locked.architectures)), files)
