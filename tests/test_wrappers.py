"""Wrappers and layer paths through the real CLI: fetch hints, ls, render --wrapper and its checks."""

from __future__ import annotations

import json
from pathlib import Path

import make_layers
import pytest

WRAPPER_SCRIPT = '#!/bin/sh\nexport WRAPPED_BY=otel\nexec "$@"\n'

LIBRARY_ZIP = (
    make_layers.ZipBuilder()
    .dir("python", 0o755)
    .file("python/mylib.py", "VALUE = 'from the layer'\n")
    .dir("bin", 0o755)
    .file("bin/jq", "#!/bin/sh\necho jq\n", 0o755)
    .dir("nodejs", 0o755)  # an empty node_modules puts nothing on NODE_PATH
    .dir("nodejs/node_modules", 0o755)
    .getvalue()
)
WRAPPER_ZIP = (
    make_layers.ZipBuilder()
    .file("otel-instrument", WRAPPER_SCRIPT, 0o755)
    .file("README.txt", "not executable\n", 0o644)
    .file("otel-config.sh", "#!/bin/sh\necho config\n", 0o755)  # runs nothing it is given
    .dir("extensions", 0o755)
    .file("extensions/collector", "#!/bin/sh\necho collector\n", 0o755)
    .getvalue()
)
HINT = ("layer 2 ships /opt/otel-instrument, a wrapper: set AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-instrument "
        "(extpack render --wrapper /opt/otel-instrument)")
NO_WRAPPER_SET = "layer 2 ships /opt/otel-instrument, a wrapper, and no wrapper is set"
NOTHING_RUNS_IT = "does not run AWS_LAMBDA_EXEC_WRAPPER itself and nothing in the Dockerfile does"


@pytest.fixture
def staged(run_extpack, tmp_path):
    (tmp_path / "library.zip").write_bytes(LIBRARY_ZIP)
    (tmp_path / "wrapper.zip").write_bytes(WRAPPER_ZIP)
    fetched = run_extpack("fetch", "library.zip", "wrapper.zip", check=True)
    return fetched


def _manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / ".extpack" / "manifest.json").read_text())


def test_fetch_hints_once_per_wrapper_on_stderr_also_when_unchanged(staged, run_extpack):
    assert staged.stderr.count("hint: ") == 1 and f"hint: {HINT}\n" in staged.stderr
    assert "otel-instrument" not in staged.stdout
    again = run_extpack("fetch", "library.zip", "wrapper.zip", check=True)
    assert "already up to date" in again.stdout  # the no-op path reads the recorded shapes
    assert f"hint: {HINT}\n" in again.stderr


def test_the_manifest_records_the_shapes_under_an_optional_key(staged, tmp_path):
    manifest = _manifest(tmp_path)
    assert manifest["schema"] == "extpack.manifest/v1"
    assert manifest["shapes"] == {
        "extensions": ["/opt/extensions/collector"],
        "wrappers": [{"path": "/opt/otel-instrument", "layer": 1}],
        "library_roots": [
            {"path": "/opt/bin", "runtime": "all", "variable": "PATH", "layers": [0]},
            {"path": "/opt/python", "runtime": "python", "variable": "PYTHONPATH", "layers": [0]},
        ],
    }


def test_ls_shows_wrappers_and_library_roots_in_the_table_and_json(staged, run_extpack, tmp_path):
    table = run_extpack("ls", check=True).stdout
    assert "WRAPPER" in table and "/opt/otel-instrument  2      extpack render --wrapper /opt/otel-instrument" in table
    assert [line.split() for line in table.splitlines() if line.startswith(("/opt/bin", "/opt/python"))] == [
        ["/opt/bin", "all", "PATH", "1"], ["/opt/python", "python", "PYTHONPATH", "1"]]
    listed = json.loads(run_extpack("ls", "--json", check=True).stdout)
    assert listed["schema"] == "extpack.ls/v1"
    assert listed["wrappers"] == [{"path": "/opt/otel-instrument", "layer": 1}]
    assert [root["path"] for root in listed["library_roots"]] == ["/opt/bin", "/opt/python"]


def test_a_manifest_without_shapes_is_still_read_and_its_shapes_detected(staged, run_extpack, tmp_path):
    path = tmp_path / ".extpack" / "manifest.json"
    manifest = json.loads(path.read_text())
    recorded = manifest.pop("shapes")
    path.write_text(json.dumps(manifest))
    listed = json.loads(run_extpack("ls", "--json", check=True).stdout)
    assert {"wrappers": listed["wrappers"], "library_roots": listed["library_roots"]} == \
        {key: recorded[key] for key in ("wrappers", "library_roots")}
    run_extpack("verify", "--no-cache", check=True)
    rendered = run_extpack("render", "--wrapper", "/opt/otel-instrument", "--output", "-", check=True)
    assert 'ENV AWS_LAMBDA_EXEC_WRAPPER="/opt/otel-instrument"' in rendered.stdout


def test_render_warns_when_a_staged_wrapper_is_not_used(staged, run_extpack):
    result = run_extpack("render", "--template", "python", "--output", "-", check=True)
    assert NO_WRAPPER_SET in result.stderr and "extpack render --wrapper /opt/otel-instrument" in result.stderr
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in result.stdout


def test_wrapper_on_a_managed_runtime_base_is_only_the_variable(staged, run_extpack):
    result = run_extpack("render", "--template", "python", "--wrapper", "/opt/otel-instrument", "--output", "-",
                         check=True)
    assert 'ENV AWS_LAMBDA_EXEC_WRAPPER="/opt/otel-instrument"' in result.stdout
    assert "extpack-entry.sh" not in result.stdout and "ENV PYTHONPATH" not in result.stdout
    assert "warning" not in result.stderr
    assert "--wrapper /opt/otel-instrument" in result.stdout.splitlines()[1]  # the regenerate hint


def test_wrapper_on_a_provided_base_needs_the_entry_script(staged, run_extpack, tmp_path):
    bare = run_extpack("render", "--wrapper", "/opt/otel-instrument", "--output", "-", check=True)
    assert NOTHING_RUNS_IT in bare.stderr and "--entrypoint" in bare.stderr
    assert "extpack-entry.sh" not in bare.stdout

    run_extpack("render", "--wrapper", "/opt/otel-instrument", "--entrypoint", "/main", check=True)
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "COPY extpack-entry.sh /extpack-entry.sh\nRUN chmod 0755 /extpack-entry.sh\n" in dockerfile
    assert 'ENTRYPOINT ["/extpack-entry.sh", "/main"]' in dockerfile
    assert "aws-lambda-rie" not in dockerfile  # provided bases carry their own emulator
    assert "ENV PATH" not in dockerfile  # provided bases have /opt/bin and /opt/lib already
    entry = (tmp_path / "extpack-entry.sh").read_text()
    assert 'set -- "${AWS_LAMBDA_EXEC_WRAPPER}" "$@"' in entry
    run_extpack("render", "--wrapper", "/opt/otel-instrument", "--entrypoint", "/main", "--check", check=True)


def test_non_aws_base_gets_the_layer_paths_of_the_staged_roots_only(staged, run_extpack, tmp_path):
    args = ["render", "--rie", "--base", "example/alpine:3", "--wrapper", "/opt/otel-instrument",
            "--entrypoint", "/main"]
    first = run_extpack(*args, "--output", "-", check=True)
    lines = first.stdout.splitlines()
    assert [line for line in lines if line.startswith("ENV ")] == [
        'ENV PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}:/opt/bin"',
        'ENV PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}/opt/python"',
        'ENV AWS_LAMBDA_EXEC_WRAPPER="/opt/otel-instrument"',
    ]
    assert any("docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html" in line for line in lines)
    assert first.stderr == "note: the Dockerfile COPYs extpack-entry.sh, which only --output FILE writes\n"
    assert run_extpack(*args, "--output", "-", check=True).stdout == first.stdout  # deterministic
    provided = run_extpack("render", "--output", "-", check=True).stdout
    assert "ENV " not in provided


@pytest.mark.parametrize("args, message", [
    (["--wrapper", "/opt/nope"], "--wrapper /opt/nope is not in the stage"),
    (["--wrapper", "/opt/README.txt"], "--wrapper /opt/README.txt is not an executable file"),
    (["--wrapper", "/opt/extensions"], "--wrapper /opt/extensions is not an executable file"),
    (["--wrapper", "/etc/passwd"], "bad --wrapper '/etc/passwd'"),
    (["--wrapper", "/opt/../bin/sh"], "bad --wrapper"),
    (["--wrapper", "/opt/x\ny"], "bad --wrapper"),
    (["--env", "AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-instrument"], "set the wrapper with --wrapper PATH"),
])
def test_a_wrapper_that_is_not_a_staged_executable_is_a_usage_error(staged, run_extpack, tmp_path, args,
                                                                    message):
    result = run_extpack("render", *args, check=2)
    assert message in result.stderr and result.stderr.startswith("extpack: error: ")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "Dockerfile").exists()


def test_the_wrapper_comes_from_the_config_and_the_flag_wins(staged, run_extpack, tmp_path):
    (tmp_path / "extpack.toml").write_text('wrapper = "/opt/otel-instrument"\ntemplate = "python"\n')
    configured = run_extpack("render", "--output", "-", check=True)
    assert 'ENV AWS_LAMBDA_EXEC_WRAPPER="/opt/otel-instrument"' in configured.stdout
    (tmp_path / "extpack.toml").write_text('wrapper = "/opt/README.txt"\n')
    assert "not an executable file" in run_extpack("render", "--output", "-", check=2).stderr
    flagged = run_extpack("render", "--wrapper", "/opt/otel-instrument", "--template", "python", "--output", "-",
                          check=True)
    assert 'ENV AWS_LAMBDA_EXEC_WRAPPER="/opt/otel-instrument"' in flagged.stdout
    (tmp_path / "extpack.toml").write_text("wrapper = 3\n")
    assert "key 'wrapper'" in run_extpack("render", check=2).stderr


def test_tampered_shapes_in_the_manifest_never_reach_the_dockerfile(staged, run_extpack, tmp_path):
    path = tmp_path / ".extpack" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shapes"]["library_roots"].append(
        {"path": "/opt/python\"\nRUN touch /pwned #", "runtime": "python", "variable": "PYTHONPATH", "layers": [0]})
    manifest["shapes"]["library_roots"][0]["variable"] = "LD_PRELOAD"
    path.write_text(json.dumps(manifest))
    rendered = run_extpack("render", "--rie", "--base", "example/alpine:3", "--output", "-", check=True).stdout
    assert "pwned" not in rendered and "LD_PRELOAD" not in rendered
    assert [line for line in rendered.splitlines() if line.startswith("ENV ")] == [
        'ENV PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}:/opt/bin"',
        'ENV PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}/opt/python"',
    ]
