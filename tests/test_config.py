"""Project config (extpack.toml, [tool.extpack] in pyproject.toml) and `extpack init`.

Everything goes through the real CLI; precedence is checked by its effects (where the
stage lands, which arch the lock records, which base the Dockerfile has), not by reading
extpack's internals.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DEFAULT_BASE = "public.ecr.aws/lambda/provided:al2023"  # DESIGN.md: render --base default


def _lock(path: Path) -> dict:
    return json.loads(path.read_text())


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a failed command (and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _copy_zip(layer_zips: Path, name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(layer_zips / name, dest)
    return dest


# --------------------------------------------------------------------------- precedence


def test_extpack_toml_supplies_settings_and_flags_win(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "demo.zip")
    (tmp_path / "extpack.toml").write_text(
        'layers = ["demo.zip"]\n'
        'stage-dir = "cfg-stage"\n'
        'lock = "cfg.lock"\n'
        'arch = "arm64"\n'
        'base = "registry.example/cfg-base:1"\n'
        'output = "cfg.Dockerfile"\n'
    )

    # Config over defaults.
    run_extpack("fetch", check=True)
    assert (tmp_path / "cfg-stage/opt/extensions/demo-extension").is_file()
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()
    assert _lock(tmp_path / "cfg.lock")["arch"] == "arm64"
    run_extpack("render", check=True)
    assert not (tmp_path / "Dockerfile").exists()
    config_dockerfile = (tmp_path / "cfg.Dockerfile").read_text()
    assert "FROM --platform=linux/arm64 registry.example/cfg-base:1" in config_dockerfile
    assert "COPY cfg-stage/opt /opt" in config_dockerfile

    # Flags over config.
    run_extpack("fetch", "--stage-dir", "flag-stage", "--lock", "flag.lock", "--arch", "x86_64", check=True)
    assert (tmp_path / "flag-stage/opt/extensions/demo-extension").is_file()
    assert _lock(tmp_path / "flag.lock")["arch"] == "x86_64"
    assert _lock(tmp_path / "cfg.lock")["arch"] == "arm64"  # the config's lock was not touched
    run_extpack("render", "--stage-dir", "flag-stage", "--lock", "flag.lock", "--base", "registry.example/flag-base:2",
                "--output", "flag.Dockerfile", check=True)
    flag_dockerfile = (tmp_path / "flag.Dockerfile").read_text()
    assert "FROM --platform=linux/amd64 registry.example/flag-base:2" in flag_dockerfile
    assert "cfg-base" not in flag_dockerfile
    assert (tmp_path / "cfg.Dockerfile").read_text() == config_dockerfile


def test_without_config_the_documented_defaults_apply(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "demo.zip")

    run_extpack("fetch", "demo.zip", check=True)
    run_extpack("render", check=True)

    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()
    assert _lock(tmp_path / "extpack.lock")["arch"] == "x86_64"
    assert f"FROM --platform=linux/amd64 {DEFAULT_BASE}" in (tmp_path / "Dockerfile").read_text()


def test_pyproject_tool_table_supplies_layers_arch_template_and_output(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "elf-arm64.zip", tmp_path / "layers/probe.zip")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/custom.j2").write_text(
        '{% extends "aws-base" %}\n{% block app %}\nCMD ["from-the-pyproject-template"]\n{% endblock %}\n')
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "my-function"\nversion = "1.0"\n\n'
        "[tool.extpack]\n"
        'layers = ["layers/probe.zip"]\n'
        'stage-dir = "build/stage"\n'
        'arch = "arm64"\n'
        'template = "templates/custom.j2"\n'
        'base = "registry.example/py-base:3"\n'
        'output = "build/Dockerfile"\n'
    )

    run_extpack("fetch", check=True)  # an arm64 ELF extension is only accepted with arch = arm64
    run_extpack("render", check=True)

    assert (tmp_path / "build/stage/opt/extensions/probe").is_file()
    assert _lock(tmp_path / "extpack.lock")["arch"] == "arm64"
    dockerfile = (tmp_path / "build/Dockerfile").read_text()
    assert "FROM --platform=linux/arm64 registry.example/py-base:3" in dockerfile
    assert 'CMD ["from-the-pyproject-template"]' in dockerfile


def test_extpack_toml_wins_over_pyproject(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "demo.zip")
    (tmp_path / "pyproject.toml").write_text('[tool.extpack]\nlayers = ["demo.zip"]\nstage-dir = "from-pyproject"\n')
    (tmp_path / "extpack.toml").write_text('layers = ["demo.zip"]\nstage-dir = "from-extpack-toml"\n')

    run_extpack("fetch", check=True)

    assert (tmp_path / "from-extpack-toml/opt").is_dir()
    assert not (tmp_path / "from-pyproject").exists()


def test_relative_paths_in_config_resolve_against_its_folder(run_extpack, tmp_path, layer_zips):
    project = tmp_path / "project"
    _copy_zip(layer_zips, "demo-extension.zip", project / "layers/demo.zip")
    (project / "extpack.toml").write_text('layers = ["layers/demo.zip"]\nstage-dir = "stage"\n'
                                          'lock = "extpack.lock"\noutput = "Dockerfile"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = project / "extpack.toml"

    run_extpack("--config", config, "fetch", cwd=elsewhere, check=True)
    run_extpack("--config", config, "fetch", "--frozen", cwd=elsewhere, check=True)
    run_extpack("--config", config, "render", cwd=elsewhere, check=True)

    assert (project / "stage/opt/extensions/demo-extension").is_file()
    assert _lock(project / "extpack.lock")["layers"][0]["source"] == "layers/demo.zip"
    assert "COPY stage/opt /opt" in (project / "Dockerfile").read_text()
    assert list(elsewhere.iterdir()) == []


def test_relative_template_in_config_resolves_against_its_folder(run_extpack, tmp_path, layer_zips):
    project = tmp_path / "project"
    _copy_zip(layer_zips, "demo-extension.zip", project / "demo.zip")
    (project / "custom.j2").write_text('{% extends "aws-base" %}\n{% block app %}\nCMD ["custom"]\n{% endblock %}\n')
    (project / "extpack.toml").write_text('layers = ["demo.zip"]\ntemplate = "custom.j2"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    run_extpack("--config", project / "extpack.toml", "fetch", cwd=elsewhere, check=True)
    run_extpack("--config", project / "extpack.toml", "render", cwd=elsewhere, check=True)

    assert 'CMD ["custom"]' in (elsewhere / "Dockerfile").read_text()  # output is not set: the cwd's


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('layers = []\ncolour = "red"\n', "colour"),
        ('layers = "x"\n', "layers"),
        ('layers = [1, 2]\n', "layers"),
        ('jobs = "4"\n', "jobs"),
        ("stage-dir = 3\n", "stage-dir"),
        ("arch = true\n", "arch"),
    ],
    ids=["unknown-key", "layers-string", "layers-not-strings", "jobs-string", "stage-dir-int", "arch-bool"],
)
def test_bad_key_in_extpack_toml_is_a_usage_error_naming_key_and_file(run_extpack, tmp_path, body, key):
    (tmp_path / "extpack.toml").write_text(body)

    result = run_extpack("fetch", check=2)

    line = _error_line(result)
    assert f"'{key}'" in line
    assert "extpack.toml" in line
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()


def test_bad_key_in_pyproject_names_the_tool_table(run_extpack, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.extpack]\nstagedir = "typo"\n')

    line = _error_line(run_extpack("fetch", check=2))

    assert "'stagedir'" in line and "[tool.extpack]" in line and "pyproject.toml" in line


def test_invalid_toml_is_a_usage_error_naming_the_file(run_extpack, tmp_path):
    (tmp_path / "extpack.toml").write_text('layers = ["unterminated.zip"\n')

    line = _error_line(run_extpack("fetch", check=2))

    assert "extpack.toml" in line and "TOML" in line


def test_bad_config_stops_every_command_that_reads_it(run_extpack, tmp_path):
    (tmp_path / "extpack.toml").write_text('jobs = "4"\n')

    for command in (["render"], ["ls"], ["verify"], ["lock"], ["cache", "path"]):
        result = run_extpack(*command, check=2)
        assert "'jobs'" in _error_line(result), command


def test_a_valid_type_with_a_bad_value_is_a_usage_error(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "demo.zip")
    (tmp_path / "extpack.toml").write_text('layers = ["demo.zip"]\narch = "sparc"\n')

    line = _error_line(run_extpack("fetch", check=2))

    assert "sparc" in line


def test_missing_explicit_config_is_a_usage_error(run_extpack, tmp_path):
    line = _error_line(run_extpack("--config", tmp_path / "nope.toml", "fetch", check=2))

    assert "nope.toml" in line


# --------------------------------------------------------------------------- init


def test_init_writes_a_commented_config_that_fetch_and_render_accept(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "layers/demo.zip")

    result = run_extpack("init", "layers/demo.zip", check=True)

    config = (tmp_path / "extpack.toml").read_text()
    assert "wrote extpack.toml" in result.stderr and not result.stdout
    assert sum(line.lstrip().startswith("#") for line in config.splitlines()) >= 5
    assert '"layers/demo.zip"' in config
    run_extpack("fetch", check=True)
    run_extpack("render", check=True)
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()
    assert _lock(tmp_path / "extpack.lock")["layers"][0]["source"] == "layers/demo.zip"
    assert (tmp_path / "Dockerfile").is_file()


def test_init_without_layers_is_valid_but_fetch_asks_for_layers(run_extpack, tmp_path):
    run_extpack("init", check=True)

    line = _error_line(run_extpack("fetch", check=2))

    assert "no layers" in line  # the config parsed; it just lists nothing yet


def test_init_refuses_to_overwrite_without_force(run_extpack, tmp_path, layer_zips):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "demo.zip")
    (tmp_path / "extpack.toml").write_text('layers = ["mine.zip"]\n')

    line = _error_line(run_extpack("init", "demo.zip", check=2))
    assert "--force" in line
    assert (tmp_path / "extpack.toml").read_text() == 'layers = ["mine.zip"]\n'

    run_extpack("init", "demo.zip", "--force", check=True)
    assert '"demo.zip"' in (tmp_path / "extpack.toml").read_text()


def test_init_rejects_a_malformed_arn_and_writes_nothing(run_extpack, tmp_path):
    run_extpack("init", "arn:aws:lambda:us-east-1:123:layer:x:1", check=2)

    assert not (tmp_path / "extpack.toml").exists()


def test_init_makefile_snippet_is_a_working_makefile(run_extpack, tmp_path, layer_zips, aws_env):
    _copy_zip(layer_zips, "demo-extension.zip", tmp_path / "demo.zip")

    result = run_extpack("init", "--makefile", "demo.zip", check=True)

    snippet = result.stdout  # alone on stdout: extpack init --makefile > Makefile
    assert "extpack fetch --frozen" in snippet.replace("$(EXTPACK)", "extpack")
    (tmp_path / "Makefile").write_text(snippet)
    run_extpack("lock", check=True)
    make = ["make", f"EXTPACK={_extpack_word()}"]
    env = {**aws_env, "LC_ALL": "C"}
    first = subprocess.run([*make, "Dockerfile"], check=False, cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()
    assert "COPY .extpack/opt /opt" in (tmp_path / "Dockerfile").read_text()


def _extpack_word() -> str:
    from conftest import _extpack_command

    return " ".join(_extpack_command())
