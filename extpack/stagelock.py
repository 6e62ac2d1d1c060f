"""One fetch at a time per stage: an advisory lock held for the whole run.

Two `fetch` runs on one stage (make -j, two CI jobs in one workspace) would otherwise each
read the lock, build, and swap in their own stage and lock: the result could pair one run's
stage with the other's lock. The second run waits for the first (saying so once), then
reads the lock the first one wrote.

The lock is flock(2) on `.<stage name>.flock` beside the stage (not inside it: the stage
directory is replaced by a rename), removed when the run ends. The kernel drops a lock when
its process exits, however it exits, so a killed fetch never leaves a stale lock (at most an
empty file, which the next run reuses). It is a few lines of fcntl rather than the filelock
package: no new dependency, the file is removed safely while held, and it is opened with
O_NOFOLLOW, so a planted symlink cannot make extpack create a file elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from extpack.exceptions import UsageError

WAIT_ENV = "EXTPACK_FETCH_WAIT"
DEFAULT_WAIT_SECONDS = 600.0  # a cold fetch of several large layers can take minutes
_POLL_SECONDS = 0.1


def lock_file(stage_dir: Path) -> Path:
    return stage_dir.absolute().parent / f".{stage_dir.name}.flock"


def wait_seconds() -> float:
    text = os.environ.get(WAIT_ENV)
    if text is None:
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"{WAIT_ENV}={text!r} is not a number of seconds: use e.g. {WAIT_ENV}=600")
    return seconds


@contextlib.contextmanager
def holding_stage(stage_dir: Path, *, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the stage's lock for the block; wait up to EXTPACK_FETCH_WAIT seconds for it."""
    path = lock_file(stage_dir)
    timeout = wait_seconds()
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    said = False
    while True:
        fd = _open(path)
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise UsageError(f"another extpack fetch is still writing the stage {stage_dir} after "
                                     f"{timeout:g}s (lock file {path}): let it finish, or wait longer with "
                                     f"{WAIT_ENV}=SECONDS")
                if not said:
                    on_wait(f"waiting for another extpack fetch to finish with the stage {stage_dir} "
                            f"(lock file {path}; up to {timeout:g}s, {WAIT_ENV} changes it)")
                    said = True
                time.sleep(_POLL_SECONDS)  # flock has no timeout of its own
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, path):
            break
        os.close(fd)  # the holder removed this file as it finished: lock the one there now
    try:
        yield
    finally:
        # Removed while still held, so nothing is left beside the stage; a waiter that then
        # gets the lock on the removed file sees it is not the current one and tries again.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        reason = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise UsageError(f"cannot open the stage's lock file {path} ({reason}): remove it and run again") from None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _is_current(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
