"""Unit tests of the pure pieces the CLI package is built from: the project settings (flag >
config > default, decided in one place), the lazy group's help, and the small functions the
commands now call instead of doing the work themselves."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from extpack.cli import COMMANDS, cli
from extpack.cli.lazy import load
from extpack.config import KEYS, Config, Settings
from extpack.doctor import ERROR, INFO, WARNING, Examination, Finding
from extpack.exceptions import UsageError
from extpack.lock import Lock, LockedLayer, lock_changes
from extpack.smoke import SmokeOptions

# --------------------------------------------------------------------------- settings


def test_defaults_without_a_config() -> None:
    settings = Config().settings()
    assert (settings.stage_dir, settings.lock, settings.template, settings.output) == (
        Path(".extpack"), Path("extpack.lock"), None, "Dockerfile")  # template None: the runtime's, else aws-base
    assert settings.arch is None  # the lock's arch, else x86_64: decided by fetch, which reads the lock
    assert (settings.jobs, settings.link, settings.rie, settings.copy, settings.layers) == (4, True, False, [], [])


def test_a_flag_wins_over_the_config_which_wins_over_the_default() -> None:
    config = Config(Path("project/extpack.toml"), {"stage-dir": "staged", "jobs": 2, "template": "python"})
    settings = config.settings(stage_dir=Path("flagged"), jobs=None, template=None)
    assert settings.stage_dir == Path("flagged")
    assert settings.jobs == 2
    assert settings.template == "python"
    assert settings.lock == Path("extpack.lock")


def test_config_paths_are_relative_to_the_config_file() -> None:
    config = Config(Path("project/extpack.toml"), {"stage-dir": "staged", "output": "build/Dockerfile",
                                                   "template": "my.j2"})
    settings = config.settings()
    assert settings.stage_dir == Path("project/staged")
    assert settings.output == "project/build/Dockerfile"  # a string, as render takes it
    assert settings.template == "project/my.j2"


def test_a_config_found_upwards_keeps_the_projects_default_paths() -> None:
    settings = Config(Path("../extpack.toml"), {}, found_upwards=True).settings()
    assert settings.stage_dir == Path("../.extpack")
    assert settings.lock == Path("../extpack.lock")
    assert settings.output == "../Dockerfile"


def test_repeatable_flags_left_out_fall_back_to_the_config() -> None:
    config = Config(Path("extpack.toml"), {"copy": ["a:b"], "env": ["A=1"], "rie": True})
    assert config.settings(copy=(), env=()).copy == ["a:b"]
    assert config.settings(copy=("c:d",)).copy == ("c:d",)
    assert config.settings(rie=False).rie is False  # --no-rie beats the config's rie = true


def test_every_config_key_is_a_setting() -> None:
    assert set(Settings().by_key()) == set(KEYS)


def test_a_flag_without_a_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="no such setting: stage"):
        Config().settings(stage=Path("x"))


# --------------------------------------------------------------------------- lazy group


def test_lazy_help_is_what_an_eager_group_prints() -> None:
    """The static short help, shortened by the lazy group, reads exactly as click's own listing."""
    eager = click.Group("extpack", params=cli.params, help=cli.help,
                        context_settings=cli.context_settings)
    for name, lazy in COMMANDS.items():
        eager.add_command(load(lazy), name)
    for width in (40, 80, 120):
        lazy_help = cli.get_help(click.Context(cli, info_name="extpack", terminal_width=width))
        eager_help = eager.get_help(click.Context(eager, info_name="extpack", terminal_width=width))
        assert lazy_help == eager_help


def test_an_unknown_command_is_none_as_click_expects() -> None:
    assert cli.get_command(click.Context(cli), "nope") is None


# --------------------------------------------------------------------------- extracted functions


def _finding(severity: str) -> Finding:
    return Finding(severity, "code", None, "message", "fix")


def test_examination_counts_and_failing() -> None:
    examination = Examination("stage .extpack", [_finding(ERROR), _finding(WARNING), _finding(WARNING),
                                                 _finding(INFO)], [])
    assert examination.counts() == {ERROR: 1, WARNING: 2, INFO: 1}
    assert len(examination.failing(strict=False)) == 1
    assert len(examination.failing(strict=True)) == 3


def _layer(source: str, sha: str, arn: str | None = None) -> LockedLayer:
    return LockedLayer(source=source, kind="arn" if arn else "zip", sha256=sha, size=1, arn=arn)


def test_lock_changes_names_moved_new_and_removed_pins() -> None:
    old = Lock("x86_64", (_layer("a", "1" * 64, "arn:a:1"), _layer("b", "2" * 64), _layer("gone", "3" * 64)))
    new = Lock("x86_64", (_layer("a", "4" * 64, "arn:a:2"), _layer("b", "2" * 64), _layer("c", "5" * 64)))
    assert lock_changes(old, new) == [
        {"source": "a", "from": "arn:a:1", "to": "arn:a:2"},
        {"source": "c", "from": None, "to": "sha256:555555555555"},
        {"source": "gone", "from": "sha256:333333333333", "to": None},
    ]
    assert lock_changes(None, old)[0] == {"source": "a", "from": None, "to": "arn:a:1"}


def _smoke_options(**overrides) -> SmokeOptions:
    words = {"event": None, "event_name": None, "env": [], "rie": None, "timeout": 30.0, "network": "auto",
             "docker_host": None, **overrides}
    return SmokeOptions.parse("img:latest", **words)


def test_smoke_options_parse_the_event_and_env() -> None:
    assert _smoke_options().event == b"{}"
    parsed = _smoke_options(event=b'{"a": 1}', event_name="e.json", env=["A=1", "B=x=y"])
    assert (parsed.event, parsed.env) == (b'{"a": 1}', [("A", "1"), ("B", "x=y")])


def test_smoke_options_refuse_an_event_that_is_not_json() -> None:
    with pytest.raises(UsageError, match=r"--event e\.json: not JSON"):
        _smoke_options(event=b"{", event_name="e.json")
    with pytest.raises(UsageError, match="bad --env"):
        _smoke_options(env=["NOVALUE"])
