"""The seed scenario for real: a layer's extension started by AWS's own emulator, next to a Go function.

The stand-in Parameters and Secrets extension (tests/extension-go, standard library only) is
published as a layer zip by the loopback Lambda API under the real extension's ARN. The example
project examples/go-function (aws-lambda-go from the module proxy) is built with its own Makefile:
`extpack fetch` (the ARN from its extpack.toml) -> `extpack render` (alpine-rie template, the real
aws-lambda-rie copied in) -> `docker build --network none` on the tests' busybox base. The image
runs under the emulator and is invoked on its own network namespace with busybox wget, so nothing
here needs a bridge network or a free host port.

Then `extpack smoke` (section 2 of the issue) is driven through the real CLI against the same image
and variants of it: an extension for the other CPU, one that is not executable, one that never
registers, a function that fails, an extension that subscribes to the Telemetry API, an image
without an emulator, and no daemon at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import make_layers
import pytest
from dockerd import DockerDaemon
from lambda_parts import EXTENSION_SOURCE, check_go_version, go_binary, go_build, go_env, rie_binary, unavailable
from lambda_server import FakeLambda
from test_docker_e2e import tags  # noqa: F401 - the fixture: images a module made, removed after it

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "go-function"
EXAMPLE_FILES = ("main.go", "go.mod", "go.sum", "Makefile", "extpack.toml", ".dockerignore")
# The layer the example's extpack.toml names; the loopback API serves the stand-in under it.
PARAMETERS_LAYER = ("AWS-Parameters-and-Secrets-Lambda-Extension", "177933569100", 12)
EXTENSION = "parameters-secrets-standin"
SECRET = "value-from-the-extension"  # what the stand-in answers (tests/extension-go/main.go)
ANSWER = {"message": "Hello AWS Lambda", "value": SECRET}
SESSION_TOKEN = "seed-session-token"
PARAMETER = "/my-app/greeting"
INVOKE_URL = "http://127.0.0.1:8080/2015-03-31/functions/function/invocations"
REGISTERED = re.compile(rf"External agent {EXTENSION} \([0-9a-f-]+\) registered, subscribed to \[INVOKE SHUTDOWN\]")

pytestmark = pytest.mark.docker


def extension_layer(binary: Path, name: str = EXTENSION) -> bytes:
    data = binary.read_bytes()
    return make_layers.ZipBuilder().dir("extensions").file(f"extensions/{name}", data, 0o755).getvalue()


class Project:
    """The example copied into a folder, with the environment extpack, make and docker run with."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env

    def run(self, *cmd: str | os.PathLike[str], check: int | None = 0, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [os.fspath(c) for c in cmd]
        result = subprocess.run(cmd, cwd=self.root, env=env or self.env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=timeout)
        if check is not None and result.returncode != check:
            raise AssertionError(f"{' '.join(cmd)}\nexit {result.returncode}, expected {check}\n"
                                 f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
        return result

    def extpack(self, *args: str | os.PathLike[str], check: int | None = 0, **kwargs
                ) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "extpack", *args, check=check, **kwargs)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def daemon(docker_daemon: DockerDaemon, busybox_base: str) -> DockerDaemon:
    return docker_daemon


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stand-in extension for both CPUs (and with a Telemetry API subscription), built with Go."""
    out = tmp_path_factory.mktemp("extension-bin")
    return {
        "x86_64": go_build(EXTENSION_SOURCE, out / "amd64" / EXTENSION),
        "arm64": go_build(EXTENSION_SOURCE, out / "arm64" / EXTENSION, arch="arm64"),
        "telemetry": go_build(EXTENSION_SOURCE, out / "telemetry" / EXTENSION, tags="telemetry"),
    }


@pytest.fixture(scope="module")
def lambda_api(binaries: dict[str, Path]) -> Iterator[FakeLambda]:
    server = FakeLambda().start()
    try:
        name, account, version = PARAMETERS_LAYER
        server.add_layer(name, extension_layer(binaries["x86_64"]), version=version, account=account)
        # Published without CompatibleArchitectures, as many older layers are: only the ELF header tells.
        server.add_layer("standin-for-arm64", extension_layer(binaries["arm64"]), architectures=())
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, lambda_api: FakeLambda, daemon: DockerDaemon) -> Project:
    root = tmp_path_factory.mktemp("go-function")
    home = tmp_path_factory.mktemp("home")
    for name in EXAMPLE_FILES:
        shutil.copy2(EXAMPLE / name, root / name)
    shutil.copy2(rie_binary(), root / "aws-lambda-rie")
    (home / "aws").mkdir()
    for name in ("config", "credentials"):
        (home / "aws" / name).touch()
    env = {k: v for k, v in go_env("amd64").items()
           if not k.startswith(("AWS_", "EXTPACK_", "DOCKER_")) and k != "BOTO_CONFIG"}
    env.update(daemon.env)
    env.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL_LAMBDA=lambda_api.endpoint, AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / "aws" / "config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "aws" / "credentials"),
        EXTPACK_CACHE_DIR=str(home / "cache"), NO_COLOR="1",
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
    )
    return Project(root, env)


def build(daemon: DockerDaemon, project: Project, tag: str, tags: list[str], dockerfile: str = "Dockerfile",
          context: Path | None = None) -> str:
    context = context or project.root
    daemon.docker("build", "--network", "none", "-f", context / dockerfile, "-t", tag, context, timeout=600)
    tags.append(tag)
    return tag


@pytest.fixture(scope="module")
def seed_image(project: Project, daemon: DockerDaemon, busybox_base: str, tags: list[str]) -> str:
    """The example's own Makefile: go build, extpack fetch (from extpack.toml), extpack render --rie."""
    go = go_binary()
    check_go_version(go, project.root)
    project.run("make", "bootstrap", "Dockerfile", f"EXTPACK={sys.executable} -m extpack", f"GO={go}",
                f"BASE={busybox_base}", "RENDER_FLAGS=--rie-binary aws-lambda-rie")
    dockerfile = (project.root / "Dockerfile").read_text()
    assert f"FROM --platform=linux/amd64 {busybox_base}" in dockerfile
    assert "COPY aws-lambda-rie /usr/bin/aws-lambda-rie" in dockerfile
    assert 'ENTRYPOINT ["/extpack-entry.sh", "/var/task/bootstrap"]' in dockerfile
    lock = json.loads((project.root / "extpack.lock").read_text())
    name, account, version = PARAMETERS_LAYER
    assert lock["layers"][0]["arn"] == f"arn:aws:lambda:us-east-1:{account}:layer:{name}:{version}"
    return build(daemon, project, "extpack-rie/seed:1", tags)


class Container:
    """A container of an image under the emulator on its own network namespace (`--network none`)."""

    def __init__(self, daemon: DockerDaemon, image: str, *env: str) -> None:
        self.daemon = daemon
        self.name = f"extpack-rie-{uuid.uuid4().hex[:10]}"
        flags = [arg for pair in env for arg in ("-e", pair)]
        daemon.docker("run", "-d", "--network", "none", "--name", self.name, *flags, image)

    def invoke(self, event: str = "{}", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """POST the event with busybox wget inside the container, once the emulator listens."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.daemon.docker("exec", self.name, "wget", "-q", "-O", "-", "--header",
                                        "Content-Type: application/json", "--post-data", event, INVOKE_URL,
                                        check=False, timeout=timeout)
            if "refused" not in result.stderr or time.monotonic() > deadline:
                return result
            time.sleep(0.05)

    def stop(self) -> str:
        self.daemon.docker("stop", self.name, timeout=60)
        logs = self.daemon.docker("logs", self.name)
        return logs.stdout + logs.stderr

    def remove(self) -> None:
        self.daemon.docker("rm", "-f", self.name, check=False)


@pytest.fixture
def container(daemon: DockerDaemon) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def start(image: str, *env: str) -> Container:
        made.append(Container(daemon, image, *env))
        return made[-1]

    yield start
    for c in made:
        c.remove()


# --------------------------------------------------------------------------- 1. the seed scenario


def test_function_answers_with_the_extensions_value_under_the_real_emulator(daemon, seed_image, container) -> None:
    c = container(seed_image, f"AWS_SESSION_TOKEN={SESSION_TOKEN}", f"PARAMETER_NAME={PARAMETER}")
    answer = c.invoke()
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == ANSWER
    logs = c.stop()
    assert REGISTERED.search(logs), logs
    assert f"[{EXTENSION}] registered" in logs
    assert "cold start" in logs
    request_id = re.search(r"START RequestId: (\S+)", logs)[1]
    assert f"[{EXTENSION}] INVOKE {request_id}" in logs  # the emulator sent the extension this invoke
    assert f"[{EXTENSION}] SHUTDOWN" in logs  # docker stop reached the extension as Lambda's SHUTDOWN


def test_the_extension_refuses_a_caller_without_the_session_token(seed_image, container) -> None:
    c = container(seed_image, "AWS_SESSION_TOKEN=", f"PARAMETER_NAME={PARAMETER}")
    answer = c.invoke()
    assert answer.returncode == 0, answer.stderr  # the emulator relays the function's error as 200
    assert json.loads(answer.stdout)["errorMessage"].endswith("401 Unauthorized")
    assert SECRET not in answer.stdout


@pytest.fixture(scope="module")
def arm64_extension_image(project: Project, daemon: DockerDaemon, lambda_api: FakeLambda, busybox_base: str,
                          seed_image: str, tags: list[str]) -> str:
    """The seed image with the extension built for arm64 instead; `fetch --arch x86_64` refuses it first."""
    arn = next(layer.arn for layer in lambda_api.layers if layer.name == "standin-for-arm64")
    refused = project.extpack("fetch", arn, "--arch", "x86_64", "--stage-dir", "stage-arm64",
                              "--lock", "arm64.lock", check=5)
    assert "arm64" in refused.stderr and EXTENSION in refused.stderr
    assert not (project.root / "stage-arm64").exists() and not (project.root / "arm64.lock").exists()
    project.extpack("fetch", arn, "--arch", "arm64", "--stage-dir", "stage-arm64", "--lock", "arm64.lock")
    (project.root / ".dockerignore").write_text((EXAMPLE / ".dockerignore").read_text() + "!stage-arm64/opt\n")
    # render refuses --platform linux/amd64 for an arm64 stage (exit 2), so the image is made the
    # way a user would get there: by editing the generated Dockerfile's platform by hand.
    refused = project.extpack("render", "--stage-dir", "stage-arm64", "--lock", "arm64.lock", "--platform",
                              "linux/amd64", "--output", "-", check=2)
    assert "arm64" in refused.stderr
    project.extpack("render", "--stage-dir", "stage-arm64", "--lock", "arm64.lock", "--template", "alpine-rie",
                    "--base", busybox_base, "--rie-binary", "aws-lambda-rie",
                    "--copy", "bootstrap:/var/task/bootstrap", "--entrypoint", "/var/task/bootstrap",
                    "--output", "Dockerfile.arm64")
    dockerfile = project.root / "Dockerfile.arm64"
    assert "linux/arm64" in dockerfile.read_text()
    dockerfile.write_text(dockerfile.read_text().replace("linux/arm64", "linux/amd64"))
    return build(daemon, project, "extpack-rie/arm64-extension:1", tags, "Dockerfile.arm64")


def test_an_extension_for_the_other_cpu_does_not_start(arm64_extension_image, container) -> None:
    c = container(arm64_extension_image, f"AWS_SESSION_TOKEN={SESSION_TOKEN}", f"PARAMETER_NAME={PARAMETER}")
    answer = c.invoke()
    assert answer.returncode != 0 and "502" in answer.stderr
    logs = c.stop()
    assert f"fork/exec /opt/extensions/{EXTENSION}: exec format error" in logs
    assert not REGISTERED.search(logs) and "cold start" not in logs


# --------------------------------------------------------------------------- 2. extpack smoke


def smoke(project: Project, *args: str, check: int | None = None, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    # Without a bridge, smoke runs the container on the host's network: the stand-in extension
    # gets a port of its own, so a test run beside another (two CI jobs on one host) cannot clash.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return project.extpack("smoke", *args, "--env", f"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT={port}",
                           check=check, env=env)


def derived(daemon: DockerDaemon, project: Project, tags: list[str], tmp_path: Path, tag: str, lines: str,
            files: dict[str, Path] | None = None) -> str:
    context = tmp_path / tag.replace("/", "-").replace(":", "-")
    context.mkdir()
    for name, source in (files or {}).items():
        shutil.copy2(source, context / name)
    (context / "Dockerfile").write_text(lines)
    return build(daemon, project, tag, tags, context=context)


def test_smoke_reports_a_good_image(project: Project, seed_image: str) -> None:
    r = smoke(project, seed_image, "--env", f"PARAMETER_NAME={PARAMETER}", check=0)
    assert re.search(rf"/opt/extensions/{EXTENSION}\s+registered\s+INVOKE, SHUTDOWN", r.stdout), r.stdout
    assert json.dumps(ANSWER, separators=(",", ":")) in r.stdout
    assert "/usr/bin/aws-lambda-rie (in the image)" in r.stdout
    assert "Telemetry" not in r.stdout
    assert "starting" in r.stderr and "Hello" not in r.stderr  # progress on stderr, results on stdout
    event = project.root / "event.json"
    event.write_text('{"source": "extpack smoke"}')
    report = json.loads(smoke(project, seed_image, "--env", f"PARAMETER_NAME={PARAMETER}", "--event", str(event),
                              "--json", check=0).stdout)
    assert report["schema"] == "extpack.smoke/v1" and report["ok"] is True
    assert json.loads(report["response"]) == ANSWER
    assert report["extensions"] == [{"name": EXTENSION, "registered": True, "status": "registered",
                                     "events": ["INVOKE", "SHUTDOWN"], "notes": []}]
    assert report["init_ms"] > 0 and report["invoke_ms"] > 0


def test_smoke_refuses_an_event_that_is_not_json(project: Project, seed_image: str) -> None:
    bad = project.root / "event.txt"
    bad.write_text("{not json")
    r = smoke(project, seed_image, "--event", str(bad), check=2)
    assert r.stderr.strip() == f"extpack: error: --event {bad}: not JSON"


def test_smoke_fails_an_extension_for_the_other_cpu(project: Project, arm64_extension_image: str) -> None:
    r = smoke(project, arm64_extension_image, "--env", f"PARAMETER_NAME={PARAMETER}", check=7)
    assert re.search(rf"/opt/extensions/{EXTENSION}\s+exec format error", r.stdout), r.stdout
    assert r.stderr.strip().splitlines()[-1] == (
        f"extpack: error: {arm64_extension_image} does not run as a Lambda: extension {EXTENSION}: exec format "
        "error; function: the emulator answered HTTP 502 (the sandbox failed; see its log)")


def test_smoke_fails_an_extension_that_is_not_executable(project, daemon, seed_image, tags, tmp_path) -> None:
    image = derived(daemon, project, tags, tmp_path, "extpack-rie/not-executable:1",
                    f"FROM {seed_image}\nRUN chmod 0644 /opt/extensions/{EXTENSION}\n")
    r = smoke(project, image, "--env", f"PARAMETER_NAME={PARAMETER}", check=7)
    assert re.search(rf"/opt/extensions/{EXTENSION}\s+permission denied", r.stdout), r.stdout


def test_smoke_fails_an_extension_that_never_registers_within_the_timeout(project, daemon, seed_image, tags,
                                                                         tmp_path) -> None:
    image = derived(daemon, project, tags, tmp_path, "extpack-rie/never-registers:1",
                    f"FROM {seed_image}\nRUN printf '#!/bin/sh\\nexec sleep 600\\n' > /opt/extensions/sleeper "
                    "&& chmod 0755 /opt/extensions/sleeper\n")
    started = time.monotonic()
    r = smoke(project, image, "--env", f"PARAMETER_NAME={PARAMETER}", "--timeout", "4", "--json", check=7)
    assert time.monotonic() - started < 4 + 30  # the timeout, the container's stop and docker's overhead
    report = json.loads(r.stdout)
    status = {e["name"]: e["status"] for e in report["extensions"]}
    assert status == {EXTENSION: "registered", "sleeper": "never registered within --timeout 4s"}
    assert report["function_error"] == "no answer within --timeout 4s"


def test_smoke_fails_a_function_that_returns_an_error(project: Project, seed_image: str) -> None:
    r = smoke(project, seed_image, check=7)  # no PARAMETER_NAME: the extension answers 400
    assert "function  FAILED: errorString: parameters and secrets extension answered 400 Bad Request" in r.stdout
    assert re.search(rf"/opt/extensions/{EXTENSION}\s+registered", r.stdout)
    assert r.stderr.strip().splitlines()[-1].startswith(f"extpack: error: {seed_image} does not run as a Lambda: "
                                                        "function: errorString")


def test_smoke_says_the_emulator_lacks_the_telemetry_api(project, daemon, seed_image, binaries, tags,
                                                         tmp_path) -> None:
    image = derived(daemon, project, tags, tmp_path, "extpack-rie/telemetry:1",
                    f"FROM {seed_image}\nCOPY {EXTENSION} /opt/extensions/{EXTENSION}\n",
                    {EXTENSION: binaries["telemetry"]})
    r = smoke(project, image, "--env", f"PARAMETER_NAME={PARAMETER}", "--json", check=0)
    report = json.loads(r.stdout)
    assert report["extensions"][0]["notes"] == [
        "subscribes to the Telemetry API, which the emulator does not implement"]
    assert any("does not implement the Telemetry API" in note for note in report["notes"])
    assert f"[{EXTENSION}] telemetry subscription answered 202" in report["log"]


@pytest.fixture(scope="module")
def no_emulator_image(project: Project, daemon: DockerDaemon, busybox_base: str, seed_image: str,
                      tags: list[str]) -> str:
    """The seed's function and extension on the aws-base template without --rie: no emulator inside."""
    project.extpack("render", "--template", "aws-base", "--base", busybox_base,
                    "--copy", "bootstrap:/var/task/bootstrap", "--entrypoint", "/var/task/bootstrap",
                    "--output", "Dockerfile.plain")
    return build(daemon, project, "extpack-rie/no-emulator:1", tags, "Dockerfile.plain")


def test_smoke_mounts_an_emulator_into_an_image_without_one(project: Project, no_emulator_image: str) -> None:
    image = no_emulator_image
    r = smoke(project, image, check=2)
    assert "pass --rie PATH" in r.stderr
    r = smoke(project, image, "--rie", str(rie_binary()), "--env", f"PARAMETER_NAME={PARAMETER}", check=0)
    assert "(mounted at /aws-lambda/aws-lambda-rie)" in r.stdout
    assert re.search(rf"/opt/extensions/{EXTENSION}\s+registered", r.stdout)


def test_smoke_uses_the_emulator_where_aws_base_images_have_it(project, daemon, no_emulator_image, tags,
                                                             tmp_path) -> None:
    """AWS's base images carry /usr/local/bin/aws-lambda-rie; an entrypoint may name the emulator itself."""
    image = derived(daemon, project, tags, tmp_path, "extpack-rie/aws-base-like:1",
                    f"FROM {no_emulator_image}\nCOPY aws-lambda-rie /usr/local/bin/aws-lambda-rie\n"
                    'ENTRYPOINT ["/usr/local/bin/aws-lambda-rie", "/var/task/bootstrap"]\n',
                    {"aws-lambda-rie": rie_binary()})
    r = smoke(project, image, "--env", f"PARAMETER_NAME={PARAMETER}", check=0)
    assert "/usr/local/bin/aws-lambda-rie (in the image)" in r.stdout
    assert json.dumps(ANSWER, separators=(",", ":")) in r.stdout


def test_smoke_without_a_docker_daemon_says_so_in_one_line(tmp_path: Path) -> None:
    if not (os.access("/usr/bin/docker", os.X_OK) or shutil.which("docker")):
        unavailable("no docker CLI: extpack smoke drives docker")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    socket_path = tmp_path / "no-daemon.sock"
    r = subprocess.run([sys.executable, "-m", "extpack", "smoke", "some/image:1", "--docker-host",
                        f"unix://{socket_path}"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                       timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"extpack: error: no Docker daemon answers at unix://{socket_path}")
