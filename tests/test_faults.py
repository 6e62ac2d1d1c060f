"""Download faults (exit 4) and interruptions, through the real CLI and the fake Lambda's
fault injection.

A transient fault is retried and the fetch succeeds; a persistent one fails with one
line that names the layer.  Either way the cache holds only verified blobs (no partial
blob, no temp file), no build directory is left beside the stage, the previous stage
and lock are byte-identical, and the presigned URL appears nowhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import subprocess
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import (
    assert_clean_after_failure,
    assert_fails,
    assert_no_leak,
    build_dirs,
    cache_blobs,
    cache_temps,
    copy_good_stage,
    good_template_fixture,  # noqa: F401 - registers the good_template fixture
    popen_extpack,
    stop_with,
    wait_for,
)

# Retry backoff short enough for tests; the retry *count* is extpack's business.
FAST = {"EXTPACK_RETRY_BACKOFF": "0.01"}
# Faults a retry can cure.  "stall" needs a read timeout; see _env().
TRANSIENT = ["drop-mid-body", "500", "503", "truncate", "truncate-silent", "corrupt", "html", "stall"]


def _env(aws_env, fault: str | None = None, *, timeout: str = "1") -> dict[str, str]:
    env = {**aws_env, **FAST}
    if fault == "stall":
        env["EXTPACK_HTTP_TIMEOUT"] = timeout
    return env


@pytest.fixture
def demo(fake_lambda):
    return fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))


@pytest.fixture
def project(tmp_path, good_template) -> tuple[Path, dict]:
    """A project dir holding a previous good stage and lock, and their snapshot."""
    path = tmp_path / "proj"
    path.mkdir()
    return path, copy_good_stage(good_template, path)


def _location(fake_lambda, arn: str) -> str:
    """A presigned URL for ``arn``, obtained as a user would (to test URL sources)."""
    import boto3

    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=fake_lambda.endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client.get_layer_version_by_arn(Arn=arn)["Content"]["Location"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- retried faults


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_download_fault_is_retried_and_succeeds(fake_lambda, run_extpack, tmp_path, aws_env, demo, fault):
    fake_lambda.inject(fault, layer=demo.arn, times=1, stall_seconds=30 if fault == "stall" else None)

    result = run_extpack("fetch", demo.arn, env=_env(aws_env, fault), check=True)

    downloads = fake_lambda.download_calls
    assert [d.fault for d in downloads] == [fault, None]
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()
    assert cache_blobs(tmp_path / "cache") == [demo.sha256_hex]
    assert hashlib.sha256((tmp_path / "cache/blobs/sha256" / demo.sha256_hex).read_bytes()).hexdigest() \
        == demo.sha256_hex
    assert cache_temps(tmp_path / "cache") == [] and build_dirs(tmp_path) == []
    assert_no_leak(fake_lambda, result.stdout, result.stderr, (tmp_path / "extpack.lock").read_text(),
                   (tmp_path / ".extpack/manifest.json").read_text())


# --------------------------------------------------------------------------- persistent faults

PERSISTENT = {
    "drop-mid-body": "dropped",
    "500": "HTTP 500",
    "503": "HTTP 503",
    "truncate": ("truncated", "dropped"),  # a short body with a Content-Length: the client sees a cut
    "truncate-silent": "truncated",
    "corrupt": "checksum",
    "html": "text/html",
    "stall": "timed out",
}


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
@pytest.mark.parametrize("fault", sorted(PERSISTENT))
def test_persistent_download_fault_fails_cleanly(fake_lambda, run_extpack, tmp_path, aws_env, demo, project, fault):
    proj, before = project
    fake_lambda.inject(fault, layer=demo.arn, times=50, stall_seconds=30 if fault == "stall" else None)

    result = run_extpack("fetch", demo.arn, cwd=proj, env=_env(aws_env, fault, timeout="0.3"))

    line = assert_fails(result, 4, names=demo.arn)
    expected = PERSISTENT[fault]
    assert any(word in line for word in ((expected,) if isinstance(expected, str) else expected)), line
    assert len(fake_lambda.download_calls) > 1  # it was retried before giving up
    assert tree_snapshot(proj) == before
    assert_clean_after_failure(proj, tmp_path / "cache")
    assert_no_leak(fake_lambda, result.stdout, result.stderr)


def test_download_failure_leaks_no_url_even_verbose(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    fake_lambda.inject("drop-mid-body", layer=demo.arn, times=50)

    result = run_extpack("--verbose", "fetch", demo.arn, env=_env(aws_env))

    assert result.returncode == 4
    assert_no_leak(fake_lambda, result.stdout, result.stderr)
    assert_clean_after_failure(tmp_path, tmp_path / "cache")


# --------------------------------------------------------------------------- expired URL


def test_expired_url_once_is_resolved_again_and_succeeds(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    fake_lambda.inject("403-expired", layer=demo.arn, times=1)

    run_extpack("fetch", demo.arn, env=_env(aws_env), check=True)

    assert len(fake_lambda.calls("GetLayerVersionByArn")) == 2
    issued = fake_lambda.issued_urls
    assert len(issued) == 2 and issued[0] != issued[1]
    assert [d.status for d in fake_lambda.download_calls] == [403, 206]  # the zip as one byte range
    assert cache_blobs(tmp_path / "cache") == [demo.sha256_hex]


def test_url_still_expired_after_resolving_again_fails(fake_lambda, run_extpack, tmp_path, aws_env, demo, project):
    proj, before = project
    fake_lambda.inject("403-expired", layer=demo.arn, times=50)

    result = run_extpack("fetch", demo.arn, cwd=proj, env=_env(aws_env))

    line = assert_fails(result, 4, names=demo.arn)
    assert "expired" in line
    assert len(fake_lambda.calls("GetLayerVersionByArn")) == 2  # one fresh URL, not a loop
    assert tree_snapshot(proj) == before
    assert_clean_after_failure(proj, tmp_path / "cache")
    assert_no_leak(fake_lambda, result.stdout, result.stderr)


# --------------------------------------------------------------------------- what the API says is wrong


def _wrong_sha() -> str:
    return base64.b64encode(hashlib.sha256(b"not the layer").digest()).decode()


@pytest.mark.parametrize(
    ("advertised", "says"),
    [({"code_sha256": "wrong"}, "checksum"), ({"code_size": +100}, "truncated"), ({"code_size": -100}, "bytes")],
    ids=["checksum", "size-too-big", "size-too-small"],
)
def test_bytes_that_do_not_match_the_api_are_refused(fake_lambda, run_extpack, tmp_path, aws_env, project,
                                                      advertised, says):
    proj, before = project
    data = make_layers.build("demo-extension.zip")
    kwargs = {"code_sha256": _wrong_sha()} if "code_sha256" in advertised \
        else {"code_size": len(data) + advertised["code_size"]}
    layer = fake_lambda.add_layer("liar", data, **kwargs)

    result = run_extpack("fetch", layer.arn, cwd=proj, env=_env(aws_env))

    line = assert_fails(result, 4, names=layer.arn)
    assert says in line
    assert tree_snapshot(proj) == before
    assert_clean_after_failure(proj, tmp_path / "cache")
    assert_no_leak(fake_lambda, result.stdout, result.stderr)


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_oversize_download_is_refused_and_never_cached(fake_lambda, run_extpack, tmp_path, aws_env, demo, project):
    proj, before = project
    fake_lambda.inject("oversize", layer=demo.arn, times=50)

    result = run_extpack("fetch", demo.arn, cwd=proj, env=_env(aws_env))

    line = assert_fails(result, 4, names=demo.arn)
    assert str(demo.size) in line  # the most it accepts: CodeSize
    assert tree_snapshot(proj) == before
    assert_clean_after_failure(proj, tmp_path / "cache")


# --------------------------------------------------------------------------- URL sources (nothing to check against)


def _url_secrets(url: str) -> list[str]:
    """The query's credentials; the path of a URL source is shown (redacted of its query)."""
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(url).query)
    return [query["X-Amz-Signature"][0], query["X-Amz-Security-Token"][0]]


@pytest.mark.parametrize("fault", ["html", "truncate-silent"])
def test_url_source_error_page_or_cut_download_is_never_cached(fake_lambda, run_extpack, tmp_path, aws_env, demo,
                                                               fault):
    # No CodeSize or CodeSha256 for a plain URL: only the zip itself can tell an error
    # page or a silently cut download from the real thing.  It must not become a blob.
    url = _location(fake_lambda, demo.arn)
    fake_lambda.inject(fault, layer=demo.arn, times=50)

    result = run_extpack("fetch", url, env=_env(aws_env))

    line = assert_fails(result, 4)
    assert cache_blobs(tmp_path / "cache") == []
    assert_clean_after_failure(tmp_path, tmp_path / "cache")
    for secret in _url_secrets(url):
        assert secret not in result.stdout + result.stderr
    assert "zip" in line


def test_url_source_oversize_is_refused_against_the_layer_limit(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    url = _location(fake_lambda, demo.arn)
    fake_lambda.inject("oversize", layer=demo.arn, times=50)

    result = run_extpack("fetch", url, "--max-layer-size", "1MB", env=_env(aws_env))

    assert_fails(result, 4)
    assert_clean_after_failure(tmp_path, tmp_path / "cache")
    assert len(fake_lambda.download_calls) == 1  # refused from Content-Length, not retried


def test_url_source_connection_refused(run_extpack, tmp_path, aws_env):
    secret = "5ec2e7feedfacecafe"
    url = f"http://127.0.0.1:{_closed_port()}/layer.zip"

    result = run_extpack("fetch", f"{url}?X-Amz-Signature={secret}", env=_env(aws_env))

    line = assert_fails(result, 4, names=url)
    assert "refused" in line
    assert secret not in result.stdout + result.stderr
    assert_clean_after_failure(tmp_path, tmp_path / "cache")


# --------------------------------------------------------------------------- interruption

SIGNALS = [signal.SIGTERM, signal.SIGINT]


def _assert_interrupted(code: int, err: str, signum: int) -> None:
    # Exit like a shell reports a signal (128 + n), or die of it; never 0, never "internal error".
    assert code in (128 + signum, -signum), f"exit {code}: {err}"
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_interrupt_mid_download_keeps_stage_lock_and_cache(fake_lambda, tmp_path, aws_env, project, signum):
    proj, before = project
    cache = tmp_path / "cache"
    cached = fake_lambda.add_layer("cached", make_layers.build("python-deps.zip"))
    big = fake_lambda.add_layer("big", make_layers.big_zip(8 * 1024 * 1024))
    # A verified blob already in the cache must survive the interrupt untouched.
    warm = popen_extpack(["fetch", cached.arn, "--stage-dir", "warm", "--lock", "warm.lock"], cwd=tmp_path,
                         env=aws_env)
    assert warm.wait(timeout=60) == 0
    cache_before = tree_snapshot(cache / "blobs")
    fake_lambda.inject("stall", layer=big.arn, times=1)  # headers, then silence until the server stops

    proc = popen_extpack(["fetch", cached.arn, big.arn], cwd=proj, env=aws_env)
    wait_for(lambda: fake_lambda.calls("Download") and any(
        r.layer == big.arn for r in fake_lambda.download_calls) and cache_temps(cache),
        timeout=30, what="the download to start", proc=proc)
    code, out, err, _ = stop_with(proc, signum, within=5)

    _assert_interrupted(code, err, signum)
    assert out == ""
    assert tree_snapshot(proj) == before
    assert tree_snapshot(cache / "blobs") == cache_before
    assert cache_temps(cache) == [] and build_dirs(proj) == []
    assert_no_leak(fake_lambda, out, err)


MANY_FILES = 20000


def _many_files_zip(count: int) -> bytes:
    # Incompressible contents, so the zip is large enough (> 4 MiB) for extpack to unpack
    # it on several threads: the interrupt must stop those too.
    import random

    rng = random.Random(8)
    builder = make_layers.ZipBuilder().dir("many")
    for i in range(count):
        builder.file(f"many/f{i:05d}.bin", rng.randbytes(256), stored=True)
    return builder.getvalue()


@pytest.fixture(scope="module")
def many_files_zip(tmp_path_factory) -> Path:
    # Enough entries that unpacking takes a good while (seconds) after the first file lands.
    path = tmp_path_factory.mktemp("many") / "many.zip"
    path.write_bytes(_many_files_zip(MANY_FILES))
    return path


def _layer_dirs(*roots: Path) -> list[Path]:
    """The `many` folder being unpacked below `roots`: a local zip unpacks in the build
    directory (layers/N/, then opt/), a layer from an ARN into a temporary tree in the cache."""
    found = []
    for root in roots:
        found += [*root.glob("*.build-*/layers/*/many"), *root.glob("*.build-*/opt/many"),
                  *root.glob("tmp/tree-*/opt/many")]
    return found


def _hold_mid_unpack(proc: subprocess.Popen, *roots: Path) -> None:
    """Freeze extpack (SIGSTOP) at a known point: its layer's directories exist, not all of its
    files do. Directories are made before any file is written, and writing the 20,000 files
    takes far longer than the few milliseconds between seeing the folder and the SIGSTOP, so
    the process is caught mid-unpack on every run; the count below proves it did."""
    folder = wait_for(lambda: _layer_dirs(*roots), timeout=30, what="the unpack to start", proc=proc)[0]
    proc.send_signal(signal.SIGSTOP)
    try:
        written = sum(1 for _ in folder.iterdir())
    except FileNotFoundError:
        written = None
    assert written is not None and written < MANY_FILES, f"not caught mid-unpack: {written} files in {folder}"


def _interrupt_held(proc: subprocess.Popen, signum: int, *, within: float) -> tuple[int, str, str]:
    """Deliver `signum` to a process frozen by _hold_mid_unpack: it is pending when the
    process resumes, so it lands before the unpack can finish."""
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"extpack did not exit within {within}s of {signal.Signals(signum).name}:\n{err}")
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_interrupt_mid_unpack_keeps_stage_and_lock(tmp_path, aws_env, project, many_files_zip, signum):
    proj, before = project

    proc = popen_extpack(["fetch", many_files_zip], cwd=proj, env=aws_env)
    _hold_mid_unpack(proc, proj)
    code, _, err = _interrupt_held(proc, signum, within=10)

    _assert_interrupted(code, err, signum)
    assert tree_snapshot(proj) == before
    assert build_dirs(proj) == []


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_interrupt_mid_unpack_of_a_layer_arn_leaves_no_tree(fake_lambda, tmp_path, aws_env, project, many_files_zip,
                                                            signum):
    proj, before = project
    cache = tmp_path / "cache"
    layer = fake_lambda.add_layer("many", many_files_zip.read_bytes())

    proc = popen_extpack(["fetch", layer.arn], cwd=proj, env=aws_env)
    _hold_mid_unpack(proc, cache)
    code, _, err = _interrupt_held(proc, signum, within=10)

    _assert_interrupted(code, err, signum)
    assert tree_snapshot(proj) == before
    assert build_dirs(proj) == [] and cache_temps(cache) == []
    assert not (cache / "trees" / "v1" / layer.sha256_hex).exists()
    # The next fetch unpacks it again and succeeds.
    follow = popen_extpack(["fetch", layer.arn, "--json"], cwd=proj, env=aws_env)
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert json.loads(out)["layers"][0]["files"] == MANY_FILES
    assert (cache / "trees" / "v1" / layer.sha256_hex).is_dir()


def test_sigkill_mid_unpack_still_leaves_stage_and_lock(tmp_path, aws_env, project, many_files_zip):
    # SIGKILL cannot be cleaned up after (the build directory stays, for `cache prune`-like
    # housekeeping), but the stage and the lock are only ever swapped in whole.
    proj, before = project

    proc = popen_extpack(["fetch", many_files_zip], cwd=proj, env=aws_env)
    _hold_mid_unpack(proc, proj)
    code, _, _, _ = stop_with(proc, signal.SIGKILL, within=10)

    assert code == -signal.SIGKILL
    # The empty lock file of the killed run (stagelock) may stay too; the kernel dropped the lock.
    after = {k: v for k, v in tree_snapshot(proj).items()
             if ".build-" not in k.split("/")[0] and k != "..extpack.flock"}
    assert after == before
    # The next fetch is not confused by the leftovers and succeeds.
    follow = popen_extpack(["fetch", many_files_zip, "--json"], cwd=proj, env=aws_env)
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert json.loads(out)["layers"][0]["files"] == MANY_FILES
