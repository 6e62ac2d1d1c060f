"""Profile one extpack fetch of the benchmark workload against the loopback server.

    python benchmarks/profile_fetch.py [--case cold4|cold1|warm|noop] [--profiler cprofile|py-spy]

cprofile: `python -m cProfile -s cumtime -m extpack fetch ...`; it sees the main thread only,
  so time spent in download/unpack worker threads shows up as waiting (futures, joins).
py-spy: samples every thread of the real process (`py-spy record --format raw`, then a
  per-function summary); py-spy is installed into benchmarks/work/venv-tools on first use.

Writes benchmarks/work/profile-<case>-<profiler>.txt and prints its top.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_workload
import run as bench_run


def py_spy_binary(log) -> Path:
    python, reason = bench_run._venv("venv-tools", "py-spy", "import sys", log)
    if python is None:
        raise SystemExit(reason)
    return python.parent / "py-spy"


def summarise_raw(raw: Path, top: int = 40) -> str:
    """py-spy's raw (collapsed stacks) output -> self and inclusive sample counts per frame."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    thread_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        thread_counts[frames[0]] += count
        self_counts[frames[-1]] += count
        for frame in set(frames[1:]):
            incl_counts[frame] += count
    out = [f"{total} samples", "", "by thread:"]
    out += [f"  {c:6d} {100 * c / total:5.1f}%  {t}" for t, c in thread_counts.most_common()]
    out += ["", "self (where the CPU is):"]
    out += [f"  {c:6d} {100 * c / total:5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {c:6d} {100 * c / total:5.1f}%  {f}" for f, c in incl_counts.most_common(top)]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="cold4", choices=["cold4", "cold1", "warm", "noop"])
    parser.add_argument("--profiler", default="cprofile", choices=["cprofile", "py-spy"])
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    args = parser.parse_args()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workload = make_workload.ensure(bench_run.WORK, log=log)
    root = Path(tempfile.mkdtemp(prefix="extpack-profile-", dir=bench_run.SHM))
    server = bench_run.BenchLambda(chunk_size=1 << 20)
    server.start()
    try:
        arns = [server.add_layer(w.name, w.path, region=bench_run.REGION).arn for w in workload]
        if args.case == "cold1":
            arns = arns[:1]
        bench = bench_run.Bench(args, server, arns, [bench_run.Tool("extpack", "extpack")], root, log)
        tool = bench.tools[0]
        work = root / "work"
        work.mkdir()
        argv, env, _ = bench.fetch_argv(tool, arns, work)
        if args.case in ("warm", "noop"):
            bench.run(argv, env, "seed.log")
            if args.case == "warm":
                shutil.rmtree(work / "stage")
        fetch_args = argv[argv.index("fetch"):]
        out = bench_run.WORK / f"profile-{args.case}-{args.profiler}.txt"
        if args.profiler == "cprofile":
            cmd = [sys.executable, "-m", "cProfile", "-s", "cumtime", "-m", "extpack", *fetch_args]
            result = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
            out.write_text(result.stdout + result.stderr)
        else:
            raw = root / "py-spy.raw"
            cmd = [str(py_spy_binary(log)), "record", "--rate", str(args.rate), "--format", "raw", "--threads",
                   "--nonblocking", "-o", str(raw), "--", *bench.extpack, *fetch_args]
            result = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
            if result.returncode != 0 or not raw.exists():
                out.write_text(result.stdout + result.stderr)
                log(f"py-spy failed; see {out}")
                return 1
            out.write_text(summarise_raw(raw))
        log(f"wrote {out}")
        print("\n".join(out.read_text().splitlines()[:70]))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
