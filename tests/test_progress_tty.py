"""fetch's progress bar: shown on a terminal and fitted to its width, never shown off one.

The terminal is a real pseudo-terminal 40 columns wide (the `pty` module, its window size
set as a terminal emulator would, and COLUMNS=40), and the layer trickles in one byte at a
time from the loopback Lambda API, so the bar is on screen for a while.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import make_layers
import pytest
from conftest import _extpack_command

WIDTH = 40
LONG_NAME = "a-layer-with-a-rather-long-name-as-vendors-publish-them"
BAR = "━"  # rich's bar
ESCAPE_RE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")  # CSI and two-character sequences


@pytest.fixture
def trickling_layer(fake_lambda) -> str:
    """A small layer whose download takes a second or so: the bar gets to draw."""
    zip_bytes = make_layers.ZipBuilder().dir("extensions").file(
        "extensions/tiny", "#!/bin/sh\nexec sleep 1\n" * 8, 0o755, stored=True).getvalue()
    layer = fake_lambda.add_layer(LONG_NAME, zip_bytes)
    fake_lambda.inject("trickle", layer=layer.arn, stall_seconds=0.002)
    return layer.arn


def _run_on_a_terminal(args: list[str], cwd: Path, env: dict[str, str], columns: int) -> tuple[int, str]:
    """Run with stdin and stderr on a new pseudo-terminal `columns` wide, stdout to cwd/stdout.txt:
    (exit code, all the terminal showed). The progress is alone on the terminal, as in `extpack fetch > out`."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    terminal_env = {name: value for name, value in env.items() if name != "NO_COLOR"}  # a colour terminal
    terminal_env.update(COLUMNS=str(columns), TERM="xterm-256color")
    with open(cwd / "stdout.txt", "wb") as stdout:
        process = subprocess.Popen(_extpack_command() + args, cwd=cwd, env=terminal_env,
                                   stdin=follower, stdout=stdout, stderr=follower, start_new_session=True)
    os.close(follower)
    shown, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            shown += chunk
        return process.wait(timeout=30), shown.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)


def _screen_lines(shown: str) -> list[str]:
    """What each line of the terminal held at some point: escape sequences removed, split at \\r and \\n."""
    return [line for line in re.split(r"[\r\n]", ESCAPE_RE.sub("", shown)) if line]


def test_the_progress_bar_shows_on_a_narrow_terminal_and_fits_it(trickling_layer, tmp_path, aws_env) -> None:
    code, shown = _run_on_a_terminal(["fetch", trickling_layer], tmp_path, aws_env, WIDTH)

    assert code == 0, shown
    assert "LAYER" in (tmp_path / "stdout.txt").read_text() and "LAYER" not in shown  # the table went to the file
    lines = _screen_lines(shown)
    bars = [line for line in lines if BAR in line]
    assert bars, f"no progress bar on the terminal:\n{shown!r}"
    assert any("…" in line and LONG_NAME[-8:] in line for line in bars), bars  # the name, shortened
    wrapped = [line for line in bars if not re.search(r"\d+/\d+ bytes", line)]
    assert not wrapped, f"a progress line wrapped (its sizes are not on it): {wrapped}"
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert not too_wide, f"lines wider than the {WIDTH}-column terminal: {too_wide}"


def test_no_progress_output_without_a_terminal(trickling_layer, run_extpack) -> None:
    result = run_extpack("fetch", trickling_layer, check=True)

    assert BAR not in result.stderr and "\x1b" not in result.stderr and "\r" not in result.stderr
    assert BAR not in result.stdout and "\x1b" not in result.stdout
    assert LONG_NAME in result.stdout  # to a pipe the table is never shortened
