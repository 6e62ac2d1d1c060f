"""extpack's benchmark suite: one command, every case, extpack against the ways people do it.

    python benchmarks/run.py [--runs N] [--quick] [--output FILE] [--tools LIST] [--cases LIST] [--link s3]

Generates the workload (benchmarks/make_workload.py, cached in benchmarks/work/), starts
the loopback Lambda API (tests/lambda_server.py) with the four layers, installs the peers
into their own venvs on first use (benchmarks/work/venv-*), then times every case for
every tool, interleaved (run k runs each tool once, in an order rotated by k), and writes
benchmarks/RESULTS.md.  With --link, the cold cases also run over a model of S3 and the
Lambda API as a CI runner sees them (benchmarks/link.py), against the link's floor.
See benchmarks/README.md for what each case means.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
PEERS = HERE / "peers"
sys.path.insert(0, str(HERE))

import floor
import link as link_model
import make_workload


def _load_lambda_server():
    """tests/lambda_server.py, imported by path (tests/ is not a package we install)."""
    spec = importlib.util.spec_from_file_location("extpack_bench_lambda_server", REPO / "tests" / "lambda_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


lambda_server = _load_lambda_server()

REGION = "us-east-1"
BIN = Path(sys.executable).parent  # the interpreter's own bin dir: no pyenv shim in the timings
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
TARGETS = {
    "cold4": 0.8,
    "cold1": 0.25,
    "noop": 0.15,
    "warm": 0.4,
    "help": 0.15,
    "render": 0.15,
    "rss_mb": 150.0,
    "vs_boto3": 3.0,
    "vs_aws": 6.0,
}


class BenchLambda(lambda_server.FakeLambda):
    """FakeLambda with the server's own per-request hashing taken out of the timings, and
    an optional link model (benchmarks/link.py) that every answer goes through.

    The test server computes the ETag (md5 of the whole blob) on every download and the
    advertised CodeSha256 on every API call; for a 130 MB blob that is ~0.3 s of server
    CPU per request that no real S3 or Lambda spends.  Here both are computed once.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._etags: dict[int, str] = {}
        self.link: link_model.Link | None = None  # set while the link-model cases run
        self.last_byte_at = 0.0  # time.time() when the last download answer was sent whole

    def add_layer(self, name, zip_bytes_or_path, *args, **kwargs):
        lv = super().add_layer(name, zip_bytes_or_path, *args, **kwargs)
        if lv.advertised_sha256 is None:
            lv.advertised_sha256 = base64.b64encode(hashlib.sha256(lv.data).digest()).decode("ascii")
        self._etags[id(lv.data)] = super()._etag_of(lv.data)
        return lv

    def _etag_of(self, data):  # an instance method here; the base's is static
        return self._etags.get(id(data)) or super()._etag_of(data)

    def _send(self, h, response, fault):
        link = self.link
        if link is None or fault is not None:
            return super()._send(h, response, fault)
        download = h.path.startswith(lambda_server.BLOB_PREFIX)
        time.sleep(link.model.first_byte if download else link.model.api_latency)
        try:
            h.send_response(response.status)
            for name, value in response.headers:
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(response.body)))
            h.end_headers()
            if h.command != "HEAD":
                link.send_body(h, memoryview(response.body))
                if download:
                    self.last_byte_at = max(self.last_byte_at, time.time())
        except (ConnectionError, TimeoutError):  # a client that hung up (or was killed)
            h.close_connection = True


# --------------------------------------------------------------------------- running


@dataclass
class Sample:
    seconds: float
    rss_kb: int
    rc: int
    requests: int = 0
    stderr_tail: str = ""
    # Over the link model: (start-up until the first API request, from it until the link
    # delivered the last byte, after that until the command exited), in seconds.
    phases: tuple[float, float, float] | None = None


GNU_TIME = Path("/usr/bin/time")


def run_timed(argv: list[str], env: dict[str, str], log: Path, server: BenchLambda | None = None, *,
              rss: bool = False, phases: BenchLambda | None = None) -> Sample:
    """Run `argv` as a user would, timing it with perf_counter around spawn-to-exit.

    With `rss`, the command runs under `/usr/bin/time -f %M` (Debian's `time`), which
    reports the peak RSS of the command and of every process it waited for.  (The rusage
    of a child spawned straight from this harness is useless for that: a vfork()ed child
    inherits the harness's own high-water mark, and the harness holds the served zips.)
    GNU time adds about a millisecond of fork/exec to the wall time.
    """
    if server is not None:
        server.clear_requests()
    if phases is not None:
        phases.clear_requests()
        phases.last_byte_at = 0.0
    rss_file = log.with_suffix(".rss")
    if rss:
        argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *argv]
    with open(log, "wb") as out:
        spawned = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, _usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        exited = spawned + seconds
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = ""
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else f"exit {proc.returncode}"
    rss_kb = 0
    if rss:
        try:
            rss_kb = int(rss_file.read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            rss_kb = 0
    requests = len(server.requests) if server is not None else 0
    split = None
    if phases is not None and phases.requests and phases.last_byte_at:
        first = min(r.time for r in phases.requests)
        split = (first - spawned, phases.last_byte_at - first, exited - phases.last_byte_at)
    return Sample(seconds, rss_kb, proc.returncode, requests, tail, split)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "EXTPACK_", "PYTHON")) and k not in ("BOTO_CONFIG", "VIRTUAL_ENV")}
    path = [str(BIN), "/usr/local/bin", "/usr/bin", "/bin"]
    env["PATH"] = os.pathsep.join(path)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    key: str
    label: str
    available: bool = True
    reason: str = ""
    python: Path | None = None
    notes: list[str] = field(default_factory=list)


def _venv(name: str, requirement: str, probe: str, log) -> tuple[Path | None, str]:
    """benchmarks/work/<name>, created with this interpreter and `pip install requirement`
    on first use. Returns (python, "") or (None, reason)."""
    venv = WORK / name
    python = venv / "bin" / "python"
    ok_marker = venv / ".installed"
    if ok_marker.exists() and python.exists():
        return python, ""
    log(f"installing {requirement} into {venv} (first run only) ...")
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
                       check=True, capture_output=True, text=True, timeout=900)
        subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        lines = (exc.stderr or exc.stdout or "").strip().splitlines()
        return None, f"`pip install {requirement}` failed: {lines[-1] if lines else exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`pip install {requirement}` failed: {exc}"
    ok_marker.write_text(requirement + "\n")
    return python, ""


def ensure_gnu_time(log) -> None:
    """Peak RSS is read with Debian's `time` (/usr/bin/time); install it if it is missing."""
    if GNU_TIME.exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing Debian's `time` package for peak-RSS measurement ...")
        subprocess.run(["apt-get", "install", "-y", "-q", "time"], check=False, capture_output=True, timeout=600)
    if not GNU_TIME.exists():
        log("warning: /usr/bin/time is missing (apt-get install time): peak RSS will not be measured")


def setup_tools(wanted: set[str], log) -> list[Tool]:
    tools = [Tool("extpack", "extpack")]
    if "aws" in wanted:
        tool = Tool("aws", "aws CLI + curl + unzip")
        missing = [t for t in ("curl", "unzip") if shutil.which(t) is None]
        python, reason = _venv("venv-awscli", "awscli", "import awscli", log) if not missing else (None, "")
        if missing:
            tool.available, tool.reason = False, f"not available: {', '.join(missing)} not installed"
        elif python is None:
            tool.available, tool.reason = False, f"not available: {reason}"
        tool.python = python
        tools.append(tool)
    if "boto3" in wanted:
        tools.append(Tool("boto3", "boto3 + requests + zipfile"))
    if "sam" in wanted:
        tool = Tool("sam", "SAM CLI LayerDownloader")
        python, reason = _venv("venv-sam", "aws-sam-cli", "import samcli.local.layers.layer_downloader", log)
        if python is None:
            tool.available, tool.reason = False, f"not available: {reason}"
        tool.python = python
        tool.notes.append("SAM keeps one folder per layer; the overlay into one /opt (the `cp -rf` its "
                          "generated Dockerfile runs) is included in the time")
        tools.append(tool)
    return tools


def extpack_argv() -> list[str]:
    exe = BIN / "extpack"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("extpack")
    return [found] if found and "shims" not in found else [sys.executable, "-m", "extpack"]


class Bench:
    def __init__(self, args, server: BenchLambda, arns: list[str], tools: list[Tool], root: Path, log) -> None:
        self.args = args
        self.server = server
        self.arns = arns
        self.tools = tools
        self.root = root
        self.log = log
        self.link = link_model.Link(link_model.MODELS[args.link]) if getattr(args, "link", None) else None
        aws_config = root / "aws-config"
        aws_config.mkdir(parents=True, exist_ok=True)
        (aws_config / "config").touch()
        (aws_config / "credentials").touch()
        self.base_env = clean_env({
            "AWS_ACCESS_KEY_ID": "benchmark",
            "AWS_SECRET_ACCESS_KEY": "benchmark",
            "AWS_ENDPOINT_URL_LAMBDA": server.endpoint,
            "AWS_CONFIG_FILE": str(aws_config / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_config / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            "NO_COLOR": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        self.extpack = extpack_argv()
        # This checkout's extpack, whatever the interpreter has installed.
        self.extpack_env = {**self.base_env, "PYTHONPATH": str(REPO)}

    # -- command lines --------------------------------------------------------------------

    def fetch_argv(self, tool: Tool, arns: list[str], work: Path, *, cache: Path | None = None,
                   lock: Path | None = None) -> tuple[list[str], dict[str, str], Path]:
        """The command line of one tool fetching `arns` into `work/stage`; returns
        (argv, env, stage)."""
        env = dict(self.extpack_env if tool.key == "extpack" else self.base_env)
        stage = work / "stage"
        if tool.key == "extpack":
            env["EXTPACK_CACHE_DIR"] = str(cache or work / "cache")
            argv = [*self.extpack, "fetch", *arns, "--stage-dir", str(stage),
                    "--lock", str(lock or work / "extpack.lock")]
        elif tool.key == "aws":
            env["PATH"] = f"{tool.python.parent}{os.pathsep}{env['PATH']}"
            argv = ["sh", str(PEERS / "aws_cli_curl_unzip.sh"), str(stage), str(work / "tmp"), *arns]
        elif tool.key == "boto3":
            argv = [sys.executable, str(PEERS / "boto3_requests_zipfile.py"), str(stage), *arns]
        elif tool.key == "sam":
            argv = [str(tool.python), str(PEERS / "sam_layer_downloader.py"), str(cache or work / "layer-cache"),
                    str(stage), *arns]
        else:
            raise ValueError(tool.key)
        return argv, env, stage

    def fresh(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def run(self, argv, env, log_name: str, *, watch: bool = False, rss: bool = False,
            phases: bool = False) -> Sample:
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        return run_timed(argv, env, logs / log_name, self.server if watch else None,
                         rss=rss and GNU_TIME.exists(), phases=self.server if phases else None)


# --------------------------------------------------------------------------- correctness


def snapshot(root: Path) -> dict[str, tuple]:
    """path -> ("file", mode, sha256) | ("symlink", target) | ("dir", mode), never following links."""
    out: dict[str, tuple] = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                rel = os.path.relpath(entry.path, root)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = ("symlink", os.readlink(entry.path))
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = ("dir", stat.S_IMODE(st.st_mode))
                    stack.append(Path(entry.path))
                else:
                    digest = hashlib.sha256()
                    with open(entry.path, "rb") as handle:
                        while chunk := handle.read(1 << 20):
                            digest.update(chunk)
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), digest.hexdigest())
    return out


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _examples(paths: list[str], n: int = 2) -> str:
    paths = sorted(paths)
    shown = ", ".join(f"`{p}`" for p in paths[:n])
    return shown + (f" +{len(paths) - n} more" if len(paths) > n else "")


def compare(reference: dict[str, tuple], got: dict[str, tuple], overridden: set[str]) -> list[str]:
    """What is wrong with `got` (a peer's /opt) compared with extpack's `reference`."""
    problems: list[str] = []
    missing = [p for p in reference if p not in got]
    extra = [p for p in got if p not in reference]
    link_to_file, other_type, lost_x, gained_x, other_mode, content, dir_mode, wrong_target = ([] for _ in range(8))
    for path, ref in reference.items():
        have = got.get(path)
        if have is None:
            continue
        if have[0] != ref[0]:
            (link_to_file if ref[0] == "symlink" and have[0] == "file" else other_type).append(path)
            continue
        if ref[0] == "symlink":
            if have[1] != ref[1]:
                wrong_target.append(path)
        elif ref[0] == "dir":
            if have[1] != ref[1]:
                dir_mode.append(path)
        else:
            if have[2] != ref[2]:
                content.append(path)
            ref_x, have_x = ref[1] & 0o111, have[1] & 0o111
            if ref_x and not have_x:
                lost_x.append(path)
            elif have_x and not ref_x:
                gained_x.append(path)
            elif have[1] != ref[1]:
                other_mode.append(path)
    if missing:
        problems.append(f"{_n(len(missing), 'path')} missing ({_examples(missing)})")
    if extra:
        problems.append(f"{_n(len(extra), 'unexpected path')} ({_examples(extra)})")
    if link_to_file:
        problems.append(f"{_n(len(link_to_file), 'symlink')} became regular files ({_examples(link_to_file)})")
    if other_type:
        problems.append(f"{_n(len(other_type), 'path')} of the wrong type ({_examples(other_type)})")
    if wrong_target:
        problems.append(f"{_n(len(wrong_target), 'symlink')} pointing elsewhere ({_examples(wrong_target)})")
    if lost_x:
        problems.append(f"{_n(len(lost_x), 'executable')} lost the exec bits ({_examples(lost_x)})")
    if gained_x:
        sample = got[min(gained_x)][1]
        problems.append(f"{_n(len(gained_x), 'non-executable file')} made executable (mode {sample:04o}: "
                        f"{_examples(gained_x)})")
    if other_mode:
        sample = got[min(other_mode)][1]
        problems.append(f"{_n(len(other_mode), 'file')} with another mode (e.g. {sample:04o}: {_examples(other_mode)})")
    if dir_mode:
        sample = got[min(dir_mode)][1]
        problems.append(f"{_n(len(dir_mode), 'directory', 'directories')} with mode {sample:04o}")
    bad_overrides = [p for p in content if p in overridden]
    other_content = [p for p in content if p not in overridden]
    if bad_overrides:
        problems.append(f"{_n(len(bad_overrides), 'override')} not applied in order ({_examples(bad_overrides)})")
    if other_content:
        problems.append(f"{_n(len(other_content), 'file')} with other content ({_examples(other_content)})")
    return problems


def verdict(problems: list[str]) -> str:
    return "✓" if not problems else "✗ " + "; ".join(problems)


# --------------------------------------------------------------------------- results


@dataclass
class CaseResult:
    key: str
    title: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    correctness: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    remarks: list[str] = field(default_factory=list)
    other_cpu: float = 0.0  # fraction of the machine used by other processes during the case
    link_floor: float | None = None  # the link model's floor for this case's zips (link cases only)

    def times(self, tool: str) -> list[float]:
        return [s.seconds for s in self.samples.get(tool, []) if s.rc == 0]

    def median(self, tool: str) -> float | None:
        t = self.times(tool)
        return statistics.median(t) if t else None

    def failures(self, tool: str) -> list[Sample]:
        return [s for s in self.samples.get(tool, []) if s.rc != 0]


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_range(values: list[float]) -> str:
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    if hi < 1:
        return f"{lo * 1000:.0f}–{hi * 1000:.0f} ms"
    return f"{lo:.2f}–{hi:.2f} s"


def fmt_ratio(ratio: float) -> str:
    """peer median / extpack median, worded from extpack's side."""
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"**{1 / ratio:.1f}× slower**"


def fmt_mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


# --------------------------------------------------------------------------- the cases


CASES = {
    "cold4": "All four layers, cold cache",
    "cold1": "One 6 MB extension, cold cache",
    "noop": "No-op re-run: unchanged lock, stage already right",
    "warm": "New stage dir from a warm cache",
    "help": "`extpack --help`",
    "render": "`extpack render`",
    "link4": "Link model: all four layers, cold cache",
    "link1": "Link model: one 6 MB extension, cold cache",
}
QUICK_CASES = ("cold4", "noop", "help")
LINK_CASES = ("link4", "link1")  # cold4 and cold1 again, every answer through the link model (--link)
COLD_CASES = {"cold4": "cold4", "cold1": "cold1", "link4": "cold4", "link1": "cold1"}  # case -> its reference


def rotate(tools: list[Tool], k: int) -> list[Tool]:
    k %= len(tools)
    return tools[k:] + tools[:k]


def run_cases(bench: Bench, cases: list[str], runs: int, refs: dict[str, dict], overridden: set[str]
              ) -> list[CaseResult]:
    log = bench.log
    tools = [t for t in bench.tools if t.available]
    peers = [t for t in tools if t.key != "extpack"]
    results: list[CaseResult] = []

    def timed_rounds(result: CaseResult, participants: list[Tool], one_run, after_run=None) -> None:
        for k in range(runs):
            for tool in rotate(participants, k):
                sample = one_run(tool, k)
                result.samples.setdefault(tool.key, []).append(sample)
                if sample.rc != 0:
                    log(f"    {tool.key} run {k + 1} FAILED: {sample.stderr_tail}")
                if after_run:
                    after_run(tool, k, sample)
            line = "  ".join(f"{t.key}={fmt_s(result.samples[t.key][-1].seconds)}" for t in participants)
            log(f"  run {k + 1}/{runs}: {line}")

    for case in cases:
        result = CaseResult(case, CASES[case])
        log(f"case {case}: {CASES[case]}")
        watch = CpuWatch()

        bench.server.link = bench.link if case in LINK_CASES else None
        if case in COLD_CASES:
            arns = bench.arns if COLD_CASES[case] == "cold4" else bench.arns[:1]
            reference = refs[COLD_CASES[case]]
            # An untimed validation run of each peer: checks its stage, and warms it up.
            for tool in peers:
                work = bench.fresh(case, tool.key, "validate")
                argv, env, stage = bench.fetch_argv(tool, arns, work)
                sample = bench.run(argv, env, f"{case}-{tool.key}-validate.log")
                if sample.rc != 0:
                    result.correctness[tool.key] = f"✗ failed: {sample.stderr_tail}"
                else:
                    result.correctness[tool.key] = verdict(compare(reference, snapshot(stage / "opt"), overridden))
                shutil.rmtree(work)

            def one_cold(tool: Tool, k: int, arns=arns, case=case) -> Sample:
                work = bench.fresh(case, tool.key, f"run-{k}")
                argv, env, _ = bench.fetch_argv(tool, arns, work)
                sample = bench.run(argv, env, f"{case}-{tool.key}-{k}.log", rss=COLD_CASES[case] == "cold4",
                                   phases=case in LINK_CASES)
                shutil.rmtree(work)
                return sample

            if case in LINK_CASES:
                zip_bytes = sum(bench.server.get_layer(arn).size for arn in arns)
                model = bench.link.model
                result.link_floor = model.floor(zip_bytes)
                result.remarks.append(
                    f"Every answer went through the link model `{model.name}`: {model.describe()}. Link floor = "
                    f"{zip_bytes / 1e6:.1f} MB / {model.total / 1e6:.0f} MB/s + {model.api_latency * 1000:.0f} ms "
                    f"(one API call) + {model.first_byte * 1000:.0f} ms (first byte) = "
                    f"**{fmt_s(result.link_floor)}**.")
                log(f"  link floor for {zip_bytes / 1e6:.1f} MB: {fmt_s(result.link_floor)}")
            timed_rounds(result, tools, one_cold)
            result.correctness["extpack"] = "reference"

        elif case == "noop":
            prepared = {}
            for tool in tools:
                work = bench.fresh(case, tool.key)
                argv, env, stage = bench.fetch_argv(tool, bench.arns, work)
                sample = bench.run(argv, env, f"{case}-{tool.key}-prepare.log")
                if sample.rc != 0:
                    raise SystemExit(f"preparing the no-op case for {tool.key} failed: {sample.stderr_tail}")
                prepared[tool.key] = (argv, env, stage)

            def one_noop(tool: Tool, k: int, prepared=prepared, case=case) -> Sample:
                argv, env, _ = prepared[tool.key]
                return bench.run(argv, env, f"{case}-{tool.key}-{k}.log", watch=True)

            timed_rounds(result, tools, one_noop)
            for tool in tools:
                reqs = [s.requests for s in result.samples[tool.key]]
                if tool.key == "extpack":
                    result.correctness[tool.key] = ("reference; no network ✓" if not any(reqs) else
                                                    f"✗ used the network: {max(reqs)} requests")
                    continue
                stage = prepared[tool.key][2]
                result.correctness[tool.key] = verdict(compare(refs["cold4"], snapshot(stage / "opt"), overridden))
                result.notes[tool.key] = f"{statistics.median(reqs):.0f} requests per run" + (
                    "; no cache: fetches everything again" if tool.key in ("aws", "boto3") else
                    "; layer cache hit, overlay copied again")
            result.remarks.append("The FakeLambda request log is cleared before every run and read after it: "
                                  "extpack's no-op must make no request at all.")

        elif case == "warm":
            seeds = {}
            for tool in tools:
                seed = bench.fresh(case, tool.key, "seed")
                argv, env, _ = bench.fetch_argv(tool, bench.arns, seed)
                sample = bench.run(argv, env, f"{case}-{tool.key}-seed.log")
                if sample.rc != 0:
                    raise SystemExit(f"seeding the warm-cache case for {tool.key} failed: {sample.stderr_tail}")
                seeds[tool.key] = seed
            last_stage: dict[str, Path] = {}

            def one_warm(tool: Tool, k: int, seeds=seeds, case=case, last_stage=last_stage) -> Sample:
                seed = seeds[tool.key]
                work = bench.fresh(case, tool.key, f"run-{k}")
                argv, env, stage = bench.fetch_argv(tool, bench.arns, work, cache=seed / (
                    "cache" if tool.key == "extpack" else "layer-cache"), lock=seed / "extpack.lock")
                sample = bench.run(argv, env, f"{case}-{tool.key}-{k}.log", watch=True)
                if k == runs - 1:
                    last_stage[tool.key] = stage
                else:
                    shutil.rmtree(work)
                return sample

            timed_rounds(result, tools, one_warm)
            for tool in tools:
                reqs = [s.requests for s in result.samples[tool.key]]
                if tool.key == "extpack":
                    result.correctness[tool.key] = "reference"
                    result.notes[tool.key] = f"{statistics.median(reqs):.0f} requests per run (lock present)"
                    continue
                result.correctness[tool.key] = verdict(
                    compare(refs["cold4"], snapshot(last_stage[tool.key] / "opt"), overridden))
                result.notes[tool.key] = f"{statistics.median(reqs):.0f} requests per run" + (
                    "; no cache: fetches everything again" if tool.key in ("aws", "boto3") else "")

        elif case in ("help", "render"):
            extpack_tool = tools[0]
            if case == "help":
                argv = [*bench.extpack, "--help"]
                env = dict(bench.extpack_env)
            else:
                work = bench.root / "noop" / "extpack"
                if not (work / "stage" / "manifest.json").exists():
                    work = bench.fresh("render", "extpack")
                    argv, env, _ = bench.fetch_argv(extpack_tool, bench.arns, work)
                    bench.run(argv, env, "render-prepare.log")
                # The Dockerfile (and any entry script) goes beside the stage: the default
                # build context is the output's folder, and the stage must be inside it.
                argv = [*bench.extpack, "render", "--stage-dir", str(work / "stage"), "--lock",
                        str(work / "extpack.lock"), "--output", str(work / "Dockerfile")]
                env = dict(bench.extpack_env)
            bench.run(argv, env, f"{case}-warmup.log")  # untimed: page cache and .pyc warm

            def one_cli(tool: Tool, k: int, argv=argv, env=env, case=case) -> Sample:
                return bench.run(argv, env, f"{case}-{tool.key}-{k}.log")

            timed_rounds(result, [extpack_tool], one_cli)
            result.correctness["extpack"] = "—"
            result.remarks.append("No peer has an equivalent command.")
        bench.server.link = None
        other, wall = watch.other_seconds()
        result.other_cpu = other / max(wall * (os.cpu_count() or 1), 1e-9)
        if result.other_cpu > 0.1:
            log(f"  warning: other processes used {100 * result.other_cpu:.0f}% of the machine during this case")
        results.append(result)
    return results


# --------------------------------------------------------------------------- report


def _cmd_out(argv: list[str], env=None) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _pkg_version(name: str, python: Path | None = None) -> str:
    if python is None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    return _cmd_out([str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"])


class CpuWatch:
    """How much CPU *other* processes used while the suite ran: the machine's busy time
    (user + nice + system in /proc/stat) minus what this process and its children used.
    Kernel work not charged to any process (some softirq time) lands in "other" too."""

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start_busy = self._busy()
        self.start_own = self._own()
        self.start_wall = time.time()

    @staticmethod
    def _busy() -> float:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            return float(sum(int(x) for x in fields[:3]))
        except (OSError, ValueError, IndexError):
            return 0.0

    @staticmethod
    def _own() -> float:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def other_seconds(self) -> tuple[float, float]:
        """(CPU seconds used by others, wall seconds) since construction."""
        busy = (self._busy() - self.start_busy) / self.ticks
        own = self._own() - self.start_own
        return max(0.0, busy - own), time.time() - self.start_wall


def idle_check(seconds: float = 2.0) -> float:
    """The fraction of all cores busy over a short sample, before the suite starts."""
    watch = CpuWatch()
    time.sleep(seconds)
    busy = (CpuWatch._busy() - watch.start_busy) / watch.ticks
    return busy / (seconds * (os.cpu_count() or 1))


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": mem, "kernel": platform.release(),
            "os": _os_name(), "stage_fs": _fs_type(SHM)}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _fs_type(path: Path) -> str:
    best, fs = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fs = parts[1], parts[2]
    except OSError:
        pass
    return f"{path} ({fs})"


def versions(tools: list[Tool], extpack: list[str]) -> dict[str, str]:
    by_key = {t.key: t for t in tools}
    out = {
        "python": sys.version.split()[0] + f" ({sys.executable})",
        "extpack": _cmd_out([*extpack, "--version"], env={**os.environ, "PYTHONPATH": str(REPO)}) + _git_describe(),
        "boto3": _pkg_version("boto3"),
        "botocore": _pkg_version("botocore"),
        "requests": _pkg_version("requests"),
    }
    aws = by_key.get("aws")
    if aws is not None:
        out["awscli"] = (_cmd_out([str(aws.python.parent / "aws"), "--version"]) if aws.available
                         else aws.reason)
    sam = by_key.get("sam")
    if sam is not None:
        out["aws-sam-cli"] = (f"{_pkg_version('aws-sam-cli', sam.python)} (boto3 "
                              f"{_pkg_version('boto3', sam.python)})" if sam.available else sam.reason)
    out["unzip"] = _cmd_out(["unzip", "-v"])
    out["curl"] = _cmd_out(["curl", "--version"])
    return out


def _git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "extpack"], check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return f" (commit {head}{', extpack/ modified' if dirty else ''})" if head else ""


def targets_table(results: dict[str, CaseResult]) -> list[str]:
    rows = []

    def row(case: str, target: str, measured: str, met: bool | None) -> None:
        mark = "—" if met is None else ("met" if met else "**not met**")
        rows.append(f"| {case} | {target} | {measured} | {mark} |")

    def time_row(key: str, label: str) -> None:
        r = results.get(key)
        if r is None:
            return
        m = r.median("extpack")
        row(label, f"≤ {fmt_s(TARGETS[key])}", fmt_s(m), None if m is None else m <= TARGETS[key])

    if "cold4" in results:
        r = results["cold4"]
        time_row("cold4", "all four, cold cache")
        m = r.median("extpack")
        for peer, key, label in (("boto3", "vs_boto3", "boto3 + requests + zipfile"),
                                 ("aws", "vs_aws", "aws CLI + curl + unzip")):
            pm = r.median(peer)
            if m and pm:
                ratio = pm / m
                row("all four, cold cache", f"≥ {TARGETS[key]:.0f}× faster than {label}", f"{ratio:.1f}×",
                    ratio >= TARGETS[key])
            else:
                row("all four, cold cache", f"≥ {TARGETS[key]:.0f}× faster than {label}", "peer not measured",
                    None)
        rss = [s.rss_kb for s in r.samples.get("extpack", []) if s.rc == 0 and s.rss_kb]
        if rss:
            peak = max(rss)
            row("peak memory, all four cold", f"≤ {TARGETS['rss_mb']:.0f} MB RSS",
                f"{fmt_mb(statistics.median(rss))} median, {fmt_mb(peak)} max",
                peak / 1024 <= TARGETS["rss_mb"])
        else:
            row("peak memory, all four cold", f"≤ {TARGETS['rss_mb']:.0f} MB RSS",
                "not measured (needs /usr/bin/time)", None)
    time_row("cold1", "one 6 MB extension, cold")
    if "noop" in results:
        r = results["noop"]
        m = r.median("extpack")
        reqs = max((s.requests for s in r.samples.get("extpack", [])), default=0)
        row("no-op re-run", f"≤ {fmt_s(TARGETS['noop'])}, no network", f"{fmt_s(m)}, {reqs} requests",
            None if m is None else (m <= TARGETS["noop"] and reqs == 0))
    time_row("warm", "new stage dir, warm cache")
    time_row("help", "`extpack --help`")
    time_row("render", "`extpack render`")
    return ["| case | target | measured (extpack median) | |", "|---|---|---|---|", *rows]


def case_table(result: CaseResult, tools: list[Tool]) -> list[str]:
    base = result.median("extpack")
    show_rss = COLD_CASES.get(result.key) == "cold4"
    head = "| tool | median | min–max | runs | extpack is | " + ("peak RSS | " if show_rss else "") + \
        "correct? | notes |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for tool in tools:
        samples = result.samples.get(tool.key)
        if not tool.available:
            if result.key in ("help", "render") and tool.key != "extpack":
                continue
            lines.append(f"| {tool.label} | — | — | 0 | — | " + ("— | " if show_rss else "") + f"— | {tool.reason} |")
            continue
        if samples is None:
            continue
        times = result.times(tool.key)
        med = result.median(tool.key)
        ratio = "—" if tool.key == "extpack" or not (med and base) else fmt_ratio(med / base)
        rss = ""
        if show_rss:
            kbs = [s.rss_kb for s in samples if s.rc == 0 and s.rss_kb]
            rss = (f"{fmt_mb(statistics.median(kbs))} | " if kbs else "— | ")
        notes = [result.notes.get(tool.key, "")] + tool.notes * (result.key != "help")
        failures = result.failures(tool.key)
        if failures:
            notes.append(f"{len(failures)} run(s) failed: {failures[0].stderr_tail}")
        lines.append(f"| {tool.label} | {fmt_s(med)} | {fmt_range(times)} | {len(times)} | {ratio} | {rss}"
                     f"{result.correctness.get(tool.key, '—')} | {'; '.join(n for n in notes if n)} |")
    if result.link_floor is not None:
        at = f"extpack at {base / result.link_floor:.2f}× the floor" if base else ""
        lines.append(f"| link floor | {fmt_s(result.link_floor)} | — | — | — | " + ("— | " if show_rss else "") +
                     f"— | zip bytes at the link's total rate + one API call + first byte; {at} |")
        lines += phases_table(result, tools)
    return lines


def phases_table(result: CaseResult, tools: list[Tool]) -> list[str]:
    """Where each tool's time over the link goes, from the server's side: medians."""
    rows = []
    for tool in tools:
        split = [s.phases for s in result.samples.get(tool.key, []) if s.rc == 0 and s.phases]
        if split:
            medians = [statistics.median(part[i] for part in split) for i in range(3)]
            rows.append(f"| {tool.label} | " + " | ".join(fmt_s(m) for m in medians) + " |")
    if not rows:
        return []
    return ["", "Where the time goes (medians, from the server's clock): start-up, until the first Lambda API "
            "request arrived; over the link, from then until the last byte of the last zip was sent (at best the "
            "link floor); after the last byte, until the command exited.",
            "", "| tool | start-up | over the link | after the last byte |", "|---|---|---|---|", *rows]


def link_targets_table(results: dict[str, CaseResult]) -> list[str]:
    """Issue 15's targets for the link-model cases."""
    rows = ["| case | target | measured (extpack median) | |", "|---|---|---|---|"]

    def row(case: str, target: str, measured: str, met: bool) -> None:
        rows.append(f"| {case} | {target} | {measured} | {'met' if met else '**not met**'} |")

    four, one = results.get("link4"), results.get("link1")
    if four is not None and four.median("extpack"):
        m = four.median("extpack")
        for peer, times, label in (("aws", 5.0, "aws CLI + curl + unzip"), ("boto3", 4.0, "boto3 + requests + zipfile")):
            pm = four.median(peer)
            if pm:
                row("link model, all four cold", f"≥ {times:.0f}× faster than {label}", f"{pm / m:.1f}×",
                    pm / m >= times)
        bound = 1.3 * (four.link_floor + 0.35)
        row("link model, all four cold", f"≤ 1.3 × (link floor + 0.35 s) = {fmt_s(bound)}", fmt_s(m), m <= bound)
        rss = [s.rss_kb for s in four.samples.get("extpack", []) if s.rc == 0 and s.rss_kb]
        if rss:
            row("link model, all four cold", f"≤ {TARGETS['rss_mb']:.0f} MB peak RSS", f"{fmt_mb(max(rss))} max",
                max(rss) / 1024 <= TARGETS["rss_mb"])
    if one is not None and one.median("extpack"):
        m = one.median("extpack")
        bound = 1.3 * one.link_floor + 0.35
        row("link model, one 6 MB extension cold", f"≤ 1.3 × link floor + 0.35 s = {fmt_s(bound)}", fmt_s(m),
            m <= bound)
    return rows if len(rows) > 2 else []


def floor_section(rows: list[tuple[str, float, str]], cores: int) -> list[str]:
    lines = ["## What the work costs on this machine", "",
             ("Measured by `benchmarks/floor.py` in one thread (best of 3): the pieces any tool that stages this "
             "workload with checksums has to pay, to read the times above against."), "",
             "| piece | time | |", "|---|---|---|"]
    lines += [f"| {what} | {fmt_s(seconds)} | {detail} |" for what, seconds, detail in rows]
    by_name = {what: seconds for what, seconds, _ in rows}
    inflate = min(sec for what, sec, _ in rows if what.startswith("inflate"))
    work = inflate + sum(sec for what, sec, _ in rows if what.startswith(("sha256", "write")))
    start = by_name.get("`python -c pass` (interpreter + site)", 0.0)
    boto = by_name.get("import botocore + make a Lambda client", 0.0)
    requests_import = by_name.get("import requests", 0.0)
    lines += ["", (f"Fastest inflate + sha256 of the output + writing the files + sha256 of the zips = "
              f"**{fmt_s(work)} of CPU**, so at best {fmt_s(work / cores)} on {cores} cores with perfect "
              f"parallelism, plus {fmt_s(start)} to start Python and {fmt_s(boto)} for botocore before the first "
              "API call. Receiving the zips over loopback, the server's "
              "side of it, and per-file metadata (modes, times, directories) come on top."), "",
              (f"Any cold fetch through botocore and requests first pays **{fmt_s(start + boto + requests_import)}**"
               f" of start-up alone ({fmt_s(start)} Python + {fmt_s(boto)} botocore and a client + "
               f"{fmt_s(requests_import)} requests), before its first byte of work: the floor under the "
               "one-extension case."), ""]
    return lines


def write_report(path: Path, results: list[CaseResult], tools: list[Tool], bench: Bench, runs: int,
                 workload: list, started: float, quick: bool, floor_rows=None, busy_before: float = 0.0,
                 watch: CpuWatch | None = None) -> None:
    machine = machine_info()
    other, wall = watch.other_seconds() if watch else (0.0, 0.0)
    cores = os.cpu_count() or 1
    busy = busy_before > 0.2 or (wall > 0 and other / (wall * cores) > 0.1)
    vers = versions(tools, bench.extpack)
    by_key = {r.key: r for r in results}
    total_files = sum(w.files for w in workload)
    total_unzipped = sum(w.unzipped_size for w in workload)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# extpack benchmark results",
        "",
        (f"Generated by `python benchmarks/run.py{' --quick' if quick else ''}"
        f"{f' --runs {runs}' if runs != 5 and not quick else ''}"
        f"{f' --link {bench.args.link}' if getattr(bench.args, 'link', None) else ''}` on {now}, "
        f"in {time.time() - started:.0f} s. {runs} timed run(s) per tool and case, interleaved; "
        "medians with min–max. \"extpack is N× faster\" is the peer's median over extpack's. "
        "See [README.md](README.md) for what each case does and how to read this."),
        "",
        "## Targets (issue 7)",
        "",
        *targets_table(by_key),
        "",
        *(["## Targets over the link model (issue 15)", "", *link_targets_table(by_key), ""]
          if link_targets_table(by_key) else []),
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; memory {machine['memory']}",
        f"- kernel {machine['kernel']}; {machine['os']}",
        (f"- stage dirs, caches and peer temp files on {machine['stage_fs']}; the layer zips are served from "
        "memory by the loopback FakeLambda (127.0.0.1) running in the harness process"),
        (f"- other processes: {100 * busy_before:.0f}% of the CPU busy in a 2 s sample before the run; "
         f"{other:.0f} CPU-s used by processes other than the suite during its {wall:.0f} s "
         f"({100 * other / max(wall * cores, 1e-9):.0f}% of the machine)"
         + (" — **the machine was busy with other work: compare with care**" if busy else "")),
        ("- the page cache is not dropped between runs (not portable, and everything is on tmpfs anyway): "
        "every run after the first finds the tools' own files warm"),
        "",
        "## Versions",
        "",
        *[f"- {k}: {v}" for k, v in vers.items()],
        "",
        "## Workload",
        "",
        (f"Four layers from `benchmarks/make_workload.py` (generator v{make_workload.GENERATOR_VERSION}), "
        f"applied in order: {total_files:,} files, {total_unzipped / 1e6:.0f} MB "
        f"({total_unzipped / 2**20:.0f} MiB) unzipped, {sum(w.size for w in workload) / 1e6:.0f} MB zipped."),
        "",
        "| # | layer | zip | unzipped | files | sha256 |",
        "|---|---|---|---|---|---|",
        *[f"| {i} | {w.name} | {w.size / 1e6:.1f} MB | {w.unzipped_size / 1e6:.1f} MB | {w.files:,} | "
          f"`{w.sha256[:12]}` |" for i, w in enumerate(workload, 1)],
        "",
    ]
    for result in results:
        lines += [f"## {result.title}", "", *case_table(result, tools), ""]
        if result.other_cpu > 0.1:
            lines += [(f"**Other processes used {100 * result.other_cpu:.0f}% of the machine during this case: "
                      "its times are skewed.**"), ""]
        for remark in result.remarks:
            lines += [remark, ""]
    if floor_rows:
        lines += floor_section(floor_rows, os.cpu_count() or 1)
    unavailable = [t for t in tools if not t.available]
    if unavailable:
        lines += ["## Peers not measured", "", *[f"- {t.label}: {t.reason}" for t in unavailable], ""]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run extpack's benchmark suite and write RESULTS.md.")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per tool and case (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run, cases cold4/noop/help; writes benchmarks/work/RESULTS-quick.md")
    parser.add_argument("--output", type=Path, help="where to write the report (default benchmarks/RESULTS.md)")
    parser.add_argument("--tools", default="aws,boto3,sam", help="peers to compare with (default aws,boto3,sam)")
    parser.add_argument("--cases", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for the machine to be idle (<10%% CPU busy)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor measurements (benchmarks/floor.py)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir on /dev/shm (for debugging)")
    parser.add_argument("--link", choices=sorted(link_model.MODELS),
                        help="also run the cold cases through this link model (cases link4, link1; "
                             "see benchmarks/link.py)")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")
    default_cases = [c for c in (QUICK_CASES if args.quick else CASES) if c not in LINK_CASES]
    if args.link:
        default_cases += LINK_CASES
    cases = args.cases.split(",") if args.cases else default_cases
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}: choose from {', '.join(CASES)}")
    if any(c in LINK_CASES for c in cases) and not args.link:
        parser.error(f"cases {', '.join(LINK_CASES)} need --link MODEL")
    output = args.output or (WORK / "RESULTS-quick.md" if args.quick else HERE / "RESULTS.md")
    wanted = {t.strip() for t in args.tools.split(",") if t.strip()}

    deadline = time.time() + args.wait_idle
    busy_before = idle_check()
    while busy_before > 0.1 and time.time() < deadline:
        print(f"waiting for an idle machine ({100 * busy_before:.0f}% busy) ...", file=sys.stderr, flush=True)
        time.sleep(5)
        busy_before = idle_check()
    started = time.time()
    watch = CpuWatch()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    WORK.mkdir(exist_ok=True)
    if busy_before > 0.2:
        log(f"warning: {100 * busy_before:.0f}% of the CPU is busy before the suite starts: other work on this "
            "machine will skew the timings")
    ensure_gnu_time(log)
    workload = make_workload.ensure(WORK, log=log)
    tools = setup_tools(wanted, log)
    for tool in tools:
        if not tool.available:
            log(f"{tool.label}: {tool.reason}")

    root = Path(tempfile.mkdtemp(prefix="extpack-bench-", dir=SHM))
    server = BenchLambda(chunk_size=1 << 20)
    server.start()
    try:
        arns = []
        for w in workload:
            lv = server.add_layer(w.name.replace("_", "-"), w.path, region=REGION)
            assert lv.sha256_hex == w.sha256, f"{w.path} changed on disk"
            arns.append(lv.arn)
        bench = Bench(args, server, arns, tools, root, log)

        # extpack's own stages are the reference every peer is compared against.
        extpack_tool = tools[0]
        refs = {}
        overridden: set[str] = set()
        for key, layer_arns in (("cold4", arns), ("cold1", arns[:1])):
            wanted_refs = {COLD_CASES[c] for c in cases if c in COLD_CASES}
            if key not in wanted_refs and not (key == "cold4" and {"noop", "warm", "render"} & set(cases)):
                continue
            work = bench.fresh("reference", key)
            fetch_argv, env, stage = bench.fetch_argv(extpack_tool, layer_arns, work)
            sample = bench.run([*fetch_argv, "--json"], env, f"reference-{key}.log")
            if sample.rc != 0:
                log(f"extpack fetch failed: {sample.stderr_tail} (log: {root / 'logs'})")
                args.keep = True
                return 1
            refs[key] = snapshot(stage / "opt")
            if key == "cold4":
                manifest = json.loads((stage / "manifest.json").read_text())
                overridden = _overridden_paths(manifest)
                log(f"reference stage: {len(refs[key])} entries; {len(overridden)} paths overridden by a "
                    "later layer")
            shutil.rmtree(work / "cache")

        results = run_cases(bench, cases, runs, refs, overridden)
        floor_rows = None
        if not args.quick and not args.no_floor:
            log("measuring what the work costs on this machine (benchmarks/floor.py) ...")
            floor_rows = floor.measure(workload, SHM)
        write_report(output, results, tools, bench, runs, workload, started, args.quick, floor_rows,
                     busy_before, watch)
        log(f"wrote {output}")
        errors = list(server.errors)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"scratch kept in {root}", file=sys.stderr)
    if errors:
        log("FakeLambda handler errors:\n" + "\n".join(errors))
        return 1
    return 0


def _overridden_paths(manifest: dict) -> set[str]:
    """Paths a later layer overwrote, from extpack's manifest (best effort over its shape)."""
    files = manifest.get("files", {})
    items = files.items() if isinstance(files, dict) else ((f.get("path"), f) for f in files)
    out = set()
    for path, record in items:
        if isinstance(record, dict) and (record.get("overrode") or record.get("overrides")):
            out.add(str(path).removeprefix("opt/").removeprefix("/opt/"))
    return out


if __name__ == "__main__":
    sys.exit(main())
