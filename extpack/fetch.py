"""The `fetch` command: sources → resolve → download → cache → unpack → stage.

`Fetcher` runs the steps under the stage's lock: the plan (extpack.plan: sources, lock, pins and
whether the stage is already up to date), obtaining each layer (extpack.obtain: the cache, or
resolve and download into a verified blob) and the pipeline (extpack.pipeline: unpack in
parallel, overlay, doctor, commit). The types it takes and answers are in extpack.fetch_types.
"""

from __future__ import annotations

import os

from extpack import manifest as manifests
from extpack.cache import Cache
from extpack.exceptions import UsageError
from extpack.fetch_types import FetchOptions, FetchResult, LayerSummary, Progress
from extpack.lock import Lock, read_lock
from extpack.manifest import Manifest
from extpack.model import ARCH_NAMES
from extpack.obtain import Obtainer, Workspace
from extpack.pipeline import INTERRUPT_GRACE, Pipeline, doctor_gate
from extpack.plan import Plan, lock_only, make_plan, up_to_date
from extpack.resolve import LambdaResolver
from extpack.rootfs import ManifestView
from extpack.shapes import shapes_of, wrapper_hints
from extpack.stagelock import holding_stage

__all__ = ["INTERRUPT_GRACE", "FetchOptions", "FetchResult", "Fetcher", "LayerSummary", "Progress"]


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
        self.workspace = Workspace()
        self.obtainer = Obtainer(options, self.cache, self.resolver, self.progress, self.workspace)

    def run(self) -> FetchResult:
        # The lock is read and the stage and lock written under one lock: the same run's.
        with holding_stage(self.options.stage_dir, on_wait=self.progress.info):
            return self._run()

    def _run(self) -> FetchResult:
        options = self.options
        lock = read_lock(options.lock_path)
        from extpack.function import plan_function

        plan = make_plan(options, lock, plan_function(options, lock, self.resolver))
        manifest = up_to_date(options, plan)
        if manifest is not None:
            return self._unchanged_result(plan, manifest)
        return Pipeline(options, self.progress, self.cache, self.resolver, self.obtainer, self.workspace,
                        plan).build()

    def lock_only(self, upgrade: list[str] | None = None, to_latest: bool = False) -> tuple[Lock | None, Lock]:
        """Resolve and write the lock without staging: `extpack lock [--upgrade [LAYER ...]]`.

        `upgrade` None keeps every pin; an empty list moves every unversioned ARN to its newest
        version; names or ARNs limit the upgrade to those layers. `to_latest` moves versioned
        ARNs too (the lock then pins a newer version than the config names).
        """
        with holding_stage(self.options.stage_dir, on_wait=self.progress.info):
            return lock_only(self.options, self.obtainer, self.resolver, upgrade, to_latest)

    def _unchanged_result(self, plan: Plan, manifest: Manifest) -> FetchResult:
        """The no-op fast path: the stage already holds the plan; doctor still checks it."""
        options = self.options
        # up_to_date found /opt entry by entry as the manifest says (type, mode, size, mtime, link
        # target): doctor reads the tree from it rather than walking /opt a second time.
        warnings = doctor_gate(options, ManifestView(options.stage_dir, manifest), manifest)  # --strict holds here too
        # Make sees the stage as fresh again (Makefiles depend on manifest.json, not on opt/).
        os.utime(options.stage_dir / manifests.NAME)
        new_lock = plan.new_lock(options.arch, plan.pins)
        lock_changed = plan.lock != new_lock
        if lock_changed:
            from extpack.atomic import write_atomically
            write_atomically(options.lock_path, new_lock.to_text())
        layers = [LayerSummary(i, pin, s.display, layer.files, layer.unzipped_size, True)
                  for i, (pin, s, layer) in enumerate(zip(plan.pins, plan.sources, manifest.layers))]
        return FetchResult(options.stage_dir, options.lock_path, options.arch, layers,
                           overrides=_overrides_of(manifest),
                           warnings=warnings,
                           files=len(manifest.files), total_size=manifest.total_size, unchanged=True,
                           lock_changed=lock_changed,
                           wrappers=wrapper_hints(shapes_of(manifest, options.stage_dir)),
                           function=plan.function.record if plan.function else None)


def _overrides_of(manifest: Manifest) -> list[tuple[str, int, int]]:
    """(path, layer, the layer it replaced) for every override the manifest records, as a build reports them."""
    found = []
    for entry in manifest.files:
        chain = [*entry.overrode, entry.layer]
        found += [(entry.path, later, earlier) for earlier, later in zip(chain, chain[1:])]
    return sorted(found, key=lambda item: (item[1], item[0]))
