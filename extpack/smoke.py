"""The `smoke` command: run a local image under AWS's Runtime Interface Emulator, invoke it once.

It answers "will my extensions start in Lambda?" with AWS's own emulator: the emulator launches
every entry of /opt/extensions exactly as Lambda does, so an extension built for another CPU,
one that is not executable, one that exits or never registers shows up here before deploying.

Docker is driven through its CLI (extpack/container.py). What the emulator says is read from
its log; the lines parsed below are the ones aws-lambda-rie (github.com/aws/
aws-lambda-runtime-interface-emulator, internal/lambda) writes:

    rapi/handler/agentregister.go  External agent NAME (ID) registered, subscribed to [INVOKE SHUTDOWN]
    rapidcore/server.go            Init failed ... error=fork/exec /opt/extensions/NAME: exec format error
    rapid/handlers.go              Process extension-NAME-1 exited: exit status 3
    rapid/handlers.go              INIT REPORT(durationMs: 10.063000)
    rie/handlers.go                REPORT RequestId: ID  Init Duration: ...  Duration: 12.76 ms ...
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from extpack.container import (
    EXTENSIONS_DIR,
    Docker,
    ExtensionFile,
    ImageInfo,
    free_port,
    has_bridge,
    has_file,
    inspect_image,
    list_extensions,
    probe_container,
)
from extpack.exceptions import NotALambdaError, UsageError

RIE_IN_AWS_BASE = "/usr/local/bin/aws-lambda-rie"  # AWS's base images (public.ecr.aws/lambda/*)
RIE_IN_EXTPACK_IMAGE = "/usr/bin/aws-lambda-rie"  # images rendered with `extpack render --rie`
RIE_MOUNTED = "/aws-lambda/aws-lambda-rie"  # --rie PATH from the host, as AWS's docs mount it
RIE_PORT = 8080
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# Nothing here reaches AWS: the function and its extensions get credentials that only look real.
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAEXTPACKSMOKETEST",
    "AWS_SECRET_ACCESS_KEY": "extpack-smoke-dummy-secret",
    "AWS_SESSION_TOKEN": "extpack-smoke-dummy-session-token",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# API paths a telemetry extension calls; the emulator answers them with "not supported".
_REGISTERED = re.compile(r"External agent (?P<name>\S+) \([^)]*\) registered, subscribed to \[(?P<events>[^\]]*)\]")
_LAUNCH_FAILED = re.compile(r"fork/exec /opt/extensions/(?P<name>[^:]+): (?P<reason>.+?)(?=\s+\w+=|$)")
_EXITED = re.compile(r"Process extension-(?P<name>.+)-\d+ exited: (?P<how>.+)$")
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: (?P<ms>[\d.]+)\)")
_INVOKE_REPORT = re.compile(r"^REPORT RequestId: .*\tDuration: (?P<ms>[\d.]+) ms")


@dataclass
class SmokeOptions:
    image: str
    event: bytes = b"{}"
    env: list[tuple[str, str]] = field(default_factory=list)
    rie: Path | None = None  # an emulator binary on the Docker host, mounted into the container
    timeout: float = 30.0
    network: str = "auto"  # auto | bridge | host
    docker_host: str | None = None

    @classmethod
    def parse(cls, image: str, *, event: bytes | None, event_name: str | None, env: list[str], rie: Path | None,
              timeout: float, network: str, docker_host: str | None) -> SmokeOptions:
        """From the command line's words: the event must be JSON (default {}), env NAME=VALUE."""
        from extpack.render_options import parse_env

        event = b"{}" if event is None else event
        try:
            json.loads(event)
        except ValueError:
            raise UsageError(f"--event {event_name}: not JSON") from None
        return cls(image=image, event=event, env=[parse_env(item) for item in env], rie=rie, timeout=timeout,
                   network=network, docker_host=docker_host)


@dataclass
class ExtensionResult:
    name: str
    registered: bool
    status: str  # "registered", or how it failed
    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SmokeReport:
    image: str
    emulator: str
    network: str
    answered: bool = False
    status_code: int | None = None
    response: str | None = None
    function_error: str | None = None
    init_ms: float | None = None
    invoke_ms: float | None = None
    extensions: list[ExtensionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.answered and self.function_error is None and all(e.registered for e in self.extensions)

    def problems(self) -> list[str]:
        # Extensions first: a failed one makes the emulator fail the invoke too.
        found = [f"extension {e.name}: {e.status}" for e in self.extensions if not e.registered]
        if self.function_error:
            found.append(f"function: {self.function_error}")
        return found


Progress = Callable[[str], None]


# --------------------------------------------------------------------------- the image


def pick_emulator(docker: Docker, cid: str, rie: Path | None) -> tuple[str, list[str], str]:
    """(path of the emulator in the container, extra docker run flags, description)."""
    if rie is not None:
        if not rie.is_file():
            raise UsageError(f"--rie {rie}: no such file (give the aws-lambda-rie binary)")
        mount = ["-v", f"{rie.resolve()}:{RIE_MOUNTED}:ro"]
        return RIE_MOUNTED, mount, f"{rie} (mounted at {RIE_MOUNTED})"
    for path in (RIE_IN_AWS_BASE, RIE_IN_EXTPACK_IMAGE):
        if has_file(docker, cid, path):
            return path, [], f"{path} (in the image)"
    raise UsageError(f"the image has neither {RIE_IN_AWS_BASE} (AWS base images) nor {RIE_IN_EXTPACK_IMAGE} "
                     "(extpack render --rie): pass --rie PATH to an aws-lambda-rie binary")


def function_command(info: ImageInfo) -> list[str]:
    """What the emulator starts as the function: the image's entrypoint and command, minus an emulator
    already at its head (entry scripts that pick the emulator themselves see AWS_LAMBDA_RUNTIME_API and
    exec the function)."""
    command = info.entrypoint + info.cmd
    if command and os.path.basename(command[0]) == "aws-lambda-rie":
        command = command[1:]
    return command


# --------------------------------------------------------------------------- network


def network_plan(docker: Docker, choice: str) -> tuple[str, list[str], list[str], int | None]:
    """(network, docker run flags, emulator flags, host port or None when docker publishes one)."""
    if choice == "auto":
        choice = "bridge" if has_bridge(docker) else "host"
    if choice == "bridge":
        return "bridge", ["-p", f"127.0.0.1::{RIE_PORT}"], [], None
    # No bridge (e.g. dockerd --bridge=none): the container shares the host's network, so both the
    # emulator's endpoint and its Runtime API need ports nobody else uses.
    port = free_port()
    emulator = ["--runtime-interface-emulator-address", f"127.0.0.1:{port}",
                "--runtime-api-address", f"127.0.0.1:{free_port()}"]
    return "host", ["--network", "host"], emulator, port


# --------------------------------------------------------------------------- running


def smoke(options: SmokeOptions, progress: Progress) -> SmokeReport:
    docker = Docker(options.docker_host)
    docker.require_daemon()
    info = inspect_image(docker, options.image)
    with probe_container(docker, options.image) as cid:
        extensions = list_extensions(docker, cid)
        rie_path, mount, emulator = pick_emulator(docker, cid, options.rie)
    network, net_flags, rie_flags, port = network_plan(docker, options.network)
    report = SmokeReport(image=options.image, emulator=emulator, network=network)
    env = {**DUMMY_ENV, **dict(options.env)}
    name = f"extpack-smoke-{uuid.uuid4().hex[:12]}"
    run = ["run", "-d", "--name", name, *net_flags, *mount, "--entrypoint", rie_path]
    for key, value in env.items():
        run += ["-e", f"{key}={value}"]
    run += [options.image, *rie_flags, *function_command(info)]
    progress(f"starting {options.image} under {emulator}, network {network}, "
             f"{len(extensions)} extension(s) in {EXTENSIONS_DIR}")
    timed_out = False
    try:
        docker.run(*run)  # inside the try: a container that was created but failed to start is removed too
        port = port or _published_port(docker, name)
        timed_out = _invoke(docker, name, port, options, report, progress)
    finally:
        progress("stopping the container (the extensions get SHUTDOWN)")
        docker.run("stop", "-t", "5", name, check=False, timeout=60)
        report.log = _container_log(docker, name)
        docker.run("rm", "-f", name, check=False)
    _read_log(report, extensions, timed_out, options.timeout)
    return report


def _container_log(docker: Docker, name: str) -> list[str]:
    """The emulator's log (stderr) and the function's and extensions' output (stdout), in time order."""
    logs = docker.run("logs", "--timestamps", name, check=False, timeout=60)
    stamped = [line.partition(" ") for line in (logs.stdout + logs.stderr).splitlines()]
    return [text for _, _, text in sorted(stamped, key=lambda parts: _instant(parts[0]))]


def _instant(stamp: str) -> tuple[str, str]:
    # RFC 3339 with nanoseconds, trailing zeros trimmed: pad the fraction so strings compare as times.
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


def _published_port(docker: Docker, name: str) -> int:
    mapping = docker.run("port", name, f"{RIE_PORT}/tcp").stdout.split()[0]
    return int(mapping.rsplit(":", 1)[1])


def _invoke(docker: Docker, name: str, port: int, options: SmokeOptions, report: SmokeReport,
            progress: Progress) -> bool:
    """Invoke once within --timeout; fills the response in; True when the function never answered in time."""
    deadline = time.monotonic() + options.timeout
    url = f"http://127.0.0.1:{port}{INVOKE_PATH}"
    progress(f"invoking with a {len(options.event)}-byte event (timeout {options.timeout:g}s)")
    while True:
        request = urllib.request.Request(url, data=options.event, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with _no_proxy().open(request, timeout=max(0.1, deadline - time.monotonic())) as answer:
                _answered(report, answer.status, answer.read())
            return False
        except urllib.error.HTTPError as error:
            _answered(report, error.code, error.read())
            return False
        except (urllib.error.URLError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                report.function_error = f"no answer within --timeout {options.timeout:g}s"
                return True
            # The emulator is not listening yet, or the container is gone.
            if not _running(docker, name):
                report.function_error = "the container exited before the emulator answered"
                return False
        except (socket.timeout, TimeoutError):
            report.function_error = f"no answer within --timeout {options.timeout:g}s"
            return True
        if time.monotonic() > deadline:
            report.function_error = f"the emulator did not listen within --timeout {options.timeout:g}s"
            return True
        time.sleep(0.05)


def _no_proxy() -> urllib.request.OpenerDirector:
    # The emulator is on this machine: a proxy from the environment must not take the request.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _running(docker: Docker, name: str) -> bool:
    state = docker.run("inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.stdout.strip() == "true"


def _answered(report: SmokeReport, status: int, body: bytes) -> None:
    report.answered = True
    report.status_code = status
    report.response = body.decode("utf-8", "replace")
    if status != 200:
        report.function_error = f"the emulator answered HTTP {status}" + (
            f": {report.response.strip()}" if report.response.strip() else " (the sandbox failed; see its log)")
        return
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict) and "errorType" in value and "errorMessage" in value:
        report.function_error = f"{value['errorType']}: {value['errorMessage']}"
    elif report.response.startswith("Task timed out after"):
        report.function_error = report.response


def _read_log(report: SmokeReport, extensions: list[ExtensionFile], timed_out: bool, timeout: float) -> None:
    registered: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for line in report.log:
        if match := _REGISTERED.search(line):
            registered[match["name"]] = match["events"].split()
        elif match := _LAUNCH_FAILED.search(line):
            failed.setdefault(match["name"], match["reason"].strip())
        elif match := _EXITED.search(line):
            failed.setdefault(match["name"], f"exited ({match['how'].strip()})")
        elif (match := _INIT_REPORT.search(line)) and report.init_ms is None:
            report.init_ms = float(match["ms"])
        elif (match := _INVOKE_REPORT.search(line)) and report.invoke_ms is None:
            report.invoke_ms = float(match["ms"])
    launch_failure = next((e.name for e in extensions if e.name in failed and "exited" not in failed[e.name]), None)
    names = [e.name for e in extensions]
    for ext in extensions:
        result = _extension_result(ext, registered, failed, timed_out, timeout)
        if not result.registered and launch_failure and names.index(ext.name) > names.index(launch_failure):
            result.status = f"not started: the emulator stopped at {launch_failure}"
        report.extensions.append(result)
    if any(e.telemetry for e in extensions):
        report.notes.append("the emulator does not implement the Telemetry API (nor the Logs API): extensions "
                            "that subscribe to it start and register here, but their telemetry is not exercised")


def _extension_result(ext: ExtensionFile, registered: dict[str, list[str]], failed: dict[str, str],
                      timed_out: bool, timeout: float) -> ExtensionResult:
    notes = ["subscribes to the Telemetry API, which the emulator does not implement"] if ext.telemetry else []
    if ext.name in registered:
        return ExtensionResult(ext.name, True, "registered", registered[ext.name], notes)
    if ext.name in failed:
        return ExtensionResult(ext.name, False, failed[ext.name], [], notes)
    status = f"never registered within --timeout {timeout:g}s" if timed_out else "never registered"
    return ExtensionResult(ext.name, False, status, [], notes)


def fail_if_broken(report: SmokeReport) -> None:
    if not report.ok:
        raise NotALambdaError(f"{report.image} does not run as a Lambda: " + "; ".join(report.problems()))


def log_tail(report: SmokeReport, lines: int = 25) -> list[str]:
    return report.log[-lines:]


def write_progress(message: str) -> None:
    print(f"smoke: {message}", file=sys.stderr, flush=True)

