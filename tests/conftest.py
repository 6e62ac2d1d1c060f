"""Shared fixtures: the fake Lambda API, the fixture zips, and running the real CLI.

extpack is always driven as a subprocess (`python -m extpack` from this checkout), so the
tests exercise what a Makefile or CI job would run: argument parsing, exit codes,
stdout/stderr separation and the standard AWS environment chain. The checkout's own code
is what runs, never another install that happens to be first on PATH.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from hypothesis import settings

# CI runs the property tests on fixed examples, so a red build is always reproducible; a
# developer's run explores new ones (and replays failures from its database).
settings.register_profile("extpack-ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("extpack-dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("extpack-ci" if os.environ.get("CI") else "extpack-dev"))

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURES_DIR = REPO_ROOT / "fixtures"

# tests/ is not a package; make the helpers importable however pytest was started.
for _p in (TESTS_DIR, FIXTURES_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# The code under test is this checkout's, in this process and in every subprocess (they
# inherit PYTHONPATH): an `extpack` installed elsewhere must not stand in for it.
sys.path.insert(0, str(REPO_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def _check_extpack_is_this_checkout() -> None:
    import extpack

    where = Path(extpack.__file__).resolve().parent
    if where != REPO_ROOT / "extpack":
        raise RuntimeError(f"the tests import extpack from {where}, not from this checkout ({REPO_ROOT}): "
                           "remove the other install or run pytest from this checkout")
    probe = subprocess.run(_extpack_command() + ["--version"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, cwd="/")
    if probe.returncode != 0:
        raise RuntimeError(f"{' '.join(_extpack_command())} --version failed:\n{probe.stderr}")
    child = subprocess.run([sys.executable, "-c", "import extpack; print(extpack.__file__)"],
                           capture_output=True, text=True, cwd="/", check=True).stdout.strip()
    if Path(child).resolve().parent != where:
        raise RuntimeError(f"extpack subprocesses import {child}, not this checkout's {where}")

import make_layers  # noqa: E402
from lambda_server import FakeLambda  # noqa: E402

EXTPACK_TIMEOUT = 120

SnapshotEntry = tuple[
    str, int, str
]  # (type, permission bits, sha256 | link target | "")


# --------------------------------------------------------------------------- helpers


def tree_snapshot(path: str | os.PathLike[str]) -> dict[str, SnapshotEntry]:
    """Relative path -> (type, mode, content) for everything under ``path``.

    type is "file", "dir", "symlink" or "other"; mode is ``stat.S_IMODE`` (so setuid
    bits show); content is the sha256 of a file, the target of a symlink, "" otherwise.
    Symlinks are recorded, never followed.  A missing ``path`` gives {} so "nothing was
    created" and "unchanged" are the same comparison.
    """
    root = Path(path)
    out: dict[str, SnapshotEntry] = {}
    if not root.exists() and not root.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames) + sorted(filenames):
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", mode, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, "")
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", mode, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = ("other", mode, "")
    return dict(sorted(out.items()))


def assert_nothing_outside(
    root: str | os.PathLike[str], allowed: Iterable[str]
) -> None:
    """Fail if ``root`` holds any top-level entry other than ``allowed`` (names).  Use it
    on a test's tmp_path after a hostile layer: an escape lands next to the stage."""
    present = {p.name for p in Path(root).iterdir()}
    extra = sorted(present - set(allowed))
    assert not extra, f"unexpected entries in {root}: {extra}"


def _clean_environ() -> dict[str, str]:
    # Nothing from the developer's own AWS setup or extpack config may leak into a test.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "EXTPACK_")) and k not in ("BOTO_CONFIG",)
    }


def _extpack_command() -> list[str]:
    """The checkout's own entry point (PYTHONPATH above points at this checkout)."""
    return [sys.executable, "-m", "extpack"]


class RunExtpack(Protocol):
    def __call__(
        self,
        *args: str | os.PathLike[str],
        cwd: str | os.PathLike[str] | None = ...,
        env: dict[str, str] | None = ...,
        check: bool | int | None = ...,
        input: str | None = ...,  # noqa: A002 - mirrors subprocess.run
        timeout: float = ...,
    ) -> subprocess.CompletedProcess[str]: ...


# --------------------------------------------------------------------------- fixtures


def pytest_sessionstart(session: pytest.Session) -> None:
    _check_extpack_is_this_checkout()


@pytest.fixture
def fake_lambda_class() -> type[FakeLambda]:
    """The class fake_lambda starts: a test module may override this with a subclass."""
    return FakeLambda


@pytest.fixture
def fake_lambda(fake_lambda_class: type[FakeLambda]) -> Iterator[FakeLambda]:
    """A started FakeLambda on 127.0.0.1; stopped (fast, even with stalled clients)
    after the test, which also fails if the server's handlers raised."""
    server = fake_lambda_class()
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, "FakeLambda handler errors:\n" + "\n".join(server.errors)


@pytest.fixture
def aws_env(tmp_path: Path, fake_lambda: FakeLambda) -> dict[str, str]:
    """Environment for an extpack subprocess: fake credentials, the fake endpoint,
    empty AWS config files, and a per-test cache.  No AWS_DEFAULT_REGION on purpose:
    the region must come from the ARN."""
    aws_dir = tmp_path / "aws-config"
    aws_dir.mkdir(exist_ok=True)
    (aws_dir / "config").touch()
    (aws_dir / "credentials").touch()
    env = _clean_environ()
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL_LAMBDA": fake_lambda.endpoint,
            "AWS_CONFIG_FILE": str(aws_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "EXTPACK_CACHE_DIR": str(tmp_path / "cache"),
            "NO_COLOR": "1",
            # A proxy from the host environment must not swallow loopback traffic.
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


@pytest.fixture(scope="session")
def layer_zips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every fixture zip of make_layers.LAYERS, built once."""
    out = tmp_path_factory.mktemp("layer-zips")
    make_layers.write_all(out)
    return out


@pytest.fixture(scope="session")
def layers_module():  # type: ignore[no-untyped-def]
    """fixtures/make_layers.py as a module (build(), big_zip(), LAYERS, REFUSED...)."""
    return make_layers


@pytest.fixture
def run_extpack(tmp_path: Path, aws_env: dict[str, str]) -> RunExtpack:
    """run_extpack(*args, cwd=tmp_path, env=aws_env, check=None, input=None, timeout=120)

    Runs the installed ``extpack`` console script (else ``python -m extpack``) with text
    output captured and stdin closed (CI has none).  ``check``: None = no assertion,
    True = expect exit 0, an int = expect that exit code; a mismatch fails with the
    command's stdout and stderr in the message.
    """

    def run(
        *args: str | os.PathLike[str],
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        check: bool | int | None = None,
        input: str | None = None,  # noqa: A002
        timeout: float = EXTPACK_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        cmd = _extpack_command() + [os.fspath(a) for a in args]
        result = subprocess.run(
            cmd,
            cwd=os.fspath(cwd if cwd is not None else tmp_path),
            env=env if env is not None else aws_env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check is not None and check is not False:
            expected = 0 if check is True else int(check)
            if result.returncode != expected:
                raise AssertionError(
                    f"{' '.join(cmd)}\nexit {result.returncode}, expected {expected}\n"
                    f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
                )
        return result

    return run


@pytest.fixture(name="tree_snapshot")
def tree_snapshot_fixture() -> Callable[
    [str | os.PathLike[str]], dict[str, SnapshotEntry]
]:
    """The tree_snapshot() helper, for tests that prefer a fixture to an import."""
    return tree_snapshot


@pytest.fixture(name="assert_nothing_outside")
def assert_nothing_outside_fixture() -> Callable[
    [str | os.PathLike[str], Iterable[str]], None
]:
    return assert_nothing_outside


# --------------------------------------------------------------------------- docker
# A private dockerd (Debian docker.io 20.10) for the whole session, a busybox base image
# imported into it, and a local registry. See tests/dockerd.py. Without docker these
# skip with the reason (shown by -ra); EXTPACK_REQUIRE_DOCKER=1 (CI) makes that a failure.
import dockerd  # noqa: E402


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[dockerd.DockerDaemon]:
    """Started once per session (~0.3 s), stopped by pid at the end."""
    yield from dockerd.docker_daemon_fixture()


@pytest.fixture(scope="session")
def busybox_base(docker_daemon: dockerd.DockerDaemon) -> str:
    """Tag of the imported busybox base: "extpack-test/busybox:latest"."""
    return dockerd.busybox_base_fixture(docker_daemon)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dockerd.Registry]:
    """`url, stop = registry`; `registry.host` is "127.0.0.1:PORT" for image refs."""
    yield from dockerd.registry_fixture(tmp_path_factory.mktemp("registry"))
