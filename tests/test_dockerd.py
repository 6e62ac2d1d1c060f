"""The docker test harness itself: private dockerd, busybox base, builds, save/load, registry.

These tests use the ``docker_daemon`` / ``busybox_base`` / ``registry`` fixtures from
conftest.py when they exist, and otherwise start their own (module-scoped) ones from
tests/dockerd.py, so this file works before and after the conftest fixtures land.
Without docker (not root, docker.io missing, daemon fails) they skip with the reason;
with EXTPACK_REQUIRE_DOCKER=1 they fail instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

# tests/ is not a package; conftest.py puts it on sys.path, but work without that too.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import dockerd  # noqa: E402  (after the sys.path fix above)

pytestmark = pytest.mark.docker


def _shared_or_own(request, name, make):
    """The conftest fixture ``name`` if there is one, else ``make()``'s generator."""
    try:
        return request.getfixturevalue(name), None
    except pytest.FixtureLookupError:
        gen = make()
        return next(gen), gen


def _finish(gen):
    if gen is not None:
        with pytest.raises(StopIteration):
            next(gen)


@pytest.fixture(scope="module")
def daemon(request):
    value, gen = _shared_or_own(request, "docker_daemon", dockerd.docker_daemon_fixture)
    yield value
    _finish(gen)


@pytest.fixture(scope="module")
def base(request, daemon):
    try:
        return request.getfixturevalue("busybox_base")
    except pytest.FixtureLookupError:
        return dockerd.busybox_base_fixture(daemon)


@pytest.fixture
def reg(request, tmp_path):
    value, gen = _shared_or_own(request, "registry", lambda: dockerd.registry_fixture(tmp_path))
    yield value
    _finish(gen)


# ---------------------------------------------------------------------------------


def test_unavailable_reason_is_specific(tmp_path):
    # Runs everywhere: the reason names what is missing, so a skip is never mute.
    r = dockerd.docker_unavailable_reason(docker=str(tmp_path / "no-docker"))
    assert r and ("no-docker" in r or "root" in r)
    r = dockerd.docker_unavailable_reason(dockerd=str(tmp_path / "no-dockerd"))
    assert r and ("dockerd" in r or "root" in r or "docker" in r)
    fake = tmp_path / "busybox"
    fake.write_bytes(b"#!/bin/sh\n")
    if os.geteuid() == 0 and os.access(dockerd.DOCKER, os.X_OK) and dockerd._dockerd_path():
        assert "busybox" in dockerd.docker_unavailable_reason(busybox=str(fake))


def test_busybox_on_host_is_static():
    if not os.path.exists(dockerd.BUSYBOX):
        pytest.skip(f"{dockerd.BUSYBOX} missing: install busybox-static")
    assert dockerd._is_static_elf(dockerd.BUSYBOX)
    assert not dockerd._is_static_elf("/bin/ls") or not os.path.exists("/bin/ls")


def test_daemon_answers(daemon):
    assert daemon.running
    assert daemon.env["DOCKER_HOST"] == "unix://" + daemon.socket
    assert daemon.env["DOCKER_BUILDKIT"] == "1"
    assert len(daemon.socket.encode()) < 108
    v = daemon.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert v == daemon.server_version
    assert daemon.docker("info", "--format", "{{.Driver}}").stdout.strip() == daemon.storage_driver
    # our daemon, not a system one: its data root is ours
    root = daemon.docker("info", "--format", "{{.DockerRootDir}}").stdout.strip()
    assert root == str(daemon.data_root)
    # the dockerd pid is known and alive
    assert daemon.pid and os.path.exists(f"/proc/{daemon.pid}")


def test_busybox_base_runs_as_root_and_lambda_user(daemon, base):
    out = daemon.docker("run", "--rm", "--network", "none", base, "id").stdout
    assert "uid=0(root)" in out
    out = daemon.docker(
        "run", "--rm", "--network", "none", "--user", str(dockerd.LAMBDA_UID), base,
        "sh", "-c", "id; touch /tmp/x && echo tmp-writable",
    ).stdout
    assert f"uid={dockerd.LAMBDA_UID}({dockerd.LAMBDA_USER})" in out
    assert "tmp-writable" in out
    tools = "sh ls cat stat sha256sum readlink find id env unzip chmod mkdir"
    out = daemon.docker(
        "run", "--rm", "--network", "none", base,
        "sh", "-c", f"for t in {tools}; do command -v $t || exit 1; done",
    ).stdout
    assert len(out.split()) == len(tools.split())


def _make_context(ctx: Path) -> None:
    payload = ctx / "payload"
    (payload / "extensions").mkdir(parents=True)
    (payload / "lib").mkdir()
    script = payload / "extensions" / "hello-ext"
    script.write_text("#!/bin/sh\necho hello-from-extension\n")
    os.chmod(script, 0o755)
    data = payload / "lib" / "data.txt"
    data.write_text("plain data\n")
    os.chmod(data, 0o644)
    os.symlink("../extensions/hello-ext", payload / "lib" / "hello-link")
    (ctx / "Dockerfile").write_text(
        "FROM extpack-test/busybox:latest\n"
        "COPY payload/ /opt/\n"
        "RUN stat -c '%n %a %F %u:%g' /opt/extensions/hello-ext /opt/lib/data.txt"
        " /opt/lib/hello-link > /build-stat.txt"
        " && readlink /opt/lib/hello-link >> /build-stat.txt\n"
    )


@pytest.mark.parametrize("buildkit", ["1", "0"], ids=["buildkit", "classic"])
def test_build_copy_keeps_modes_and_symlinks(daemon, base, tmp_path, buildkit):
    assert base == "extpack-test/busybox:latest"
    _make_context(tmp_path)
    tag = f"extpack-test/copy-check:bk{buildkit}"
    daemon.docker(
        "build", "--network", "none", "-t", tag, str(tmp_path),
        env={"DOCKER_BUILDKIT": buildkit}, timeout=300,
    )
    try:
        run = lambda *a, **kw: daemon.docker("run", "--rm", "--network", "none", *a, **kw).stdout
        built = run(tag, "cat", "/build-stat.txt").splitlines()
        now = run(
            tag, "stat", "-c", "%n %a %F %u:%g",
            "/opt/extensions/hello-ext", "/opt/lib/data.txt", "/opt/lib/hello-link",
        ).splitlines()
        expected = [
            "/opt/extensions/hello-ext 755 regular file 0:0",
            "/opt/lib/data.txt 644 regular file 0:0",
            "/opt/lib/hello-link 777 symbolic link 0:0",
        ]
        assert built[:3] == expected
        assert built[3] == "../extensions/hello-ext"
        assert now == expected
        assert run(tag, "readlink", "/opt/lib/hello-link").strip() == "../extensions/hello-ext"
        # executable through the link, as the non-root Lambda user
        out = run("--user", str(dockerd.LAMBDA_UID), tag, "/opt/lib/hello-link")
        assert out.strip() == "hello-from-extension"
    finally:
        daemon.docker("rmi", "-f", tag, check=False)


def test_build_rejects_copy_link_on_20_10(daemon, base, tmp_path):
    """Documents the pitfall: the 20.10 builder does not know COPY --link."""
    if not (daemon.server_version or "").startswith("20."):
        pytest.skip(f"server is {daemon.server_version}, not 20.10")
    (tmp_path / "f").write_text("x")
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nCOPY --link f /f\n")
    r = daemon.docker("build", "--network", "none", "-t", "extpack-test/link:1", str(tmp_path),
                      check=False)
    assert r.returncode != 0


def test_save_load_roundtrip(daemon, base, tmp_path):
    (tmp_path / "marker").write_text("round-trip\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nCOPY marker /marker\n")
    tag = "extpack-test/save-load:1"
    daemon.docker("build", "--network", "none", "-t", tag, str(tmp_path))
    image_id = daemon.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    archive = tmp_path / "image.tar"
    daemon.docker("save", "-o", archive, tag)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert "manifest.json" in names
    assert manifest[0]["RepoTags"] == [tag]
    daemon.docker("rmi", tag)
    assert not daemon.image_exists(tag)
    out = daemon.docker("load", "-i", archive).stdout
    assert tag in out
    assert daemon.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip() == image_id
    assert daemon.docker("run", "--rm", "--network", "none", tag, "cat", "/marker").stdout == "round-trip\n"
    daemon.docker("rmi", "-f", tag, check=False)


def test_registry_answers_and_push_pull(daemon, base, reg, tmp_path):
    url, _stop = reg
    with urllib.request.urlopen(url + "/v2/", timeout=5) as r:
        assert r.status == 200
    ref = f"{reg.host}/extpack-test/busybox:push"
    daemon.docker("tag", base, ref)
    daemon.docker("push", ref, timeout=120)  # 127.0.0.0/8 is an insecure registry by default
    with urllib.request.urlopen(url + "/v2/_catalog", timeout=5) as r:
        assert "extpack-test/busybox" in json.load(r)["repositories"]
    daemon.docker("rmi", ref)
    daemon.docker("pull", ref, timeout=120)
    daemon.docker("rmi", ref)

    if not os.access(dockerd.SKOPEO, os.X_OK):
        pytest.skip("skopeo missing: install skopeo (.ci/install.sh)")
    skopeo = [dockerd.SKOPEO, "--insecure-policy"]
    inspect = subprocess.run(
        [*skopeo, "inspect", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(inspect.stdout)["Architecture"]
    layout = tmp_path / "oci"
    subprocess.run(
        [*skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:push"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "push"
    # and back: OCI layout -> registry under another name, visible via the API
    subprocess.run(
        [*skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:push",
         f"docker://{reg.host}/extpack-test/from-oci:1"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    with urllib.request.urlopen(url + "/v2/extpack-test/from-oci/tags/list", timeout=5) as r:
        assert json.load(r)["tags"] == ["1"]


def test_private_daemon_stop_leaves_nothing():
    """A second daemon with a running container: stop() must kill, unmount and delete."""
    reason = dockerd.docker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    d = dockerd.DockerDaemon()
    try:
        d.start()
    except dockerd.DockerUnavailable as e:
        d.stop()
        dockerd._skip_or_fail(str(e))
    try:
        tag = dockerd.make_busybox_base(d)
        d.docker("run", "-d", "--network", "none", tag, "sleep", "300")
        base_dir = str(d.base)
        assert dockerd._pids_referencing(base_dir + "/")
    finally:
        t0 = time.monotonic()
        d.stop()
        took = time.monotonic() - t0
    assert not d.running
    assert not dockerd._pids_referencing(base_dir + "/")
    assert not dockerd._mounts_under(base_dir)
    assert not os.path.exists(base_dir)
    assert took < 15, f"stop took {took:.1f}s"
    d.stop()  # idempotent


def test_registry_stop(tmp_path):
    if dockerd.registry_unavailable_reason():
        pytest.skip(dockerd.registry_unavailable_reason())
    url, stop = dockerd.start_registry(tmp_path)
    assert dockerd._http_ok(url + "/v2/")
    stop()
    assert not dockerd._http_ok(url + "/v2/", timeout=0.5)
    stop()  # idempotent
