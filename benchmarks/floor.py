"""What the work itself costs on this machine: the floor under any fetch of the workload.

    python benchmarks/floor.py

Measures, single-threaded and in-process, the unavoidable pieces of staging the workload
(inflate every entry, hash what is written, write the files to tmpfs, hash the zips) and
the fixed costs of a Python CLI here (interpreter start, importing botocore and making a
Lambda client as extpack does, the same through boto3 as the peers do, importing requests).  run.py puts these numbers in RESULTS.md so a
measured time can be read against what the machine can do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_workload

_LOCAL = struct.Struct("<4s5H3L2H")


def _entries(paths: list[Path]) -> list[tuple[int, bytes]]:
    """(compress_type, raw compressed bytes) of every file entry of every zip."""
    out = []
    for path in paths:
        blob = path.read_bytes()
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                fields = _LOCAL.unpack_from(blob, info.header_offset)
                start = info.header_offset + _LOCAL.size + fields[9] + fields[10]
                out.append((info.compress_type, blob[start:start + info.compress_size]))
    return out


def _best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _inflaters():
    yield "zlib (stdlib)", zlib
    try:
        from zlib_ng import zlib_ng

        yield "zlib-ng", zlib_ng
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        yield "ISA-L", isal_zlib
    except ImportError:
        pass


def _subprocess_time(argv: list[str], env: dict[str, str] | None = None, repeat: int = 5) -> float:
    def once() -> None:
        subprocess.run(argv, check=True, capture_output=True, env=env)

    once()
    return _best_of(once, repeat)


def measure(workload=None, scratch_root: Path | None = None) -> list[tuple[str, float, str]]:
    """[(what, seconds, detail)], best of 3 (5 for process starts)."""
    workload = workload or make_workload.ensure()
    entries = _entries([w.path for w in workload])
    zipped = sum(w.size for w in workload)
    rows: list[tuple[str, float, str]] = []
    plain: list[bytes] = []
    for name, module in _inflaters():
        def inflate(module=module) -> None:
            plain.clear()
            for kind, raw in entries:
                plain.append(module.decompressobj(-15).decompress(raw) if kind == zipfile.ZIP_DEFLATED else raw)

        seconds = _best_of(inflate)
        rows.append((f"inflate every entry, {name}", seconds,
                     f"{sum(len(p) for p in plain) / seconds / 1e6:.0f} MB/s of output"))
    unzipped = sum(len(p) for p in plain)
    rows.append(("sha256 of everything written", _best_of(lambda: [hashlib.sha256(p).digest() for p in plain]),
                 f"{unzipped / 1e6:.0f} MB"))
    rows.append(("crc32 of everything written (stdlib zlib)", _best_of(lambda: [zlib.crc32(p) for p in plain]), ""))
    blobs = [w.path.read_bytes() for w in workload]
    rows.append(("sha256 of the four zips", _best_of(lambda: [hashlib.sha256(b).digest() for b in blobs]),
                 f"{zipped / 1e6:.0f} MB"))
    scratch = Path(tempfile.mkdtemp(prefix="extpack-floor-", dir=scratch_root))
    try:
        def write_all() -> None:
            target = scratch / "t"
            if target.exists():
                shutil.rmtree(target)
            target.mkdir()
            for i, data in enumerate(plain):
                fd = os.open(target / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.close(fd)

        rows.append((f"write the {len(plain):,} files (flat, one dir)", _best_of(write_all),
                     f"to {scratch_root or tempfile.gettempdir()}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    plain.clear()
    py = sys.executable
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}
    start = _subprocess_time([py, "-c", "pass"])
    rows.append(("`python -c pass` (interpreter + site)", start, py))
    rows.append(("`python -I -S -c pass` (bare interpreter)", _subprocess_time([py, "-I", "-S", "-c", "pass"]), ""))
    botocore_client = _subprocess_time(
        [py, "-c", "import botocore.session as s; s.Session().create_client('lambda', region_name='us-east-1')"], env)
    rows.append(("import botocore + make a Lambda client", botocore_client - start,
                 "over `python -c pass` (what extpack does)"))
    boto = _subprocess_time([py, "-c", "import boto3; boto3.client('lambda', region_name='us-east-1')"], env)
    rows.append(("import boto3 + make a Lambda client", boto - start, "over `python -c pass` (what the peers do)"))
    rows.append(("import requests", _subprocess_time([py, "-c", "import requests"]) - start, "over `python -c pass`"))
    return rows


def main() -> int:
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    for what, seconds, detail in measure(scratch_root=shm):
        print(f"{seconds * 1000:8.1f} ms  {what}  {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
