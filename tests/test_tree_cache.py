"""The cache's unpacked trees: a new stage hard-links the files of each verified layer's
tree instead of inflating its zip again, and nothing done to a stage can leak into the
next one through those links.

Everything runs the installed CLI against the loopback Lambda API.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot


def _publish(fake_lambda) -> list[str]:
    """Three layers with an override between them, and a file only its owner can read."""
    private = (make_layers.ZipBuilder().dir("lib").file("lib/private.conf", "secret=1\n", mode=0o600)
               .file("lib/shared.txt", "from layer 3\n").getvalue())
    return [
        fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip")).arn,
        fake_lambda.add_layer("over", make_layers.build("override-a.zip"), architectures=()).arn,
        fake_lambda.add_layer("private", private).arn,
    ]


def _tree_file(cache: Path, manifest: dict, path: str) -> Path:
    """Where the cache's tree holds the staged file `path` (from the layer it came from)."""
    entry = next(f for f in manifest["files"] if f["path"] == path)
    sha = manifest["layers"][entry["layer"]]["sha256"]
    return cache / "trees" / "v1" / sha / "opt" / path


def _manifest(stage: Path) -> dict:
    return json.loads((stage / "manifest.json").read_text())


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_a_new_stage_links_the_cached_trees_and_equals_a_fresh_unpack(fake_lambda, run_extpack, tmp_path):
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, check=True)
    run_extpack("fetch", *arns, "--stage-dir", "warm", check=True)
    run_extpack("fetch", *arns, "--stage-dir", "uncached", "--lock", "other.lock", "--no-cache", check=True)

    reference = tree_snapshot(tmp_path / "uncached")
    assert reference and tree_snapshot(tmp_path / ".extpack") == reference == tree_snapshot(tmp_path / "warm")
    manifest = _manifest(tmp_path / "warm")
    files = [f["path"] for f in manifest["files"] if f["type"] == "file"]
    assert files
    for path in files:
        staged = os.stat(tmp_path / "warm" / "opt" / path)
        cached = os.stat(_tree_file(tmp_path / "cache", manifest, path))
        assert (staged.st_dev, staged.st_ino) == (cached.st_dev, cached.st_ino), path
    # Directories and symlinks are never shared with the cache.
    for entry in manifest["files"]:
        if entry["type"] != "file":
            staged = os.lstat(tmp_path / "warm" / "opt" / entry["path"])
            assert staged.st_nlink == 1 or stat.S_ISDIR(staged.st_mode)
    # The file from the later layer won, and only its tree's copy is linked.
    assert manifest["files"][[f["path"] for f in manifest["files"]].index("lib/shared.txt")]["layer"] == 2
    assert run_extpack("verify", "--stage-dir", "warm", check=True).returncode == 0


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
@pytest.mark.parametrize("damage", ["append", "chmod", "delete"])
def test_a_stage_changed_by_hand_does_not_leak_into_the_next_stage(fake_lambda, run_extpack, tmp_path, damage):
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, check=True)
    good = tree_snapshot(tmp_path / ".extpack")
    target = tmp_path / ".extpack" / "opt" / "extensions" / "demo-extension"
    if damage == "append":  # writes through the hard link, into the cache's tree too
        with open(target, "ab") as handle:
            handle.write(b"\n# edited by hand\n")
    elif damage == "chmod":
        os.chmod(target, 0o700)
    else:
        cached = _tree_file(tmp_path / "cache", _manifest(tmp_path / ".extpack"), "extensions/demo-extension")
        cached.unlink()

    run_extpack("fetch", *arns, "--stage-dir", "next", check=True)
    repaired = run_extpack("fetch", *arns, check=True)

    assert tree_snapshot(tmp_path / "next") == good
    # Removing the cache's copy leaves the stage right; changing the shared file does not.
    assert ("already up to date" in repaired.stdout) == (damage == "delete")
    assert tree_snapshot(tmp_path / ".extpack") == good
    run_extpack("verify", "--stage-dir", "next", check=True)


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_doctor_fix_changes_the_stage_and_not_the_cache(fake_lambda, run_extpack, tmp_path):
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, check=True)
    manifest = _manifest(tmp_path / ".extpack")
    cached = _tree_file(tmp_path / "cache", manifest, "lib/private.conf")
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600

    fixed = run_extpack("doctor", "--fix")

    assert "chmod 0644 /opt/lib/private.conf" in fixed.stdout + fixed.stderr
    staged = (tmp_path / ".extpack" / "opt" / "lib" / "private.conf").stat()
    assert stat.S_IMODE(staged.st_mode) == 0o644 and staged.st_nlink == 1
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600 and cached.read_text() == "secret=1\n"
    run_extpack("fetch", *arns, "--stage-dir", "again", check=True)
    assert stat.S_IMODE((tmp_path / "again" / "opt" / "lib" / "private.conf").stat().st_mode) == 0o600


def test_cache_ls_shows_each_blobs_unpacked_size(fake_lambda, run_extpack, tmp_path):
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, check=True)
    layers = _manifest(tmp_path / ".extpack")["layers"]
    tree = tmp_path / "cache" / "trees" / "v1" / layers[0]["sha256"]
    shutil.rmtree(tree)  # a blob whose tree is gone lists without one

    listed = json.loads(run_extpack("cache", "ls", "--json", check=True).stdout)["blobs"]

    unpacked = {blob["sha256"]: blob["unpacked"] for blob in listed}
    assert unpacked == {layer["sha256"]: layer["unzipped_size"] if i else None for i, layer in enumerate(layers)}
    assert "UNPACKED" in run_extpack("cache", "ls", check=True).stdout


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_cache_prune_removes_the_trees_with_their_blobs(fake_lambda, run_extpack, tmp_path):
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, check=True)
    trees = tmp_path / "cache" / "trees" / "v1"
    assert len(list(trees.iterdir())) == len(arns)

    run_extpack("cache", "prune", "--all", check=True)

    assert list(trees.iterdir()) == []
    assert tree_snapshot(tmp_path / ".extpack")  # the stage keeps its files (they were links)
    run_extpack("verify", check=True)


def test_a_cache_on_another_filesystem_is_used_without_links(fake_lambda, run_extpack, tmp_path, aws_env):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's tmp dir")
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, "--stage-dir", "reference", "--lock", "reference.lock", check=True)
    other = Path(tempfile.mkdtemp(prefix="extpack-test-cache-", dir="/dev/shm"))
    try:
        env = {**aws_env, "EXTPACK_CACHE_DIR": str(other)}
        run_extpack("fetch", *arns, env=env, check=True)
        run_extpack("fetch", *arns, "--stage-dir", "warm", env=env, check=True)

        assert tree_snapshot(tmp_path / ".extpack") == tree_snapshot(tmp_path / "reference")
        assert tree_snapshot(tmp_path / "warm") == tree_snapshot(tmp_path / "reference")
        assert not (other / "trees").exists()  # nothing to link from, so no tree is kept
        assert len(list((other / "blobs" / "sha256").iterdir())) == len(arns)
    finally:
        shutil.rmtree(other)


@pytest.mark.parametrize("lie", ["dotdot", "absolute", "through-symlink", "orphan"])
def test_an_edited_tree_index_cannot_place_anything_outside_the_stage(fake_lambda, run_extpack, tmp_path, lie):
    arns = _publish(fake_lambda)
    run_extpack("fetch", *arns, check=True)
    good = tree_snapshot(tmp_path / ".extpack")
    sha = _manifest(tmp_path / ".extpack")["layers"][0]["sha256"]
    index_path = tmp_path / "cache" / "trees" / "v1" / sha / "index.json"
    index = json.loads(index_path.read_text())
    row = next(r for r in index["nodes"] if r[1] == "file")
    bad = {
        "dotdot": ["../../escaped", *row[1:]],
        "absolute": ["/tmp/extpack-escaped", *row[1:]],
        "through-symlink": ["hop/escaped", *row[1:]],
        "orphan": ["missing-parent/escaped", *row[1:]],
    }[lie]
    extra = [["hop", "symlink", 0o777, 0, None, str(tmp_path), 0, False]] if lie == "through-symlink" else []
    index["nodes"] += extra + [bad]
    index_path.write_text(json.dumps(index))
    # Give the lie a file to link that passes the size/mode/mtime check.
    tree_root = index_path.parent / "opt"
    planted = Path(f"{tree_root}/{bad[0]}")  # as the overlay joins it
    planted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tree_root / row[0], planted)
    before = tree_snapshot(tmp_path)

    run_extpack("fetch", *arns, "--stage-dir", "next", check=True)

    assert tree_snapshot(tmp_path / "next") == good  # the tree was dropped and the zip unpacked again
    after = tree_snapshot(tmp_path)
    new = {path for path in set(after) - set(before) if not path.startswith(("next/", "cache/"))}
    assert new == {"next"}
    assert not (tmp_path / "escaped").exists()
