"""The build pipeline of a fetch: unpack in parallel, overlay, doctor, commit.

Each layer is obtained and unpacked into a tree of its own by a worker, in parallel with the
others; the trees are laid over each other in the order given as soon as each is ready. With a
cache on the stage's filesystem, a layer's tree is kept in the cache and its files are shared
(cloned or hard-linked) into every stage built from it. The new stage is checked by doctor and
swapped in with its lock; a failure or an interrupt leaves the previous stage and lock as they were.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, replace
from pathlib import Path

from extpack import manifest as manifests
from extpack import stage as staging
from extpack.cache import Cache
from extpack.exceptions import LayerContentError
from extpack.fetch_types import FetchOptions, FetchResult, LayerSummary, Progress
from extpack.lock import LockedLayer
from extpack.manifest import Manifest, StagedLayer, StagedTask
from extpack.model import Arch
from extpack.obtain import Obtained, Obtainer, Workspace, remove_quietly, zip_size_bound
from extpack.overlay import StageTree
from extpack.plan import Plan
from extpack.priority_pool import PriorityPool
from extpack.resolve import LambdaResolver
from extpack.rootfs import TreeView
from extpack.shapes import shapes_of, wrapper_hints
from extpack.source import Source
from extpack.transfer import Expected
from extpack.unpack import LayerTree, unpack_layer

INTERRUPT_GRACE = 2.0  # seconds an interrupted fetch waits for its workers to stop
_DOCTOR_FIX_ADVICE = ", or run extpack doctor --fix"


@dataclass
class _Prepared:
    """A layer ready to be laid over the stage: `linked` trees are the cache's, to link from."""

    obtained: Obtained
    tree: LayerTree
    linked: bool


class Pipeline:
    """Builds the stage a plan asks for, beside the current one, and swaps it in."""

    def __init__(self, options: FetchOptions, progress: Progress, cache: Cache | None, resolver: LambdaResolver,
                 obtainer: Obtainer, workspace: Workspace, plan: Plan) -> None:
        self.options = options
        self.progress = progress
        self.cache = cache
        self.resolver = resolver
        self.obtainer = obtainer
        self.workspace = workspace
        self.plan = plan
        self._unpacked: Path | None = None
        self._link_from_cache = False
        self._share = None  # how a cached tree's files reach the stage: clone, hard link or copy
        self._unpack_workers = 1
        # Entries of layers unpacked while they download are written here, all layers sharing the cores.
        self.inflate_pool: PriorityPool | None = None

    def build(self) -> FetchResult:
        options = self.options
        sources, pins, lock, function = self.plan.sources, self.plan.pins, self.plan.lock, self.plan.function
        build_dir = staging.new_build_dir(options.stage_dir)
        self.workspace.scratch = build_dir / "downloads"
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
        self.inflate_pool = PriorityPool(os.cpu_count() or 1, name="extpack-inflate",
                                         initializer=_leave_signals_to_the_main_thread)
        obtained: list[Obtained] = []
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
            result.warnings = doctor_gate(options, TreeView(build_dir, tree.nodes), manifest)
            if self.plan.code_sha256():
                manifest = replace(manifest, task=self._stage_code(build_dir, len(sources)))
            result.function = function.record if function else None
            for scratch in (self.workspace.scratch, self._unpacked):
                if scratch.exists():
                    staging.discard(scratch)
            manifests.write(build_dir, manifest)
            new_lock = self.plan.new_lock(options.arch, (item.locked for item in obtained))
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
            self.workspace.cancelled.set()
            executor.shutdown(wait=False, cancel_futures=True)
            self.inflate_pool.shutdown(wait=False, cancel_futures=True)
            wait_for(futures, timeout=None if isinstance(exc, Exception) else INTERRUPT_GRACE)
            self.workspace.sweep()
            try:
                staging.discard(build_dir)
            except OSError:  # best effort: the error that brought us here is the one to report
                pass
            raise
        executor.shutdown(wait=True)
        self.inflate_pool.shutdown(wait=True)
        return result

    def _prepare(self, index: int, source: Source, pin: LockedLayer | None) -> _Prepared:
        """Obtain a layer and unpack it (or find its tree in the cache); runs in a worker."""
        early = _EarlyTree(self, index, source.display)
        try:
            item = self.obtainer.obtain(index, source, pin, early.start)
            display = item.locked.arn or source.display
            early.name = display
            if self._to_cache(item):
                tree = self.cache.tree(item.locked.sha256)
                if tree is not None:  # (another fetch may have put it there while this one downloaded)
                    early.remove()
                    tree.check_size(self.options.max_layer_size, display)
                    return _Prepared(item, tree, True)
                temp = early.temp or self.workspace.track(self.cache.new_temp_dir(), display)
                early.temp = temp
                tree = self._unpack(item, temp / "opt", display)
                with self.workspace.committing(temp, display):
                    tree = self.cache.commit_tree(temp, item.locked.sha256, tree)
                return _Prepared(item, tree, True)
            tree = self._unpack(item, self._unpacked / str(index), display)
            if item.temporary:
                os.unlink(item.blob)
            return _Prepared(item, tree, False)
        except BaseException:
            early.remove()
            raise
        finally:
            early.untrack()

    def _to_cache(self, item: Obtained) -> bool:
        """Whether the layer's tree is (or goes) in the cache, to be linked into the stage from there."""
        return self._link_from_cache and item.locked.kind != "zip" and not item.temporary

    def _unpack(self, item: Obtained, root: Path, display: str) -> LayerTree:
        """The layer's tree in `root`: the one unpacked while the zip arrived, else unpacked now."""
        tree = item.unpacking.finish() if item.unpacking is not None else None
        return tree or unpack_layer(item.blob, root, name=display, max_size=self.options.max_layer_size,
                                    workers=self._unpack_workers, cancelled=self.workspace.cancelled)

    def _stage_code(self, build_dir: Path, index: int) -> StagedTask:
        """The function's code zip: from the cache or Code.Location, verified against CodeSha256 and
        CodeSize, unpacked with the layers' safe unpacker into <stage>/task."""
        from extpack.function import stage_task

        plan = self.plan.function
        record = plan.record
        blob = self.obtainer.cached_blob(LockedLayer(plan.display, "url", record.code_sha256, record.code_size)) \
            if self.cache is not None else None
        temporary = False
        if blob is None:
            expected = Expected(record.code_sha256, record.code_size, zip_size_bound(self.options.max_layer_size))
            blob, _, temporary, _ = self.obtainer.fetch_to_blob(index, plan.code_location(self.resolver), expected,
                                                             display=plan.display,
                                                             refresh=lambda: plan.fresh_location(self.resolver))
        tree = unpack_layer(blob, build_dir / staging.TASK_DIR, name=plan.display, max_size=self.options.max_layer_size,
                            workers=self._unpack_workers, cancelled=self.workspace.cancelled)
        if temporary:
            os.unlink(blob)
        return stage_task(tree, build_dir / staging.TASK_DIR, record.code_sha256, record.code_size)


class _EarlyTree:
    """Where one layer's tree goes when it is unpacked while its zip downloads: the same place
    it would go after (a temporary tree in the cache, or the build's own folder)."""

    def __init__(self, pipeline: Pipeline, index: int, name: str) -> None:
        self.pipeline = pipeline
        self.index = index
        self.name = name
        self.temp: Path | None = None  # the cache's temporary folder holding the tree, tracked
        self.unpacking = None

    def start(self, sha256: str, zip_path: Path, size: int):
        from extpack.stream_unpack import WORTH_STREAMING, StreamingUnpack

        pipeline = self.pipeline
        if pipeline.inflate_pool is None or size < WORTH_STREAMING:
            return None
        cache = pipeline.cache
        if pipeline._link_from_cache and cache is not None:
            if cache.tree(sha256) is not None:  # unpacked before: nothing to do
                return None
            self.temp = pipeline.workspace.track(cache.new_temp_dir(), self.name)
            root = self.temp / "opt"
        else:
            root = pipeline._unpacked / str(self.index)
        self.unpacking = StreamingUnpack(zip_path, size, root, name=self.name,
                                         max_size=pipeline.options.max_layer_size, pool=pipeline.inflate_pool,
                                         priority=self.index, cancelled=pipeline.workspace.cancelled)
        return self.unpacking

    def remove(self) -> None:
        if self.unpacking is not None:
            self.unpacking.discard()
            self.unpacking = None
        if self.temp is not None:
            remove_quietly(self.temp)

    def untrack(self) -> None:
        if self.temp is not None:
            self.pipeline.workspace.untrack(self.temp)


def doctor_gate(options: FetchOptions, view, manifest: Manifest) -> list[str]:
    """doctor's checks on a stage (the new one, or the unchanged one): errors stop the fetch,
    warnings are returned."""
    from extpack.doctor import ERROR, WARNING, diagnose

    findings = diagnose(view, options.arch, manifest)
    blocking = [f for f in findings if f.severity == ERROR or (options.strict and f.severity == WARNING)]
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


def _leave_signals_to_the_main_thread() -> None:
    """Block SIGINT/SIGTERM in a worker (and the threads it starts, which inherit the mask).

    Python runs signal handlers on the main thread only; when the kernel delivers the signal
    to a worker instead, the main thread, blocked waiting for a layer, would not notice it
    until that layer was done (and committed to the cache). Blocked here, the signal goes to
    the main thread and interrupts its wait at once.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


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


def _layer_record(index: int, source: Source, locked: LockedLayer, files: int, unzipped: int) -> StagedLayer:
    if source.arn is not None:
        name = source.arn.name
    elif source.path is not None:
        name = source.path.stem
    else:
        name = Path(source.display.rstrip("/")).stem or "layer"
    return StagedLayer(index, source.display, source.kind, locked.arn, name, locked.version, locked.sha256,
                       locked.size, unzipped, tuple(map(Arch, locked.architectures)), files)
