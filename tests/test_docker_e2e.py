"""End to end through the real CLI and the tests' own dockerd: fetch -> render -> docker build -> docker run.

One project is fetched once for the module (four fixture layers by ARN from the loopback
Lambda API, plus a local zip with unusual modes), and every Dockerfile extpack renders for
it is built with ``--network none`` by BuildKit and by the classic builder. Inside the
running containers a busybox script lists every path under /opt with its type, mode,
owner and sha256 (files) or target (symlinks); that listing must equal the stage on the
host exactly, and the stage must equal what its manifest.json claims.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot
from dockerd import LAMBDA_UID, DockerDaemon
from lambda_server import FakeLambda

pytestmark = pytest.mark.docker

BUILDERS = {"buildkit": "1", "classic": "0"}
ARN_LAYERS = ("demo-extension", "override-a", "override-b", "python-deps")
EXT = "/opt/extensions/demo-extension"
READY = "demo-extension ready"

# A layer with the modes a Lambda layer can carry besides 0644/0755: private dirs and
# files, read-only files, owner+group executables, links to dirs, a dangling link.
MODES_ZIP = (
    make_layers.ZipBuilder()
    .dir("modes", 0o755)
    .dir("modes/private", 0o700)
    .file("modes/private/secret.txt", "secret\n", 0o600)
    .file("modes/readonly.txt", "read only\n", 0o444)
    .file("modes/run-me", "#!/bin/sh\necho run-me ran\n", 0o750)
    .symlink("modes/run-me-link", "run-me")
    .symlink("modes/dir-link", "private")
    .symlink("modes/dangling", "does-not-exist")
    .dir("modes/empty", 0o711)
    .getvalue()
)

# Runs inside the container (busybox sh): one tab-separated line per path under /opt,
# "." being /opt itself. Symlinks are tested first: -d and -f follow them.
LIST_OPT = r"""
set -e
cd /opt
find . | sort | while IFS= read -r p; do
  if [ "$p" = . ]; then rel=.; else rel=${p#./}; fi
  mode=$(stat -c %a "$p"); owner=$(stat -c %u:%g "$p")
  if [ -L "$p" ]; then kind=symlink; content=$(readlink "$p")
  elif [ -d "$p" ]; then kind=dir; content=
  elif [ -f "$p" ]; then kind=file; content=$(sha256sum "$p" | cut -d' ' -f1)
  else kind=other; content=
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$rel" "$kind" "$mode" "$owner" "$content"
done
"""

# The "go handler" reads a staged file, so it proves /opt is where the function expects it.
GO_MAIN = """\
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
)

func main() {
	data, err := os.ReadFile("/opt/demo-extension/config.json")
	if err != nil {
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
	var cfg struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
	fmt.Printf("handler %s uid=%d sees %s\\n", runtime.Version(), os.Getuid(), cfg.Name)
}
"""
# The seed's Go example as a user template. The golang image cannot be pulled here, so the
# build stage starts from the local base and receives the binary compiled on the host.
GO_TEMPLATE = """\
{% extends "aws-base" %}
{% block build %}
FROM {{ base }} AS build
COPY main /main
{% endblock %}
{% block app %}
COPY --from=build /main /main
ENTRYPOINT ["/main"]
{% endblock %}
"""


# --------------------------------------------------------------------------- helpers


class Project:
    """A project folder and the environment the extpack CLI runs with (module-scoped)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    @property
    def stage(self) -> Path:
        return self.root / ".extpack"

    def extpack(self, *args: str | os.PathLike[str], cwd: Path | None = None,
                check: int | None = 0) -> subprocess.CompletedProcess[str]:
        from conftest import _extpack_command

        cmd = _extpack_command() + [os.fspath(a) for a in args]
        r = subprocess.run(cmd, check=False, cwd=cwd or self.root, env=self.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        if check is not None and r.returncode != check:
            raise AssertionError(f"{' '.join(cmd)}\nexit {r.returncode}, expected {check}\n"
                                 f"--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}")
        return r


def stage_view(stage: Path) -> dict[str, tuple[str, int, str]]:
    """The stage on the host, checked against its manifest.json: path -> (type, mode, content)."""
    snap = tree_snapshot(stage / "opt")
    manifest = json.loads((stage / "manifest.json").read_text())
    claimed = {
        f["path"]: (f["type"], int(f["mode"], 8), (f["sha256"] if f["type"] == "file" else f["target"]) or "")
        for f in manifest["files"]
    }
    assert snap == claimed, "the stage on disk differs from its manifest.json"
    snap["."] = ("dir", stat.S_IMODE((stage / "opt").stat().st_mode), "")
    return snap


def container_view(daemon: DockerDaemon, image: str) -> dict[str, tuple[str, int, str]]:
    """/opt inside a container of ``image``: path -> (type, mode, content); all owned by 0:0."""
    out = daemon.docker("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "/bin/sh",
                        image, "-c", LIST_OPT, timeout=120).stdout
    view, owners = {}, set()
    for line in out.splitlines():
        rel, kind, mode, owner, content = line.split("\t")
        view[rel] = (kind, int(mode, 8), content)
        owners.add(owner)
    assert owners == {"0:0"}, f"/opt is not all root-owned: {owners}"
    return view


def assert_opt_matches(daemon: DockerDaemon, image: str, expected: dict[str, tuple[str, int, str]]) -> None:
    got = container_view(daemon, image)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted((p, expected[p], got[p]) for p in set(expected) & set(got) if expected[p] != got[p])
    assert not (missing or extra or changed), (
        f"/opt in {image} differs from the stage:\nmissing: {missing}\nextra: {extra}\n"
        "changed (staged, in image):\n" + "\n".join(map(str, changed)))


def instructions(dockerfile: str) -> list[str]:
    """A Dockerfile without its comment header."""
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def run(daemon: DockerDaemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`docker run --rm --network none ARGS...` (options, then the image, then its arguments)."""
    return daemon.docker("run", "--rm", "--network", "none", *args, check=check, timeout=120)


def build(daemon: DockerDaemon, context: Path, tag: str, builder: str, dockerfile: str = "Dockerfile",
          check: bool = True) -> subprocess.CompletedProcess[str]:
    return daemon.docker("build", "--network", "none", "-f", context / dockerfile, "-t", tag, context,
                         env={"DOCKER_BUILDKIT": BUILDERS[builder]}, check=check, timeout=300)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Four layers fetched by ARN from the loopback Lambda API, then a local zip."""
    server = FakeLambda().start()
    try:
        arns = [server.add_layer(name, make_layers.build(f"{name}.zip")).arn for name in ARN_LAYERS]
        root = tmp_path_factory.mktemp("project")
        home = tmp_path_factory.mktemp("home")
        (home / "aws").mkdir()
        (home / "aws" / "config").touch()
        (home / "aws" / "credentials").touch()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "EXTPACK_", "DOCKER_")) and k != "BOTO_CONFIG"}
        env.update(
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
            AWS_ENDPOINT_URL_LAMBDA=server.endpoint, AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(home / "aws" / "config"),
            AWS_SHARED_CREDENTIALS_FILE=str(home / "aws" / "credentials"),
            EXTPACK_CACHE_DIR=str(home / "cache"),  # outside the build context
            DOCKER_CONFIG=str(home / "docker"), NO_COLOR="1",
            NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        )
        (root / "modes.zip").write_bytes(MODES_ZIP)
        proj = Project(root, env)
        proj.extpack("fetch", *arns, "modes.zip")
        (root / "modes.zip").unlink()
        yield proj
    finally:
        server.stop()
    assert not server.errors, server.errors


@pytest.fixture(scope="module")
def staged(project: Project) -> dict[str, tuple[str, int, str]]:
    view = stage_view(project.stage)
    # The fixture layers really are in it (so an empty stage cannot pass as "equal").
    assert view["extensions/demo-extension"][:2] == ("file", 0o755)
    assert view["demo-extension/lib/libdemo.so.1"] == ("symlink", 0o777, "libdemo.so.1.0")
    assert view["shared/tool.sh"][:2] == ("file", 0o755)  # override-b's mode won
    assert view["modes/private"] == ("dir", 0o700, "")
    assert view["modes/private/secret.txt"][:2] == ("file", 0o600)
    assert "python/extpack_demo_dep/core.py" in view
    return view


@pytest.fixture(scope="module")
def daemon(docker_daemon: DockerDaemon, busybox_base: str) -> DockerDaemon:
    return docker_daemon


@pytest.fixture(scope="module")
def base(busybox_base: str) -> str:
    return busybox_base


@pytest.fixture(scope="module")
def tags(daemon: DockerDaemon) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    if made:
        daemon.docker("rmi", "-f", *made, check=False)


@pytest.fixture(scope="module")
def aws_base_dockerfile(project: Project, base: str) -> str:
    project.extpack("render", "--base", base, "--entrypoint", EXT)
    return (project.root / "Dockerfile").read_text()


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def aws_base_image(request, project: Project, daemon: DockerDaemon, aws_base_dockerfile: str,
                   tags: list[str]) -> str:
    builder = request.param
    tag = f"extpack-e2e/aws-base:{builder}"
    build(daemon, project.root, tag, builder)
    tags.append(tag)
    return tag


# --------------------------------------------------------------------------- 1. aws-base


def test_rendered_dockerfile_is_what_20_10_builds(aws_base_dockerfile: str, base: str) -> None:
    assert "# syntax=" not in aws_base_dockerfile and "--link" not in aws_base_dockerfile
    assert "COPY .extpack/opt /opt" in aws_base_dockerfile
    assert f"FROM --platform=linux/amd64 {base}" in aws_base_dockerfile
    assert f'ENTRYPOINT ["{EXT}"]' in aws_base_dockerfile


def test_opt_in_the_image_is_exactly_the_stage(daemon: DockerDaemon, aws_base_image: str, staged) -> None:
    assert_opt_matches(daemon, aws_base_image, staged)


def test_extension_runs_as_root_and_as_the_lambda_user(daemon: DockerDaemon, aws_base_image: str) -> None:
    assert run(daemon, aws_base_image).stdout == READY + "\n"
    assert run(daemon, "--user", str(LAMBDA_UID), aws_base_image).stdout == READY + "\n"
    # override-b made tool.sh executable: that mode change alone survived the build
    out = run(daemon, "--user", str(LAMBDA_UID), "--entrypoint", "/opt/shared/tool.sh", aws_base_image).stdout
    assert out == "tool\n"
    # 0750 root:root through a symlink: runs for root, refused for the Lambda user
    assert run(daemon, "--entrypoint", "/opt/modes/run-me-link", aws_base_image).stdout == "run-me ran\n"
    denied = run(daemon, "--user", str(LAMBDA_UID), "--entrypoint", "/opt/modes/run-me-link", aws_base_image,
                 check=False)
    assert denied.returncode != 0 and "run-me ran" not in denied.stdout


# --------------------------------------------------------------------------- 4. --check, .dockerignore


def test_render_check_passes_after_a_real_build(project: Project, base: str, aws_base_image: str,
                                                aws_base_dockerfile: str, staged) -> None:
    r = project.extpack("render", "--base", base, "--entrypoint", EXT, "--check")
    assert "up to date" in r.stderr
    assert (project.root / "Dockerfile").read_text() == aws_base_dockerfile
    assert stage_view(project.stage) == staged  # the build changed nothing in the stage
    # and the guard is live: a different base is drift (exit 6), nothing written
    r = project.extpack("render", "--base", "other/base:1", "--entrypoint", EXT, "--check", check=6)
    assert f"-FROM --platform=linux/amd64 {base}" in r.stdout
    assert (project.root / "Dockerfile").read_text() == aws_base_dockerfile


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_dockerignore_hiding_the_stage_is_refused_and_the_hint_works(
        project: Project, daemon: DockerDaemon, base: str, staged, tags: list[str], tmp_path: Path,
        builder: str) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(project.stage, ctx / ".extpack", symlinks=True)
    project.extpack("render", "--base", base, cwd=ctx)
    dockerfile = (ctx / "Dockerfile").read_text()
    (ctx / ".dockerignore").write_text(".extpack\n")

    r = project.extpack("render", "--base", base, "--entrypoint", EXT, cwd=ctx, check=2)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert ".dockerignore" in r.stderr and "'!.extpack/opt'" in r.stderr
    assert (ctx / "Dockerfile").read_text() == dockerfile  # nothing written

    # The refusal is not a false alarm: docker really cannot COPY the stage.
    failed = build(daemon, ctx, f"extpack-e2e/ignored:{builder}", builder, check=False)
    assert failed.returncode != 0
    assert ".extpack/opt" in failed.stderr

    # The hint's line makes both render and the build work.
    (ctx / ".dockerignore").write_text(".extpack\n!.extpack/opt\n")
    project.extpack("render", "--base", base, "--entrypoint", EXT, cwd=ctx)
    tag = f"extpack-e2e/unignored:{builder}"
    build(daemon, ctx, tag, builder)
    tags.append(tag)
    assert_opt_matches(daemon, tag, staged)
    assert run(daemon, tag).stdout == READY + "\n"


# What docker really leaves out, for .dockerignore files that hide all, part or none of the
# stage. The contract: render refuses (exit 2, naming .dockerignore) exactly when the build
# would not carry the whole stage. BuildKit and the classic builder apply .dockerignore the
# same way (both use moby's pattern matcher), so one builder is enough here.
DOCKERIGNORES = [
    pytest.param("**/opt\n", id="hides-all-double-star"),
    pytest.param(".extpack/opt/**\n", id="hides-all-children"),
    pytest.param(".extpack/opt/*\n!.extpack/opt\n", id="re-included-by-parent"),
    pytest.param("modes\n.extpack/manifest.json\n", id="unrelated-and-manifest-only"),
    pytest.param(".extpack/opt/extensions\n", id="hides-the-extensions"),
    pytest.param("**/*.json\n", id="hides-config-json"),
    pytest.param(".extpack/opt/[d-f]xtensions\n", id="class-hides-the-extensions"),
    pytest.param(".extpack/opt/[^e]xtensions\n", id="negated-class-hides-nothing"),
    pytest.param("dist\n[\n", id="bad-pattern"),
]


@pytest.mark.parametrize("dockerignore", DOCKERIGNORES)
def test_render_refuses_exactly_when_docker_would_not_copy_the_whole_stage(
        project: Project, daemon: DockerDaemon, base: str, staged, aws_base_dockerfile: str, tags: list[str],
        tmp_path: Path, dockerignore: str) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(project.stage, ctx / ".extpack", symlinks=True)
    (ctx / ".dockerignore").write_text(dockerignore)
    (ctx / "Dockerfile").write_text(aws_base_dockerfile)  # what render writes without the ignore file
    tag = "extpack-e2e/dockerignore:1"
    built = build(daemon, ctx, tag, "buildkit", check=False)
    complete = built.returncode == 0 and container_view(daemon, tag) == staged
    daemon.docker("rmi", "-f", tag, check=False)

    r = project.extpack("render", "--base", base, "--entrypoint", EXT, "--output", "Dockerfile.new", cwd=ctx,
                        check=None)
    if complete:
        assert r.returncode == 0, f"docker copies the whole stage, yet render refused: {r.stderr}"
        assert instructions((ctx / "Dockerfile.new").read_text()) == instructions(aws_base_dockerfile)
    else:
        assert r.returncode == 2, (f"docker would not copy the whole stage (build exit {built.returncode}), "
                                   f"yet render exited {r.returncode}")
        assert ".dockerignore" in r.stderr and r.stderr.count("\n") == 1
        assert not (ctx / "Dockerfile.new").exists()


# --------------------------------------------------------------------------- 2. --rie

RIE_STANDIN = '#!/bin/sh\necho "RIE $@"\n'
RIE_VARIANTS = {
    "aws-base--rie": ["--rie"],
    "alpine-rie": ["--template", "alpine-rie"],
}


@pytest.fixture(scope="module")
def rie_context(project: Project) -> Path:
    rie = project.root / "bin" / "aws-lambda-rie"
    rie.parent.mkdir(exist_ok=True)
    rie.write_text(RIE_STANDIN)
    rie.chmod(0o644)  # the rendered build makes it executable, whatever the context says
    return project.root


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("variant", sorted(RIE_VARIANTS))
def test_rie_entry_runs_the_emulator_off_lambda_and_the_handler_on_it(
        project: Project, rie_context: Path, daemon: DockerDaemon, base: str, staged, tags: list[str],
        variant: str, builder: str) -> None:
    dockerfile = f"Dockerfile.{variant}"
    project.extpack("render", *RIE_VARIANTS[variant], "--rie-binary", "bin/aws-lambda-rie",
                    "--entrypoint", EXT, "--base", base, "--output", dockerfile)
    text = (project.root / dockerfile).read_text()
    assert "COPY bin/aws-lambda-rie /usr/bin/aws-lambda-rie" in text and "ADD http" not in text
    assert (project.root / "extpack-entry.sh").stat().st_mode & 0o111
    tag = f"extpack-e2e/{variant}:{builder}"
    build(daemon, project.root, tag, builder, dockerfile)
    tags.append(tag)

    off_lambda = run(daemon, tag)
    assert off_lambda.stdout == f"RIE {EXT}\n"
    on_lambda = run(daemon, "-e", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001", tag)
    assert on_lambda.stdout == READY + "\n"
    as_lambda_user = run(daemon, "--user", str(LAMBDA_UID), "-e", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001", tag)
    assert as_lambda_user.stdout == READY + "\n"
    assert_opt_matches(daemon, tag, staged)


def test_rie_dockerfile_in_a_subfolder_of_the_context_builds(
        project: Project, daemon: DockerDaemon, base: str, tags: list[str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(project.stage, ctx / ".extpack", symlinks=True)
    (ctx / "bin").mkdir()
    (ctx / "bin" / "aws-lambda-rie").write_text(RIE_STANDIN)
    project.extpack("render", "--rie", "--rie-binary", "bin/aws-lambda-rie", "--entrypoint", EXT, "--base", base,
                    "--output", "docker/Dockerfile", "--context", ".", cwd=ctx)
    tag = "extpack-e2e/rie-subfolder:1"
    build(daemon, ctx, tag, "buildkit", "docker/Dockerfile")
    tags.append(tag)
    assert run(daemon, tag).stdout == f"RIE {EXT}\n"


# --------------------------------------------------------------------------- 3. the seed's Go example


@pytest.fixture(scope="module")
def handler(project: Project, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`main` in the build context: a static Go binary built on the host with the machine's Go
    (checked against its go.mod; a missing or older Go fails in CI, see lambda_parts)."""
    import lambda_parts

    src = tmp_path_factory.mktemp("go-src")
    (src / "main.go").write_text(GO_MAIN)
    (src / "go.mod").write_text("module example.com/handler\n\ngo 1.21\n")
    lambda_parts.go_build(src, project.root / "main")
    return "go"


GO_VARIANTS = {
    "copy-options": ["--copy", "main:/main", "--entrypoint", "/main"],
    "user-template": ["--template", "go.Dockerfile.j2"],
}


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("variant", sorted(GO_VARIANTS))
def test_go_shaped_function_image(project: Project, handler: str, daemon: DockerDaemon, base: str, staged,
                                  tags: list[str], variant: str, builder: str) -> None:
    (project.root / "go.Dockerfile.j2").write_text(GO_TEMPLATE)
    dockerfile = f"Dockerfile.go-{variant}"
    project.extpack("render", *GO_VARIANTS[variant], "--base", base, "--output", dockerfile)
    text = (project.root / dockerfile).read_text()
    assert 'ENTRYPOINT ["/main"]' in text
    tag = f"extpack-e2e/go-{variant}:{builder}"
    build(daemon, project.root, tag, builder, dockerfile)
    tags.append(tag)

    version = r"go1\.\d+\S*"
    assert re.fullmatch(rf"handler {version} uid=0 sees demo-extension\n", run(daemon, tag).stdout)
    out = run(daemon, "--user", str(LAMBDA_UID), tag).stdout
    assert re.fullmatch(rf"handler {version} uid={LAMBDA_UID} sees demo-extension\n", out)
    assert_opt_matches(daemon, tag, staged)
    assert run(daemon, "--entrypoint", EXT, tag).stdout == READY + "\n"


# --------------------------------------------------------------------------- 5. extension image


@pytest.fixture(scope="module")
def loaded_extension_image(project: Project, daemon: DockerDaemon, tags: list[str],
                           tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = tmp_path_factory.mktemp("archive") / "img.tar"
    out = project.extpack("image", "--format", "docker-archive", "--tag", "ext/opt:1", "-o", archive).stdout
    digest = out.split()[-1]
    assert digest.startswith("sha256:")
    loaded = daemon.docker("load", "-i", archive, timeout=120).stdout
    assert "Loaded image: ext/opt:1" in loaded
    tags.append("ext/opt:1")
    return "ext/opt:1"


def test_loaded_extension_image_is_one_labelled_layer(daemon: DockerDaemon, loaded_extension_image: str,
                                                      project: Project) -> None:
    info = json.loads(daemon.docker("image", "inspect", loaded_extension_image).stdout)[0]
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert len(info["RootFS"]["Layers"]) == 1
    labels = info["Config"]["Labels"]
    layers = json.loads((project.stage / "manifest.json").read_text())["layers"]
    for layer in layers:
        assert labels[f"io.extpack.layer.{layer['index']}.sha256"] == layer["sha256"]
    arns = [layer["arn"] for layer in layers if layer["arn"]]
    assert len(arns) == len(ARN_LAYERS)
    assert [labels[f"io.extpack.layer.{i}.arn"] for i in range(len(arns))] == arns


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_build_from_the_loaded_extension_image_without_a_stage(
        project: Project, daemon: DockerDaemon, base: str, staged, loaded_extension_image: str,
        tags: list[str], tmp_path: Path, builder: str) -> None:
    ctx = tmp_path / "function"  # no .extpack here: /opt must come from the image alone
    ctx.mkdir()
    project.extpack("render", "--from-image", loaded_extension_image, "--base", base, "--entrypoint", EXT, cwd=ctx)
    text = (ctx / "Dockerfile").read_text()
    assert f"FROM --platform=linux/amd64 {loaded_extension_image} AS extpack-opt" in text and ".extpack" not in text
    assert sorted(p.name for p in ctx.iterdir()) == ["Dockerfile"]
    tag = f"extpack-e2e/from-image:{builder}"
    build(daemon, ctx, tag, builder)
    tags.append(tag)
    assert_opt_matches(daemon, tag, staged)
    assert run(daemon, "--user", str(LAMBDA_UID), tag).stdout == READY + "\n"


def test_build_from_a_pushed_extension_image_pinned_by_digest(
        project: Project, daemon: DockerDaemon, base: str, staged, registry, tags: list[str],
        tmp_path: Path) -> None:
    """The team workflow: publish once with --push, build functions FROM it by digest."""
    ref = f"{registry.host}/e2e/extension:1"
    out = project.extpack("image", "--push", ref, "--insecure-registry").stdout
    digest = out.split()[-1]
    pinned = f"{registry.host}/e2e/extension@{digest}"
    ctx = tmp_path / "function"
    ctx.mkdir()
    project.extpack("render", "--from-image", pinned, "--base", base, "--entrypoint", EXT, cwd=ctx)
    assert f"FROM --platform=linux/amd64 {pinned} AS extpack-opt" in (ctx / "Dockerfile").read_text()
    assert not daemon.image_exists(pinned)
    tag = "extpack-e2e/from-registry:1"
    build(daemon, ctx, tag, "buildkit")  # the daemon pulls the pinned image from the registry
    tags.extend([tag, pinned])
    assert_opt_matches(daemon, tag, staged)
    assert run(daemon, tag).stdout == READY + "\n"
