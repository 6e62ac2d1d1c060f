"""One fetch at a time per stage (issue 13, class 8), through the real CLI.

The first fetch is held mid-download: the loopback Lambda server keeps the body of its
download (the "hold" fault) and the process is stopped (SIGSTOP) once the server has seen the
request, so it holds the stage's lock however slow the machine; both are released when the
test has seen what it waits for: no timing assumption. The second fetch must wait, say so once,
and then run on what the first one wrote; or give up after EXTPACK_FETCH_WAIT with exit 2.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import assert_fails, cache_blobs, wait_for

WAITING = "waiting for another extpack fetch"


def _start(args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, Path]:
    """A fetch whose stderr goes to a file the test can read while it runs."""
    err = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "extpack", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    return proc, log


def _held_fetch(fake_lambda, layer, *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`fetch layer` held mid-download, so it holds the stage's lock: the server sends the
    headers and keeps the body until `_resume`; the process is stopped too (SIGSTOP), so it
    cannot time out or retry meanwhile however slow the machine is."""
    hold = fake_lambda.inject("hold", layer=layer.arn)
    proc, _ = _start(["fetch", layer.arn], cwd=cwd, env=env, log=log)
    wait_for(lambda: any(r.layer == layer.arn for r in fake_lambda.download_calls), timeout=60,
             what="the first fetch's download", proc=proc)
    os.kill(proc.pid, signal.SIGSTOP)
    proc.hold = hold  # type: ignore[attr-defined]
    return proc


def _resume(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGCONT)
    proc.hold.release()  # type: ignore[attr-defined]


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


@pytest.fixture
def demo(fake_lambda):
    return fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))


def test_a_second_fetch_on_the_stage_waits_then_reads_what_the_first_wrote(
        fake_lambda, run_extpack, tmp_path, aws_env, demo):
    first = _held_fetch(fake_lambda, demo, cwd=tmp_path, env=aws_env, log=tmp_path / "first.err")
    try:
        # --frozen needs the lock the first fetch has not written yet: run now, it would fail.
        second, second_log = _start(["fetch", "--frozen", demo.arn], cwd=tmp_path, env=aws_env,
                                    log=tmp_path / "second.err")
        wait_for(lambda: WAITING in second_log.read_text(), timeout=60, what="the second fetch to wait",
                 proc=second)
        assert second.poll() is None
    finally:
        _resume(first)

    assert _finish(first)[0] == 0, (tmp_path / "first.err").read_text()
    code, out = _finish(second)
    err = second_log.read_text()
    assert code == 0, err
    assert err.count(WAITING) == 1 and ".extpack" in err, err
    assert "demo" in out
    # One download: the second found the first's stage and lock and had nothing to do.
    assert len([r for r in fake_lambda.download_calls if r.layer == demo.arn]) == 1
    run_extpack("verify", check=True)  # stage and lock agree
    assert not list(tmp_path.glob("*.flock"))  # the lock file goes when the run ends


def test_a_waiting_fetch_gives_up_after_the_timeout(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    other = fake_lambda.add_layer("other", make_layers.build("python-deps.zip"))
    first = _held_fetch(fake_lambda, demo, cwd=tmp_path, env=aws_env, log=tmp_path / "first.err")
    try:
        impatient = run_extpack("fetch", other.arn, env={**aws_env, "EXTPACK_FETCH_WAIT": "0.2"})
        at_once = run_extpack("fetch", other.arn, env={**aws_env, "EXTPACK_FETCH_WAIT": "0"})
    finally:
        _resume(first)

    assert impatient.returncode == 2, impatient.stderr
    waiting, error = impatient.stderr.splitlines()
    assert waiting.startswith(WAITING) and "EXTPACK_FETCH_WAIT" in waiting
    assert error.startswith("extpack: error: another extpack fetch") and ".extpack" in error, error
    assert "EXTPACK_FETCH_WAIT" in error
    line = assert_fails(at_once, 2)  # no wait, so no waiting line: just the error
    assert "after 0s" in line
    assert _finish(first)[0] == 0, (tmp_path / "first.err").read_text()
    # The stage and lock are the first fetch's, whole; the others downloaded nothing.
    run_extpack("verify", check=True)
    assert not any(r.layer == other.arn for r in fake_lambda.download_calls)
    assert demo.arn in (tmp_path / "extpack.lock").read_text()


def test_fetches_of_different_stages_do_not_wait_for_each_other(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    first = _held_fetch(fake_lambda, demo, cwd=tmp_path, env=aws_env, log=tmp_path / "first.err")
    try:
        other = run_extpack("fetch", demo.arn, "--stage-dir", "elsewhere", "--lock", "elsewhere.lock",
                            env={**aws_env, "EXTPACK_FETCH_WAIT": "0"})
    finally:
        _resume(first)

    assert other.returncode == 0, other.stderr
    assert WAITING not in other.stderr
    assert _finish(first)[0] == 0


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_bad_wait_value_is_a_usage_error(run_extpack, layer_zips, aws_env, value):
    line = assert_fails(run_extpack("fetch", layer_zips / "demo-extension.zip",
                                    env={**aws_env, "EXTPACK_FETCH_WAIT": value}), 2)
    assert "EXTPACK_FETCH_WAIT" in line


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(run_extpack, tmp_path, layer_zips):
    target = tmp_path / "elsewhere" / "created-through-the-link"
    target.parent.mkdir()
    (tmp_path / "..extpack.flock").symlink_to(target)

    line = assert_fails(run_extpack("fetch", layer_zips / "demo-extension.zip"), 2)

    assert "symlink" in line and "..extpack.flock" in line
    assert not os.path.lexists(target)
    assert not (tmp_path / ".extpack").exists()


def test_two_fetches_sharing_a_cache_both_succeed_with_one_good_copy(fake_lambda, run_extpack, tmp_path, aws_env):
    big = fake_lambda.add_layer("big", make_layers.big_zip(4 * 1024 * 1024, files=8))
    # Both downloads stall, fail and are retried at about the same time, so both commit
    # the same blob and tree into the cache close together.
    fake_lambda.inject("stall", layer=big.arn, times=2, stall_seconds=0.5)
    env = {**aws_env, "EXTPACK_RETRY_BACKOFF": "0.01"}
    runs = [_start(["fetch", big.arn, "--stage-dir", name, "--lock", f"{name}.lock"], cwd=tmp_path, env=env,
                   log=tmp_path / f"{name}.err") for name in ("one", "two")]

    for proc, log in runs:
        assert _finish(proc)[0] == 0, log.read_text()

    assert tree_snapshot(tmp_path / "one" / "opt") == tree_snapshot(tmp_path / "two" / "opt")
    assert cache_blobs(tmp_path / "cache") == [big.sha256_hex]
    assert [p.name for p in (tmp_path / "cache" / "trees" / "v1").iterdir()] == [big.sha256_hex]
    for name in ("one", "two"):
        run_extpack("verify", "--stage-dir", name, "--lock", f"{name}.lock", check=True)
