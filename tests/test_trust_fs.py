"""Trust boundaries on the filesystem (issue 13, classes 3, 4, 6 and 10), through the real CLI.

- No command reads, chmods, links or deletes through a symlink: not a symlinked stage dir or
  `opt` (refused: exit 2, one line), not a directory or file swapped for a link in a cached
  tree, not a link an extension points through.
- A cached tree edited in place (size kept, mtime set back) never reaches a new stage.
- Legal but extreme layers: 1,200 levels deep, or a path that is only too long once the
  stage's own path is in front of it, stage and clean up; no failure leaves a build dir.
- The tests marked `nonroot` are also run as `nobody` by tests/test_nonroot.py, with layers
  whose directories have modes 0500, 0311 and 0000.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest
from make_layers import ZipBuilder, elf_header

SCRIPT = "#!/bin/sh\necho ready\n"
DEEP_LEVELS = 1200


def clean_layer() -> ZipBuilder:
    return (ZipBuilder().dir("extensions").file("extensions/ready", SCRIPT, 0o755)
            .dir("data").file("data/config.json", '{"a": 1}\n', 0o644).file("data/secret.txt", "s\n", 0o600))


def fetch_zip(run_extpack, tmp_path: Path, layer: ZipBuilder, stage: str = "stage", **kwargs):
    (tmp_path / f"{stage}.zip").write_bytes(layer.getvalue())
    return run_extpack("fetch", f"{stage}.zip", "--stage-dir", stage, "--lock", f"{stage}.lock", **kwargs)


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything below root (links recorded, never followed), iteratively and relative to
    directory descriptors, so deep and long paths work too."""
    out: dict[str, tuple] = {}
    pending = [("", os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW))]
    while pending:
        prefix, fd = pending.pop()
        try:
            for entry in os.scandir(fd):
                st = entry.stat(follow_symlinks=False)
                rel = prefix + entry.name
                if stat.S_ISDIR(st.st_mode):
                    out[rel] = ("dir", stat.S_IMODE(st.st_mode))
                    if st.st_mode & 0o500 == 0o500 or os.geteuid() == 0:
                        pending.append((rel + "/", os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                                           dir_fd=fd)))
                elif stat.S_ISLNK(st.st_mode):
                    out[rel] = ("symlink", os.readlink(entry.name, dir_fd=fd))
                else:
                    digest = ""
                    if st.st_mode & 0o400 or os.geteuid() == 0:
                        with open(os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as handle:
                            digest = hashlib.sha256(handle.read()).hexdigest()
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), digest)
        finally:
            os.close(fd)
    return dict(sorted(out.items()))


@pytest.fixture(autouse=True)
def _remove_what_pytest_cannot(tmp_path):
    """pytest removes old temporary dirs recursively: a 1,200-level tree would stop it with a
    RecursionError (and a non-root one cannot enter a 0000 directory). Removed here instead."""
    yield
    pending = [os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)]
    while pending:  # make every directory enterable and writable first (names relative to fds: 4 KB paths)
        fd = pending.pop()
        for entry in list(os.scandir(fd)):
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.name, 0o700, dir_fd=fd)
                pending.append(os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd))
        os.close(fd)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        for entry in tmp_path.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    finally:
        sys.setrecursionlimit(limit)


def one_error_line(result, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("extpack: error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".build-" in p.name or ".old-" in p.name)


# --------------------------------------------------------------------------- class 3: links


def outside_copy(tmp_path: Path, stage: Path) -> Path:
    """A copy of the stage's opt outside it, with junk in extensions: what doctor --fix would
    chmod and delete if it followed a symlinked opt."""
    outside = tmp_path / "outside"
    shutil.copytree(stage / "opt", outside, symlinks=True)
    (outside / "extensions" / "._ready").write_bytes(b"\x00\x05\x16\x07")
    os.chmod(outside / "extensions" / "ready", 0o700)
    return outside


def test_doctor_fix_with_opt_a_symlink_changes_nothing_it_points_to(run_extpack, tmp_path):
    fetch_zip(run_extpack, tmp_path, clean_layer(), check=0)
    stage = tmp_path / "stage"
    outside = outside_copy(tmp_path, stage)
    shutil.rmtree(stage / "opt")
    (stage / "opt").symlink_to(outside)
    before = snapshot(outside)

    result = run_extpack("doctor", stage, "--fix", check=2)

    one_error_line(result, "opt", "symlink", "extpack fetch")
    assert snapshot(outside) == before  # not one chmod, not one deletion
    assert (outside / "data" / "secret.txt").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("linked", ["stage", "opt"])
@pytest.mark.parametrize("command", [["doctor", "{stage}"], ["doctor", "{stage}", "--fix"],
                                     ["verify", "--stage-dir", "{stage}", "--lock", "stage.lock"],
                                     ["ls", "--stage-dir", "{stage}"],
                                     ["image", "--stage-dir", "{stage}", "-o", "image-out"]])
def test_a_symlinked_stage_dir_or_opt_is_refused_by_every_reader(run_extpack, tmp_path, linked, command):
    fetch_zip(run_extpack, tmp_path, clean_layer(), check=0)
    real = tmp_path / "stage"
    outside = outside_copy(tmp_path, real)
    if linked == "stage":
        os.rename(real, tmp_path / "real-stage")
        shutil.rmtree(tmp_path / "real-stage" / "opt")
        (tmp_path / "real-stage" / "opt").symlink_to(outside)  # followed, it would also reach outside
        real.symlink_to(tmp_path / "real-stage")
    else:
        shutil.rmtree(real / "opt")
        (real / "opt").symlink_to(outside)
    before = snapshot(outside)

    result = run_extpack(*[part.format(stage=real) for part in command], check=2)

    one_error_line(result, "symlink")
    assert snapshot(outside) == before
    assert not (tmp_path / "image-out").exists()


def test_fetch_refuses_a_symlinked_stage_dir_and_leaves_both_ends_alone(run_extpack, tmp_path):
    fetch_zip(run_extpack, tmp_path, clean_layer(), stage="elsewhere", check=0)
    before = snapshot(tmp_path / "elsewhere")
    (tmp_path / "stage").symlink_to(tmp_path / "elsewhere")

    result = fetch_zip(run_extpack, tmp_path, clean_layer().file("data/new.txt", "n\n"), check=2)

    one_error_line(result, "symlink")
    assert (tmp_path / "stage").is_symlink()
    assert snapshot(tmp_path / "elsewhere") == before
    assert leftovers(tmp_path) == []


def test_ls_does_not_read_an_extension_link_that_leaves_the_stage(run_extpack, tmp_path):
    fetch_zip(run_extpack, tmp_path, clean_layer().file("extensions/probe", elf_header("x86_64") + bytes(64), 0o755),
              check=0)
    host_binary = tmp_path / "host-binary"
    host_binary.write_bytes(elf_header("arm64") + bytes(64))
    probe = tmp_path / "stage" / "opt" / "extensions" / "probe"
    probe.unlink()
    probe.symlink_to(host_binary)  # in the image, /tmp/... is not this file: never read it

    listed = json.loads(run_extpack("ls", "--stage-dir", "stage", "--json", check=0).stdout)

    assert {e["name"]: e["cpu"] for e in listed["extensions"]} == {"probe": "-", "ready": "script"}


def _publish(fake_lambda, layer: ZipBuilder, name: str = "trust") -> str:
    return fake_lambda.add_layer(name, layer.getvalue()).arn


def _tree(tmp_path: Path) -> Path:
    (tree,) = (tmp_path / "cache" / "trees" / "v1").iterdir()
    return tree


def test_a_directory_swapped_for_a_link_in_a_cached_tree_is_not_staged(fake_lambda, run_extpack, tmp_path):
    arn = _publish(fake_lambda, clean_layer())
    run_extpack("fetch", arn, check=0)
    expected = snapshot(tmp_path / ".extpack" / "opt")
    data = _tree(tmp_path) / "opt" / "data"
    # Outside: the same names, sizes, modes and mtimes, other bytes.
    evil = tmp_path / "evil"
    shutil.copytree(data, evil)
    for path in evil.iterdir():
        st = path.stat()
        path.write_bytes(b"X" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    evil_before = snapshot(evil)
    os.chmod(data, 0o700)
    shutil.rmtree(data)
    data.symlink_to(evil)

    run_extpack("fetch", arn, "--stage-dir", "new", "--lock", "new.lock", check=0)

    assert snapshot(tmp_path / "new" / "opt") == expected
    assert snapshot(evil) == evil_before
    for path in evil.iterdir():
        assert path.stat().st_nlink == 1, path  # never linked into the stage
    assert not (_tree(tmp_path) / "opt" / "data").is_symlink()  # the tree was dropped and rebuilt


def test_cache_prune_removes_a_tree_that_is_a_link_without_following_it(fake_lambda, run_extpack, tmp_path):
    arn = _publish(fake_lambda, clean_layer())
    run_extpack("fetch", arn, check=0)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep\n")
    fake_tree = tmp_path / "cache" / "trees" / "v1" / ("0" * 64)
    fake_tree.symlink_to(victim)

    run_extpack("cache", "prune", "--all", check=0)

    assert (victim / "keep.txt").read_text() == "keep\n"
    assert not fake_tree.is_symlink() and not fake_tree.exists()
    assert list((tmp_path / "cache" / "trees" / "v1").iterdir()) == []


# --------------------------------------------------------------------------- class 4: poisoned cache


def test_a_cached_file_edited_in_place_with_its_mtime_restored_never_reaches_a_stage(fake_lambda, run_extpack,
                                                                                      tmp_path):
    layer = clean_layer()
    arn = _publish(fake_lambda, layer)
    run_extpack("fetch", arn, check=0)
    cached = _tree(tmp_path) / "opt" / "data" / "config.json"
    original = cached.read_bytes()
    assert original == zipfile.ZipFile(io.BytesIO(layer.getvalue())).read("data/config.json")

    # A later stage may remove the first one (the cached files' ctime moves): still reused.
    run_extpack("fetch", arn, "--stage-dir", "second", "--lock", "second.lock", check=0)
    shutil.rmtree(tmp_path / "second")
    run_extpack("fetch", arn, "--stage-dir", "third", "--lock", "third.lock", check=0)
    assert os.stat(tmp_path / "third" / "opt" / "data" / "config.json").st_ino == os.stat(cached).st_ino

    st = cached.stat()
    with open(cached, "r+b") as handle:  # same size, other bytes; then the mtime set back
        handle.write(b'{"a": 2}\n')
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cached.stat().st_size == st.st_size and cached.stat().st_mtime_ns == st.st_mtime_ns

    run_extpack("fetch", arn, "--stage-dir", "new", "--lock", "new.lock", check=0)

    assert (tmp_path / "new" / "opt" / "data" / "config.json").read_bytes() == original
    rebuilt = _tree(tmp_path) / "opt" / "data" / "config.json"
    assert rebuilt.read_bytes() == original  # the poisoned tree was dropped and unpacked again
    run_extpack("verify", "--stage-dir", "new", "--lock", "new.lock", check=0)


# --------------------------------------------------------------------------- class 6: extreme layers


def deep_layer(levels: int = DEEP_LEVELS, *, bottom_mode: int = 0o755) -> ZipBuilder:
    builder = ZipBuilder().dir("extensions").file("extensions/ready", SCRIPT, 0o755)
    path = "deep"
    for _ in range(levels - 1):
        builder.dir(path)
        path += "/d"
    builder.dir(path, bottom_mode)
    return builder.file(path + "/bottom.txt", "at the bottom\n", 0o644)


def long_path_layer() -> ZipBuilder:
    """A path of 4,050 bytes: legal in the layer (under 4 KB), not with a stage's path before it."""
    parts = [f"{i:02d}" + "x" * 248 for i in range(16)]
    path = "/".join(parts) + "/" + "f" * 30 + ".txt"
    assert 4000 < len(path) < 4096
    return clean_layer().file(path, "far away\n", 0o644)


@pytest.mark.parametrize("make_layer", [deep_layer, long_path_layer], ids=["1200-levels-deep", "4-KB-path"])
def test_an_extreme_layer_stages_checks_and_cleans_up(fake_lambda, run_extpack, tmp_path, make_layer):
    arn = _publish(fake_lambda, make_layer())
    first = run_extpack("fetch", arn, check=0)
    assert "Recursion" not in first.stderr
    stage = tmp_path / ".extpack"
    manifest = json.loads((stage / "manifest.json").read_text())
    deepest = max((f["path"] for f in manifest["files"]), key=len)
    assert deepest.endswith(".txt")
    assert len(str(stage / "opt" / deepest)) > 4096 or deepest.count("/") >= DEEP_LEVELS

    run_extpack("fetch", arn, check=0)  # the no-op re-run checks the stage against its manifest
    run_extpack("verify", check=0)
    run_extpack("ls", check=0)
    run_extpack("doctor", check=0)
    run_extpack("image", "-o", "image-out", check=0)
    one_error_line(run_extpack("doctor", "--oci", "image-out", check=6), "doctor found")  # no /bin/sh in it
    run_extpack("fetch", arn, "--stage-dir", "warm", "--lock", "warm.lock", check=0)  # from the cached tree
    assert snapshot(tmp_path / "warm" / "opt") == snapshot(stage / "opt")
    run_extpack("doctor", "--fix", check=0)

    other = _publish(fake_lambda, clean_layer(), name="other")
    run_extpack("fetch", other, check=0)  # the old stage is removed
    run_extpack("cache", "prune", "--all", check=0)

    assert leftovers(tmp_path) == []
    assert not (tmp_path / "cache" / "trees" / "v1").exists() or not list((tmp_path / "cache" / "trees" / "v1").iterdir())


def test_a_failed_fetch_of_a_deep_layer_leaves_no_build_dir(fake_lambda, run_extpack, tmp_path):
    good = _publish(fake_lambda, clean_layer(), name="good")
    run_extpack("fetch", good, check=0)
    before = snapshot(tmp_path / ".extpack")
    deep = _publish(fake_lambda, deep_layer(), name="deep")
    clash = _publish(fake_lambda, ZipBuilder().file("deep", "a file where the deep tree is\n"), name="clash")

    result = run_extpack("fetch", deep, clash, "--lock", "other.lock", check=5)

    one_error_line(result, "deep")
    assert leftovers(tmp_path) == []
    assert snapshot(tmp_path / ".extpack") == before
    assert not list((tmp_path / "cache" / "tmp").iterdir())


# --------------------------------------------------------------------------- class 10: modes, any user


def locked_modes_layer(version_text: str) -> ZipBuilder:
    """Directories a non-root owner can only enter and list (0500), not list (0311), only enter
    (0100). A zip cannot say 0000 (a mode of 0 means "none given", 0755, as with unzip): the
    test makes that one by hand."""
    return (clean_layer().file("data/version.txt", version_text)
            .dir("locked").dir("locked/readonly", 0o500).file("locked/readonly/a.txt", "a\n", 0o644)
            .dir("locked/writeonly", 0o311).file("locked/writeonly/b.txt", "b\n", 0o600)
            .dir("locked/none", 0o100).dir("locked/none/inner", 0o500).file("locked/none/inner/c.txt", "c\n", 0o400))


@pytest.mark.nonroot
def test_locked_directory_modes_fetch_refetch_fail_and_prune_cleanly(fake_lambda, run_extpack, tmp_path):
    v1 = _publish(fake_lambda, locked_modes_layer("1\n"))
    run_extpack("fetch", v1, check=0)
    modes = {path: entry[1] for path, entry in snapshot(tmp_path / ".extpack" / "opt").items()
             if path.startswith("locked/") and entry[0] == "dir"}
    assert modes["locked/readonly"] == 0o500 and modes["locked/writeonly"] == 0o311 and modes["locked/none"] == 0o100
    os.chmod(tmp_path / ".extpack" / "opt" / "locked" / "none", 0)

    run_extpack("fetch", v1, check=0)  # re-run: the stage differs (that mode), so it is rebuilt
    run_extpack("fetch", v1, "--stage-dir", "warm", "--lock", "warm.lock", check=0)  # from the cached tree
    v2 = _publish(fake_lambda, locked_modes_layer("2\n"))
    run_extpack("fetch", v2, check=0)  # the old stage, locked directories and all, is removed
    assert (tmp_path / ".extpack" / "opt" / "data" / "version.txt").read_text() == "2\n"
    before = snapshot(tmp_path / ".extpack")

    clash = _publish(fake_lambda, ZipBuilder().file("locked", "a file where a directory is\n"), name="clash")
    failed = run_extpack("fetch", v1, clash, "--lock", "clash.lock", check=5)
    one_error_line(failed, "locked")
    assert snapshot(tmp_path / ".extpack") == before
    run_extpack("fetch", v1, "--no-cache", "--stage-dir", "nocache", "--lock", "nocache.lock", check=0)

    run_extpack("cache", "prune", "--all", check=0)

    assert leftovers(tmp_path) == []
    cache = tmp_path / "cache"
    assert not [p for p in cache.rglob("*") if not p.is_dir()]
