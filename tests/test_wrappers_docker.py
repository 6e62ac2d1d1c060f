"""Wrappers and layer paths in real images, run by AWS's Runtime Interface Emulator.

fetch -> render --rie -> docker build --network none -> docker run (no network) -> invoke the
function through the emulator from inside the container (`docker exec` + busybox wget).

(a) A wrapper layer whose script exports a variable; the function (a Lambda runtime written
    in busybox sh) returns it: the answer carries it only because the wrapper ran.
(b) A library layer (/opt/python/mylib.py) imported by a Python handler on a non-AWS Python
    base (tests/python_base.py: the test run's own Python copied into a busybox image, with no
    PYTHONPATH of its own): the import works only through the layer paths render added.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import make_layers
import pytest
from dockerd import DockerDaemon, DockerUnavailable

pytestmark = pytest.mark.docker

RIE = Path(os.environ.get("EXTPACK_TEST_RIE") or "/usr/local/libexec/extpack-test/aws-lambda-rie")
INVOKE_URL = "http://127.0.0.1:8080/2015-03-31/functions/function/invocations"
BUILDERS = {"buildkit": "1", "classic": "0"}

WRAPPER_ZIP = (
    make_layers.ZipBuilder()
    .file("otel-instrument", '#!/bin/sh\nexport WRAPPED_BY="otel-instrument"\nexec "$@"\n', 0o755)
    .getvalue()
)
LIBRARY_ZIP = (
    make_layers.ZipBuilder()
    .dir("python", 0o755)
    .file("python/mylib.py", "VALUE = 'imported from the library layer'\n")
    .getvalue()
)

# A Lambda runtime in busybox sh: take the next event, answer with what the wrapper set.
SH_RUNTIME = r"""#!/bin/sh
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while :; do
  headers=$(wget -S -q -O /tmp/event "$api/invocation/next" 2>&1) || exit 1
  id=$(printf '%s\n' "$headers" | sed -n 's/^ *Lambda-Runtime-Aws-Request-Id: *\([A-Za-z0-9-]*\).*/\1/p')
  wget -q -O /dev/null --post-data "{\"wrapped_by\": \"${WRAPPED_BY:-nothing}\"}" "$api/invocation/$id/response"
done
"""

# A Lambda runtime in Python (what awslambdaric does, in a few lines of the standard library).
PY_RUNTIME = """\
import http.client, importlib, json, os, sys

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")


def call(method, path, body=None):
    connection = http.client.HTTPConnection(host, int(port))
    connection.request(method, "/2018-06-01/runtime" + path, body=body)
    response = connection.getresponse()
    return response, response.read()


def error(exc):
    return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})


module, function = sys.argv[1].rsplit(".", 1)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    handler = getattr(importlib.import_module(module), function)
except Exception as exc:
    call("POST", "/init/error", error(exc))
    sys.exit(1)
while True:
    response, event = call("GET", "/invocation/next")
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    try:
        call("POST", f"/invocation/{request_id}/response", json.dumps(handler(json.loads(event), None)))
    except Exception as exc:
        call("POST", f"/invocation/{request_id}/error", error(exc))
"""
PY_HANDLER = """\
def handler(event, context):
    import mylib  # here, so that a failed import is the invocation's error, not the runtime's exit

    return {"lib": mylib.VALUE, "file": mylib.__file__}
"""


@pytest.fixture(scope="module")
def rie() -> Path:
    if not os.access(RIE, os.X_OK):
        if os.environ.get("EXTPACK_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{RIE} not found: .ci/install.sh builds it (or set EXTPACK_TEST_RIE)")
        pytest.skip(f"{RIE} not found: .ci/install.sh builds it (or set EXTPACK_TEST_RIE)")
    return RIE


@pytest.fixture(scope="module")
def python_base(docker_daemon: DockerDaemon, busybox_base: str) -> str:
    from python_base import make_python_base

    try:
        return make_python_base(docker_daemon)
    except DockerUnavailable as exc:
        if os.environ.get("EXTPACK_REQUIRE_DOCKER") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def made(docker_daemon: DockerDaemon) -> Iterator[list[str]]:
    """Containers and images a test made, removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        docker_daemon.docker("rm", "-f", name, check=False)
        docker_daemon.docker("rmi", "-f", name, check=False)


def _context(tmp_path: Path, rie: Path, zips: dict[str, bytes], function: dict[str, str]) -> Path:
    (tmp_path / "bin").mkdir()
    shutil.copy(rie, tmp_path / "bin" / "aws-lambda-rie")
    for name, data in zips.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "function").mkdir()
    for name, text in function.items():
        (tmp_path / "function" / name).write_text(text)
        (tmp_path / "function" / name).chmod(0o755)
    return tmp_path


def _build(daemon: DockerDaemon, context: Path, tag: str, builder: str, made: list[str]) -> None:
    made.append(tag)
    daemon.docker("build", "--network", "none", "-t", tag, context, env={"DOCKER_BUILDKIT": BUILDERS[builder]},
                  timeout=300)


def _invoke(daemon: DockerDaemon, image: str, made: list[str], *run_args: str) -> dict:
    """Start the image (its entry script runs the emulator) and invoke the function once."""
    container = daemon.docker("run", "-d", "--network", "none", *run_args, image).stdout.strip()
    made.append(container)
    deadline = time.monotonic() + 60
    while True:  # poll until the emulator listens and the function answers
        answer = daemon.docker("exec", container, "wget", "-q", "-O", "-", "--post-data", "{}", INVOKE_URL,
                               check=False, timeout=60)
        if answer.returncode == 0:
            return json.loads(answer.stdout)
        listening = "refused" not in answer.stderr
        running = daemon.docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        if listening or running != "true" or time.monotonic() > deadline:
            logs = daemon.docker("logs", container, check=False)
            raise AssertionError(f"no answer from the function: {answer.stderr}\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.2)


def test_a_wrapper_layer_runs_before_the_function_on_the_rie_template(
        run_extpack, tmp_path, rie, docker_daemon, busybox_base, made):
    _context(tmp_path, rie, {"wrapper.zip": WRAPPER_ZIP}, {"bootstrap": SH_RUNTIME})
    fetched = run_extpack("fetch", "wrapper.zip", check=True)
    assert "AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-instrument" in fetched.stderr
    run_extpack("render", "--template", "alpine-rie", "--base", busybox_base, "--rie-binary", "bin/aws-lambda-rie",
                "--wrapper", "/opt/otel-instrument", "--copy", "function/bootstrap:/var/task/bootstrap",
                "--entrypoint", "/var/task/bootstrap", check=True)
    tag = "extpack-wrappers/wrapper:1"
    _build(docker_daemon, tmp_path, tag, "buildkit", made)

    assert _invoke(docker_daemon, tag, made) == {"wrapped_by": "otel-instrument"}
    # The control: the same image with the variable emptied answers without the wrapper.
    assert _invoke(docker_daemon, tag, made, "-e", "AWS_LAMBDA_EXEC_WRAPPER=") == {"wrapped_by": "nothing"}


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_a_python_library_layer_is_importable_on_a_non_aws_base(
        run_extpack, tmp_path, rie, docker_daemon, python_base, made, builder):
    _context(tmp_path, rie, {"library.zip": LIBRARY_ZIP}, {"runtime.py": PY_RUNTIME, "app.py": PY_HANDLER})
    run_extpack("fetch", "library.zip", check=True)
    run_extpack("render", "--rie", "--base", python_base, "--rie-binary", "bin/aws-lambda-rie",
                "--copy", "function:/var/task", "--entrypoint", "python3 /var/task/runtime.py", "--cmd", "app.handler",
                check=True)
    assert 'ENV PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}/opt/python"' in (tmp_path / "Dockerfile").read_text()
    tag = f"extpack-wrappers/python-library:{builder}"
    _build(docker_daemon, tmp_path, tag, builder, made)

    assert _invoke(docker_daemon, tag, made) == {"lib": "imported from the library layer",
                                                 "file": "/opt/python/mylib.py"}
    # The control: without the layer paths the base's Python does not find the library.
    failed = _invoke(docker_daemon, tag, made, "-e", "PYTHONPATH=")
    assert failed.get("errorType") == "ModuleNotFoundError" and "mylib" in failed.get("errorMessage", "")
