"""A private Docker daemon, a local busybox base image and a local registry for tests.

Nothing here can pull from the network, so everything a build test needs is made
locally:

* ``DockerDaemon`` starts Debian's ``dockerd`` (docker.io 20.10) as a child process
  with its own data root, exec root, socket, config file and containerd namespace
  under ``/tmp/extpack-dockerd-XXXX/``, waits until the API answers, and stops it
  again by pid (never by name).
* ``make_busybox_base`` imports a tiny rootfs built from Debian's static busybox
  (``busybox-static``) as ``extpack-test/busybox:latest``.
* ``start_registry`` runs Debian's ``docker-registry`` on 127.0.0.1:<free port>.

When docker cannot be used (not root, binary missing, daemon does not come up) the
helpers raise ``DockerUnavailable`` whose message says why; the pytest fixture
functions at the bottom turn that into a skip with that reason, or into a failure
when ``EXTPACK_REQUIRE_DOCKER=1`` (set this in CI so the docker tests can never be
skipped silently).

Environment knobs:
  EXTPACK_DOCKERD_STORAGE_DRIVER  force a storage driver (default: overlay2, then vfs)
  EXTPACK_DOCKERD_DATA_PARENT     put the data root (images, layers) under this dir instead
                                  of /tmp, e.g. when /tmp is a small tmpfs or overlayfs
  EXTPACK_DOCKERD_START_TIMEOUT   seconds to wait for the daemon (default 60)
  EXTPACK_DOCKERD_KEEP=1          keep /tmp/extpack-dockerd-XXXX after stop (debugging)
  EXTPACK_REQUIRE_DOCKER=1        fail instead of skip when docker is unavailable
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

DOCKER = "/usr/bin/docker"  # the docker.io client (has BuildKit); NOT whatever is on PATH
DOCKERD_CANDIDATES = ("/usr/sbin/dockerd", "/usr/bin/dockerd")
BUSYBOX = "/bin/busybox"  # from busybox-static; must be statically linked
REGISTRY_CANDIDATES = ("/usr/bin/docker-registry",)
TINI_CANDIDATES = ("/usr/bin/tini", "/usr/bin/tini-static", "/usr/bin/docker-init")
SKOPEO = "/usr/bin/skopeo"

BUSYBOX_TAG = "extpack-test/busybox:latest"
# Lambda runs functions as a non-root user; on AWS it is sbx_user1051, uid 993, gid 990.
LAMBDA_UID = 993
LAMBDA_GID = 990
LAMBDA_USER = "sbx_user1051"

_SOCKET_BASE = "/tmp"  # unix socket paths are limited to 108 bytes: keep this short
_STORAGE_DRIVERS = ("overlay2", "vfs")


class DockerUnavailable(RuntimeError):
    """Docker cannot be used here; ``str(exc)`` is the reason to show in the skip."""


class DockerCommandError(subprocess.CalledProcessError):
    """A docker command failed; unlike CalledProcessError, str() shows its output."""

    def __str__(self) -> str:  # pragma: no cover - only on failure
        def tail(s: str | bytes | None) -> str:
            if s is None:
                return ""
            if isinstance(s, bytes):
                s = s.decode("utf-8", "replace")
            return s[-4000:]

        cmd = " ".join(map(str, self.cmd)) if isinstance(self.cmd, (list, tuple)) else self.cmd
        return (
            f"command {cmd!r} exited {self.returncode}\n"
            f"--- stdout ---\n{tail(self.stdout)}\n--- stderr ---\n{tail(self.stderr)}"
        )


# ---------------------------------------------------------------------------------
# small helpers


def _dockerd_path() -> str | None:
    for p in DOCKERD_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("dockerd")


def _tini_path() -> str | None:
    for p in TINI_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return None


def _registry_path() -> str | None:
    for p in REGISTRY_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("docker-registry")


def _is_static_elf(path: str) -> bool:
    """True when ``path`` is an ELF executable without a PT_INTERP (dynamic loader)."""
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if ident[:4] != b"\x7fELF":
                return False
            is64 = ident[4] == 2
            end = "<" if ident[5] == 1 else ">"
            if is64:
                hdr = f.read(48)
                phoff = struct.unpack(end + "Q", hdr[16:24])[0]
                phentsize, phnum = struct.unpack(end + "HH", hdr[38:42])
            else:
                hdr = f.read(36)
                phoff = struct.unpack(end + "I", hdr[12:16])[0]
                phentsize, phnum = struct.unpack(end + "HH", hdr[26:30])
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                (p_type,) = struct.unpack(end + "I", f.read(4))
                if p_type == 3:  # PT_INTERP
                    return False
            return True
    except OSError:
        return False


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    """Have the kernel SIGTERM the child if the test process dies without cleaning up."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")  # a zombie is dead for our purposes
    except (OSError, IndexError):
        return False


def _pids_referencing(path: str) -> list[int]:
    """Pids of processes whose command line mentions ``path`` (containerd, shims, ...)."""
    me = os.getpid()
    found = []
    needle = path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return [p for p in found if _pid_alive(p)]


def _kill_pids(pids: Sequence[int], timeout: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            time.sleep(0.05)
        if not any(_pid_alive(p) for p in pids):
            return


def _mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    path = os.path.realpath(path)
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4].encode().decode("unicode_escape")
                if mnt == path or mnt.startswith(path + "/"):
                    out.append(mnt)
    except OSError:
        return []
    return sorted(set(out), key=lambda m: m.count("/"), reverse=True)


def _unmount_all(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):  # a lazy unmount can reveal mounts stacked underneath
        mounts = _mounts_under(path)
        if not mounts:
            return
        for m in mounts:
            libc.umount2(m.encode(), 2)  # MNT_DETACH


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _log_summary(path: Path | None) -> str:
    """The lines that say why dockerd failed, then the log's tail."""
    if path is None:
        return "(no log)"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    key = [
        ln for ln in lines
        if "level=error" in ln or "level=fatal" in ln or not ln.startswith("time=")
    ][-10:]
    out = ""
    if key:
        out += "errors:\n  " + "\n  ".join(key) + "\n"
    return out + "log tail:\n  " + "\n  ".join(lines[-15:])


def _keep_failed_log(path: Path | None) -> Path | None:
    """Copy a failed daemon's log out of the dir that stop() deletes."""
    if path is None or not path.exists():
        return None
    fd, keep = tempfile.mkstemp(prefix="extpack-dockerd-failed-", suffix=".log", dir=_SOCKET_BASE)
    os.close(fd)
    shutil.copyfile(path, keep)
    return Path(keep)


def _ping(sock_path: str, timeout: float = 1.0) -> bool:
    """GET /_ping on the daemon's unix socket; True when it answers 200 OK."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]
    except OSError:
        return False


def _dockerd_major(dockerd: str) -> int:
    try:
        out = subprocess.run(
            [dockerd, "--version"], check=False, capture_output=True, text=True, timeout=10
        ).stdout
        # "Docker version 20.10.24+dfsg1, build 5d6db84"
        return int(out.split("version", 1)[1].strip().split(".", 1)[0])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return 0


def docker_unavailable_reason(
    docker: str = DOCKER, dockerd: str | None = None, busybox: str | None = BUSYBOX
) -> str | None:
    """Why a private dockerd cannot be started here, or None if it looks possible.

    Only cheap static checks; a daemon that then fails to start raises
    DockerUnavailable with the tail of its log.
    """
    if not os.path.exists("/proc/self/mountinfo"):
        return "docker tests need Linux"
    if os.geteuid() != 0:
        return f"docker tests need root to start a private dockerd (euid is {os.geteuid()})"
    if not os.access(docker, os.X_OK):
        return f"{docker} not found: install Debian's docker.io (.ci/install.sh)"
    dockerd = dockerd or _dockerd_path()
    if not dockerd or not os.access(dockerd, os.X_OK):
        return "dockerd not found: install Debian's docker.io (.ci/install.sh)"
    if busybox is not None:
        if not os.path.exists(busybox):
            return f"{busybox} not found: install busybox-static (.ci/install.sh)"
        if not _is_static_elf(busybox):
            return f"{busybox} is dynamically linked: install busybox-static, not busybox"
    return None


# ---------------------------------------------------------------------------------
# the daemon

_LIVE: set[DockerDaemon] = set()


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - safety net for Ctrl-C / crashes
    for d in list(_LIVE):
        with contextlib.suppress(Exception):
            d.stop()


class DockerDaemon:
    """A dockerd of our own. ``with DockerDaemon() as d: d.docker("version")``.

    Attributes after ``start()``: ``base`` (the temp dir), ``socket``, ``host``
    (``unix://...``), ``env`` (os.environ + DOCKER_HOST, DOCKER_BUILDKIT=1 and a private
    DOCKER_CONFIG), ``pid``, ``storage_driver``, ``log_path``, ``startup_seconds``.
    """

    def __init__(
        self,
        storage_driver: str | None = None,
        start_timeout: float | None = None,
        dockerd: str | None = None,
        docker: str = DOCKER,
        extra_args: Sequence[str] = (),
        data_parent: str | os.PathLike | None = None,
    ) -> None:
        self.docker_bin = docker
        self.dockerd_bin = dockerd or _dockerd_path() or "dockerd"
        forced = storage_driver or os.environ.get("EXTPACK_DOCKERD_STORAGE_DRIVER") or None
        self._drivers = (forced,) if forced else _STORAGE_DRIVERS
        self.start_timeout = float(
            start_timeout or os.environ.get("EXTPACK_DOCKERD_START_TIMEOUT") or 60
        )
        self.extra_args = list(extra_args)
        self.data_parent = data_parent or os.environ.get("EXTPACK_DOCKERD_DATA_PARENT") or None
        self.base: Path | None = None
        self.data_root: Path | None = None
        self.socket = ""
        self.host = ""
        self.env: dict[str, str] = {}
        self.pid: int | None = None
        self.storage_driver: str | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self.server_version: str | None = None
        self.fallback_notes: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> DockerDaemon:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> DockerDaemon:
        reason = docker_unavailable_reason(self.docker_bin, self.dockerd_bin, busybox=None)
        if reason:
            raise DockerUnavailable(reason)
        t0 = time.monotonic()
        failures, kept = [], []
        for driver in self._drivers:
            try:
                self._start_once(driver)
            except DockerUnavailable as e:
                log = _keep_failed_log(self.log_path)
                kept.append(log)
                failures.append(f"[storage driver {driver}, log kept at {log}] {e}")
                self.stop()
                continue
            self.startup_seconds = time.monotonic() - t0
            # e.g. overlay2 refused on an overlayfs /tmp and vfs worked: say so, drop logs
            self.fallback_notes = [f.splitlines()[0] for f in failures]
            for log in kept:
                if log is not None:
                    log.unlink(missing_ok=True)
            return self
        raise DockerUnavailable("private dockerd did not start:\n" + "\n".join(failures))

    def _start_once(self, driver: str) -> None:
        base = Path(tempfile.mkdtemp(prefix="extpack-dockerd-", dir=_SOCKET_BASE))
        self.base = base
        self.socket = str(base / "docker.sock")
        if len(self.socket.encode()) >= 100:
            raise DockerUnavailable(f"socket path too long for AF_UNIX: {self.socket}")
        self.host = "unix://" + self.socket
        for sub in ("exec", "client-config"):
            (base / sub).mkdir()
        if self.data_parent:
            self.data_root = Path(tempfile.mkdtemp(prefix="extpack-dockerd-data-", dir=self.data_parent))
        else:
            self.data_root = base / "data"
            self.data_root.mkdir()
        # Our own daemon.json so /etc/docker/daemon.json on the host cannot conflict,
        # and (20.10) our own trust key instead of creating /etc/docker/key.json.
        conf: dict = {}
        major = _dockerd_major(self.dockerd_bin)
        if 0 < major < 23:
            conf["deprecated-key-path"] = str(base / "key.json")
        (base / "daemon.json").write_text(json.dumps(conf))
        (base / "client-config" / "config.json").write_text("{}")
        # containerd namespaces must match [A-Za-z0-9]+([._-][A-Za-z0-9]+)*: a mkdtemp
        # suffix ("_x1...") is not always valid, and containerd only says so at `run`.
        ns = "extpack-" + os.urandom(6).hex()
        self.log_path = base / "dockerd.log"
        cmd = [
            self.dockerd_bin,
            "--config-file", str(base / "daemon.json"),
            "--data-root", str(self.data_root),
            "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "dockerd.pid"),
            "-H", self.host,
            "--storage-driver", driver,
            "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--userland-proxy=false",
            "--shutdown-timeout=2",  # test containers need no grace period at stop
            # If a system containerd is running (/run/containerd/containerd.sock),
            # dockerd 20.10 uses it instead of starting its own: keep to our namespace.
            "--containerd-namespace", ns,
            "--containerd-plugins-namespace", ns + "-plugins",
            *self.extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        # Run dockerd under tini (a docker.io dependency) as a subreaper: containerd
        # shims double-fork and are orphaned; where PID 1 does not reap (containers,
        # microVMs) they would linger as zombies. tini reaps them, forwards SIGTERM to
        # dockerd, and (-p) SIGTERMs it if the test process dies without stopping it.
        tini = _tini_path()
        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [tini, "-s", "-p", "SIGTERM", "--", *cmd] if tini else cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal must not hit it first
            preexec_fn=None if tini else _set_pdeathsig,
        )
        self.pid = self._proc.pid  # tini's pid until the pidfile says dockerd's
        self.storage_driver = driver
        _LIVE.add(self)

        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(
            DOCKER_HOST=self.host,
            DOCKER_BUILDKIT="1",
            DOCKER_CONFIG=str(base / "client-config"),  # no host credsStore / plugins
        )

        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while True:
            if self._proc.poll() is not None:
                raise DockerUnavailable(
                    f"dockerd exited with code {self._proc.returncode} during start-up\n"
                    f"{_log_summary(self.log_path)}"
                )
            if _ping(self.socket):
                with contextlib.suppress(OSError, ValueError):
                    self.pid = int((base / "dockerd.pid").read_text().strip())
                break
            if time.monotonic() > deadline:
                raise DockerUnavailable(
                    f"dockerd did not answer on {self.socket} within {self.start_timeout:.0f}s\n"
                    f"{_log_summary(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

        # The API answers; make sure the real client agrees and the driver is ours.
        r = self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
        if r.returncode != 0:
            raise DockerUnavailable(
                f"`docker version` failed against the private daemon: {r.stderr.strip()}\n"
                f"{_log_summary(self.log_path)}"
            )
        self.server_version = r.stdout.strip()
        r = self.docker("info", "--format", "{{.Driver}}", check=False, timeout=30)
        if r.returncode != 0 or r.stdout.strip() != driver:
            raise DockerUnavailable(
                f"dockerd runs with storage driver {r.stdout.strip()!r}, wanted {driver!r}"
            )

    def stop(self) -> None:
        """Stop the daemon by pid, reap it, kill leftovers, unmount and delete its dir."""
        _LIVE.discard(self)
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None and self.host:
                # Containers get a 10 s SIGTERM grace at daemon shutdown whatever
                # --shutdown-timeout says (a `sleep` as PID 1 ignores SIGTERM):
                # SIGKILL them first.
                with contextlib.suppress(Exception):
                    ids = self.docker("ps", "-q", check=False, timeout=15).stdout.split()
                    if ids:
                        self.docker("rm", "-f", *ids, check=False, timeout=30)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    # tini forwards it; dockerd stops containers, then its containerd
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        base = self.base
        if base is None:
            return
        # A SIGKILLed dockerd leaves its managed containerd and shims running: they all
        # carry our base dir on their command line. Kill exactly those pids.
        leftovers = _pids_referencing(str(base) + "/")
        if leftovers:
            _kill_pids(leftovers)
        dirs = [base]
        if self.data_root is not None and base not in self.data_root.parents:
            dirs.append(self.data_root)
        for d in dirs:
            _unmount_all(str(d))
            if os.environ.get("EXTPACK_DOCKERD_KEEP") != "1":
                shutil.rmtree(d, ignore_errors=True)
        self.base = self.data_root = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- client -----------------------------------------------------------------------

    def docker(
        self,
        *args: str | os.PathLike,
        check: bool = True,
        env: dict[str, str] | None = None,
        input: str | bytes | None = None,
        text: bool = True,
        timeout: float | None = 600,
        cwd: str | os.PathLike | None = None,
        stdin=None,
        capture_output: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run /usr/bin/docker against this daemon. ``env`` entries override ``.env``
        (e.g. ``env={"DOCKER_BUILDKIT": "0"}``). Raises DockerCommandError on failure
        when ``check``."""
        if not self.host:
            raise RuntimeError("daemon not started")
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        if isinstance(input, bytes):
            text = False
        cmd = [self.docker_bin, *map(os.fspath, args)]
        r = subprocess.run(
            cmd,
            check=False,
            env=full_env,
            input=input,
            stdin=stdin if input is None else None,
            capture_output=capture_output,
            text=text,
            timeout=timeout,
            cwd=cwd,
        )
        if check and r.returncode != 0:
            raise DockerCommandError(r.returncode, cmd, r.stdout, r.stderr)
        return r

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0


# ---------------------------------------------------------------------------------
# the busybox base image

_PASSWD = f"""\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
{LAMBDA_USER}:x:{LAMBDA_UID}:{LAMBDA_GID}::/home/{LAMBDA_USER}:/bin/sh
"""
_GROUP = f"""\
root:x:0:
nogroup:x:65534:
{LAMBDA_USER}:x:{LAMBDA_GID}:
"""


def build_busybox_rootfs(dest: Path, busybox: str = BUSYBOX) -> Path:
    """Fill ``dest`` with a minimal rootfs: static busybox, every applet as a symlink
    in its usual place (what ``busybox --install -s`` does, but into a folder),
    /tmp (1777), /etc/passwd+group with root and a Lambda-like non-root user."""
    if not _is_static_elf(busybox):
        raise DockerUnavailable(f"{busybox} is not a static binary: install busybox-static")
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "var/task",
              f"home/{LAMBDA_USER}", "proc", "sys", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").mkdir(exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copyfile(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run(
        [busybox, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in applets:  # e.g. "bin/ls", "usr/bin/env", "sbin/ifconfig"
        link = dest / rel
        if rel == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    for must in ("bin/sh", "bin/ls", "bin/cat", "bin/stat", "usr/bin/sha256sum",
                 "bin/readlink", "usr/bin/find", "usr/bin/id", "usr/bin/env"):
        if not (dest / must).is_symlink() and not (dest / must).exists():
            # older busybox layouts: put the applet in /bin
            os.symlink("/bin/busybox", dest / "bin" / os.path.basename(must))
    (dest / "etc/passwd").write_text(_PASSWD)
    (dest / "etc/group").write_text(_GROUP)
    os.chown(dest / f"home/{LAMBDA_USER}", LAMBDA_UID, LAMBDA_GID)
    return dest


def _tar_rootfs(root: Path) -> bytes:
    """A deterministic tar of ``root``: sorted names, mtime 0; owner 0:0 except the
    Lambda user's home directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = sorted(p for p in root.rglob("*"))
        for p in paths:
            info = tar.gettarinfo(str(p), arcname=str(p.relative_to(root)))
            info.mtime = 0
            info.uname = info.gname = ""
            if not (info.uid == LAMBDA_UID and info.isdir()):
                info.uid = info.gid = 0
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def make_busybox_base(daemon: DockerDaemon, tag: str = BUSYBOX_TAG, busybox: str = BUSYBOX) -> str:
    """Import a busybox rootfs into ``daemon`` as ``tag`` (skipped if already there).
    Returns the tag."""
    if daemon.image_exists(tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="extpack-busybox-") as tmp:
        root = build_busybox_rootfs(Path(tmp) / "rootfs", busybox)
        data = _tar_rootfs(root)
    daemon.docker(
        "import",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", 'CMD ["/bin/sh"]',
        "-", tag,
        input=data,
        timeout=120,
    )
    return tag


# ---------------------------------------------------------------------------------
# the registry


class Registry(NamedTuple):
    """``url, stop = start_registry(tmp)``. ``url`` is ``http://127.0.0.1:PORT``;
    ``.host`` is ``127.0.0.1:PORT`` for image references (docker treats 127.0.0.0/8
    as an insecure registry by default; skopeo needs ``--tls-verify=false``)."""

    url: str
    stop: Callable[[], None]

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def registry_unavailable_reason() -> str | None:
    if not _registry_path():
        return "docker-registry not found: install Debian's docker-registry (.ci/install.sh)"
    return None


def start_registry(tmpdir: str | os.PathLike, timeout: float = 30.0) -> Registry:
    """Run ``docker-registry serve`` on 127.0.0.1:<free port>, storing blobs in
    ``tmpdir/registry-data``. Returns ``Registry(url, stop)``; ``stop()`` is idempotent."""
    binary = _registry_path()
    if not binary:
        raise DockerUnavailable(registry_unavailable_reason())
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(3):  # a free port can be taken between probe and bind
        port = _free_port()
        config = tmpdir / f"registry-{port}.yml"
        log_path = tmpdir / f"registry-{port}.log"
        (tmpdir / "registry-data").mkdir(exist_ok=True)
        # JSON is YAML: no yaml dependency needed to write it.
        config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(tmpdir / "registry-data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{port}"},
            "health": {"storagedriver": {"enabled": False}},
        }, indent=1))
        log = open(log_path, "ab")
        tini = _tini_path()  # -p: SIGTERM the registry if the test process dies
        cmd = [binary, "serve", str(config)]
        proc = subprocess.Popen(
            [tini, "-p", "SIGTERM", "--", *cmd] if tini else cmd,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=None if tini else _set_pdeathsig,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        delay = 0.01
        while proc.poll() is None and time.monotonic() < deadline:
            if _http_ok(url + "/v2/"):
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        else:
            rc = proc.poll()
            if rc is None:
                proc.kill()
            proc.wait()
            last_error = (
                f"docker-registry on port {port} "
                + (f"exited with code {rc}" if rc is not None else f"did not answer in {timeout:.0f}s")
                + f":\n{_tail(log_path)}"
            )
            if "address already in use" in last_error:
                continue
            raise DockerUnavailable(last_error)

        def stop(proc: subprocess.Popen = proc) -> None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        atexit.register(stop)
        return Registry(url, stop)
    raise DockerUnavailable(last_error)


# ---------------------------------------------------------------------------------
# pytest glue: plain generator functions, wrapped by fixtures in conftest.py


def _skip_or_fail(reason: str) -> None:
    import pytest

    if os.environ.get("EXTPACK_REQUIRE_DOCKER") == "1":
        pytest.fail(f"EXTPACK_REQUIRE_DOCKER=1 but docker is unavailable: {reason}", pytrace=False)
    pytest.skip(f"docker unavailable: {reason}")


def docker_daemon_fixture() -> Iterator[DockerDaemon]:
    """Body of the session-scoped ``docker_daemon`` fixture."""
    reason = docker_unavailable_reason()
    if reason:
        _skip_or_fail(reason)
    daemon = DockerDaemon()
    try:
        daemon.start()
    except DockerUnavailable as e:
        daemon.stop()
        _skip_or_fail(str(e))
    try:
        yield daemon
    finally:
        daemon.stop()


def busybox_base_fixture(daemon: DockerDaemon) -> str:
    """Body of the session-scoped ``busybox_base`` fixture: returns the image tag."""
    try:
        return make_busybox_base(daemon)
    except DockerUnavailable as e:
        _skip_or_fail(str(e))
        raise  # unreachable


def registry_fixture(tmpdir: str | os.PathLike) -> Iterator[Registry]:
    """Body of the ``registry`` fixture."""
    reason = registry_unavailable_reason()
    if reason:
        _skip_or_fail(reason)
    try:
        reg = start_registry(tmpdir)
    except DockerUnavailable as e:
        _skip_or_fail(str(e))
        raise  # unreachable
    try:
        yield reg
    finally:
        reg.stop()
