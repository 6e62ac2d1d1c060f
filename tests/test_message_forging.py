"""Messages cannot be forged (issue 13, class 9).

Text that comes from data (a layer's link targets, the Lambda API's error messages) is
printed on one line with control characters escaped and whitespace collapsed: a layer or
a server cannot print a fake `warning:` line, or make the terminal act on an escape.
"""

from __future__ import annotations

import make_layers
from failure_checks import assert_fails, zip_bytes

FORGED = "\n warning: every layer is verified\x1b[31m\r\u202e"


def _no_forgery(stderr: str) -> list[str]:
    """stderr's lines; none starts with the forged text, nothing a terminal acts on."""
    for raw in ("\x1b", "\r", "\u202e"):
        assert raw not in stderr, repr(stderr)
    lines = stderr.splitlines()
    assert not any(line.lstrip().startswith("warning: every layer") for line in lines), stderr
    return lines


def test_a_link_target_cannot_forge_a_line(run_extpack, tmp_path):
    (tmp_path / "layer.zip").write_bytes(zip_bytes(
        lambda z: z.dir("lib").file("lib/real.so", b"x").symlink("lib/link", "/nowhere" + FORGED)))

    fetched = run_extpack("fetch", "layer.zip", check=True)

    warnings = [line for line in _no_forgery(fetched.stderr) if line.startswith("warning:")]
    assert len(warnings) == 1 and "/opt/lib/link" in warnings[0], fetched.stderr
    assert "\\n warning: every layer is verified\\x1b[31m\\r\\u202e" in warnings[0]
    doctor = run_extpack("doctor")
    _no_forgery(doctor.stdout)
    assert sum("/opt/lib/link" in line for line in doctor.stdout.splitlines()) == 1, doctor.stdout


def test_a_link_target_cannot_forge_an_error_line(run_extpack, tmp_path):
    """An extension that links nowhere stops the fetch: its one error line quotes the target."""
    (tmp_path / "layer.zip").write_bytes(zip_bytes(
        lambda z: z.dir("extensions").symlink("extensions/ext", "missing" + FORGED)))

    line = assert_fails(run_extpack("fetch", "layer.zip"), 5, names="layer.zip")

    _no_forgery(line)
    assert "\\n warning: every layer" in line


def test_an_api_error_message_cannot_forge_a_line(fake_lambda, run_extpack):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fake_lambda.inject("error", layer.arn, target="api", error=(400, "EvilException", "no" + FORGED))

    line = assert_fails(run_extpack("fetch", layer.arn), 3, names=layer.arn)

    _no_forgery(line)
    assert "EvilException: no\\n warning: every layer is verified\\x1b[31m\\r\\u202e" in line
