"""Assertions shared by the error, fault and hostile-layer tests.

Every failed fetch must: exit with the documented code, say so in exactly one line on
stderr (no traceback), name the layer, leave nothing half-made behind (no build
directory, no partial or unverified blob, no temp file in the cache), and never print
the presigned URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line extpack printed on stderr; fails if there is more, or a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("extpack: error: "), line
    return line


def assert_fails(
    result: subprocess.CompletedProcess[str], code: int, *, names: str | None = None
) -> str:
    """Exit ``code``, one clean error line that (when given) names the layer; returns it."""
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}\n--- stdout ---\n{result.stdout}\n"
        f"--- stderr ---\n{result.stderr}"
    )
    line = error_line(result)
    if names is not None:
        assert names in line, f"the error does not name {names!r}: {line}"
    assert result.stdout == "", f"a failed fetch printed results: {result.stdout!r}"
    return line


def cache_blobs(cache: Path) -> list[str]:
    blobs = cache / "blobs" / "sha256"
    return sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else []


def cache_temps(cache: Path) -> list[str]:
    tmp = cache / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def build_dirs(project: Path) -> list[str]:
    """Leftover `.STAGE.build-*` / `.STAGE.old-*` directories beside the stage."""
    return sorted(
        p.name for p in project.iterdir() if ".build-" in p.name or ".old-" in p.name
    )


def assert_clean_after_failure(project: Path, cache: Path, *, blobs_allowed: set[str] = frozenset()) -> None:
    """No build dir beside the stage, no temp download, no blob but the verified ones."""
    assert build_dirs(project) == []
    assert cache_temps(cache) == []
    assert set(cache_blobs(cache)) <= set(blobs_allowed), cache_blobs(cache)


def assert_no_leak(fake_lambda, *texts: str) -> None:
    for text in texts:
        assert fake_lambda.find_leaks(text) == [], f"presigned URL leaked: {text!r}"


def make_good_stage(layer_zips: Path, where: Path) -> Path:
    """Stage a known-good local layer in ``where`` (no AWS involved): the previous stage
    and lock that a later failing fetch must leave byte-identical.  Made once per
    session and copied into each test by copy_good_stage."""
    from conftest import _extpack_command

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EXTPACK_"))}
    env["EXTPACK_CACHE_DIR"] = str(where / "unused-cache")
    subprocess.run(_extpack_command() + ["fetch", str(layer_zips / "demo-extension.zip")],
                   cwd=where, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    assert (where / ".extpack" / "opt" / "extensions" / "demo-extension").is_file()
    assert (where / "extpack.lock").is_file()
    return where


def copy_good_stage(template: Path, project: Path) -> dict:
    """Copy a stage + lock made by make_good_stage into ``project`` (modes and symlinks
    kept); returns the snapshot a failed fetch must leave unchanged."""
    shutil.copytree(template / ".extpack", project / ".extpack", symlinks=True)
    shutil.copy2(template / "extpack.lock", project / "extpack.lock")
    snapshot = tree_snapshot(project)
    assert snapshot == tree_snapshot(template)
    return snapshot


def zip_bytes(build: Callable[[make_layers.ZipBuilder], make_layers.ZipBuilder]) -> bytes:
    return build(make_layers.ZipBuilder()).getvalue()


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, proc=None) -> object:
    """Poll ``predicate`` until truthy; fail after ``timeout`` s (or if ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"extpack exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)  # a polling interval, not a timing assumption


def stop_with(proc: subprocess.Popen, signum: int, *, within: float) -> tuple[int, str, str, float]:
    """Send ``signum`` and wait at most ``within`` s for the exit; returns (code, out, err, secs)."""
    start = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"extpack did not exit within {within}s of {signal.Signals(signum).name}:\n{err}"
        ) from None
    return proc.returncode, out, err, time.monotonic() - start


def popen_extpack(args: list[str | os.PathLike[str]], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    from conftest import _extpack_command

    return subprocess.Popen(
        _extpack_command() + [os.fspath(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )


def _default_signals() -> None:
    # A shell's background job (CI scripts, `cmd &`) starts with SIGINT ignored, and Python
    # then keeps it ignored: the interrupt tests need extpack to see SIGINT as a user's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session", name="good_template")
def good_template_fixture(tmp_path_factory, layer_zips) -> Path:
    return make_good_stage(layer_zips, tmp_path_factory.mktemp("good-stage"))
