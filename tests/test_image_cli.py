"""`extpack image` through the real CLI: read back by skopeo and umoci, pushed to a real registry.

Stages come from `extpack fetch` of layer ARNs served by the loopback Lambda API (and
local fixture zips for the multi-arch index). The layouts, archives and registry pushes
are checked with Debian's skopeo and umoci and the `registry` fixture's docker-registry;
no dockerd is needed here (tests/test_docker_e2e.py loads and builds on the image).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
needs_skopeo = pytest.mark.skipif(not os.access(SKOPEO, os.X_OK), reason="skopeo not installed (.ci/install.sh)")
needs_umoci = pytest.mark.skipif(not os.access(UMOCI, os.X_OK), reason="umoci not installed (.ci/install.sh)")

LAYER_NAMES = ("demo-extension", "override-a", "override-b", "python-deps")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# Modes besides 0644/0755 must survive into the image too.
MODES_ZIP = (
    make_layers.ZipBuilder()
    .dir("modes", 0o755)
    .dir("modes/private", 0o700)
    .file("modes/private/secret.txt", "secret\n", 0o600)
    .file("modes/readonly.txt", "read only\n", 0o444)
    .file("modes/run-me", "#!/bin/sh\necho run-me ran\n", 0o750)
    .symlink("modes/run-me-link", "run-me")
    .symlink("modes/dangling", "does-not-exist")
    .dir("modes/empty", 0o711)
    .getvalue()
)


def tool(*cmd: str | os.PathLike[str]) -> str:
    r = subprocess.run([os.fspath(c) for c in cmd], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def printed_digest(stdout: str) -> str:
    """The digest `extpack image` prints as its last line."""
    digest = stdout.splitlines()[-1]
    assert digest.startswith("sha256:") and len(digest) == 71, stdout
    return digest


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("extpack: error: ") and "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def env(aws_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """aws_env without an ambient SOURCE_DATE_EPOCH and with an empty docker config."""
    env = {k: v for k, v in aws_env.items() if k not in ("SOURCE_DATE_EPOCH", "DOCKER_CONFIG")}
    (tmp_path / "docker-config").mkdir()
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    return env


@pytest.fixture
def arns(fake_lambda) -> list[str]:
    """The four fixture layers published once on the loopback Lambda API."""
    return [fake_lambda.add_layer(name, make_layers.build(f"{name}.zip")).arn for name in LAYER_NAMES]


@pytest.fixture
def project(tmp_path: Path, run_extpack, env, arns) -> Path:
    """tmp_path/project with a stage fetched from the ARNs and a local zip with odd modes."""
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "modes.zip").write_bytes(MODES_ZIP)
    run_extpack("fetch", *arns, tmp_path / "modes.zip", cwd=root, env=env, check=True)
    return root


# --------------------------------------------------------------------------- oci layout


@needs_skopeo
@needs_umoci
def test_oci_layout_is_read_by_skopeo_and_unpacks_to_the_stage(project: Path, run_extpack, env, arns,
                                                               tmp_path: Path) -> None:
    r = run_extpack("image", "-o", tmp_path / "layout", cwd=project, env=env, check=True)
    digest = printed_digest(r.stdout)
    assert r.stdout == digest + "\n"  # one line: DIGEST=$(extpack image ...)
    assert r.stderr.splitlines()[0] == f"wrote oci {tmp_path / 'layout'} (extpack-opt:latest) {digest}"

    info = json.loads(tool(SKOPEO, "inspect", f"oci:{tmp_path / 'layout'}:extpack-opt:latest"))
    assert info["Digest"] == digest
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert len(info["Layers"]) == 1
    labels = info["Labels"]
    manifest = json.loads((project / ".extpack" / "manifest.json").read_text())
    assert [labels[f"io.extpack.layer.{i}.arn"] for i in range(len(arns))] == arns
    for layer in manifest["layers"]:
        assert labels[f"io.extpack.layer.{layer['index']}.sha256"] == layer["sha256"]

    bundle = tmp_path / "bundle"
    tool(UMOCI, "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:extpack-opt:latest", bundle)
    rootfs = bundle / "rootfs"
    assert sorted(p.name for p in rootfs.iterdir()) == ["opt"]  # only /opt
    staged = tree_snapshot(project / ".extpack" / "opt")
    assert staged["modes/private/secret.txt"][:2] == ("file", 0o600)
    assert staged["demo-extension/lib/libdemo.so.1"] == ("symlink", 0o777, "libdemo.so.1.0")
    assert tree_snapshot(rootfs / "opt") == staged
    assert (rootfs / "opt").stat().st_mode & 0o7777 == (project / ".extpack" / "opt").stat().st_mode & 0o7777


def test_json_output_schema(project: Path, run_extpack, env, tmp_path: Path) -> None:
    plain = printed_digest(run_extpack("image", "-o", tmp_path / "a", cwd=project, env=env, check=True).stdout)
    r = run_extpack("image", "-o", tmp_path / "b", "--tag", "team/ext:2", "--json", cwd=project, env=env,
                    check=True)
    report = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    assert report == {
        "schema": "extpack.image/v1",
        "digest": plain,  # the tag lives in index.json, not in the image: same digest
        "tag": "team/ext:2",
        "format": "oci",
        "output": str(tmp_path / "b"),
        "platforms": [{"architecture": "amd64", "os": "linux"}],
        "pushed": None,
    }
    index = json.loads((tmp_path / "b" / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == plain
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "team/ext:2"
    assert json.loads((tmp_path / "b" / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"


def test_same_stage_refetched_elsewhere_and_touched_gives_the_same_digest(
        project: Path, run_extpack, env, arns, tmp_path: Path) -> None:
    first = printed_digest(run_extpack("image", "-o", tmp_path / "one", cwd=project, env=env, check=True).stdout)

    # Another folder, an empty cache (a real second download), every staged path touched (in
    # a stage of its own: a file hard-linked from the cache must keep its mtime, see test_daily).
    other = tmp_path / "elsewhere" / "deeper"
    other.mkdir(parents=True)
    env2 = dict(env, EXTPACK_CACHE_DIR=str(tmp_path / "cache-2"))
    run_extpack("fetch", *arns, tmp_path / "modes.zip", "--no-link", cwd=other, env=env2, check=True)
    stamp = time.time() + 86400
    for path in [other / ".extpack" / "opt", *(other / ".extpack" / "opt").rglob("*")]:
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    assert tree_snapshot(other / ".extpack" / "opt") == tree_snapshot(project / ".extpack" / "opt")
    again = printed_digest(run_extpack("image", "-o", tmp_path / "two", cwd=other, env=env2, check=True).stdout)
    assert again == first
    blobs = sorted(p.name for p in (tmp_path / "one" / "blobs" / "sha256").iterdir())
    assert sorted(p.name for p in (tmp_path / "two" / "blobs" / "sha256").iterdir()) == blobs

    # The digest does depend on the content and on the build epoch (the check is not vacuous).
    stamped = printed_digest(run_extpack("image", "-o", tmp_path / "three", "--source-date-epoch", "1700000000",
                                         cwd=other, env=env2, check=True).stdout)
    assert stamped != first
    from_env = printed_digest(run_extpack("image", "-o", tmp_path / "four", cwd=other,
                                          env=dict(env2, SOURCE_DATE_EPOCH="1700000000"), check=True).stdout)
    assert from_env == stamped
    (other / ".extpack" / "opt" / "a-only.txt").chmod(0o600)
    changed = printed_digest(run_extpack("image", "-o", tmp_path / "five", cwd=other, env=env2,
                                         check=True).stdout)
    assert changed != first


@needs_skopeo
def test_oci_archive_is_read_by_skopeo(project: Path, run_extpack, env, tmp_path: Path) -> None:
    layout = printed_digest(run_extpack("image", "-o", tmp_path / "layout", cwd=project, env=env,
                                        check=True).stdout)
    archive = tmp_path / "image.tar"
    digest = printed_digest(run_extpack("image", "--format", "oci-archive", "-o", archive, cwd=project, env=env,
                                        check=True).stdout)
    assert digest == layout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json", f"blobs/sha256/{digest.split(':')[1]}"} <= names
    assert json.loads(tool(SKOPEO, "inspect", f"oci-archive:{archive}:extpack-opt:latest"))["Digest"] == digest
    assert json.loads(tool(SKOPEO, "inspect", f"oci-archive:{archive}"))["Digest"] == digest


@needs_skopeo
def test_two_stages_make_an_index_with_both_platforms(run_extpack, env, layer_zips: Path, tmp_path: Path) -> None:
    for arch, stage in (("x86_64", "A"), ("arm64", "B")):
        run_extpack("fetch", layer_zips / f"elf-{arch}.zip", "--arch", arch, "--stage-dir", stage,
                    "--lock", f"{stage}.lock", env=env, check=True)
    single = {
        stage: printed_digest(run_extpack("image", "--stage-dir", stage, "-o", tmp_path / f"single-{stage}",
                                          env=env, check=True).stdout)
        for stage in ("A", "B")
    }
    r = run_extpack("image", "--stage-dir", "A", "--stage-dir", "B", "-o", tmp_path / "multi", "--tag",
                    "ext:multi", "--json", env=env, check=True)
    report = json.loads(r.stdout)
    assert report["platforms"] == [{"architecture": "amd64", "os": "linux"},
                                   {"architecture": "arm64", "os": "linux", "variant": "v8"}]

    raw = tool(SKOPEO, "inspect", "--raw", f"oci:{tmp_path / 'multi'}:ext:multi")
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == report["digest"]
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]): m for m in index["manifests"]}
    assert sorted(platforms) == [("linux", "amd64"), ("linux", "arm64")]
    assert all(m["mediaType"] == OCI_MANIFEST for m in index["manifests"])
    # each entry is exactly the image the single stage makes
    assert platforms[("linux", "amd64")]["digest"] == single["A"]
    assert platforms[("linux", "arm64")]["digest"] == single["B"]
    arm = json.loads(tool(SKOPEO, "inspect", "--override-arch", "arm64", f"oci:{tmp_path / 'multi'}:ext:multi"))
    assert arm["Architecture"] == "arm64" and arm["Labels"]["io.extpack.arch"] == "arm64"

    bad = run_extpack("image", "--stage-dir", "A", "--stage-dir", "B", "--format", "docker-archive",
                      "-o", tmp_path / "x.tar", env=env, check=2)
    assert "--format oci" in one_line_error(bad)
    assert not (tmp_path / "x.tar").exists()


# --------------------------------------------------------------------------- push


def skopeo_registry(*args: str) -> dict:
    return json.loads(tool(SKOPEO, "inspect", "--tls-verify=false", *args))


@needs_skopeo
def test_push_to_a_real_registry_and_again(project: Path, run_extpack, env, registry, tmp_path: Path) -> None:
    ref = f"{registry.host}/team/ext:1"
    r = run_extpack("image", "-o", tmp_path / "layout", "--push", ref, "--insecure-registry", cwd=project, env=env,
                    check=True)
    digest = printed_digest(r.stdout)
    assert any(line in (f"pushed {ref}", f"pushed {ref}@{digest}") for line in r.stderr.splitlines()), r.stderr
    assert skopeo_registry(f"docker://{ref}")["Digest"] == digest
    assert json.loads(tool(SKOPEO, "inspect", f"oci:{tmp_path / 'layout'}:extpack-opt:latest"))["Digest"] == digest
    raw = tool(SKOPEO, "inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest  # stored byte for byte

    again = run_extpack("image", "--push", ref, "--insecure-registry", "--json", cwd=project, env=env, check=True)
    report = json.loads(again.stdout)
    assert report["digest"] == digest and report["output"] is None
    assert report["pushed"]["digest"] == digest
    assert report["pushed"]["reference"] in (ref, f"{ref}@{digest}")
    assert report["pushed"]["uploaded"] == []  # no blob twice
    assert len(report["pushed"]["skipped"]) == 2  # the layer and the config
    assert skopeo_registry(f"docker://{ref}")["Digest"] == digest


@needs_skopeo
def test_multi_arch_push_is_one_tag_for_both(run_extpack, env, layer_zips: Path, registry) -> None:
    for arch, stage in (("x86_64", "A"), ("arm64", "B")):
        run_extpack("fetch", layer_zips / f"elf-{arch}.zip", "--arch", arch, "--stage-dir", stage,
                    "--lock", f"{stage}.lock", env=env, check=True)
    ref = f"{registry.host}/team/multi:1"
    r = run_extpack("image", "--stage-dir", "A", "--stage-dir", "B", "--push", ref, "--insecure-registry",
                    env=env, check=True)
    digest = printed_digest(r.stdout)
    index = json.loads(tool(SKOPEO, "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"))
    assert index["mediaType"] == OCI_INDEX
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        info = skopeo_registry("--override-arch", arch, f"docker://{ref}")
        assert info["Architecture"] == arch and info["Digest"] == digest


# --------------------------------------------------------------------------- errors


def test_no_stage_is_a_usage_error(run_extpack, env, tmp_path: Path) -> None:
    r = run_extpack("image", "-o", tmp_path / "out", env=env, check=2)
    assert "run extpack fetch first" in one_line_error(r)
    assert not (tmp_path / "out").exists()
    r = run_extpack("image", "--push", "127.0.0.1:1/team/ext:1", "--insecure-registry", env=env, check=2)
    assert "run extpack fetch first" in one_line_error(r)


def test_neither_output_nor_push_is_a_usage_error(project: Path, run_extpack, env) -> None:
    r = run_extpack("image", cwd=project, env=env, check=2)
    message = one_line_error(r)
    assert "--output" in message and "--push" in message
    assert r.stdout == ""


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_registry_is_one_line_and_exit_4(project: Path, run_extpack, env, tmp_path: Path) -> None:
    host = f"127.0.0.1:{_closed_port()}"
    r = run_extpack("image", "--push", f"{host}/team/ext:1", "--insecure-registry", cwd=project, env=env,
                    check=4, timeout=60)
    message = one_line_error(r)
    assert host in message and "unreachable" in message
    assert r.stdout == ""


def test_plain_http_registry_without_insecure_flag_says_what_to_do(project: Path, run_extpack, env,
                                                                    registry) -> None:
    r = run_extpack("image", "--push", f"{registry.host}/team/tls:1", cwd=project, env=env, check=4, timeout=60)
    message = one_line_error(r)
    assert registry.host in message and "--insecure-registry" in message
