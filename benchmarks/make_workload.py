"""Generate the benchmark workload: four deterministic Lambda layer zips.

    python benchmarks/make_workload.py [--out DIR] [--force] [--check]

Every byte comes from seeded PRNGs, every zip entry has a fixed timestamp and a Unix
mode in ``external_attr``, and entries are written in a fixed order, so two runs (on
any machine, with the same Python minor version's zlib) produce byte-identical zips.
The zips are cached in ``benchmarks/work/workload-v<GENERATOR_VERSION>/`` next to a
``workload.json`` that records their sha256; bump GENERATOR_VERSION whenever the
generator's output changes.

The layers (sizes are unzipped, in MiB; 325 MiB = 340 MB in all):

1. ``telemetry`` — 6 MiB extension: one ~6 MiB executable ELF-ish binary at
   ``extensions/telemetry-agent`` and a few small files.
2. ``profiler`` — 46 MiB extension: an executable ``extensions/profiler``, several
   shared libraries of realistic compressibility (~2.5x) under ``lib/``, symlinks
   ``libfoo.so.1 -> libfoo.so.1.2.3`` and ``libfoo.so -> libfoo.so.1``, and data files.
3. ``pydeps`` — 70 MiB Python dependency layer: ~4,900 small text-like files under
   ``python/`` (compressible ~3x), a few executable console scripts in ``python/bin``.
4. ``runtime`` — 203 MiB layer of ~2,600 files: large binaries (compressible ``.so``
   files and incompressible model blobs, the latter stored, as Info-ZIP stores what
   deflate cannot shrink), many medium data files, and overrides: it replaces a few
   files of layer 3 (``python/urllib3/...``) and one of layer 2 (``lib/libz.so.1.2.13``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import struct
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

GENERATOR_VERSION = 1
MIB = 1 << 20
HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / "work"
ZIP_DATE = (2024, 1, 2, 3, 4, 6)  # even seconds: DOS times have 2 s resolution
DEFLATE_LEVEL = 6  # zip's and zlib's default

LAYER_NAMES = ("telemetry", "profiler", "pydeps", "runtime")


# --------------------------------------------------------------------------- content


def _elf_header(rng: random.Random, e_type: int, machine: int = 62) -> bytes:
    """A 64-byte little-endian ELF64 header (x86_64 by default): enough for `file`-style
    and extpack's CPU check; the rest of the "binary" is synthetic."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack(
        "<HHIQQQIHHHHHH",
        e_type,  # 2 = EXEC, 3 = DYN
        machine,
        1,
        0x400000 + rng.randrange(0x1000, 0x100000),
        64,
        rng.randrange(1 << 20, 1 << 24),
        0,
        64,
        56,
        rng.randrange(4, 13),
        64,
        rng.randrange(20, 40),
        rng.randrange(19, 39),
    )


def binary_blob(rng: random.Random, size: int, fresh: float = 0.37) -> bytes:
    """Machine-code-like bytes that deflate ~2.5x: runs of fresh random bytes, copies
    from a small per-file pool (repeated instruction sequences, tables), zero padding."""
    pool = rng.randbytes(4 * 1024)
    out = bytearray()
    randbytes, randrange, random_ = rng.randbytes, rng.randrange, rng.random
    zero_share = 0.06
    while len(out) < size:
        r = random_()
        n = randrange(96, 640)
        if r < fresh:
            out += randbytes(n)
        elif r < fresh + zero_share:
            out += bytes(n)
        else:
            start = randrange(0, len(pool) - n)
            out += pool[start : start + n]
    del out[size:]
    return bytes(out)


def elf_binary(rng: random.Random, size: int, *, shared: bool) -> bytes:
    header = _elf_header(rng, 3 if shared else 2)
    return header + binary_blob(rng, size - len(header))


def incompressible(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


_WORDS = ["self", "return", "import", "from", "def", "class", "if", "else", "elif", "for", "while", "in", "not", "and", "or", "is", "None", "True", "False", "try", "except", "finally", "raise", "with", "as", "yield", "lambda", "async", "await", "pass", "break", "continue", "global", "assert", "value", "result", "data", "item", "key", "name", "path", "config", "request", "response", "session", "client", "handler", "error", "buffer", "stream", "reader", "writer", "encode", "decode", "parse", "format", "timeout", "retry", "header", "status", "length", "offset", "index", "count", "size", "chunk", "token", "cache", "entry", "record", "field", "schema", "option", "default", "logger", "context", "manager", "factory", "adapter", "pool", "connection", "socket", "address", "port", "host", "url", "query", "params", "json", "bytes", "str", "int", "float", "dict", "list", "tuple", "set", "len", "isinstance", "getattr", "setattr", "super", "object"]


def _line_pool(rng: random.Random, n: int) -> list[str]:
    """Python-ish source lines: indentation, identifiers, calls, strings, comments."""
    lines = []
    for _ in range(n):
        indent = "    " * rng.choice((0, 1, 1, 2, 2, 2, 3))
        words = rng.choices(_WORDS, k=rng.randrange(2, 9))
        kind = rng.random()
        if kind < 0.12:
            line = f"{indent}# {' '.join(words)}"
        elif kind < 0.25:
            line = f"{indent}def {words[0]}_{words[-1]}({', '.join(words[1:4])}):"
        elif kind < 0.55:
            line = f"{indent}{words[0]}_{words[1]} = {words[-1]}.{'_'.join(words[2:5])}({rng.randrange(1000)})"
        elif kind < 0.70:
            line = f'{indent}raise {words[0].title()}Error("{" ".join(words)}")'
        else:
            line = f"{indent}{'.'.join(words[:3])}({', '.join(words[3:])})"
        lines.append(line)
    return lines


def text_blob(rng: random.Random, pool: list[str], size: int) -> bytes:
    parts: list[str] = []
    total = 0
    while total < size:
        chunk = rng.choices(pool, k=64)
        parts.extend(chunk)
        total += sum(len(s) + 1 for s in chunk)
    data = ("\n".join(parts) + "\n").encode()
    return data[: size - 1] + b"\n" if size else b""


def _sizes(rng: random.Random, count: int, total: int, sigma: float = 1.0) -> list[int]:
    """`count` log-normally distributed sizes that add up to exactly `total`."""
    raw = [rng.lognormvariate(0.0, sigma) for _ in range(count)]
    scale = total / sum(raw)
    sizes = [max(64, int(r * scale)) for r in raw]
    sizes[-1] += total - sum(sizes)
    if sizes[-1] < 64:
        raise ValueError("size distribution too skewed")
    return sizes


# --------------------------------------------------------------------------- layer model


@dataclass
class Entry:
    path: str
    kind: str  # "file" | "dir" | "symlink"
    mode: int = 0o644
    data: bytes = b""
    stored: bool = False  # write uncompressed (incompressible content, as zip does)


@dataclass
class Layer:
    name: str
    entries: list[Entry] = field(default_factory=list)

    def file(self, path: str, data: bytes, mode: int = 0o644, *, stored: bool = False) -> None:
        self.entries.append(Entry(path, "file", mode, data, stored))

    def link(self, path: str, target: str) -> None:
        self.entries.append(Entry(path, "symlink", 0o777, target.encode()))

    @property
    def unzipped_size(self) -> int:
        return sum(len(e.data) for e in self.entries if e.kind == "file")

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries if e.kind != "dir")

    def with_directories(self) -> list[Entry]:
        """Entries sorted by path with a directory entry before each directory's contents,
        as `zip -r` writes them."""
        dirs: set[str] = set()
        for entry in self.entries:
            parts = entry.path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:depth]))
        everything = [Entry(d, "dir", 0o755) for d in dirs] + self.entries
        return sorted(everything, key=lambda e: e.path + ("/" if e.kind == "dir" else ""))


def _fill_to(layer: Layer, target: int, path: str, rng: random.Random, mode: int = 0o644) -> None:
    """Add one compressible binary file that brings the layer to exactly `target` bytes."""
    missing = target - layer.unzipped_size
    if missing <= 0:
        raise ValueError(f"{layer.name}: already {layer.unzipped_size} bytes, over {target}")
    layer.file(path, binary_blob(rng, missing), mode)


def layer_telemetry() -> Layer:
    rng = random.Random("extpack-bench/telemetry/1")
    pool = _line_pool(rng, 300)
    layer = Layer("telemetry")
    layer.file("telemetry-agent/config.yaml", text_blob(rng, pool, 3_000))
    layer.file("telemetry-agent/README.md", text_blob(rng, pool, 5_500))
    layer.file("telemetry-agent/LICENSE", text_blob(rng, pool, 11_000))
    layer.file("telemetry-agent/VERSION", b"1.4.2\n")
    missing = 6 * MIB - layer.unzipped_size
    layer.file("extensions/telemetry-agent", elf_binary(rng, missing, shared=False), 0o755)
    return layer


def layer_profiler() -> Layer:
    rng = random.Random("extpack-bench/profiler/1")
    pool = _line_pool(rng, 600)
    layer = Layer("profiler")
    layer.file("extensions/profiler", elf_binary(rng, 7 * MIB + 123_457, shared=False), 0o755)
    libs = {
        "lib/libfoo.so.1.2.3": 11 * MIB + 4_096,
        "lib/libbar.so.2.0.1": 6 * MIB + 77_000,
        "lib/libcrypto.so.3": 4 * MIB + 512_000,
        "lib/libssl.so.3": 700_000,
        "lib/libprotobuf.so.32.0.12": 8 * MIB + 90_000,
        "lib/libunwind.so.8.0.1": 300_000,
        "lib/libz.so.1.2.13": 120_000,
    }
    for path, size in libs.items():
        layer.file(path, elf_binary(rng, size, shared=True), 0o755)
    layer.link("lib/libfoo.so.1", "libfoo.so.1.2.3")
    layer.link("lib/libfoo.so", "libfoo.so.1")
    layer.link("lib/libbar.so.2", "libbar.so.2.0.1")
    layer.link("lib/libprotobuf.so.32", "libprotobuf.so.32.0.12")
    layer.link("lib/libunwind.so.8", "libunwind.so.8.0.1")
    layer.link("lib/libz.so.1", "libz.so.1.2.13")
    for i, size in enumerate(_sizes(rng, 36, 2 * MIB, sigma=0.8)):
        ext = ("json", "yaml", "txt", "py")[i % 4]
        layer.file(f"profiler/share/rules/rule-{i:03d}.{ext}", text_blob(rng, pool, size))
    layer.file("profiler/bin/profiler-ctl", b"#!/bin/sh\nexec /opt/extensions/profiler \"$@\"\n", 0o755)
    _fill_to(layer, 46 * MIB, "profiler/share/symbols.bin", rng)
    return layer


PYDEPS_PACKAGES = (
    "boto_ext", "urllib3", "requests", "charset_normalizer", "idna", "certifi", "pydantic",
    "pydantic_core_py", "typing_extensions", "attrs", "jmespath", "dateutil", "six", "yaml",
    "jinja2", "markupsafe", "click", "rich", "pygments", "markdown_it", "mdurl", "orjson_py",
    "aws_xray_sdk", "wrapt", "structlog", "tenacity", "cachetools", "google_protobuf",
    "grpc_py", "opentelemetry", "otel_exporter", "otel_sdk", "sqlalchemy", "greenlet_py",
    "psycopg_py", "redis", "async_timeout", "aiohttp_py", "multidict", "yarl", "frozenlist",
)
PYDEPS_FILES = 4_900
URLLIB3_OVERRIDES = 12


def _pydeps_paths(rng: random.Random) -> list[str]:
    """4,900 module paths spread over packages and sub-packages, plus dist-info files."""
    paths: list[str] = []
    per_package = (PYDEPS_FILES - 10) // len(PYDEPS_PACKAGES)
    for pkg in PYDEPS_PACKAGES:
        subs = ["", *(f"{w}/" for w in rng.sample(_WORDS[20:], 6))]
        meta = [f"python/{pkg}-1.{rng.randrange(40)}.0.dist-info/{n}" for n in ("METADATA", "RECORD", "WHEEL")]
        modules = []
        for i in range(per_package - len(meta)):
            sub = subs[i % len(subs)]
            modules.append(f"python/{pkg}/{sub}{rng.choice(_WORDS)}_{i:03d}.py")
        # Overridden by layer 4: fixed, predictable names.
        if pkg == "urllib3":
            modules[:URLLIB3_OVERRIDES] = [f"python/urllib3/_patched_{i:02d}.py" for i in range(URLLIB3_OVERRIDES)]
        paths += meta + modules
    while len(paths) < PYDEPS_FILES - 10:
        paths.append(f"python/_extra/mod_{len(paths):05d}.py")
    return paths


def layer_pydeps() -> Layer:
    rng = random.Random("extpack-bench/pydeps/1")
    pool = _line_pool(rng, 4_000)
    layer = Layer("pydeps")
    paths = _pydeps_paths(rng)
    for path, size in zip(paths, _sizes(rng, len(paths), 70 * MIB - 10 * 600, sigma=1.1)):
        layer.file(path, text_blob(rng, pool, size))
    for i in range(10):
        script = f"#!/usr/bin/env python3\nimport sys\nfrom {PYDEPS_PACKAGES[i]} import main\nsys.exit(main())\n"
        layer.file(f"python/bin/{PYDEPS_PACKAGES[i].replace('_', '-')}", script.encode().ljust(600, b"#"), 0o755)
    return layer


def layer_runtime() -> Layer:
    rng = random.Random("extpack-bench/runtime/1")
    pool = _line_pool(rng, 2_000)
    layer = Layer("runtime")
    for name, size in (("runtime-server", 4 * MIB + 10_000), ("runtime-cli", 2 * MIB + 5_000),
                       ("modelctl", 3 * MIB + 20_000), ("healthcheck", 700_000)):
        layer.file(f"bin/{name}", elf_binary(rng, size, shared=False), 0o755)
    for i, size in enumerate((18, 14, 9, 7, 5, 4, 2, 1)):
        layer.file(f"lib/libruntime{i}.so", elf_binary(rng, size * MIB + 33_000 * i, shared=True), 0o755)
    # Incompressible model weights: stored, not deflated, as zip does when deflate cannot help.
    for i, size in enumerate((30, 22, 14, 8, 4, 2)):
        layer.file(f"share/models/model-{i}.bin", incompressible(rng, size * MIB + 4_096 * i), stored=True)
    # Overrides of earlier layers.
    for i in range(URLLIB3_OVERRIDES):
        layer.file(f"python/urllib3/_patched_{i:02d}.py", text_blob(rng, pool, 2_000 + 700 * i))
    layer.file("lib/libz.so.1.2.13", elf_binary(rng, 125_000, shared=True), 0o755)
    # ~2,560 medium data files: text, compressible binary, and incompressible (images).
    count = 2_600 - len(layer.entries) - 1
    sizes = _sizes(rng, count, 48 * MIB, sigma=1.2)
    for i, size in enumerate(sizes):
        group = f"share/data/g{i % 40:02d}"
        r = rng.random()
        if r < 0.6:
            layer.file(f"{group}/item-{i:04d}.json", text_blob(rng, pool, size))
        elif r < 0.85:
            layer.file(f"{group}/item-{i:04d}.idx", binary_blob(rng, size))
        else:
            layer.file(f"{group}/item-{i:04d}.png", incompressible(rng, size), stored=True)
    _fill_to(layer, 203 * MIB, "share/data/catalog.bin", rng)
    return layer


BUILDERS = {
    "telemetry": layer_telemetry,
    "profiler": layer_profiler,
    "pydeps": layer_pydeps,
    "runtime": layer_runtime,
}


# --------------------------------------------------------------------------- zip writing


def write_zip(layer: Layer, path: Path) -> None:
    """Write `layer` as a zip the way Info-ZIP would for a Unix tree: Unix modes in the
    high 16 bits of external_attr, directory entries, symlinks as S_IFLNK entries whose
    data is the target. Fixed timestamps; no extra fields; deterministic order."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=DEFLATE_LEVEL) as zf:
        for entry in layer.with_directories():
            name = entry.path + ("/" if entry.kind == "dir" else "")
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # Unix: unzip honours the mode bits
            if entry.kind == "dir":
                info.external_attr = ((stat.S_IFDIR | entry.mode) << 16) | 0x10
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, b"")
            elif entry.kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, entry.data)
            else:
                info.external_attr = (stat.S_IFREG | entry.mode) << 16
                info.compress_type = zipfile.ZIP_STORED if entry.stored else zipfile.ZIP_DEFLATED
                zf.writestr(info, entry.data)


@dataclass(frozen=True)
class LayerZip:
    name: str
    path: Path
    sha256: str
    size: int
    unzipped_size: int
    files: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def workload_dir(work: Path = DEFAULT_WORK) -> Path:
    return work / f"workload-v{GENERATOR_VERSION}"


def _load(out: Path) -> list[LayerZip] | None:
    meta = out / "workload.json"
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("generator_version") != GENERATOR_VERSION:
        return None
    layers = []
    for item in doc["layers"]:
        path = out / item["file"]
        if not path.is_file() or path.stat().st_size != item["size"]:
            return None
        layers.append(LayerZip(item["name"], path, item["sha256"], item["size"], item["unzipped_size"],
                               item["files"]))
    return layers


def generate(out: Path, *, log=print) -> list[LayerZip]:
    """Build all four zips into `out` (atomically: a temp dir renamed at the end)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        layers = []
        for index, name in enumerate(LAYER_NAMES, 1):
            layer = BUILDERS[name]()
            path = temp / f"{index}-{name}.zip"
            write_zip(layer, path)
            size = path.stat().st_size
            log(f"  layer {index} {name}: {layer.files} files, {layer.unzipped_size / MIB:.0f} MiB unzipped, "
                f"{size / MIB:.1f} MiB zipped")
            layers.append({"name": name, "file": path.name, "sha256": _sha256(path), "size": size,
                           "unzipped_size": layer.unzipped_size, "files": layer.files})
        (temp / "workload.json").write_text(json.dumps(
            {"generator_version": GENERATOR_VERSION, "python": sys.version.split()[0], "layers": layers},
            indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    loaded = _load(out)
    assert loaded is not None
    return loaded


def ensure(work: Path = DEFAULT_WORK, *, force: bool = False, log=print) -> list[LayerZip]:
    """The cached workload, generated first if missing, stale or `force`d."""
    out = workload_dir(work)
    if not force:
        cached = _load(out)
        if cached is not None:
            return cached
    log(f"generating the workload (generator v{GENERATOR_VERSION}) into {out} ...")
    return generate(out, log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache folder (default benchmarks/work)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the cached zips are current")
    parser.add_argument("--check", action="store_true",
                        help="generate a second copy in a temp dir and check it is byte-identical to the cache")
    args = parser.parse_args(argv)
    layers = ensure(args.work, force=args.force)
    for lz in layers:
        print(f"{lz.path}  {lz.sha256}  {lz.size} bytes, {lz.files} files, {lz.unzipped_size} bytes unzipped")
    total_files = sum(lz.files for lz in layers)
    total = sum(lz.unzipped_size for lz in layers)
    print(f"total: {total_files} files, {total / 1e6:.0f} MB ({total / MIB:.0f} MiB) unzipped, "
          f"{sum(lz.size for lz in layers) / 1e6:.0f} MB zipped")
    if args.check:
        with tempfile.TemporaryDirectory() as temp:
            again = generate(Path(temp) / "again", log=lambda *_: None)
            same = [a.sha256 == b.sha256 for a, b in zip(layers, again)]
            print("byte-identical:", "yes" if all(same) else f"NO {same}")
            return 0 if all(same) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
