"""extpack render: golden files for every built-in template, determinism, --check, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("EXTPACK_UPDATE_GOLDEN") == "1"

GO_TEMPLATE = """{% extends "aws-base" %}
{% block build %}
FROM golang:1.22 AS build
WORKDIR /src
COPY main.go go.mod ./
RUN CGO_ENABLED=0 go build -o /main main.go
{% endblock %}
{% block app %}
COPY --from=build /main /main
ENTRYPOINT ["/main"]
{% endblock %}
"""

CASES = {
    "aws-base": [],
    "aws-base-go-options": ["--copy", "build:/main:/main", "--entrypoint", "/main"],
    "alpine-rie": ["--template", "alpine-rie", "--entrypoint", "/main"],
    "aws-base-rie-local-binary": ["--rie", "--rie-binary", "bin/aws-lambda-rie", "--entrypoint", "/main",
                                  "--base", "extpack-test/busybox:latest"],
    "python": ["--template", "python", "--app-dir", "src", "--handler", "app.handler"],
    "nodejs": ["--template", "nodejs", "--app-dir", "src"],
    "from-image": ["--from-image", "registry.example/team/extensions@sha256:" + "ab" * 32],
    "user-go-template": ["--template", "go.Dockerfile.j2"],
}


@pytest.fixture
def staged(run_extpack, tmp_path):
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "demo-extension.zip", tmp_path / "demo-extension.zip")
    run_extpack("fetch", "demo-extension.zip", check=True)
    (tmp_path / "go.Dockerfile.j2").write_text(GO_TEMPLATE)
    return tmp_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, staged, run_extpack):
    result = run_extpack("render", *CASES[case], "--output", "-", check=True)

    golden = GOLDEN / f"{case}.Dockerfile"
    if UPDATE:
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()
    assert "# syntax=" not in result.stdout and "--link" not in result.stdout


def test_output_is_byte_for_byte_deterministic(staged, run_extpack):
    run_extpack("render", "--template", "alpine-rie", check=True)
    first = (staged / "Dockerfile").read_bytes()
    (staged / "Dockerfile").unlink()
    run_extpack("render", "--template", "alpine-rie", check=True)
    assert (staged / "Dockerfile").read_bytes() == first
    assert os.access(staged / "extpack-entry.sh", os.X_OK)


def test_check_passes_when_current_and_fails_with_a_diff_on_drift(staged, run_extpack):
    run_extpack("render", "--base", "example/base:1", check=True)
    run_extpack("render", "--base", "example/base:1", "--check", check=True)

    drifted = run_extpack("render", "--base", "example/base:2", "--check", check=6)

    assert "-FROM --platform=linux/amd64 example/base:1" in drifted.stdout
    assert "+FROM --platform=linux/amd64 example/base:2" in drifted.stdout
    assert "out of date" in drifted.stderr
    assert "example/base:2" not in (staged / "Dockerfile").read_text()  # --check wrote nothing


def test_check_catches_a_changed_lock(staged, run_extpack):
    run_extpack("render", check=True)
    run_extpack("fetch", str(Path(__file__).parents[1] / "fixtures" / "demo-extension.zip"), check=True)
    run_extpack("render", "--check", check=6)


def test_platform_follows_the_stage_arch(run_extpack, tmp_path, layer_zips):
    run_extpack("fetch", layer_zips / "elf-arm64.zip", "--arch", "arm64", check=True)
    text = run_extpack("render", "--output", "-", check=True).stdout
    assert "FROM --platform=linux/arm64 public.ecr.aws/lambda/provided:al2023" in text
    rie = run_extpack("render", "--rie", "--output", "-", check=True).stdout
    assert "aws-lambda-rie-arm64 /usr/bin/aws-lambda-rie" in rie


@pytest.mark.parametrize("args, message", [
    (["--template", "nope"], "aws-base, alpine-rie, python, nodejs"),
    (["--copy", "only-one-part"], "SRC:DEST"),
    (["--platform", "linux/s390x"], "linux/amd64 or linux/arm64"),
    (["--cmd", "[1, 2]"], "JSON array of strings"),
])
def test_bad_arguments_are_usage_errors(staged, run_extpack, args, message):
    result = run_extpack("render", *args, "--output", "-", check=2)
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_no_stage_says_run_fetch_first(run_extpack):
    result = run_extpack("render", check=2)
    assert "run extpack fetch first" in result.stderr


def test_broken_user_template_names_file_and_line(staged, run_extpack):
    (staged / "broken.j2").write_text("FROM x\n{% if %}\n")
    result = run_extpack("render", "--template", "broken.j2", check=2)
    assert "broken.j2 line 2" in result.stderr and "Traceback" not in result.stderr


def test_dockerignore_that_hides_the_stage_is_an_error(staged, run_extpack):
    (staged / ".dockerignore").write_text(".*\n")
    result = run_extpack("render", check=2)
    assert "!.extpack/opt" in result.stderr
    (staged / ".dockerignore").write_text(".*\n!.extpack/opt\n")
    run_extpack("render", check=True)
