"""The real parts a Lambda runs on, for the tests: AWS's Runtime Interface Emulator and Go builds.

* ``rie_binary()``: the aws-lambda-rie that .ci/install.sh builds (or $EXTPACK_TEST_RIE).
* ``go_build()``: builds a Go main package with the machine's Go (``go`` on PATH, else
  /usr/local/go/bin/go, or $EXTPACK_TEST_GO), checked against the ``go`` line of its go.mod, with
  modules from the Go module proxy cached under ~/.cache/extpack-tests/go so repeated runs are fast.

Either missing makes the test skip with the reason, or fail when EXTPACK_REQUIRE_DOCKER=1 (CI),
so CI can never skip the emulator tests silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
EXTENSION_SOURCE = TESTS_DIR / "extension-go"  # the stand-in Parameters and Secrets extension
DEFAULT_RIE = "/usr/local/libexec/extpack-test/aws-lambda-rie"
GOARCH = {"x86_64": "amd64", "arm64": "arm64"}


def unavailable(reason: str) -> None:
    """Skip loudly, or fail in CI where every emulator test must run."""
    if os.environ.get("EXTPACK_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (EXTPACK_REQUIRE_DOCKER=1: this test may not be skipped)", pytrace=False)
    pytest.skip(reason)


def rie_binary() -> Path:
    path = Path(os.environ.get("EXTPACK_TEST_RIE") or DEFAULT_RIE)
    if not os.access(path, os.X_OK):
        unavailable(f"AWS's Runtime Interface Emulator is not at {path}: run .ci/install.sh "
                    "(it builds aws-lambda-rie with Go), or set EXTPACK_TEST_RIE")
    return path


def go_binary() -> str:
    found = os.environ.get("EXTPACK_TEST_GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(found, os.X_OK):
        unavailable("no Go toolchain (go on PATH, /usr/local/go/bin/go or $EXTPACK_TEST_GO): "
                    "the emulator tests build Go code")
    return found


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    return out.strip().removeprefix("go")


def required_go(module_dir: Path) -> str:
    match = re.search(r"^go\s+(\d+(?:\.\d+)*)\s*$", (module_dir / "go.mod").read_text(), re.MULTILINE)
    assert match, f"{module_dir}/go.mod has no go line"
    return match[1]


def check_go_version(go: str, module_dir: Path) -> None:
    have, need = go_version(go), required_go(module_dir)
    numeric = re.match(r"\d+(?:\.\d+)*", have)
    if numeric is None or _version(numeric[0]) < _version(need):
        pytest.fail(f"{go} is Go {have}, but {module_dir}/go.mod needs Go {need}: install a newer Go "
                    "(the tests never download a toolchain)", pytrace=False)


def go_env(goarch: str) -> dict[str, str]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "extpack-tests" / "go"
    env = dict(os.environ)  # GOPROXY, GOSUMDB, GONOSUMDB... of the machine still apply
    env.update(
        GOMODCACHE=str(cache / "mod"), GOCACHE=str(cache / "build"),
        GOFLAGS="-mod=readonly",  # go.sum is the truth: a build never edits it
        GOTOOLCHAIN="local",  # an old Go fails clearly (above) instead of fetching a newer one
        CGO_ENABLED="0", GOOS="linux", GOARCH=goarch,
    )
    return env


def go_build(module_dir: Path, output: Path, arch: str = "x86_64", tags: str = "") -> Path:
    """A static linux binary of the main package in ``module_dir``."""
    go = go_binary()
    check_go_version(go, module_dir)
    cmd = [go, "build", "-trimpath", "-o", str(output)] + (["-tags", tags] if tags else []) + ["."]
    result = subprocess.run(cmd, cwd=module_dir, env=go_env(GOARCH[arch]), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed in {module_dir}:\n{result.stderr}"
    return output
