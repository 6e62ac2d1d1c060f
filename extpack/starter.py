"""What `extpack init` writes: a commented starter config and a Makefile snippet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from extpack.exceptions import UsageError

CONFIG_TEMPLATE = """\
# extpack configuration. Command-line flags win over these settings.

# Layers, applied in this order (a later layer's file replaces an earlier one's).
# Each is a layer version ARN, a layer ARN without a version (pinned in the lock),
# a path to a .zip (relative to this file), or an https:// URL of a zip.
layers = [{layers}
]

# Where fetch stages the files (<stage-dir>/opt) and the lock it writes.
stage-dir = ".extpack"
lock = "extpack.lock"

# The CPU of the function: x86_64 or arm64.
arch = "{arch}"

# AWS settings, when the standard chain (AWS_PROFILE, AWS_ENDPOINT_URL_LAMBDA, ...) is not enough.
# profile = "build"
# endpoint-url = "https://lambda.us-east-1.amazonaws.com"

# Refuse a layer that unzips to more than this (Lambda's own limit is 250MB).
# max-layer-size = "250MB"

# extpack render: template (aws-base, alpine-rie, python, nodejs, or a .j2 path),
# base image, platform (default: from arch) and output file.
template = "aws-base"
base = "public.ecr.aws/lambda/provided:al2023"
{output}
"""

MAKEFILE_SNIPPET = """\
# extpack: lock -> stage -> Dockerfile -> image. `make` does nothing when nothing changed.
EXTPACK ?= extpack
DOCKER ?= docker
IMAGE ?= my-function:latest

extpack.lock: extpack.toml
\t$(EXTPACK) lock

.extpack/manifest.json: extpack.lock
\t$(EXTPACK) fetch --frozen

{dockerfile}: .extpack/manifest.json extpack.toml
\t$(EXTPACK) render

.image-built: {dockerfile} .extpack/manifest.json $(shell find src -type f 2>/dev/null)
\t$(DOCKER) build {file_flag}-t $(IMAGE) .
\ttouch $@
"""


OWN_DOCKERFILE_OUTPUT = "Dockerfile.extpack"


@dataclass
class InitResult:
    config: Path
    notes: list[str] = field(default_factory=list)  # what was done and what to do next, for stderr
    makefile: str = ""


def init_project(folder: Path, layers: list[str], *, force: bool = False) -> InitResult:
    """Write `folder/extpack.toml`, never over a config without `force`, and never aiming render at the
    project's own Dockerfile."""
    from extpack.config import CONFIG_FILE, PYPROJECT, load_config
    from extpack.lock import read_lock
    from extpack.render_files import hand_written

    target = folder / CONFIG_FILE
    pyproject = folder / PYPROJECT
    if not force and target.exists():
        raise UsageError(f"{target} already exists: edit it, or pass --force to overwrite it")
    if not force and pyproject.is_file() and "[tool.extpack]" in pyproject.read_text(errors="replace"):
        raise UsageError(f"{pyproject} already configures extpack ([tool.extpack]): edit it there, or pass "
                         f"--force to write {target}, which then takes precedence over it")
    above = load_config(cwd=folder)
    own_dockerfile = hand_written(folder / "Dockerfile")
    dockerfile = OWN_DOCKERFILE_OUTPUT if own_dockerfile else "Dockerfile"
    lock = read_lock(folder / "extpack.lock")
    target.write_text(starter_config(layers, arch=lock.arch if lock else "x86_64", dockerfile=dockerfile))

    notes = [f"wrote {target}"]
    if above.found_upwards:
        notes.append(f"note: {above.path} configures a project above this folder; here {target} takes precedence")
    if own_dockerfile:
        notes.append(f"note: extpack did not write {folder / 'Dockerfile'}, so render writes {dockerfile} beside it "
                     f"and keeps yours (build with docker build -f {dockerfile} .)")
    if lock:
        notes.append(f"note: arch {lock.arch} comes from the existing {folder / 'extpack.lock'}")
    if not layers:
        notes.append(f"next: list your layer ARNs under layers in {target} (or run extpack init ARN ... --force)")
    notes.append("next: extpack fetch (stages the layers under .extpack/opt and writes extpack.lock), then "
                 f"extpack render (writes {dockerfile}); commit extpack.toml and extpack.lock"
                 + ("" if _ignores_the_stage(folder / ".gitignore") else ", and add .extpack/ to .gitignore"))
    return InitResult(target, notes, makefile_snippet(dockerfile))


def _ignores_the_stage(gitignore: Path) -> bool:
    try:
        lines = gitignore.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return False
    return any(line.strip().strip("/") == ".extpack" for line in lines)


def starter_config(layers: list[str], arch: str = "x86_64", dockerfile: str = "Dockerfile") -> str:
    listed = "".join(f"\n    {json.dumps(layer)}," for layer in layers) or \
        '\n    # "arn:aws:lambda:us-east-1:123456789012:layer:my-extension:1",'
    output = f'output = "{dockerfile}"'
    if dockerfile != "Dockerfile":
        output += f"  # the project's own Dockerfile is kept: docker build -f {dockerfile} ."
    return CONFIG_TEMPLATE.format(layers=listed, arch=arch, output=output)


def makefile_snippet(dockerfile: str = "Dockerfile") -> str:
    file_flag = "" if dockerfile == "Dockerfile" else f"-f {dockerfile} "
    return MAKEFILE_SNIPPET.format(dockerfile=dockerfile, file_flag=file_flag)
