"""What `extpack init` writes: a commented starter config and a Makefile snippet."""

from __future__ import annotations

import json

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
arch = "x86_64"

# AWS settings, when the standard chain (AWS_PROFILE, AWS_ENDPOINT_URL_LAMBDA, ...) is not enough.
# profile = "build"
# endpoint-url = "https://lambda.us-east-1.amazonaws.com"

# Refuse a layer that unzips to more than this (Lambda's own limit is 250MB).
# max-layer-size = "250MB"

# extpack render: template (aws-base, alpine-rie, python, nodejs, or a .j2 path),
# base image, platform (default: from arch) and output file.
template = "aws-base"
base = "public.ecr.aws/lambda/provided:al2023"
output = "Dockerfile"
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

Dockerfile: .extpack/manifest.json extpack.toml
\t$(EXTPACK) render

.image-built: Dockerfile .extpack/manifest.json $(shell find src -type f 2>/dev/null)
\t$(DOCKER) build -t $(IMAGE) .
\ttouch $@
"""


def starter_config(layers: list[str]) -> str:
    listed = "".join(f"\n    {json.dumps(layer)}," for layer in layers) or \
        '\n    # "arn:aws:lambda:us-east-1:123456789012:layer:my-extension:1",'
    return CONFIG_TEMPLATE.format(layers=listed)
