"""Every example in the README is run by a test, or listed here with the reason it cannot be.

Each fenced block of README.md is found by its first line. A shell block is run through bash
as a user would type it: `extpack` is this checkout's CLI, ARNs are answered by the loopback
Lambda API (AWS_ENDPOINT_URL_LAMBDA), `docker` is /usr/bin/docker talking to the tests' own
dockerd. A synopsis is held to the command's --help. A block the test neither runs nor lists
fails it, and so does a listed block the README no longer has.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import make_layers
import pytest
from test_daily import _extpack_shell, _fenced_blocks

TESTS_DIR = Path(__file__).resolve().parent
README = TESTS_DIR.parent / "README.md"
DOCKER = "/usr/bin/docker"

OPENING = "extpack fetch arn:aws:lambda:us-east-1:177933569100:layer:AWS-Parameters-and-Secrets-Lambda-Extension:12"
BESIDE_YOUR_DOCKERFILE = "extpack render --output Dockerfile.extpack"
MIGRATE = "extpack fetch --function orders --region eu-west-1 --with-code"
FROM_IMAGE = "extpack render --from-image registry.example/team/extensions@sha256:…"
SYNOPSES = ("extpack fetch [SOURCE ...]", "extpack render [--template", "extpack image --output DIR|FILE",
            "extpack smoke IMAGE")

# Blocks run by a test in another file: first line -> (file, test).
RUN_ELSEWHERE = {
    "extpack fetch fixtures/demo-extension.zip --stage-dir build/demo/.extpack --lock build/demo/extpack.lock":
        ("test_daily.py", "test_the_readmes_runnable_examples_run"),
    "extpack render --template go.Dockerfile.j2 --copy build:/main:/main --entrypoint /main":
        ("test_daily.py", "test_the_readmes_go_example_renders_as_it_says"),
    "$ extpack smoke go-function:latest --env PARAMETER_NAME=/my-app/greeting":
        ("test_rie_e2e.py", "test_smoke_reports_a_good_image"),
}

# Blocks that are not run, each with the reason.
NOT_RUN = {
    "pipx install ./extpack": "installing builds extpack with setuptools from the package index (the network); "
                              "CI installs the same pyproject.toml with make install-test",
    "make demo": "installs extpack into the machine's Python (pip install -e), which a test must not repoint; "
                 "its extpack commands are the runnable block's, which test_daily.py runs",
    "function  FAILED: the emulator answered HTTP 502": "output, not a command: smoke's report on the arm64 "
                                                        "extension image, checked by tests/test_rie_e2e.py",
}

NOT_SHELL = {"json", "jinja"}  # the lock's format; the Go example's template, which its render example uses
MAKEFILE_EXCERPT = "extpack.lock: extpack.toml"


_CHECKED = (OPENING, BESIDE_YOUR_DOCKERFILE, MIGRATE, FROM_IMAGE, MAKEFILE_EXCERPT, *SYNOPSES, *RUN_ELSEWHERE, *NOT_RUN)


def _blocks() -> list[tuple[str, str, str]]:
    """(info string, first line, body) of every fenced block of the README."""
    return [(info, body.splitlines()[0], body) for _, info, body in _fenced_blocks(README.read_text())]


def _block(first_line: str) -> str:
    bodies = [body for _, first, body in _blocks() if first.startswith(first_line)]
    assert len(bodies) == 1, f"the README has {len(bodies)} blocks starting {first_line!r}"
    return bodies[0]


def _how_checked(info: str, first: str) -> str | None:
    if info in NOT_SHELL:
        return "not a shell block"
    for known in _CHECKED:
        if first.startswith(known):
            return known
    return None


def test_every_block_is_run_or_listed() -> None:
    blocks = _blocks()
    unchecked = [first for info, first, _ in blocks if _how_checked(info, first) is None]
    assert not unchecked, f"README blocks no test runs or lists (run them in tests/test_readme.py): {unchecked}"
    firsts = [first for _, first, _ in blocks]
    stale = [known for known in _CHECKED if not any(first.startswith(known) for first in firsts)]
    assert not stale, f"listed in tests/test_readme.py but no longer in the README: {stale}"
    for test_file, test_name in RUN_ELSEWHERE.values():
        assert f"def {test_name}(" in (TESTS_DIR / test_file).read_text(), f"{test_file} has no {test_name}"


@pytest.mark.parametrize("synopsis", SYNOPSES)
def test_every_flag_of_a_synopsis_is_a_flag_of_the_command(synopsis: str, run_extpack) -> None:
    body = _block(synopsis)
    command = body.split()[1]
    helped = run_extpack(command, "--help", check=True).stdout
    missing = [flag for flag in sorted(set(re.findall(r"--[a-z][a-z0-9-]*", body)))
               if not re.search(rf"(?<![\w-]){flag}\b", helped)]
    assert not missing, f"the README's `extpack {command}` synopsis names flags --help does not have: {missing}"


def test_the_makefile_excerpt_is_what_examples_makefile_says() -> None:
    """Every rule and command of the excerpt is in examples/Makefile (which test_workflow.py runs)."""
    makefile = (README.parent / "examples" / "Makefile").read_text()
    for variable, value in [("$(EXTPACK)", "extpack"), ("$(DOCKER)", "docker"), ("$(STAGE)", ".extpack")]:
        makefile = makefile.replace(variable, value)
    lines = {line.strip() for line in makefile.splitlines()}
    excerpt = [part.strip() for line in _block(MAKEFILE_EXCERPT).splitlines() for part in line.split(" && ")]
    assert [line for line in excerpt if line not in lines] == []


def test_from_image_renders_what_the_readme_shows(run_extpack, tmp_path: Path) -> None:
    command, shown = _block(FROM_IMAGE).splitlines()
    digest = "sha256:" + "ab" * 32
    run_extpack(*shlex.split(command.replace("sha256:…", digest))[1:], check=True)
    dockerfile = (tmp_path / "Dockerfile").read_text()
    for fragment in shown.removeprefix("# → ").split(" ... "):
        assert fragment.replace("sha256:…", digest) in dockerfile, dockerfile


# --------------------------------------------------------------------------- with docker


@dataclass
class Shell:
    """Runs a README block in a project folder as a user's shell would."""

    project: Path
    env: dict[str, str]
    built: list[str] = field(default_factory=list)

    def __call__(self, body: str) -> subprocess.CompletedProcess[str]:
        self.built.extend(re.findall(r"docker build .*-t (\S+)", body))
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=self.project, env=self.env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        return result


@pytest.fixture
def shell(tmp_path: Path, aws_env: dict[str, str], fake_lambda, docker_daemon, busybox_base: str):
    """A Shell with the opening example's layer published by the loopback Lambda API, `docker` talking to
    the tests' dockerd, and the default base image made from busybox."""
    bin_dir = _extpack_shell(tmp_path)
    (bin_dir / "docker").symlink_to(DOCKER)  # never another docker that happens to be on PATH
    env = dict(aws_env, **{k: v for k, v in docker_daemon.env.items() if k.startswith("DOCKER_")})
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    arn = re.search(r"arn:aws:lambda:([\w-]+):(\d+):layer:([\w-]+):(\d+)", OPENING)
    fake_lambda.add_layer(arn[3], make_layers.build("demo-extension.zip"), version=int(arn[4]),
                          account=arn[2], region=arn[1])
    default_base = "public.ecr.aws/lambda/provided:al2023"
    docker_daemon.docker("tag", busybox_base, default_base)
    (tmp_path / "project").mkdir()
    readme_shell = Shell(tmp_path / "project", env)
    yield readme_shell
    docker_daemon.docker("rmi", "-f", default_base, *readme_shell.built, check=False)


def _extensions_in(docker_daemon, image: str) -> list[str]:
    listing = docker_daemon.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/ls", image,
                                   "/opt/extensions")
    return listing.stdout.split()


@pytest.mark.docker
def test_the_opening_example_fetches_renders_and_builds(shell, docker_daemon) -> None:
    body = _block(OPENING)
    shell(body)
    assert (shell.project / "extpack.lock").is_file()
    assert _extensions_in(docker_daemon, re.search(r"-t (\S+)", body)[1]) == ["demo-extension"]


@pytest.mark.docker
def test_rendering_beside_a_hand_written_dockerfile_builds_and_keeps_it(shell, docker_daemon) -> None:
    body = _block(BESIDE_YOUR_DOCKERFILE)
    own = "FROM public.ecr.aws/lambda/provided:al2023\nCOPY main /main\n"
    (shell.project / "Dockerfile").write_text(own)
    shell(OPENING)
    shell(body)
    assert (shell.project / "Dockerfile").read_text() == own
    assert _extensions_in(docker_daemon, re.search(r"-t (\S+)", body)[1]) == ["demo-extension"]


@pytest.mark.docker
def test_the_migrate_example_converts_a_zip_function_and_builds_it(shell, docker_daemon, fake_lambda) -> None:
    body = _block(MIGRATE)
    region = re.search(r"--region (\S+)", body)[1]
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"), region=region)
    bootstrap = "#!/bin/sh\necho orders\n"
    code = make_layers.ZipBuilder().file("bootstrap", bootstrap.encode(), 0o755).getvalue()
    fake_lambda.add_function(re.search(r"--function (\S+)", body)[1], code, runtime="provided.al2023",
                             handler="orders.handle", layers=[layer], region=region)
    # The stand-in base gets the two variables AWS's provided base sets, which render's COPY uses.
    base_context = shell.project.parent / "aws-like-base"
    base_context.mkdir()
    (base_context / "Dockerfile").write_text("FROM public.ecr.aws/lambda/provided:al2023\n"
                                             "ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime\n")
    docker_daemon.docker("build", "--network", "none", "-t", "public.ecr.aws/lambda/provided:al2023", base_context)
    shell(body)
    image = re.search(r"-t (\S+)", body)[1]
    assert _extensions_in(docker_daemon, image) == ["demo-extension"]
    # the function's code went where its runtime looks for it, and its handler is the command
    shown = docker_daemon.docker("image", "inspect", "--format", "{{json .Config.Cmd}}", image).stdout
    assert json.loads(shown) == ["orders.handle"]
    listed = docker_daemon.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/cat", image,
                                  "/var/runtime/bootstrap").stdout
    assert listed == bootstrap
