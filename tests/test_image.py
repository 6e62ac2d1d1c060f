"""`extpack image`: the stage as an OCI image, read back by skopeo, umoci and docker.

Real parts only: the layouts and archives written here are read by Debian's skopeo and
umoci, and loaded into a private dockerd (the `docker_daemon` fixture) and built on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_factory import DEMO_ARN, make_stage, snapshot, touch_everything

from extpack.exceptions import LayerContentError, UsageError
from extpack.image import build_image, write_docker_archive, write_oci_archive, write_oci_layout

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
needs_skopeo = pytest.mark.skipif(not os.access(SKOPEO, os.X_OK), reason="skopeo not installed (apt-get install skopeo)")
needs_umoci = pytest.mark.skipif(not os.access(UMOCI, os.X_OK), reason="umoci not installed (apt-get install umoci)")

# The DEMO_TREE stage at epoch 0. If these change, every published extension image
# changes digest: only update them for a deliberate format change, and say so.
GOLDEN_DIFF_ID = "sha256:818d54fca5bf8a1274fda183a3759535d50f753d2b9ad090037bc42bd06fbedb"
GOLDEN_MANIFEST_DIGEST = "sha256:b4d51eeff57349d77af8cb44520aa911bc5e2b0c149d4a4f5407516e9f945000"


def run(*cmd: str | os.PathLike[str]) -> str:
    proc = subprocess.run([os.fspath(c) for c in cmd], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(autouse=True)
def _no_ambient_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return make_stage(tmp_path / "stage")


def digest_of(stage_dir: Path, **kw: object) -> str:
    with build_image(stage_dir, **kw) as b:  # type: ignore[arg-type]
        return b.digest


# --------------------------------------------------------------------------- layout


@needs_skopeo
@needs_umoci
def test_layout_is_read_by_skopeo_and_umoci_and_unpacks_to_the_stage(stage: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with build_image(stage) as b:
        digest = write_oci_layout(b, layout, "demo:1")
        assert digest == b.digest

    info = json.loads(run(SKOPEO, "inspect", f"oci:{layout}:demo:1"))
    assert info["Digest"] == digest
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Labels"]["io.extpack.layer.0.arn"] == DEMO_ARN
    assert info["Labels"]["io.extpack.layer.0.sha256"] == "a" * 64
    assert json.loads(info["Labels"]["io.extpack.layers"])[1]["arn"] is None
    assert "/home/someone" not in json.dumps(info)  # a local zip's path is machine-specific

    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "demo:1"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    raw = json.loads(run(SKOPEO, "inspect", "--raw", f"oci:{layout}:demo:1"))
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["mediaType"] for layer in raw["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    assert raw["annotations"]["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"

    stat_out = json.loads(run(UMOCI, "stat", "--image", f"{layout}:demo:1", "--json"))
    assert [h["created_by"] for h in stat_out["history"]] == ["extpack image"]

    bundle = tmp_path / "bundle"
    run(UMOCI, "unpack", "--rootless", "--image", f"{layout}:demo:1", bundle)
    rootfs = bundle / "rootfs"
    assert sorted(os.listdir(rootfs)) == ["opt"]  # the image holds /opt and nothing else
    assert snapshot(rootfs / "opt") == snapshot(stage / "opt")
    assert stat.S_IMODE((rootfs / "opt").stat().st_mode) == 0o755


def test_config_and_manifest_fields(stage: Path) -> None:
    with build_image(stage) as b:
        config = json.loads(b.config.data or b"")
        manifest = json.loads(b.manifest.data or b"")
        assert config["architecture"] == "amd64" and config["os"] == "linux" and "variant" not in config
        assert config["created"] == "1970-01-01T00:00:00Z"
        assert config["rootfs"] == {"type": "layers", "diff_ids": [b.diff_id]}
        assert len(config["history"]) == 1
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
        assert "demo:3" in labels["org.opencontainers.image.description"]
        assert labels["io.extpack.arch"] == "x86_64"
        assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": b.config.digest, "size": b.config.size}
        assert manifest["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": b.layer.digest, "size": b.layer.size}]
        assert manifest["annotations"] == labels
        assert b.config.digest == "sha256:" + hashlib.sha256(b.config.data or b"").hexdigest()
        layer_bytes = Path(b.layer.path or "").read_bytes()
        assert b.layer.digest == "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
        assert b.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(layer_bytes)).hexdigest()


def test_layer_tar_is_normalised(stage: Path) -> None:
    with build_image(stage, source_date_epoch=1_700_000_000) as b:
        raw = Path(b.layer.path or "").read_bytes()
    # gzip header: magic, deflate, flags (no FNAME/FCOMMENT), mtime 0
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] == 0 and raw[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=__import__("io").BytesIO(gzip.decompress(raw))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=os.fsencode) and names[0] == "opt"
    assert all(m.name == "opt" or m.name.startswith("opt/") for m in members)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 1_700_000_000)}
    by_name = {m.name: m for m in members}
    assert by_name["opt/lib/libx.so.1"].issym() and by_name["opt/lib/libx.so.1"].linkname == "libx.so.1.0"
    assert by_name["opt/extensions/demo"].mode == 0o755
    assert by_name["opt/bin/tool"].mode == 0o750
    assert by_name["opt/share/empty"].isdir() and by_name["opt/share/empty"].mode == 0o700
    assert any(len(n) > 200 for n in names)  # the long name survived (pax header)
    assert "opt/python/caf\u00e9.txt" in by_name


def test_golden_digest(stage: Path) -> None:
    """The format is pinned: same stage, same bytes, on any machine with this zlib."""
    with build_image(stage) as b:
        assert b.diff_id == GOLDEN_DIFF_ID
        assert b.digest == GOLDEN_MANIFEST_DIGEST


# --------------------------------------------------------------------------- reproducibility


def test_same_digest_after_touching_and_copying_the_stage(stage: Path, tmp_path: Path) -> None:
    first = digest_of(stage)
    touch_everything(stage, 1_234_567_890.5)
    assert digest_of(stage) == first
    touch_everything(stage, 2_000_000_000)
    copy = tmp_path / "elsewhere" / "copied-stage"
    shutil.copytree(stage, copy, symlinks=True)  # other inodes, other path, new mtimes
    assert digest_of(copy) == first


def test_hard_links_are_written_as_plain_files(tmp_path: Path) -> None:
    tree = {"bin": (0o755, None), "bin/a": (0o755, b"same bytes\n"), "bin/b": (0o755, b"same bytes\n")}
    copies = make_stage(tmp_path / "copies", tree=tree)
    linked = make_stage(tmp_path / "linked", tree=tree)
    (linked / "opt/bin/b").unlink()
    os.link(linked / "opt/bin/a", linked / "opt/bin/b")  # as a hard-linking cache might stage it
    assert digest_of(copies) == digest_of(linked)


def test_source_date_epoch_changes_the_digest(stage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = digest_of(stage)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with build_image(stage) as b:
        from_env = b.digest
        assert json.loads(b.config.data or b"")["created"] == "2023-11-14T22:13:20Z"
    assert from_env != default
    assert digest_of(stage, source_date_epoch=1_700_000_000) == from_env  # the argument equals the env
    assert digest_of(stage, source_date_epoch=0) == default  # and wins over it
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        build_image(stage)


# --------------------------------------------------------------------------- architectures


@needs_skopeo
@needs_umoci
def test_arm64_stage_gives_an_arm64_image(tmp_path: Path) -> None:
    stage = make_stage(tmp_path / "stage", arch="arm64")
    layout = tmp_path / "layout"
    with build_image(stage) as b:
        write_oci_layout(b, layout, "demo:arm64")
        config = json.loads(b.config.data or b"")
    assert (config["architecture"], config.get("variant")) == ("arm64", "v8")
    cfg = json.loads(run(SKOPEO, "inspect", "--config", "--raw", f"oci:{layout}:demo:arm64"))
    assert cfg["architecture"] == "arm64" and cfg["config"]["Labels"]["io.extpack.arch"] == "arm64"
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    run(UMOCI, "stat", "--image", f"{layout}:demo:arm64")
    with pytest.raises(UsageError, match="fetched for arm64"):
        build_image(stage, arch="x86_64")
    assert digest_of(stage, arch="aarch64") == digest_of(stage)


@needs_skopeo
def test_multi_arch_layout_is_one_tagged_index(tmp_path: Path) -> None:
    amd = make_stage(tmp_path / "amd", arch="x86_64")
    arm = make_stage(tmp_path / "arm", arch="arm64", tree={"extensions": (0o755, None),
                                                           "extensions/demo": (0o755, b"arm64 build\n")})
    layout = tmp_path / "layout"
    with build_image(amd) as a, build_image(arm) as r:
        top = write_oci_layout([r, a], layout, "demo:multi")
        assert write_oci_layout([a, r], tmp_path / "again", "demo:multi") == top  # order does not matter
        digests = {a.digest, r.digest}
    index = json.loads((layout / "index.json").read_text())
    assert len(index["manifests"]) == 1 and index["manifests"][0]["digest"] == top
    assert index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    raw = json.loads(run(SKOPEO, "inspect", "--raw", f"oci:{layout}:demo:multi"))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["digest"] for m in raw["manifests"]} == digests
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        info = json.loads(run(SKOPEO, "--override-arch", arch, "inspect", f"oci:{layout}:demo:multi"))
        assert info["Architecture"] == arch and info["Digest"] == top  # skopeo names the index
    with build_image(amd) as a1, build_image(amd) as a2, pytest.raises(UsageError, match="same platform"):
        write_oci_layout([a1, a2], tmp_path / "dup", "demo:dup")


# --------------------------------------------------------------------------- layouts and archives


@needs_skopeo
def test_layout_keeps_other_tags_and_refuses_foreign_dirs(stage: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with build_image(stage) as b:
        write_oci_layout(b, layout, "demo:1")
        write_oci_layout(b, layout, "demo:2")
        write_oci_layout(b, layout, "demo:2")  # re-tagging replaces, does not duplicate
        refs = [m["annotations"]["org.opencontainers.image.ref.name"]
                for m in json.loads((layout / "index.json").read_text())["manifests"]]
        assert refs == ["demo:1", "demo:2"]
        assert json.loads(run(SKOPEO, "inspect", f"oci:{layout}:demo:1"))["Digest"] == b.digest
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        (foreign / "notes.txt").write_text("mine")
        with pytest.raises(UsageError, match="not an OCI layout"):
            write_oci_layout(b, foreign, "demo:1")
        with pytest.raises(UsageError, match="bad tag"):
            write_oci_layout(b, layout, "no spaces allowed")


@needs_skopeo
def test_oci_archive_is_deterministic_and_readable(stage: Path, tmp_path: Path) -> None:
    with build_image(stage) as b:
        write_oci_archive(b, tmp_path / "one.tar", "demo:1")
    touch_everything(stage, 1_600_000_000)
    with build_image(stage) as b:
        digest = write_oci_archive(b, tmp_path / "two.tar", "demo:1")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    info = json.loads(run(SKOPEO, "inspect", f"oci-archive:{tmp_path / 'two.tar'}:demo:1"))
    assert info["Digest"] == digest
    with tarfile.open(tmp_path / "two.tar") as tar:
        assert {(m.uid, m.gid, m.mtime) for m in tar.getmembers()} == {(0, 0, 0)}


@needs_skopeo
def test_docker_archive_is_readable_without_a_daemon(stage: Path, tmp_path: Path) -> None:
    archive = tmp_path / "demo.tar"
    with build_image(stage) as b:
        digest = write_docker_archive(b, archive, "demo-ext")
        config_digest = b.config.digest
        with pytest.raises(UsageError, match="bad tag"):
            write_docker_archive(b, tmp_path / "x.tar", "Upper/Case:1")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["demo-ext:latest"]
    assert manifest[0]["Config"] == f"blobs/sha256/{config_digest.split(':')[1]}"
    info = json.loads(run(SKOPEO, "inspect", f"docker-archive:{archive}"))
    assert info["Labels"]["io.extpack.layer.0.arn"] == DEMO_ARN
    # the same file is an OCI archive too
    assert json.loads(run(SKOPEO, "inspect", f"oci-archive:{archive}:demo-ext:latest"))["Digest"] == digest


# --------------------------------------------------------------------------- bad input


def test_missing_stage_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no stage at .*: run extpack fetch first") as exc:
        build_image(tmp_path / "nothing-here")
    assert exc.value.exit_code == 2
    (tmp_path / "half" / "opt").mkdir(parents=True)  # opt/ without manifest.json
    with pytest.raises(UsageError, match="no stage"):
        build_image(tmp_path / "half")


def test_unsupported_content_is_refused(tmp_path: Path) -> None:
    wh = make_stage(tmp_path / "wh", tree={"lib": (0o755, None), "lib/.wh.libx.so": (0o644, b"x")})
    with pytest.raises(LayerContentError, match="whiteout") as exc:
        build_image(wh)
    assert exc.value.exit_code == 5
    fifo = make_stage(tmp_path / "fifo", tree={"lib": (0o755, None)})
    os.mkfifo(fifo / "opt/lib/pipe")
    with pytest.raises(LayerContentError, match="opt/lib/pipe"):
        build_image(fifo)
    with pytest.raises(UsageError, match="unknown architecture"):
        build_image(make_stage(tmp_path / "ok"), arch="sparc")


def test_setuid_bits_are_dropped(tmp_path: Path) -> None:
    stage = make_stage(tmp_path / "s", tree={"bin": (0o755, None), "bin/su": (0o4755, b"x")})
    with build_image(stage) as b, tarfile.open(b.layer.path) as tar:  # type: ignore[arg-type]
        assert tar.getmember("opt/bin/su").mode == 0o755


def test_temporary_layer_is_removed_on_close(stage: Path) -> None:
    b = build_image(stage)
    path = Path(b.layer.path or "")
    assert path.is_file()
    b.close()
    assert not path.exists() and not path.parent.exists()


def test_large_stage_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    size = 24 << 20
    stage = make_stage(tmp_path / "big", tree={"lib": (0o755, None), "lib/blob.bin": (0o644, b"")})
    with open(stage / "opt/lib/blob.bin", "wb") as f:
        f.writelines(os.urandom(1 << 20) for _ in range(size >> 20))  # incompressible: the layer is as large as the file
    tracemalloc.start()
    try:
        with build_image(stage) as b:
            _, peak = tracemalloc.get_traced_memory()
            assert b.layer.size > size
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak Python allocation {peak} bytes for a {size}-byte stage"


# --------------------------------------------------------------------------- docker


@pytest.mark.docker
def test_docker_load_then_copy_from_in_a_real_build(stage: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    try:
        daemon = request.getfixturevalue("docker_daemon")
        base = request.getfixturevalue("busybox_base")
    except pytest.FixtureLookupError:
        pytest.skip("conftest.py has no docker_daemon/busybox_base fixtures")
    tag = "extpack-test/demo-ext:image-test"
    archive = tmp_path / "demo.tar"
    with build_image(stage) as b:
        write_docker_archive(b, archive, tag)
        config_digest = b.config.digest
    assert tag in daemon.docker("load", "-i", archive).stdout
    assert daemon.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip() == config_digest
    labels = json.loads(daemon.docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag).stdout)
    assert labels["io.extpack.layer.0.arn"] == DEMO_ARN

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY --from={tag} /opt /opt\n")
    daemon.docker("build", "--network", "none", "-t", "extpack-test/fn:image-test", ctx)
    script = r"""
find /opt -mindepth 1 | sort | while IFS= read -r p; do
  if [ -L "$p" ]; then echo "$p|symlink|$(readlink "$p")"
  elif [ -d "$p" ]; then echo "$p|dir|$(stat -c %a "$p")"
  else echo "$p|file|$(stat -c %a "$p")|$(sha256sum < "$p" | cut -d' ' -f1)"; fi
done
/opt/extensions/demo
"""
    out = daemon.docker("run", "--rm", "--network", "none", "extpack-test/fn:image-test", "sh", "-c", script).stdout
    *listing, last = out.strip().splitlines()
    assert last == "demo extension"
    expected = []
    for rel, (kind, mode, content) in sorted(snapshot(stage / "opt").items()):
        if kind == "symlink":
            expected.append(f"/opt/{rel}|symlink|{content}")
        elif kind == "dir":
            expected.append(f"/opt/{rel}|dir|{mode:o}")
        else:
            expected.append(f"/opt/{rel}|file|{mode:o}|{hashlib.sha256(content).hexdigest()}")
    assert sorted(listing) == sorted(expected)
