"""The build-step workflow (issue 6): the lock, `--frozen` drift, offline fetches,
concurrent fetches sharing one cache, the example Makefile run by a real `make`, and the
example GitHub Actions workflow.

Everything runs the installed CLI against the loopback Lambda API (tests/lambda_server.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import make_layers
import pytest
from conftest import _extpack_command, tree_snapshot

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
LOCK_LAYER_KEYS = {"source", "kind", "arn", "version", "sha256", "size", "architectures"}  # README "Files"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("extpack: error:") and "Traceback" not in result.stderr
    return lines[0]


def _write_config(root: Path, layers: list[str], **settings: str) -> None:
    text = "layers = [\n" + "".join(f"    {json.dumps(layer)},\n" for layer in layers) + "]\n"
    text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    (root / "extpack.toml").write_text(text)


def _presigned_location(fake_lambda, arn: str) -> str:
    import boto3

    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=fake_lambda.endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client.get_layer_version_by_arn(Arn=arn)["Content"]["Location"]


def _blob(cache: Path, sha256: str) -> Path:
    return cache / "blobs" / "sha256" / sha256


def _corrupt_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _state(tmp_path: Path, *names: str) -> dict:
    """Bytes of files and trees of folders, to show that a failed command changed nothing."""
    out = {}
    for name in names:
        path = tmp_path / name
        out[name] = path.read_bytes() if path.is_file() else tree_snapshot(path)
    return out


def _four_kinds(fake_lambda, tmp_path: Path, layer_zips: Path) -> list[str]:
    """Sources of every kind: an unversioned ARN, a version ARN, a loopback URL, a local zip."""
    fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    demo = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    deps = fake_lambda.add_layer("deps", make_layers.build("python-deps.zip"), architectures=("x86_64", "arm64"))
    over = fake_lambda.add_layer("over", make_layers.build("override-a.zip"), architectures=())
    shutil.copyfile(layer_zips / "override-b.zip", tmp_path / "override-b.zip")
    return [demo.layer_arn, deps.arn, _presigned_location(fake_lambda, over.arn),
            "override-b.zip"]


# --------------------------------------------------------------------------- the lock


def test_lock_round_trip_and_documented_fields(fake_lambda, run_extpack, tmp_path, layer_zips):
    sources = _four_kinds(fake_lambda, tmp_path, layer_zips)
    demo2 = fake_lambda.get_layer(sources[0] + ":2")

    run_extpack("fetch", *sources, check=True)

    lock_bytes = (tmp_path / "extpack.lock").read_bytes()
    lock = json.loads(lock_bytes)
    assert lock["schema"] == "extpack.lock/v1" and lock["arch"] == "x86_64"
    assert [set(layer) for layer in lock["layers"]] == [LOCK_LAYER_KEYS] * 4
    unversioned, versioned, url, local = lock["layers"]
    assert unversioned == {"source": sources[0], "kind": "arn", "arn": demo2.arn, "version": 2,
                           "sha256": demo2.sha256_hex, "size": demo2.size, "architectures": ["x86_64"]}
    assert versioned["kind"] == "arn" and versioned["arn"] == sources[1] == versioned["source"]
    assert versioned["architectures"] == ["x86_64", "arm64"]
    assert url["kind"] == "url" and url["source"] == sources[2].split("?")[0] and "?" not in url["source"]
    over = make_layers.build("override-a.zip")
    assert (url["sha256"], url["size"]) == (hashlib.sha256(over).hexdigest(), len(over))
    zip_bytes = (tmp_path / "override-b.zip").read_bytes()
    assert local == {"source": "override-b.zip", "kind": "zip", "arn": None, "version": None,
                     "sha256": hashlib.sha256(zip_bytes).hexdigest(), "size": len(zip_bytes), "architectures": []}

    # Same sources again: no-op into the same stage, full build into another, lock unchanged.
    fake_lambda.add_layer("demo", make_layers.build("python-deps.zip"))  # a newer version must not move the pin
    run_extpack("fetch", *sources, check=True)
    run_extpack("fetch", *sources, "--stage-dir", "second", check=True)
    assert (tmp_path / "extpack.lock").read_bytes() == lock_bytes
    assert tree_snapshot(tmp_path / "second/opt") == tree_snapshot(tmp_path / ".extpack/opt")


def test_a_fetch_that_does_not_change_the_lock_leaves_the_file_alone(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", layer.arn, check=True)
    lock = tmp_path / "extpack.lock"
    os.utime(lock, (1_600_000_000, 1_600_000_000))
    before = lock.stat()

    run_extpack("fetch", layer.arn, "--frozen", "--stage-dir", "other", check=True)
    run_extpack("fetch", layer.arn, "--stage-dir", "third", check=True)

    after = lock.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_lock_command_writes_the_lock_without_a_stage(fake_lambda, run_extpack, tmp_path, layer_zips):
    sources = _four_kinds(fake_lambda, tmp_path, layer_zips)
    _write_config(tmp_path, sources)

    result = run_extpack("lock", check=True)

    assert "extpack.lock: updated" in result.stdout
    assert not (tmp_path / ".extpack").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".extpack")]
    locked = (tmp_path / "extpack.lock").read_bytes()
    assert [layer["version"] for layer in json.loads(locked)["layers"]][:2] == [2, 1]
    # The lock is exactly what a fetch would write: a frozen fetch accepts it and keeps it.
    run_extpack("fetch", "--frozen", check=True)
    assert (tmp_path / "extpack.lock").read_bytes() == locked
    again = run_extpack("lock", check=True)
    assert "extpack.lock: unchanged" in again.stdout


def test_lock_upgrade_moves_unversioned_pins_and_fetch_keeps_them(fake_lambda, run_extpack, tmp_path):
    v1 = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fixed = fake_lambda.add_layer("fixed", make_layers.build("override-a.zip"))
    _write_config(tmp_path, [v1.layer_arn, fixed.arn])
    run_extpack("fetch", check=True)
    v2 = fake_lambda.add_layer("demo", make_layers.build("python-deps.zip"))
    fake_lambda.add_layer("fixed", make_layers.build("override-b.zip"))  # a versioned ARN never moves

    run_extpack("fetch", check=True)
    assert _json(tmp_path / "extpack.lock")["layers"][0]["arn"] == v1.arn  # a plain fetch keeps the pin
    run_extpack("lock", check=True)
    assert _json(tmp_path / "extpack.lock")["layers"][0]["arn"] == v1.arn  # so does a plain lock

    result = run_extpack("lock", "--upgrade", check=True)

    assert f"{v1.arn} -> {v2.arn}" in result.stdout
    assert fixed.arn not in result.stdout
    layers = _json(tmp_path / "extpack.lock")["layers"]
    assert (layers[0]["arn"], layers[0]["sha256"]) == (v2.arn, v2.sha256_hex)
    assert layers[1]["arn"] == fixed.arn
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").exists()  # lock does not touch the stage
    run_extpack("fetch", check=True)  # the stage follows the new lock
    assert (tmp_path / ".extpack/opt/python").is_dir()
    assert not (tmp_path / ".extpack/opt/extensions/demo-extension").exists()
    assert "unchanged" in run_extpack("lock", "--upgrade", check=True).stdout


def test_lock_upgrade_of_one_layer_moves_only_that_one(fake_lambda, run_extpack, tmp_path):
    a1 = fake_lambda.add_layer("alpha", make_layers.build("override-a.zip"))
    b1 = fake_lambda.add_layer("beta", make_layers.build("override-b.zip"))
    _write_config(tmp_path, [a1.layer_arn, b1.layer_arn])
    run_extpack("lock", check=True)
    a2 = fake_lambda.add_layer("alpha", make_layers.build("python-deps.zip"))
    fake_lambda.add_layer("beta", make_layers.build("python-deps.zip"))

    result = run_extpack("lock", "--upgrade", "--layer", "alpha", check=True)

    assert f"{a1.arn} -> {a2.arn}" in result.stdout and "beta" not in result.stdout
    assert [layer["arn"] for layer in _json(tmp_path / "extpack.lock")["layers"]] == [a2.arn, b1.arn]
    by_arn = run_extpack("lock", "--upgrade", "--layer", b1.layer_arn, check=True)
    assert f"{b1.arn} -> " in by_arn.stdout
    assert _json(tmp_path / "extpack.lock")["layers"][1]["version"] == 2
    run_extpack("lock", "--layer", "alpha", check=2)  # --layer goes with --upgrade


def test_lock_json_schema(fake_lambda, run_extpack, tmp_path, layer_zips):
    v1 = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    shutil.copyfile(layer_zips / "override-a.zip", tmp_path / "a.zip")
    _write_config(tmp_path, [v1.layer_arn, "a.zip"])

    first = json.loads(run_extpack("lock", "--json", check=True).stdout)
    sha_a = hashlib.sha256((tmp_path / "a.zip").read_bytes()).hexdigest()
    assert first == {"schema": "extpack.lock-changes/v1", "lock": "extpack.lock", "changes": [
        {"source": v1.layer_arn, "from": None, "to": v1.arn},
        {"source": "a.zip", "from": None, "to": f"sha256:{sha_a[:12]}"},
    ]}
    v2 = fake_lambda.add_layer("demo", make_layers.build("python-deps.zip"))
    upgraded = json.loads(run_extpack("lock", "--upgrade", "--json", check=True).stdout)
    assert upgraded["changes"] == [{"source": v1.layer_arn, "from": v1.arn, "to": v2.arn}]
    _write_config(tmp_path, [v1.layer_arn])
    removed = json.loads(run_extpack("lock", "--json", check=True).stdout)
    assert removed["changes"] == [{"source": "a.zip", "from": f"sha256:{sha_a[:12]}", "to": None}]
    assert json.loads(run_extpack("lock", "--json", check=True).stdout)["changes"] == []


# --------------------------------------------------------------------------- --frozen drift


@pytest.fixture
def locked_project(fake_lambda, run_extpack, tmp_path, layer_zips):
    """A project with two ARN layers and a local zip, fetched: config, lock, stage, warm cache."""
    one = fake_lambda.add_layer("one", make_layers.build("demo-extension.zip"))
    two = fake_lambda.add_layer("two", make_layers.build("python-deps.zip"))
    shutil.copyfile(layer_zips / "override-a.zip", tmp_path / "local.zip")
    layers = [one.arn, two.arn, "local.zip"]
    _write_config(tmp_path, layers)
    run_extpack("fetch", check=True)
    return {"one": one, "two": two, "layers": layers}


def _assert_frozen_drift(run_extpack, tmp_path, *args: str, names: list[str]) -> str:
    before = _state(tmp_path, "extpack.lock", ".extpack", "extpack.toml")
    result = run_extpack("fetch", "--frozen", *args, check=6)
    line = _error_line(result)
    for name in names:
        assert name in line, line
    assert _state(tmp_path, "extpack.lock", ".extpack", "extpack.toml") == before
    assert not [p.name for p in tmp_path.iterdir() if ".build-" in p.name or ".old-" in p.name]
    return line


@pytest.mark.parametrize(("change", "position"), [
    ("added", "layer 4"), ("removed", "layer 3"), ("reordered", "layer 1"),
])
def test_frozen_fails_when_the_config_changed(fake_lambda, run_extpack, tmp_path, locked_project, change, position):
    one, two, local = locked_project["layers"]
    extra = fake_lambda.add_layer("three", make_layers.build("override-b.zip")).arn
    layers = {"added": [one, two, local, extra], "removed": [one, two], "reordered": [two, one, local]}[change]
    _write_config(tmp_path, layers)

    _assert_frozen_drift(run_extpack, tmp_path, names=[position])


def test_frozen_fails_when_the_lock_was_edited(fake_lambda, run_extpack, tmp_path, locked_project):
    lock = _json(tmp_path / "extpack.lock")
    lock["layers"][1]["sha256"] = hashlib.sha256(b"not what the API says").hexdigest()
    (tmp_path / "extpack.lock").write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")

    _assert_frozen_drift(run_extpack, tmp_path, names=[locked_project["two"].arn])


def test_frozen_fails_when_a_local_zip_changed(run_extpack, tmp_path, layer_zips, locked_project):
    shutil.copyfile(layer_zips / "override-b.zip", tmp_path / "local.zip")

    _assert_frozen_drift(run_extpack, tmp_path, names=["local.zip"])


def test_frozen_downloads_a_corrupt_cached_blob_again(fake_lambda, run_extpack, tmp_path, locked_project):
    two = locked_project["two"]
    blob = _blob(tmp_path / "cache", two.sha256_hex)
    _corrupt_same_size(blob)
    fake_lambda.clear_requests()

    # A fresh checkout (CI) with a corrupt cache: the lock's sha256 is enough to download it safely.
    result = run_extpack("fetch", "--frozen", "--stage-dir", "fresh", check=True)
    assert "cached zip was corrupt" in result.stderr and two.arn in result.stderr
    assert fake_lambda.requests != []
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == two.sha256_hex
    assert (tmp_path / "fresh" / "manifest.json").is_file()


def test_frozen_fails_when_the_arch_differs(run_extpack, tmp_path, locked_project):
    line = _assert_frozen_drift(run_extpack, tmp_path, "--arch", "arm64", names=["arch"])

    assert "x86_64" in line and "arm64" in line


def test_frozen_fails_without_a_lock(run_extpack, tmp_path, locked_project):
    (tmp_path / "extpack.lock").unlink()

    _assert_frozen_drift(run_extpack, tmp_path, names=["extpack.lock"])

    assert not (tmp_path / "extpack.lock").exists()


# --------------------------------------------------------------------------- offline


def test_frozen_fetch_of_every_source_kind_works_with_the_server_stopped(fake_lambda, run_extpack, tmp_path,
                                                                          layer_zips):
    sources = _four_kinds(fake_lambda, tmp_path, layer_zips)
    _write_config(tmp_path, sources)
    run_extpack("fetch", check=True)
    lock = (tmp_path / "extpack.lock").read_bytes()
    fake_lambda.stop()

    noop = run_extpack("fetch", "--frozen", check=True)
    fresh = run_extpack("fetch", "--frozen", "--stage-dir", "offline", "--json", check=True)

    assert "already up to date" in noop.stdout
    assert all(layer["from_cache"] for layer in json.loads(fresh.stdout)["layers"] if layer["kind"] != "zip")
    assert tree_snapshot(tmp_path / "offline") == tree_snapshot(tmp_path / ".extpack")
    assert (tmp_path / "extpack.lock").read_bytes() == lock


def test_warm_fetches_make_no_request_at_all(fake_lambda, run_extpack, tmp_path, layer_zips):
    sources = _four_kinds(fake_lambda, tmp_path, layer_zips)
    _write_config(tmp_path, sources)
    run_extpack("fetch", check=True)
    assert fake_lambda.download_calls  # the first fetch did download
    fake_lambda.clear_requests()

    run_extpack("fetch", check=True)
    run_extpack("fetch", "--frozen", check=True)
    run_extpack("fetch", "--frozen", "--stage-dir", "rebuilt", check=True)

    assert fake_lambda.requests == []


# --------------------------------------------------------------------------- concurrency


def _random_layer(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    builder = make_layers.ZipBuilder().dir(f"data{seed}")
    for part in range(3):
        builder.file(f"data{seed}/part-{part}.bin", rng.randbytes(size // 3), stored=True)
    return builder.getvalue()


def test_concurrent_fetches_share_one_cache_safely(fake_lambda, tmp_path, aws_env):
    arns = [fake_lambda.add_layer(f"big{i}", _random_layer(i, 3 * 1024 * 1024)).arn for i in range(3)]
    arns.append(fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip")).arn)
    command = _extpack_command()

    procs = [
        subprocess.Popen([*command, "fetch", *arns, "--stage-dir", f"stage{n}", "--lock", f"lock{n}.json",
                          "--jobs", "4"], cwd=tmp_path, env=aws_env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]

    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out + err
    snapshots = [tree_snapshot(tmp_path / f"stage{n}/opt") for n in range(3)]
    assert snapshots[0] and snapshots[0] == snapshots[1] == snapshots[2]
    locks = [(tmp_path / f"lock{n}.json").read_bytes() for n in range(3)]
    assert locks[0] == locks[1] == locks[2]
    blobs = sorted((tmp_path / "cache/blobs/sha256").iterdir())
    assert [b.name for b in blobs] == sorted(fake_lambda.get_layer(arn).sha256_hex for arn in arns)
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    tmp = tmp_path / "cache/tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    assert not [p.name for p in tmp_path.iterdir() if ".build-" in p.name or ".old-" in p.name]


# --------------------------------------------------------------------------- Makefile


@pytest.fixture
def make_project(fake_lambda, tmp_path, aws_env):
    """examples/Makefile in a project whose extpack.toml lists an unversioned layer ARN."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(EXAMPLES / "Makefile", project / "Makefile")
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    _write_config(project, [layer.layer_arn])
    env = {**aws_env, "LC_ALL": "C"}
    extpack = " ".join(_extpack_command())

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", f"EXTPACK={extpack}", "DOCKER=true", *args], check=False, cwd=project,
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)

    return {"dir": project, "make": make, "layer": layer, "extpack": extpack}


def _recipes(result: subprocess.CompletedProcess[str], extpack: str) -> list[str]:
    """The recipe lines make echoed, with the extpack command shortened to `extpack`."""
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.replace(extpack, "extpack") for line in result.stdout.splitlines()
            if line.startswith((extpack, "true ", "touch "))]


def _backdate_in_dependency_order(project: Path) -> None:
    """Give the project's files distinct past mtimes, inputs before outputs, as after a settled build."""
    order = ["extpack.toml", "extpack.lock", ".extpack/manifest.json", "Dockerfile", ".image-built"]
    start = time.time() - 1000
    for offset, name in enumerate(order):
        os.utime(project / name, (start + 100 * offset, start + 100 * offset))


def test_make_runs_lock_fetch_render_build_in_order(make_project, fake_lambda):
    project, extpack = make_project["dir"], make_project["extpack"]

    first = _recipes(make_project["make"](), extpack)

    assert first == ["extpack lock", "extpack fetch --frozen", "extpack render",
                     "true build --tag my-function:latest .", "touch .image-built"]
    assert _json(project / "extpack.lock")["layers"][0]["arn"] == make_project["layer"].arn
    assert (project / ".extpack/opt/extensions/demo-extension").is_file()
    assert "COPY .extpack/opt /opt" in (project / "Dockerfile").read_text()


def test_second_make_does_nothing(make_project):
    make, extpack, project = make_project["make"], make_project["extpack"], make_project["dir"]
    assert _recipes(make("extpack.lock"), extpack) == ["extpack lock"]
    lock_written = (project / "extpack.lock").stat()

    _recipes(make(), extpack)
    lock_after = (project / "extpack.lock").stat()
    second = make()

    # fetch left the lock alone (else it is newer than the manifest made from it) ...
    assert (lock_after.st_ino, lock_after.st_mtime_ns) == (lock_written.st_ino, lock_written.st_mtime_ns)
    # ... so make has nothing to do.
    assert _recipes(second, extpack) == []
    assert "Nothing to be done for 'all'" in second.stdout
    assert make("-q").returncode == 0


def test_a_newer_dockerfile_only_rebuilds_the_image(make_project, fake_lambda):
    make, extpack, project = make_project["make"], make_project["extpack"], make_project["dir"]
    _recipes(make(), extpack)
    _backdate_in_dependency_order(project)
    assert make("-q").returncode == 0
    os.utime(project / "Dockerfile")
    fake_lambda.clear_requests()

    assert _recipes(make(), extpack) == ["true build --tag my-function:latest .", "touch .image-built"]
    assert fake_lambda.requests == []


def test_touching_the_config_reruns_its_dependents_then_settles(make_project, fake_lambda):
    make, extpack, project = make_project["make"], make_project["extpack"], make_project["dir"]
    _recipes(make(), extpack)
    _backdate_in_dependency_order(project)
    os.utime(project / "extpack.toml")
    fake_lambda.clear_requests()

    rerun = _recipes(make(), extpack)

    assert "extpack lock" in rerun and "extpack render" in rerun
    assert rerun.index("extpack lock") < rerun.index("extpack render")
    assert rerun[-2:] == ["true build --tag my-function:latest .", "touch .image-built"]
    assert fake_lambda.download_calls == []  # the layers did not change: nothing is downloaded
    assert make("-q").returncode == 0


def test_make_lock_upgrades_and_make_restages(make_project, fake_lambda):
    make, extpack, project = make_project["make"], make_project["extpack"], make_project["dir"]
    _recipes(make(), extpack)
    _backdate_in_dependency_order(project)
    v2 = fake_lambda.add_layer("demo", make_layers.build("python-deps.zip"))

    upgrade = make("lock")

    assert f"{make_project['layer'].arn} -> {v2.arn}" in upgrade.stdout
    rebuilt = _recipes(make(), extpack)
    assert rebuilt == ["extpack fetch --frozen", "extpack render", "true build --tag my-function:latest .",
                       "touch .image-built"]
    assert (project / ".extpack/opt/python").is_dir()
    assert v2.sha256_hex[:12] in (project / "Dockerfile").read_text()


def test_make_check_passes_and_catches_an_edited_dockerfile(make_project):
    make, extpack, project = make_project["make"], make_project["extpack"], make_project["dir"]
    _recipes(make(), extpack)

    check = make("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _recipes(check, extpack) == ["extpack fetch --frozen", "extpack render --check", "extpack verify"]

    with open(project / "Dockerfile", "a") as handle:
        handle.write("RUN echo edited by hand\n")
    drift = make("check")
    assert drift.returncode != 0
    assert "RUN echo edited by hand" in drift.stdout  # the diff
    assert "Error 6" in drift.stderr  # render --check's drift exit code, as make reports it


# --------------------------------------------------------------------------- GitHub Actions


def test_github_workflow_caches_on_the_lock_and_runs_the_frozen_build():
    import yaml  # in the test extras

    workflow = yaml.safe_load((EXAMPLES / ".github/workflows/build.yml").read_text())

    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]

    def index(predicate) -> int:
        found = [i for i, step in enumerate(steps) if predicate(step)]
        assert len(found) == 1, found
        return found[0]

    def runs(text: str):
        return lambda step: text in step.get("run", "")

    cache = index(lambda step: str(step.get("uses", "")).startswith("actions/cache@"))
    assert "hashFiles('extpack.lock')" in steps[cache]["with"]["key"]
    fetch = index(runs("extpack fetch --frozen"))
    check = index(runs("extpack render --check"))
    build = index(runs("docker build"))
    assert cache < fetch < check < build
    checkout = index(lambda step: str(step.get("uses", "")).startswith("actions/checkout@"))
    assert checkout < cache


def test_github_workflow_caches_the_folder_extpack_uses(run_extpack, tmp_path, aws_env):
    """The cached path is where `extpack fetch` puts blobs on the runner (no EXTPACK_CACHE_DIR set)."""
    import yaml  # in the test extras

    workflow = yaml.safe_load((EXAMPLES / ".github/workflows/build.yml").read_text())
    cache_step = next(step for job in workflow["jobs"].values() for step in job["steps"]
                      if str(step.get("uses", "")).startswith("actions/cache@"))
    home = tmp_path / "home" / "runner"
    env = {k: v for k, v in aws_env.items() if k not in ("EXTPACK_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)

    printed = run_extpack("cache", "path", env=env, check=True).stdout.strip()

    assert Path(printed) == Path(cache_step["with"]["path"].replace("~", str(home), 1))
