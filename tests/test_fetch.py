"""extpack fetch end to end: real CLI, real boto3 and requests, loopback Lambda API."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import make_layers
import pytest


def _manifest(stage: Path) -> dict:
    return json.loads((stage / "manifest.json").read_text())


def _lock(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_fetch_arn_stages_exact_files_modes_and_symlinks(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo-extension", make_layers.build("demo-extension.zip"), region="ap-northeast-1")

    result = run_extpack("fetch", layer.arn, check=True)

    opt = tmp_path / ".extpack" / "opt"
    script = opt / "extensions" / "demo-extension"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    link = opt / "demo-extension" / "lib" / "libdemo.so.1"
    assert link.is_symlink() and os.readlink(link) == "libdemo.so.1.0"
    assert stat.S_IMODE((opt / "demo-extension" / "config.json").stat().st_mode) == 0o644
    # The call went to the ARN's region, found in the SigV4 scope.
    assert {call.region for call in fake_lambda.api_calls} == {"ap-northeast-1"}
    assert layer.arn in result.stdout and layer.sha256_hex[:12] in result.stdout


def test_manifest_and_lock_describe_every_layer_and_file(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo-extension", make_layers.build("demo-extension.zip"))

    run_extpack("fetch", layer.arn, check=True)

    manifest = _manifest(tmp_path / ".extpack")
    assert manifest["layers"][0]["arn"] == layer.arn
    assert manifest["layers"][0]["sha256"] == layer.sha256_hex
    entries = {entry["path"]: entry for entry in manifest["files"]}
    script = entries["extensions/demo-extension"]
    on_disk = (tmp_path / ".extpack/opt/extensions/demo-extension").read_bytes()
    import hashlib

    assert script["sha256"] == hashlib.sha256(on_disk).hexdigest()
    assert (script["type"], script["mode"], script["size"], script["layer"]) == ("file", "0755", len(on_disk), 0)
    assert entries["demo-extension/lib/libdemo.so.1"]["target"] == "libdemo.so.1.0"
    lock = _lock(tmp_path / "extpack.lock")
    assert lock["layers"] == [{
        "source": layer.arn, "kind": "arn", "arn": layer.arn, "version": layer.version,
        "sha256": layer.sha256_hex, "size": layer.size, "architectures": ["x86_64"],
    }]


def test_later_layer_overrides_earlier_and_says_so(fake_lambda, run_extpack, tmp_path):
    first = fake_lambda.add_layer("override-a", make_layers.build("override-a.zip"))
    second = fake_lambda.add_layer("override-b", make_layers.build("override-b.zip"))

    result = run_extpack("fetch", first.arn, second.arn, "--json", check=True)

    data = json.loads(result.stdout)
    overridden = {item["path"] for item in data["overrides"]}
    assert "shared/config.txt" in overridden
    assert "override: /opt/shared/config.txt" in result.stderr
    staged = (tmp_path / ".extpack/opt/shared/config.txt").read_bytes()
    assert staged == _member("override-b.zip", "shared/config.txt")
    entry = next(e for e in _manifest(tmp_path / ".extpack")["files"] if e["path"] == "shared/config.txt")
    assert entry["layer"] == 1 and entry["overrode"] == [0]


def test_order_matters(fake_lambda, run_extpack, tmp_path):
    first = fake_lambda.add_layer("override-a", make_layers.build("override-a.zip"))
    second = fake_lambda.add_layer("override-b", make_layers.build("override-b.zip"))

    run_extpack("fetch", second.arn, first.arn, check=True)

    assert (tmp_path / ".extpack/opt/shared/config.txt").read_bytes() == _member("override-a.zip", "shared/config.txt")


def test_unversioned_arn_resolves_newest_for_arch_and_pins_it(fake_lambda, run_extpack, tmp_path):
    fake_lambda.add_layer("probe", make_layers.build("elf-x86_64.zip"), architectures=("x86_64",))
    arm = fake_lambda.add_layer("probe", make_layers.build("elf-arm64.zip"), architectures=("arm64",))
    newest_x86 = fake_lambda.add_layer("probe", make_layers.build("elf-x86_64.zip"), architectures=("x86_64",))
    fake_lambda.add_layer("probe", make_layers.build("elf-arm64.zip"), architectures=("arm64",))

    run_extpack("fetch", arm.layer_arn, check=True)
    assert _lock(tmp_path / "extpack.lock")["layers"][0]["arn"] == newest_x86.arn

    run_extpack("fetch", arm.layer_arn, "--arch", "arm64", "--lock", "arm.lock", "--stage-dir", "arm", check=True)
    pinned = _lock(tmp_path / "arm.lock")["layers"][0]
    assert pinned["source"] == arm.layer_arn and pinned["version"] == 4


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_pinned_lock_is_reused_without_resolving_again(fake_lambda, run_extpack, tmp_path):
    first = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", first.layer_arn, check=True)
    fake_lambda.add_layer("demo", make_layers.build("override-a.zip"))  # a newer version appears
    fake_lambda.clear_requests()

    run_extpack("fetch", first.layer_arn, "--stage-dir", "other", check=True)

    assert _lock(tmp_path / "extpack.lock")["layers"][0]["arn"] == first.arn
    assert fake_lambda.requests == []  # warm cache and a pin: no network at all


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_warm_cache_and_unchanged_lock_touch_no_network(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", layer.arn, check=True)
    lock_before = (tmp_path / "extpack.lock").read_bytes()
    fake_lambda.clear_requests()

    again = run_extpack("fetch", layer.arn, check=True)
    run_extpack("fetch", layer.arn, "--stage-dir", "fresh", check=True)

    assert fake_lambda.requests == []
    assert "already up to date" in again.stdout
    assert (tmp_path / "extpack.lock").read_bytes() == lock_before
    assert _snapshot(tmp_path / "fresh/opt") == _snapshot(tmp_path / ".extpack/opt")


def test_frozen_fetch_works_offline_from_warm_cache(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", layer.arn, check=True)
    fake_lambda.stop()

    run_extpack("fetch", layer.arn, "--frozen", "--stage-dir", "offline", check=True)

    assert _snapshot(tmp_path / "offline/opt") == _snapshot(tmp_path / ".extpack/opt")


def test_frozen_refuses_a_source_not_in_the_lock(fake_lambda, run_extpack, tmp_path):
    one = fake_lambda.add_layer("one", make_layers.build("demo-extension.zip"))
    two = fake_lambda.add_layer("two", make_layers.build("python-deps.zip"))
    run_extpack("fetch", one.arn, check=True)
    before = (tmp_path / "extpack.lock").read_bytes()

    result = run_extpack("fetch", one.arn, two.arn, "--frozen", check=6)

    assert result.stderr.count("\n") == 1 and "layer 2" in result.stderr
    assert (tmp_path / "extpack.lock").read_bytes() == before


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_local_zip_and_loopback_url_sources(fake_lambda, run_extpack, tmp_path, layer_zips):
    layer = fake_lambda.add_layer("deps", make_layers.build("python-deps.zip"))
    url = _location(fake_lambda, layer.arn)

    result = run_extpack("fetch", layer_zips / "demo-extension.zip", url, "--json", check=True)

    data = json.loads(result.stdout)
    assert [item["kind"] for item in data["layers"]] == ["zip", "url"]
    assert data["layers"][1]["sha256"] == layer.sha256_hex
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()
    assert (tmp_path / ".extpack/opt/python").is_dir()
    assert "X-Amz-Signature" not in result.stdout


def test_json_output_is_the_only_thing_on_stdout(fake_lambda, run_extpack):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))

    result = run_extpack("fetch", layer.arn, "--json", check=True)

    data = json.loads(result.stdout)
    assert data["schema"] == "extpack.fetch/v1"
    assert data["layers"][0]["files"] > 0 and data["files"] >= data["layers"][0]["files"]


def test_presigned_url_never_appears_anywhere(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fake_lambda.inject("500", layer=layer.arn)
    fake_lambda.inject("403-expired", layer=layer.arn)

    result = run_extpack("--verbose", "fetch", layer.arn, "--json", check=True)

    assert len(fake_lambda.issued_urls) == 2  # the expired URL was replaced by a fresh one
    texts = [result.stdout, result.stderr, (tmp_path / "extpack.lock").read_text(),
             (tmp_path / ".extpack/manifest.json").read_text()]
    for text in texts:
        assert fake_lambda.find_leaks(text) == []


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_no_cache_leaves_the_cache_empty(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))

    run_extpack("fetch", layer.arn, "--no-cache", check=True)

    cache = tmp_path / "cache"
    assert not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()
    assert not list(tmp_path.glob(".extpack.build-*"))


def test_parallel_jobs_keep_the_given_order(fake_lambda, run_extpack, tmp_path):
    arns = [fake_lambda.add_layer(f"layer{i}", make_layers.build(name)).arn
            for i, name in enumerate(["override-a.zip", "python-deps.zip", "override-b.zip"])]

    data = json.loads(run_extpack("fetch", *arns, "--jobs", "3", "--json", check=True).stdout)

    assert [layer["arn"] for layer in data["layers"]] == arns
    assert (tmp_path / ".extpack/opt/shared/config.txt").read_bytes() == _member("override-b.zip", "shared/config.txt")


def test_config_file_supplies_layers_and_stage_dir(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    (tmp_path / "extpack.toml").write_text(f'layers = ["{layer.arn}"]\nstage-dir = "build/stage"\n')

    run_extpack("fetch", check=True)

    assert (tmp_path / "build/stage/opt/extensions/demo-extension").is_file()


def _member(zip_name: str, member: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(make_layers.build(zip_name))) as archive:
        return archive.read(member)


def _location(fake_lambda, arn: str) -> str:
    import boto3

    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=fake_lambda.endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client.get_layer_version_by_arn(Arn=arn)["Content"]["Location"]


def _snapshot(root: Path) -> dict:
    from conftest import tree_snapshot

    return tree_snapshot(root)
