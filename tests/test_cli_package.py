"""The CLI package: `extpack --help` lists every command without importing any of them.

Each command lives in its own module under extpack/cli/ and is imported only when it runs,
so `extpack --help` (and a shell's completion) starts without click's commands, botocore,
requests or jinja2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import make_layers
import pytest

from extpack.cli import COMMANDS, cli
from extpack.cli.lazy import load

# What only a download needs: the AWS SDK, the HTTP stack, and http.client, which brings ssl and email.
NETWORK = ("botocore", "boto3", "requests", "urllib3", "http", "ssl", "email")
HEAVY = ("botocore", "boto3", "requests", "jinja2", "rich", "extpack.fetch", "extpack.render", "extpack.image")


def _modules_after(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> set[str]:
    """The modules `extpack ARGS` has imported when it exits (it exits 0)."""
    probe = ("import atexit, json, sys\n"
             "atexit.register(lambda: sys.__stderr__.write('MODULES ' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
             "from extpack.cli import main\n"
             f"main({list(args)!r})\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=cwd,
                            env=env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def test_help_lists_every_command_with_its_own_short_help() -> None:
    result = subprocess.run([sys.executable, "-m", "extpack", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(COMMANDS)
    assert set(COMMANDS) == {"cache", "doctor", "fetch", "image", "init", "lock", "ls", "render", "smoke", "verify"}


def test_help_imports_no_command_module_nor_its_libraries() -> None:
    loaded = _modules_after("--help")
    command_modules = {f"extpack.cli.{name}" for name in COMMANDS}
    assert not loaded & command_modules
    assert not {name for name in loaded if name.split(".")[0] in HEAVY or name in HEAVY}


def test_a_command_imports_its_own_module_only() -> None:
    loaded = _modules_after("fetch", "--help")
    assert "extpack.cli.fetch" in loaded
    assert not loaded & {f"extpack.cli.{name}" for name in COMMANDS if name != "fetch"}
    assert "botocore" not in loaded


def test_a_fetch_that_downloads_nothing_imports_no_network_library(fake_lambda, run_extpack, aws_env, tmp_path):
    """The no-op re-run and a new stage from a warm cache with a pinned lock make no request, so
    they load nothing a request needs (about 10 ms of a 170 ms no-op)."""
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", layer.arn, check=True)

    for args in (("fetch", layer.arn), ("fetch", layer.arn, "--stage-dir", "fresh")):
        loaded = _modules_after(*args, cwd=tmp_path, env=aws_env)
        assert "extpack.fetch" in loaded
        assert not {name for name in loaded if name.split(".")[0] in NETWORK}, args


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_static_short_help_is_the_commands_own(name: str) -> None:
    """The static text `--help` shows is the first paragraph of the command's docstring, so the two
    cannot drift."""
    command = load(COMMANDS[name])
    assert isinstance(command, click.Command)
    assert " ".join(command.help.split("\n\n")[0].split()) == COMMANDS[name].short_help
    assert cli.get_command(click.Context(cli), name) is command
