"""The inspection commands of the build step: `extpack verify`, `extpack ls`, `extpack cache`."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import make_layers
import pytest

DEMO_FILES = {  # what demo-extension.zip stages (fixtures/make_layers.py)
    "config": "demo-extension/config.json",
    "script": "extensions/demo-extension",
    "link": "demo-extension/lib/libdemo.so.1",
}


def _blob(cache: Path, sha256: str) -> Path:
    return cache / "blobs" / "sha256" / sha256


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("extpack: error:"), result.stderr
    return lines[0]


@pytest.fixture
def fetched(fake_lambda, run_extpack, tmp_path, layer_zips):
    """A stage from an ARN layer (demo-extension) and a local zip (python-deps), and its cache."""
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    shutil.copyfile(layer_zips / "python-deps.zip", tmp_path / "deps.zip")
    run_extpack("fetch", layer.arn, "deps.zip", check=True)
    return layer


# --------------------------------------------------------------------------- verify


def test_verify_a_clean_stage(run_extpack, fetched):
    result = run_extpack("verify", check=0)

    assert result.stdout.startswith("ok:")
    report = json.loads(run_extpack("verify", "--json", check=0).stdout)
    assert report["schema"] == "extpack.verify/v1" and report["ok"] is True
    assert report["differences"] == []
    assert report["blobs_checked"] == 1  # the ARN layer's zip; a local zip is not cached
    assert report["files_checked"] > len(DEMO_FILES)


def _mutate(opt: Path, how: str) -> str:
    """Change the stage one way; returns the /opt path verify must name."""
    if how == "missing":
        (opt / DEMO_FILES["config"]).unlink()
        return DEMO_FILES["config"]
    if how == "extra":
        (opt / "extensions/intruder").write_text("#!/bin/sh\n")
        return "extensions/intruder"
    if how == "content":  # same size, same mtime: only hashing can tell
        path = opt / DEMO_FILES["script"]
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[-2] = ord("X") if data[-2] != ord("X") else ord("Y")
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size
        return DEMO_FILES["script"]
    if how == "mode":
        os.chmod(opt / DEMO_FILES["script"], 0o644)
        return DEMO_FILES["script"]
    if how == "symlink":
        link = opt / DEMO_FILES["link"]
        link.unlink()
        os.symlink("../config.json", link)
        return DEMO_FILES["link"]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing", "extra", "content", "mode", "symlink"])
def test_verify_lists_what_changed_in_the_stage(run_extpack, tmp_path, fetched, how):
    path = _mutate(tmp_path / ".extpack/opt", how)

    result = run_extpack("verify", check=6)

    listed = [line for line in result.stdout.splitlines() if f"/opt/{path}" in line]
    assert len(listed) == 1, result.stdout
    assert len(result.stdout.strip().splitlines()) == 1  # nothing else is reported
    assert "difference" in _error_line(result)
    report = json.loads(run_extpack("verify", "--json", check=6).stdout)
    assert report["ok"] is False and report["differences"] == [listed[0]]


def test_verify_catches_a_corrupt_cache_blob(run_extpack, tmp_path, fetched):
    blob = _blob(tmp_path / "cache", fetched.sha256_hex)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))

    result = run_extpack("verify", check=6)

    assert fetched.arn in result.stdout and "cache" in result.stdout
    run_extpack("verify", "--no-cache", check=0)  # the stage itself is fine


def test_verify_catches_a_stage_that_no_longer_matches_the_lock(run_extpack, tmp_path, fetched):
    lock = json.loads((tmp_path / "extpack.lock").read_text())
    lock["layers"] = lock["layers"][:1]
    (tmp_path / "extpack.lock").write_text(json.dumps(lock))

    result = run_extpack("verify", "--no-cache", check=6)

    assert "layer 2" in result.stdout


def test_verify_without_a_stage_is_a_usage_error(run_extpack):
    assert "extpack fetch" in _error_line(run_extpack("verify", check=2))


# --------------------------------------------------------------------------- ls


def test_ls_shows_layers_extensions_with_their_cpu_and_total(fake_lambda, run_extpack, tmp_path, layer_zips):
    arm = fake_lambda.add_layer("probe", make_layers.build("elf-arm64.zip"), architectures=("arm64",))
    run_extpack("fetch", arm.arn, "--arch", "arm64", "--stage-dir", "arm", "--lock", "arm.lock", check=True)
    shutil.copyfile(layer_zips / "elf-x86_64.zip", tmp_path / "probe-x86.zip")
    demo = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", "probe-x86.zip", demo.arn, "--stage-dir", "x86", check=True)

    arm_ls = json.loads(run_extpack("ls", "--stage-dir", "arm", "--json", check=True).stdout)
    x86_ls = json.loads(run_extpack("ls", "--stage-dir", "x86", "--json", check=True).stdout)

    assert arm_ls["schema"] == "extpack.ls/v1" and arm_ls["arch"] == "arm64"
    [layer] = arm_ls["layers"]
    assert (layer["arn"], layer["version"], layer["sha256"], layer["size"], layer["architectures"]) == \
        (arm.arn, arm.version, arm.sha256_hex, arm.size, ["arm64"])
    assert [(e["name"], e["cpu"]) for e in arm_ls["extensions"]] == [("probe", "arm64")]
    assert {(e["name"], e["cpu"]) for e in x86_ls["extensions"]} == {("probe", "x86_64"),
                                                                     ("demo-extension", "script")}
    assert [layer["source"] for layer in x86_ls["layers"]] == ["probe-x86.zip", demo.arn]
    for listing, stage in ((arm_ls, "arm"), (x86_ls, "x86")):
        files = [p for p in (tmp_path / stage / "opt").rglob("*") if p.is_file() and not p.is_symlink()]
        by_name = {e["name"]: e for e in listing["extensions"]}
        assert by_name["probe"]["size"] == (tmp_path / stage / "opt/extensions/probe").stat().st_size
        assert listing["total_size"] == sum(p.stat().st_size for p in files)  # regular files only
        assert listing["files"] == len(list((tmp_path / stage / "opt").rglob("*")))

    table = run_extpack("ls", "--stage-dir", "arm", check=True).stdout
    probe_row = next(line for line in table.splitlines() if "/opt/extensions/probe" in line)
    assert "arm64" in probe_row and "x86_64" not in probe_row
    x86_table = run_extpack("ls", "--stage-dir", "x86", check=True).stdout
    x86_row = next(line for line in x86_table.splitlines() if "/opt/extensions/probe" in line)
    assert "x86_64" in x86_row and "arm64" not in x86_row
    assert arm.arn in table and arm.sha256_hex[:12] in table
    assert "total:" in table


def test_ls_without_a_stage_is_a_usage_error(run_extpack):
    run_extpack("ls", check=2)


# --------------------------------------------------------------------------- cache


def test_cache_path_honours_flag_env_and_platform_default(run_extpack, tmp_path, aws_env):
    env = dict(aws_env)
    assert run_extpack("cache", "path", check=True).stdout.strip() == env["EXTPACK_CACHE_DIR"]
    flag = tmp_path / "flag-cache"
    assert run_extpack("cache", "path", "--cache-dir", flag, check=True).stdout.strip() == str(flag)
    (tmp_path / "extpack.toml").write_text('cache-dir = "project-cache"\n')  # config over env, flag over config
    from_config = run_extpack("cache", "path", check=True).stdout.strip()
    assert (tmp_path / from_config).resolve() == (tmp_path / "project-cache").resolve()
    assert run_extpack("cache", "path", "--cache-dir", flag, check=True).stdout.strip() == str(flag)
    (tmp_path / "extpack.toml").unlink()
    del env["EXTPACK_CACHE_DIR"]
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    assert run_extpack("cache", "path", env=env, check=True).stdout.strip() == str(tmp_path / "xdg/extpack")


def test_fetch_uses_the_cache_dir_cache_path_prints(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    elsewhere = tmp_path / "elsewhere"

    run_extpack("fetch", layer.arn, "--cache-dir", elsewhere, check=True)

    assert _blob(elsewhere, layer.sha256_hex).is_file()
    assert not (tmp_path / "cache").exists()
    listed = json.loads(run_extpack("cache", "ls", "--cache-dir", elsewhere, "--json", check=True).stdout)
    assert [b["sha256"] for b in listed["blobs"]] == [layer.sha256_hex]


def test_cache_ls_lists_blobs_with_sizes(fake_lambda, run_extpack, tmp_path):
    small = fake_lambda.add_layer("small", make_layers.build("override-a.zip"))
    demo = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", small.arn, demo.arn, check=True)

    listed = json.loads(run_extpack("cache", "ls", "--json", check=True).stdout)
    table = run_extpack("cache", "ls", check=True).stdout

    assert listed["schema"] == "extpack.cache/v1"
    assert sorted((b["sha256"], b["size"]) for b in listed["blobs"]) == \
        sorted([(small.sha256_hex, small.size), (demo.sha256_hex, demo.size)])
    for layer in (small, demo):
        assert layer.sha256_hex[:16] in table
    assert "2 blobs" in table
    assert f"{demo.size / 1024:.1f} KiB" in table


def test_cache_prune_older_than_removes_only_old_blobs(fake_lambda, run_extpack, tmp_path):
    old = fake_lambda.add_layer("old", make_layers.build("override-a.zip"))
    new = fake_lambda.add_layer("new", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", old.arn, new.arn, check=True)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(_blob(tmp_path / "cache", old.sha256_hex), (ten_days_ago, ten_days_ago))
    os.utime(_blob(tmp_path / "cache", new.sha256_hex), (time.time() - 86400, time.time() - 86400))

    result = run_extpack("cache", "prune", "--older-than", "5", check=True)

    assert "removed 1 blobs" in result.stdout
    assert not _blob(tmp_path / "cache", old.sha256_hex).exists()
    assert _blob(tmp_path / "cache", new.sha256_hex).is_file()
    assert "removed 0 blobs" in run_extpack("cache", "prune", "--older-than", "5", check=True).stdout


def test_a_fetch_that_uses_a_blob_keeps_it_from_pruning(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", layer.arn, check=True)
    blob = _blob(tmp_path / "cache", layer.sha256_hex)
    long_ago = time.time() - 30 * 86400
    os.utime(blob, (long_ago, long_ago))

    run_extpack("fetch", layer.arn, "--stage-dir", "rebuilt", check=True)  # built from the cache
    run_extpack("cache", "prune", "--older-than", "7", check=True)

    assert blob.is_file()


def test_cache_prune_all_and_its_usage_errors(fake_lambda, run_extpack, tmp_path):
    layers = [fake_lambda.add_layer(f"l{i}", make_layers.build(name))
              for i, name in enumerate(["override-a.zip", "override-b.zip"])]
    run_extpack("fetch", *(layer.arn for layer in layers), check=True)
    blobs = sorted(p.name for p in (tmp_path / "cache/blobs/sha256").iterdir())

    for args in ([], ["--all", "--older-than", "1"]):
        assert "--all" in _error_line(run_extpack("cache", "prune", *args, check=2))
        assert sorted(p.name for p in (tmp_path / "cache/blobs/sha256").iterdir()) == blobs

    assert "removed 2 blobs" in run_extpack("cache", "prune", "--all", check=True).stdout
    assert list((tmp_path / "cache/blobs/sha256").iterdir()) == []
    assert json.loads(run_extpack("cache", "ls", "--json", check=True).stdout)["blobs"] == []
    # The stage does not depend on the cache; the next fetch downloads again.
    run_extpack("verify", check=0)
    run_extpack("fetch", "--stage-dir", "again", *(layer.arn for layer in layers), check=True)
    assert sorted(p.name for p in (tmp_path / "cache/blobs/sha256").iterdir()) == blobs
