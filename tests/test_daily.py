"""Daily use without surprises (issue 18): what a new user hit in one afternoon.

Data loss first (a stage dir that names the project, a hand-written Dockerfile, stages that
share inodes), then wrong results, friction and docs. Everything drives the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import tree_snapshot


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("extpack: error:") and "Traceback" not in result.stderr
    return lines[0]


def _project(tmp_path: Path, layer_zips: Path) -> Path:
    """A user's project: source files, a .git, a hand-written Dockerfile and the demo layer zip."""
    project = tmp_path / "project"
    (project / ".git" / "objects").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "src").mkdir()
    (project / "src" / "main.go").write_text("package main\n")
    (project / "Dockerfile").write_text("FROM alpine:3.20\nCOPY main /main\n")
    shutil.copyfile(layer_zips / "demo-extension.zip", project / "demo.zip")
    return project


# --------------------------------------------------------------------------- data loss: --stage-dir


def test_stage_dir_dot_is_refused_and_nothing_changes(run_extpack, tmp_path, layer_zips):
    project = _project(tmp_path, layer_zips)
    before = tree_snapshot(project)
    result = run_extpack("fetch", "demo.zip", "--stage-dir", ".", cwd=project, check=2)
    assert "the current directory" in _error_line(result)
    assert tree_snapshot(project) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aws-config", "project"]


def test_stage_dir_in_config_naming_a_user_folder_is_refused(run_extpack, tmp_path, layer_zips):
    project = _project(tmp_path, layer_zips)
    (project / "build").mkdir()
    (project / "build" / "notes.txt").write_text("mine\n")
    (project / "extpack.toml").write_text('layers = ["demo.zip"]\nstage-dir = "build"\n')
    before = tree_snapshot(project)
    line = _error_line(run_extpack("fetch", cwd=project, check=2))
    assert "build" in line and "not a stage made by extpack" in line
    assert tree_snapshot(project) == before


@pytest.mark.parametrize("inside", ["lock", "config"])
def test_stage_dir_holding_the_lock_or_the_config_is_refused(run_extpack, tmp_path, layer_zips, inside):
    project = _project(tmp_path, layer_zips)
    (project / "ci").mkdir()
    if inside == "lock":
        args = ["fetch", "demo.zip", "--stage-dir", "ci", "--lock", "ci/extpack.lock"]
    else:
        (project / "ci" / "extpack.toml").write_text('layers = ["../demo.zip"]\nstage-dir = "."\n')
        args = ["--config", "ci/extpack.toml", "fetch"]
    before = tree_snapshot(project)
    line = _error_line(run_extpack(*args, cwd=project, check=2))
    assert f"the {inside}" in line
    assert tree_snapshot(project) == before


def test_an_empty_folder_and_an_earlier_stage_are_replaced(run_extpack, tmp_path, layer_zips):
    project = _project(tmp_path, layer_zips)
    (project / "stage").mkdir()
    run_extpack("fetch", "demo.zip", "--stage-dir", "stage", cwd=project, check=True)
    assert (project / "stage" / "opt" / "extensions" / "demo-extension").is_file()
    shutil.copyfile(layer_zips / "python-deps.zip", project / "deps.zip")
    run_extpack("fetch", "deps.zip", "--stage-dir", "stage", cwd=project, check=True)
    manifest = json.loads((project / "stage" / "manifest.json").read_text())
    assert [layer["source"] for layer in manifest["layers"]] == ["deps.zip"]
    assert not (project / "stage" / "opt" / "extensions" / "demo-extension").exists()
    assert (project / "src" / "main.go").is_file() and (project / ".git" / "HEAD").is_file()
