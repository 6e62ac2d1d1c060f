"""The CLI package: `extpack --help` lists every command without importing any of them.

Each command lives in its own module under extpack/cli/ and is imported only when it runs,
so `extpack --help` (and a shell's completion) starts without click's commands, botocore,
requests or jinja2.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from extpack.cli import COMMANDS, cli
from extpack.cli.lazy import load

HEAVY = ("botocore", "boto3", "requests", "jinja2", "rich", "extpack.fetch", "extpack.render", "extpack.image")


def _modules_after(*args: str) -> set[str]:
    """The modules `extpack ARGS` has imported when it exits (it exits 0)."""
    probe = ("import atexit, json, sys\n"
             "atexit.register(lambda: sys.__stderr__.write('MODULES ' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
             "from extpack.cli import main\n"
             f"main({list(args)!r})\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
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


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_static_short_help_is_the_commands_own(name: str) -> None:
    """The static text `--help` shows is the first paragraph of the command's docstring, so the two
    cannot drift."""
    command = load(COMMANDS[name])
    assert isinstance(command, click.Command)
    assert " ".join(command.help.split("\n\n")[0].split()) == COMMANDS[name].short_help
    assert cli.get_command(click.Context(cli), name) is command
