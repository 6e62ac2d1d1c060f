"""`extpack init` as a new user meets it: an empty folder, a project with its own Dockerfile,
a config already there (extpack.toml, [tool.extpack], or one folder up), a lock already there,
a layer ARN on the command line. Through the real CLI, then fetch and render on what it wrote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import make_layers
from conftest import _extpack_command

OWN_DOCKERFILE = "FROM alpine:3.20\nCOPY main /main\nENTRYPOINT [\"/main\"]\n"


def _notes(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


def test_init_in_an_empty_folder_says_what_to_do_next(run_extpack, tmp_path: Path) -> None:
    result = run_extpack("init", check=True)

    assert result.stdout == ""  # stdout is for the Makefile snippet alone
    notes = _notes(result)
    assert notes[0] == "wrote extpack.toml"
    assert any(line.startswith("next:") and "layers" in line and "extpack.toml" in line for line in notes), notes
    assert any(line.startswith("next:") and "extpack fetch" in line and "extpack render" in line
               and ".gitignore" in line for line in notes), notes


def test_init_beside_a_hand_written_dockerfile_keeps_it_and_renders_beside_it(run_extpack, tmp_path: Path,
                                                                             layer_zips: Path) -> None:
    (tmp_path / "Dockerfile").write_text(OWN_DOCKERFILE)
    shutil.copyfile(layer_zips / "demo-extension.zip", tmp_path / "demo.zip")

    result = run_extpack("init", "demo.zip", "--makefile", check=True)

    assert 'output = "Dockerfile.extpack"' in (tmp_path / "extpack.toml").read_text()
    assert any("Dockerfile.extpack" in line and "docker build -f Dockerfile.extpack" in line
               for line in _notes(result)), result.stderr
    assert "build -f Dockerfile.extpack" in result.stdout and "\nDockerfile.extpack:" in result.stdout
    run_extpack("fetch", check=True)
    run_extpack("render", check=True)  # before: exit 2, "Dockerfile exists and was not written by extpack"
    assert (tmp_path / "Dockerfile").read_text() == OWN_DOCKERFILE
    assert "COPY .extpack/opt /opt" in (tmp_path / "Dockerfile.extpack").read_text()


def test_init_with_extpacks_own_dockerfile_keeps_rendering_it(run_extpack, tmp_path: Path, layer_zips: Path) -> None:
    shutil.copyfile(layer_zips / "demo-extension.zip", tmp_path / "demo.zip")
    run_extpack("fetch", "demo.zip", check=True)
    run_extpack("render", check=True)  # a Dockerfile extpack wrote

    result = run_extpack("init", "demo.zip", check=True)

    assert 'output = "Dockerfile"\n' in (tmp_path / "extpack.toml").read_text()
    assert "Dockerfile.extpack" not in result.stderr
    assert any(line.startswith("next:") and "extpack render (writes Dockerfile)" in line for line in _notes(result))


def test_init_does_not_shadow_a_pyproject_config_without_force(run_extpack, tmp_path: Path) -> None:
    pyproject = '[project]\nname = "fn"\n\n[tool.extpack]\nlayers = ["demo.zip"]\n'
    (tmp_path / "pyproject.toml").write_text(pyproject)

    result = run_extpack("init", check=2)

    assert "pyproject.toml" in result.stderr and "[tool.extpack]" in result.stderr and "--force" in result.stderr
    assert not (tmp_path / "extpack.toml").exists()
    run_extpack("init", "--force", check=True)
    assert (tmp_path / "extpack.toml").is_file() and (tmp_path / "pyproject.toml").read_text() == pyproject


def test_init_in_a_subfolder_of_a_configured_project_says_it_takes_precedence(run_extpack, tmp_path: Path) -> None:
    (tmp_path / "extpack.toml").write_text('layers = ["demo.zip"]\n')
    (tmp_path / "fn").mkdir()

    result = run_extpack("init", cwd=tmp_path / "fn", check=True)

    assert any(line.startswith("note:") and "../extpack.toml" in line and "precedence" in line
               for line in _notes(result)), result.stderr
    assert (tmp_path / "extpack.toml").read_text() == 'layers = ["demo.zip"]\n'


def test_init_takes_the_arch_of_an_existing_lock(run_extpack, tmp_path: Path) -> None:
    (tmp_path / "arm.zip").write_bytes(make_layers.build("elf-arm64.zip"))
    run_extpack("lock", "arm.zip", "--arch", "arm64", check=True)
    assert json.loads((tmp_path / "extpack.lock").read_text())["arch"] == "arm64"

    result = run_extpack("init", "arm.zip", check=True)

    assert 'arch = "arm64"' in (tmp_path / "extpack.toml").read_text()
    assert any("arm64" in line and "extpack.lock" in line for line in _notes(result)), result.stderr
    run_extpack("fetch", "--frozen", check=True)  # before: the config's x86_64 contradicted the lock


def test_init_with_a_layer_arn_gives_a_config_fetch_uses(run_extpack, tmp_path: Path, fake_lambda) -> None:
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    unversioned = layer.arn.rsplit(":", 1)[0]

    result = run_extpack("init", unversioned, check=True)

    assert not any("list your layer" in line for line in _notes(result))  # it has its layer
    assert any(line.startswith("next:") and "extpack fetch" in line for line in _notes(result)), result.stderr
    assert json.dumps(unversioned) in (tmp_path / "extpack.toml").read_text()
    run_extpack("fetch", check=True)
    assert json.loads((tmp_path / "extpack.lock").read_text())["layers"][0]["arn"] == layer.arn


def test_init_makefile_snippet_appends_to_a_makefile(tmp_path: Path, aws_env: dict[str, str]) -> None:
    (tmp_path / "Makefile").write_text("all:\n\techo hi\n")
    shell = f"{' '.join(_extpack_command())} init --makefile >> Makefile"

    subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=aws_env, check=True, capture_output=True, timeout=60)

    makefile = (tmp_path / "Makefile").read_text()
    assert makefile.startswith("all:\n") and "wrote" not in makefile and "next:" not in makefile
    dry_run = subprocess.run(["make", "-n", "extpack.lock"], cwd=tmp_path, capture_output=True, text=True)
    assert dry_run.returncode == 0 and "lock" in dry_run.stdout, dry_run.stderr
