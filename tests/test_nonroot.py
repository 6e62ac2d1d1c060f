"""The tests marked `nonroot` (fetch, re-fetch, prune, failure cleanup) again, as the user nobody.

CI runs the suite as root, where every permission check passes: a directory of mode 0500
or 0000 in a stage, or a cache the user cannot clean, only shows as another user. So, when
the suite runs as root, this module starts pytest once more under `setpriv` as nobody, on
the marked tests only, with a HOME and temporary directory nobody owns. When the suite
already runs as another user, the marked tests ran as that user and this module skips.

A Python installed under a directory nobody cannot enter (pyenv in /root) is made
reachable in a private mount namespace: a world-enterable tmpfs is mounted over that
directory, and only the entries the run needs are bind-mounted back into it, at their own
paths (so absolute paths baked into the interpreter keep working). Nothing outside that
namespace changes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USER = "nobody"
TIMEOUT = 600

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="not root: the nonroot tests already ran as this user")


def _closed_ancestor(path: Path) -> Path | None:
    """The first directory above `path` that others cannot enter, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def _namespace_script(needed: list[Path]) -> list[str]:
    """Shell lines that make each needed path reachable (run inside `unshare --mount`)."""
    lines = ["set -e", 'saved=$(mktemp -d)']
    for closed in sorted({a for a in map(_closed_ancestor, needed) if a is not None}):
        entries = sorted({p.relative_to(closed).parts[0] for p in needed if closed in p.parents})
        lines += [f"mkdir -p \"$saved{closed}\"", f"mount --bind '{closed}' \"$saved{closed}\"",
                  f"mount -t tmpfs -o mode=0755 tmpfs '{closed}'"]
        for entry in entries:
            lines += [f"mkdir '{closed / entry}'", f"mount --bind \"$saved{closed}/{entry}\" '{closed / entry}'"]
    return lines


def test_the_nonroot_tests_pass_as_nobody():
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run the nonroot tests as nobody")
    account = pwd.getpwnam(USER)
    workdir = Path(tempfile.mkdtemp(prefix="extpack-nonroot-"))
    try:
        os.chmod(workdir, 0o755)
        for sub in ("home", "tmp"):
            (workdir / sub).mkdir()
            os.chown(workdir / sub, account.pw_uid, account.pw_gid)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "EXTPACK_"))}
        env.update(HOME=str(workdir / "home"), TMPDIR=str(workdir / "tmp"), PYTHONDONTWRITEBYTECODE="1")
        as_nobody = [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                     sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "nonroot",
                     f"--basetemp={workdir / 'tmp' / 'pytest'}", "-o", "addopts=", str(REPO / "tests")]
        needed = [Path(sys.executable).resolve(), Path(sys.prefix), Path(sys.base_prefix), REPO]
        if any(_closed_ancestor(path) for path in needed):
            script = "\n".join([*_namespace_script(needed), 'exec "$@"'])
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *as_nobody]
        else:
            command = as_nobody
        result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"as {USER}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        assert " passed" in result.stdout and "deselected" in result.stdout, result.stdout[-2000:]
        print(result.stdout[-400:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
