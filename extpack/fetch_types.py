"""What `fetch` is asked (FetchOptions), tells the user while it works (Progress) and answers
(FetchResult, a LayerSummary per layer): the types its plan, obtain and pipeline steps share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from extpack.config import DEFAULT_JOBS, DEFAULT_LOCK, DEFAULT_STAGE_DIR
from extpack.lock import LockedFunction, LockedLayer
from extpack.model import DEFAULT_ARCH
from extpack.unpack import DEFAULT_MAX_LAYER_SIZE


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
