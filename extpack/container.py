"""The image under test, seen through the docker CLI: its config, its /opt/extensions, the
files it has, and a container created (never started) to copy them out of.

Docker is driven through its CLI (subprocess), like `doctor --image`: it honours DOCKER_HOST,
contexts and the user's config without another dependency.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from extpack.exceptions import UsageError

EXTENSIONS_DIR = "/opt/extensions"
# An extension whose bytes name these API versions and paths uses the Telemetry or Logs API.
TELEMETRY_MARKERS = ((b"2022-07-01", b"telemetry"), (b"2020-08-15", b"/logs"))
TELEMETRY_SCAN_LIMIT = 256 * 1024 * 1024


@dataclass(frozen=True)
class ImageInfo:
    entrypoint: list[str]
    cmd: list[str]


@dataclass(frozen=True)
class ExtensionFile:
    name: str
    telemetry: bool  # its bytes name the Telemetry or Logs API


class Docker:
    """The docker CLI, pointed at --docker-host when given (else DOCKER_HOST, contexts, config)."""

    def __init__(self, docker_host: str | None) -> None:
        # Debian's docker.io client first, as `doctor --image` does; else whatever PATH has.
        self.binary = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
        if not self.binary:
            raise UsageError("docker is not installed: extpack smoke runs the image with the docker CLI")
        self.env = dict(os.environ, DOCKER_HOST=docker_host) if docker_host else None
        self.where = docker_host or os.environ.get("DOCKER_HOST") or "the default Docker socket"

    def run(self, *args: str, timeout: float = 60, check: bool = True, binary: bool = False
            ) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run([self.binary, *args], capture_output=True, text=not binary, env=self.env,
                                    stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UsageError(f"docker {args[0]} did not finish within {timeout:.0f}s at {self.where}") from None
        if check and result.returncode != 0:
            raise UsageError(f"docker {args[0]} failed: {last_line(result.stderr)}")
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                stdin=subprocess.DEVNULL)

    def require_daemon(self) -> None:
        probe = self.run("version", "--format", "{{.Server.Version}}", timeout=20, check=False)
        if probe.returncode != 0 or not probe.stdout.strip():
            raise UsageError(f"no Docker daemon answers at {self.where} ({last_line(probe.stderr)}): "
                             "start Docker, or point DOCKER_HOST / --docker-host at one")


def last_line(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def inspect_image(docker: Docker, image: str) -> ImageInfo:
    result = docker.run("image", "inspect", image, check=False)
    if result.returncode != 0:
        raise UsageError(f"no local image {image}: build it or docker pull it first")
    config = json.loads(result.stdout)[0].get("Config") or {}
    return ImageInfo(config.get("Entrypoint") or [], config.get("Cmd") or [])


@contextlib.contextmanager
def probe_container(docker: Docker, image: str):
    """A created (never started) container of the image, to copy files out of."""
    cid = docker.run("create", "--entrypoint", "/extpack-smoke-probe", image).stdout.strip()
    try:
        yield cid
    finally:
        docker.run("rm", "-f", cid, check=False)


def list_extensions(docker: Docker, cid: str) -> list[ExtensionFile]:
    """Every entry of /opt/extensions the emulator will launch (files and links, not folders), by name."""
    result = docker.run("cp", f"{cid}:{EXTENSIONS_DIR}", "-", timeout=300, check=False, binary=True)
    if result.returncode != 0:
        return []  # no /opt/extensions: nothing to launch
    found = []
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) != 2 or not parts[1] or member.isdir():
                continue
            data = tar.extractfile(member) if member.isfile() and member.size <= TELEMETRY_SCAN_LIMIT else None
            found.append(ExtensionFile(parts[1], _names_telemetry_api(data.read()) if data else False))
    return sorted(found, key=lambda e: e.name)  # the emulator launches them in this order


def _names_telemetry_api(content: bytes) -> bool:
    return any(version in content and path in content for version, path in TELEMETRY_MARKERS)


def has_file(docker: Docker, cid: str, path: str) -> bool:
    copy = docker.popen("cp", f"{cid}:{path}", "-")
    try:
        return bool(copy.stdout.read(512))  # a tar header is enough; the rest is not needed
    finally:
        copy.kill()
        copy.communicate()


def has_bridge(docker: Docker) -> bool:
    return docker.run("network", "inspect", "bridge", check=False).returncode == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
