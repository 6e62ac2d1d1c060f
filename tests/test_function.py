"""extpack fetch --function: a zip function converted to a container image, through the real CLI.

The loopback Lambda API answers GetFunction as botocore's model has it (tests/lambda_server.py);
the function's layers are served by the same server, its code at a presigned-style URL.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import make_layers
import pytest
from lambda_parts import EXTENSION_SOURCE, go_build
from lambda_server import OMIT, FakeLambda
from test_rie_e2e import ANSWER, EXAMPLE, PARAMETER, SESSION_TOKEN, extension_layer
from test_wrappers_docker import PY_RUNTIME, _invoke, made, python_base, rie  # noqa: F401 - the fixtures: containers, the Python base

SECRET_VALUE = "s3cr3t-db-password-value"
APP_PY = b"import extpack_demo_dep\n\ndef handler(event, context):\n    return extpack_demo_dep.__version__\n"


def python_code() -> bytes:
    return (make_layers.ZipBuilder().file("app.py", APP_PY, 0o644).dir("lib")
            .file("lib/helper.sh", b"#!/bin/sh\necho helper\n", 0o755)
            .symlink("lib/current", "helper.sh").getvalue())


@pytest.fixture
def python_function(fake_lambda: FakeLambda):
    """A Python function with a library layer and an extension layer, as a zip function has them."""
    library = fake_lambda.add_layer("python-deps", make_layers.build("python-deps.zip"))
    extension = fake_lambda.add_layer("demo-extension", make_layers.build("demo-extension.zip"))
    return fake_lambda.add_function(
        "orders", python_code(), runtime="python3.12", handler="app.handler", layers=[library, extension],
        environment={"DB_PASSWORD": SECRET_VALUE, "TABLE_NAME": "orders"})


def _lock(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "extpack.lock").read_text())


def _everything_written(tmp_path: Path, *outputs: str) -> str:
    texts = list(outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink() and "aws-config" not in path.parts:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


# --------------------------------------------------------------------------- fetch --function


def test_function_layers_in_order_then_extra_sources_and_lock_record(fake_lambda, python_function, run_extpack,
                                                                     tmp_path):
    extra = fake_lambda.add_layer("override-a", make_layers.build("override-a.zip"))

    result = run_extpack("fetch", "--function", "orders", "--region", "us-east-1", extra.arn, check=True)

    lock = _lock(tmp_path)
    assert [layer["arn"] for layer in lock["layers"]] == [*python_function.layers, extra.arn]
    assert lock["function"] == {
        "source": "orders", "qualifier": None, "arn": python_function.function_arn, "version": "$LATEST",
        "runtime": "python3.12", "handler": "app.handler", "architecture": "x86_64",
        "layers": list(python_function.layers), "environment": ["DB_PASSWORD", "TABLE_NAME"], "wrapper": None,
        "code_sha256": None, "code_size": None,
    }
    staged = tmp_path / ".extpack" / "opt"
    assert (staged / "python/extpack_demo_dep/__init__.py").is_file()
    assert (staged / "extensions/demo-extension").is_file() and (staged / "a-only.txt").is_file()
    assert not (tmp_path / ".extpack" / "task").exists()  # no --with-code
    assert {call.region for call in fake_lambda.calls("GetFunction")} == {"us-east-1"}
    # Values of environment variables are secrets: never in the lock, the stage or the output.
    assert SECRET_VALUE not in _everything_written(tmp_path, result.stdout, result.stderr)


def test_migration_report_on_stdout_and_in_json(python_function, run_extpack, tmp_path):
    text = run_extpack("fetch", "--function", python_function.function_arn, "--with-code", check=True).stdout
    assert f"converted function {python_function.function_arn}" in text
    assert "python template on public.ecr.aws/lambda/python:3.12" in text
    assert "(values were not copied): DB_PASSWORD, TABLE_NAME" in text
    assert "PackageType: Image" in text and "remove Layers (2" in text and "remove Handler and Runtime" in text
    assert "ImageConfig.Command" in text

    data = json.loads(run_extpack("fetch", "--function", python_function.function_arn, "--with-code", "--json",
                                  check=True).stdout)
    migration = data["migration"]
    assert migration["image"] == {"template": "python", "base": "public.ecr.aws/lambda/python:3.12",
                                  "cmd": ["app.handler"]}
    assert migration["environment"] == ["DB_PASSWORD", "TABLE_NAME"]
    assert migration["function"]["code_sha256"] == python_function.sha256_hex
    assert any(change.startswith("PackageType: Image") for change in migration["infrastructure"])
    assert SECRET_VALUE not in json.dumps(data)


def test_with_code_is_verified_and_unpacked_into_task(fake_lambda, python_function, run_extpack, tmp_path):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)

    task = tmp_path / ".extpack" / "task"
    assert (task / "app.py").read_bytes() == APP_PY
    assert stat.S_IMODE((task / "lib/helper.sh").stat().st_mode) == 0o755
    assert os.readlink(task / "lib/current") == "helper.sh"
    record = _lock(tmp_path)["function"]
    assert (record["code_sha256"], record["code_size"]) == (python_function.sha256_hex, python_function.size)
    manifest = json.loads((tmp_path / ".extpack" / "manifest.json").read_text())
    assert manifest["task"]["sha256"] == python_function.sha256_hex
    assert {entry["path"] for entry in manifest["task"]["files"]} == {"app.py", "lib", "lib/helper.sh",
                                                                       "lib/current"}
    fake_lambda.assert_no_leaks(tmp_path / ".extpack", tmp_path / "extpack.lock")


def test_a_function_without_layers_and_without_a_cache(fake_lambda, run_extpack, tmp_path, aws_env):
    fake_lambda.add_function("bare", python_code())
    env = {**aws_env, "AWS_DEFAULT_REGION": "us-east-1"}  # the profile's region, when no flag gives one

    run_extpack("fetch", "--function", "bare", "--with-code", "--no-cache", env=env, check=True)

    assert (tmp_path / ".extpack/task/app.py").read_bytes() == APP_PY
    assert _lock(tmp_path)["layers"] == [] and not (tmp_path / "cache").exists()
    assert fake_lambda.calls("GetFunction")[0].region == "us-east-1"
    run_extpack("verify", env=env, check=True)


def test_code_that_does_not_match_code_sha256_is_refused(fake_lambda, python_function, run_extpack, tmp_path):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", check=True)
    before = (tmp_path / "extpack.lock").read_text()
    import base64
    import hashlib

    python_function.answer = {"Configuration.CodeSha256": base64.b64encode(hashlib.sha256(b"other").digest()).decode()}

    result = run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=4)

    assert "function orders" in result.stderr and "sha256" in result.stderr
    assert (tmp_path / "extpack.lock").read_text() == before and not (tmp_path / ".extpack" / "task").exists()


@pytest.mark.parametrize("name", ["evil-dotdot.zip", "evil-symlink-escape.zip", "evil-device.zip"])
def test_hostile_code_zip_is_refused_like_a_layer(fake_lambda, run_extpack, tmp_path, name):
    fake_lambda.add_function("hostile", make_layers.build(name))

    result = run_extpack("fetch", "--function", "hostile", "--region", "us-east-1", "--with-code", check=5)

    assert "function hostile" in result.stderr
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aws-config", "cache"]


def test_qualifiers_version_alias_and_arn(fake_lambda, python_function, run_extpack, tmp_path):
    published = fake_lambda.publish_version(python_function)
    python_function.handler = "app.newer"  # $LATEST moved on after version 1 was published
    fake_lambda.add_alias(python_function, "live", published.version)

    run_extpack("fetch", "--function", "orders", "--qualifier", "live", "--region", "us-east-1", check=True)
    record = _lock(tmp_path)["function"]
    assert (record["qualifier"], record["version"], record["handler"]) == ("live", "1", "app.handler")
    assert record["arn"] == f"{python_function.function_arn}:live"

    run_extpack("fetch", "--function", f"{python_function.function_arn}:1", check=True)
    record = _lock(tmp_path)["function"]
    assert (record["qualifier"], record["version"], record["handler"]) == ("1", "1", "app.handler")

    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", check=True)
    assert _lock(tmp_path)["function"]["handler"] == "app.newer"

    result = run_extpack("fetch", "--function", f"{python_function.function_arn}:1", "--qualifier", "live",
                         check=2)
    assert "qualifier" in result.stderr
    result = run_extpack("fetch", "--function", "orders", "--qualifier", "9", "--region", "us-east-1", check=3)
    assert "function not found" in result.stderr


def test_region_flag_config_and_the_arns_own_region(fake_lambda, run_extpack, tmp_path):
    fake_lambda.add_function("eu-fn", python_code(), region="eu-west-1")

    refused = run_extpack("fetch", "--function", "eu-fn", check=2)
    assert "--region" in refused.stderr and not (tmp_path / "extpack.lock").exists()

    run_extpack("fetch", "--function", "eu-fn", "--region", "eu-west-1", check=True)
    assert fake_lambda.calls("GetFunction")[-1].region == "eu-west-1"

    (tmp_path / "extpack.toml").write_text('region = "eu-west-1"\n')
    run_extpack("fetch", "--function", "eu-fn", "--stage-dir", "from-config", check=True)
    assert fake_lambda.calls("GetFunction")[-1].region == "eu-west-1"

    arn = f"arn:aws:lambda:eu-west-1:{fake_lambda.caller_account}:function:eu-fn"
    run_extpack("fetch", "--function", arn, "--region", "ap-south-1", "--stage-dir", "by-arn", check=True)
    assert fake_lambda.calls("GetFunction")[-1].region == "eu-west-1"  # the ARN's own region wins


def test_architecture_comes_from_the_function_and_a_contradicting_arch_is_refused(fake_lambda, run_extpack,
                                                                                   tmp_path):
    layer = fake_lambda.add_layer("elf-arm64", make_layers.build("elf-arm64.zip"), architectures=["arm64"])
    fake_lambda.add_function("graviton", python_code(), layers=[layer], architectures=["arm64"])

    refused = run_extpack("fetch", "--function", "graviton", "--region", "us-east-1", "--arch", "x86_64", check=2)
    assert "arm64" in refused.stderr and "--arch" in refused.stderr
    assert not (tmp_path / ".extpack").exists()

    run_extpack("fetch", "--function", "graviton", "--region", "us-east-1", check=True)
    lock = _lock(tmp_path)
    assert lock["arch"] == "arm64" and lock["function"]["architecture"] == "arm64"
    assert json.loads((tmp_path / ".extpack/manifest.json").read_text())["arch"] == "arm64"


def test_an_image_function_is_already_an_image(fake_lambda, run_extpack, tmp_path):
    fake_lambda.add_function("imaged", package_type="Image",
                             image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/imaged:v1")

    result = run_extpack("fetch", "--function", "imaged", "--region", "us-east-1", check=2)

    assert "already an image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/imaged:v1" in result.stderr
    assert not (tmp_path / "extpack.lock").exists()


def test_missing_and_denied_functions_leave_the_stage_alone(fake_lambda, python_function, run_extpack, tmp_path,
                                                            tree_snapshot):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    before = tree_snapshot(tmp_path)

    missing = run_extpack("fetch", "--function", "nosuch", "--region", "us-east-1", check=3)
    assert missing.stderr.startswith("extpack: error: function nosuch: function not found")
    fake_lambda.deny("orders")
    denied = run_extpack("fetch", "--function", "orders", "--region", "us-east-1", check=3)
    assert "lambda:GetFunction" in denied.stderr and len(denied.stderr.splitlines()) == 1

    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize(("lie", "field"), [
    ({"Configuration.Runtime": "python3.12\nFROM evil"}, "Configuration.Runtime"),
    ({"Configuration.Handler": "app.handler extra"}, "Configuration.Handler"),
    ({"Configuration.Handler": OMIT}, "Configuration.Handler"),
    ({"Configuration.Environment.Variables": {"1BAD": "x"}}, "Configuration.Environment.Variables"),
    ({"Configuration.Layers": [{"Arn": "arn:aws:lambda:us-east-1:123456789012:layer:x"}]}, "Layers[0].Arn"),
    # botocore's own parser trips over a list that is a string, before extpack sees the field
    ({"Configuration.Layers": "arn:aws:lambda:us-east-1:123456789012:layer:x:1"}, "object has no attribute"),
    ({"Configuration.Layers": [{"Arn": 7}]}, "Layers[0].Arn"),
    ({"Configuration.FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:other"},
     "Configuration.FunctionArn"),
    ({"Configuration.FunctionName": "other"}, "Configuration.FunctionName"),
    ({"Configuration.Version": "$LATEST; rm"}, "Configuration.Version"),
    ({"Configuration.Architectures": ["sparc"]}, "Configuration.Architectures"),
    ({"Configuration.Architectures": ["x86_64", "arm64"]}, "Configuration.Architectures"),
    ({"Configuration.CodeSha256": "not-base64!"}, "Configuration.CodeSha256"),
    ({"Configuration.CodeSize": -1}, "Configuration.CodeSize"),
    ({"Configuration.PackageType": "Tarball"}, "Configuration.PackageType"),
    ({"Code.Location": "http://attacker.example/code.zip"}, "Code.Location"),
    ({"Configuration.Environment.Variables": {f"A{'B' * 3}": 7}}, "Environment.Variables.ABBB"),
])
def test_a_lying_or_malformed_configuration_is_refused(fake_lambda, python_function, run_extpack, tmp_path,
                                                       lie, field):
    python_function.answer = lie

    result = run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=3)

    assert "the Lambda API's answer is not valid" in result.stderr and field in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "\x1b" not in result.stderr
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()
    assert fake_lambda.calls("Download") == []


@pytest.mark.parametrize(("args", "message"), [
    (["--function", "bad name"], "malformed --function"),
    (["--function", "arn:aws:lambda:us-east-1:123:function:x"], "malformed --function"),
    (["--function", "orders", "--qualifier", "a b"], "bad --qualifier"),
    (["--with-code"], "--with-code and --qualifier go with --function"),
])
def test_bad_function_arguments_are_usage_errors(run_extpack, tmp_path, args, message):
    result = run_extpack("fetch", *args, "--region", "us-east-1", check=2)
    assert message in result.stderr


# --------------------------------------------------------------------------- lock, --frozen, verify


def test_frozen_uses_the_lock_and_cached_code_without_calling_the_api(fake_lambda, python_function, run_extpack,
                                                                      tmp_path):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    lock_text = (tmp_path / "extpack.lock").read_text()
    import shutil

    shutil.rmtree(tmp_path / ".extpack")
    fake_lambda.clear_requests()

    run_extpack("fetch", "--frozen", check=True)

    assert fake_lambda.requests == []  # layers and code from the cache, the rest from the lock
    assert (tmp_path / ".extpack/task/app.py").read_bytes() == APP_PY
    assert (tmp_path / "extpack.lock").read_text() == lock_text
    run_extpack("fetch", "--frozen", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    assert fake_lambda.calls("GetFunction") == []


def test_frozen_refuses_a_function_that_changed(fake_lambda, python_function, run_extpack, tmp_path, aws_env):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    python_function.handler = "app.changed"
    env = {**aws_env, "EXTPACK_CACHE_DIR": str(tmp_path / "empty-cache")}  # the code must be fetched again

    result = run_extpack("fetch", "--frozen", "--stage-dir", "again", env=env, check=6)

    assert "function handler" in result.stderr and "app.changed" in result.stderr
    assert not (tmp_path / "again").exists()
    other = run_extpack("fetch", "--frozen", "--function", "other", "--region", "us-east-1", check=6)
    assert "function orders" in other.stderr
    without = run_extpack("fetch", "--frozen", "--function", "orders", "--region", "us-east-1", check=6)
    assert "--with-code" in without.stderr


def test_verify_covers_the_function_code(python_function, run_extpack, tmp_path):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    run_extpack("verify", check=True)

    (tmp_path / ".extpack/task/app.py").write_bytes(APP_PY.replace(b"handler", b"HANDLER"))
    result = run_extpack("verify", check=6)
    assert "changed: /task/app.py" in result.stdout

    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    assert (tmp_path / ".extpack/task/app.py").read_bytes() == APP_PY  # fetch notices and restores it
    lock = _lock(tmp_path)
    lock["function"]["code_sha256"] = "0" * 64
    (tmp_path / "extpack.lock").write_text(json.dumps(lock))
    result = run_extpack("verify", check=6)
    assert "task: the lock pins the function's code 000000000000" in result.stdout


def test_a_lock_without_a_function_still_reads_and_stays_as_it_was(fake_lambda, python_function, run_extpack,
                                                                   tmp_path):
    layer = fake_lambda.add_layer("demo-extension", make_layers.build("demo-extension.zip"))
    run_extpack("fetch", layer.arn, check=True)
    text = (tmp_path / "extpack.lock").read_text()
    assert "function" not in json.loads(text)

    refused = run_extpack("fetch", "--frozen", "--function", "orders", "--region", "us-east-1", check=6)
    assert "holds no function" in refused.stderr
    run_extpack("fetch", "--frozen", check=True)
    run_extpack("verify", check=True)
    assert (tmp_path / "extpack.lock").read_text() == text


def test_lock_command_keeps_the_function_record_while_its_layers_lead(fake_lambda, python_function, run_extpack,
                                                                       tmp_path):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", check=True)
    record = _lock(tmp_path)["function"]

    run_extpack("lock", *python_function.layers, check=True)
    assert _lock(tmp_path)["function"] == record
    other = fake_lambda.add_layer("override-a", make_layers.build("override-a.zip"))
    run_extpack("lock", other.arn, check=True)
    assert "function" not in _lock(tmp_path)


@pytest.mark.parametrize("path", ["../escape.py", "/etc/passwd", "a//b"])
def test_a_hand_edited_task_manifest_is_refused(python_function, run_extpack, tmp_path, path):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    manifest_path = tmp_path / ".extpack" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["task"]["files"][0]["path"] = path
    manifest_path.write_text(json.dumps(manifest))

    result = run_extpack("verify", check=2)
    assert "task.files[0].path" in result.stderr


@pytest.mark.parametrize(("field", "value"), [
    ("handler", "app.handler\nRUN evil"), ("runtime", "python 3"), ("environment", ["OK_NAME", "bad-name"]),
    ("layers", ["arn:aws:lambda:us-east-1:123456789012:layer:x"]), ("code_sha256", "../../etc"),
    ("arn", "arn:aws:lambda:us-east-1:123456789012:layer:x:1"), ("architecture", "sparc"),
])
def test_a_hand_edited_function_record_is_refused(python_function, run_extpack, tmp_path, field, value):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)
    lock = _lock(tmp_path)
    lock["function"][field] = value
    (tmp_path / "extpack.lock").write_text(json.dumps(lock))

    result = run_extpack("render", "--output", "-", check=2)
    assert f"function.{field}" in result.stderr and len(result.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- render from the lock


def _render(run_extpack, *args: str) -> str:
    return run_extpack("render", "--output", "-", *args, check=True).stdout


@pytest.mark.parametrize(("runtime", "base", "template_line"), [
    ("python3.12", "public.ecr.aws/lambda/python:3.12", None),
    ("nodejs20.x", "public.ecr.aws/lambda/nodejs:20", None),
    ("java21", "public.ecr.aws/lambda/java:21", None),
    ("provided.al2023", "public.ecr.aws/lambda/provided:al2023",
     "COPY .extpack/task/bootstrap ${LAMBDA_RUNTIME_DIR}/bootstrap"),
])
def test_render_needs_no_flags_for_a_converted_function(fake_lambda, run_extpack, runtime, base, template_line):
    code = make_layers.ZipBuilder().file("bootstrap", b"#!/bin/sh\n", 0o755).getvalue()
    fake_lambda.add_function("fn", code, runtime=runtime, handler="index.handler")
    run_extpack("fetch", "--function", "fn", "--region", "us-east-1", "--with-code", check=True)

    dockerfile = _render(run_extpack)

    assert f"FROM --platform=linux/amd64 {base}\n" in dockerfile
    assert "COPY .extpack/task/ ${LAMBDA_TASK_ROOT}/" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["index.handler"]')
    assert "regenerate with `extpack render`." in dockerfile
    if template_line:
        assert template_line in dockerfile


def test_render_flags_still_override_the_function(python_function, run_extpack):
    run_extpack("fetch", "--function", "orders", "--region", "us-east-1", "--with-code", check=True)

    dockerfile = _render(run_extpack, "--base", "example.com/my/python:3.12", "--cmd", "app.other")

    assert "FROM --platform=linux/amd64 example.com/my/python:3.12" in dockerfile
    assert 'CMD ["app.other"]' in dockerfile and "app.handler" not in dockerfile
    alpine = _render(run_extpack, "--template", "alpine-rie", "--base", "busybox:1")
    assert "FROM --platform=linux/amd64 busybox:1" in alpine
    assert "COPY .extpack/task/ /var/task/" in alpine  # a non-AWS base has no LAMBDA_TASK_ROOT


def test_render_keeps_the_functions_exec_wrapper(fake_lambda, run_extpack):
    wrapper = make_layers.ZipBuilder().file("otel-instrument", b"#!/bin/sh\nexec \"$@\"\n", 0o755).getvalue()
    layer = fake_lambda.add_layer("otel", wrapper)
    fake_lambda.add_function("traced", python_code(), layers=[layer],
                             environment={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/otel-instrument"})
    fetched = run_extpack("fetch", "--function", "traced", "--region", "us-east-1", "--with-code", check=True)
    assert "AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-instrument is kept in the image" in fetched.stdout
    assert "set these environment variables" not in fetched.stdout  # the wrapper was the only one

    dockerfile = _render(run_extpack)

    assert 'ENV AWS_LAMBDA_EXEC_WRAPPER="/opt/otel-instrument"' in dockerfile


@pytest.mark.parametrize("runtime", ["python3.8", "go1.x", "nodejs16.x", "provided"])
def test_render_refuses_a_deprecated_runtime_naming_the_choices(fake_lambda, run_extpack, runtime):
    fake_lambda.add_function("old", python_code(), runtime=runtime)
    run_extpack("fetch", "--function", "old", "--region", "us-east-1", "--with-code", check=True)

    result = run_extpack("render", "--output", "-", check=2)

    assert f"runtime {runtime} has no supported AWS base image" in result.stderr
    assert "python3.13" in result.stderr and "provided.al2023" in result.stderr
    run_extpack("render", "--output", "-", "--template", "aws-base", "--base", "example.com/custom:1", check=True)


# --------------------------------------------------------------------------- built and run (docker)
# The converted images run under AWS's Runtime Interface Emulator on the tests' busybox base
# (nothing can be pulled here): the Go function with its own bootstrap as the runtime, the
# Python one with the test run's Python (tests/python_base.py) and a stand-in runtime client.

GO_ENV = [f"AWS_SESSION_TOKEN={SESSION_TOKEN}", f"PARAMETER_NAME={PARAMETER}"]


@pytest.fixture(scope="module")
def go_parts(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The example Go function's bootstrap and the stand-in extension, as zips, for each CPU."""
    out = tmp_path_factory.mktemp("go-function")
    parts = {}
    for arch in ("x86_64", "arm64"):
        bootstrap = go_build(EXAMPLE, out / arch / "bootstrap", arch=arch, tags="lambda.norpc")
        extension = go_build(EXTENSION_SOURCE, out / arch / "extension", arch=arch)
        parts[arch] = {
            "code": make_layers.ZipBuilder().file("bootstrap", bootstrap.read_bytes(), 0o755).getvalue(),
            "extension": extension_layer(extension),
        }
    return parts


def _go_function(fake_lambda, parts, arch: str):
    layer = fake_lambda.add_layer(f"parameters-standin-{arch.replace('_', '-')}", parts[arch]["extension"],
                                  architectures=[arch])
    return fake_lambda.add_function(
        f"go-{arch.replace('_', '-')}", parts[arch]["code"], runtime="provided.al2023", handler="bootstrap",
        layers=[layer], architectures=[arch], environment={"PARAMETER_NAME": PARAMETER})


@pytest.mark.docker
def test_a_go_function_on_arm64_converts_for_arm64(fake_lambda, go_parts, run_extpack, tmp_path):
    function = _go_function(fake_lambda, go_parts, "arm64")

    run_extpack("fetch", "--function", function.function_arn, "--with-code", check=True)

    assert _lock(tmp_path)["arch"] == "arm64"
    bootstrap = (tmp_path / ".extpack/task/bootstrap").read_bytes()
    assert bootstrap[:4] == b"\x7fELF" and int.from_bytes(bootstrap[18:20], "little") == 183  # EM_AARCH64
    dockerfile = _render(run_extpack)
    assert "FROM --platform=linux/arm64 public.ecr.aws/lambda/provided:al2023" in dockerfile
    assert "COPY .extpack/task/bootstrap ${LAMBDA_RUNTIME_DIR}/bootstrap" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["bootstrap"]')
    # This machine cannot run arm64 code: the x86_64 twin below is built and run instead.


@pytest.mark.docker
def test_a_converted_go_function_answers_under_the_emulator(fake_lambda, go_parts, run_extpack, tmp_path, rie,
                                                             docker_daemon, busybox_base, made):
    function = _go_function(fake_lambda, go_parts, "x86_64")
    run_extpack("fetch", "--function", function.function_arn, "--with-code", check=True)
    shutil.copy(rie, tmp_path / "aws-lambda-rie")

    run_extpack("render", "--base", busybox_base, "--rie", "--rie-binary", "aws-lambda-rie", check=True)

    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "COPY .extpack/task/ /var/task/" in dockerfile
    assert 'ENTRYPOINT ["/extpack-entry.sh", "/var/task/bootstrap"]' in dockerfile
    tag = "extpack-function/go:1"
    made.append(tag)
    docker_daemon.docker("build", "--network", "none", "-t", tag, tmp_path, timeout=600)
    assert _invoke(docker_daemon, tag, made, *[arg for pair in GO_ENV for arg in ("-e", pair)]) == ANSWER


@pytest.mark.docker
def test_a_converted_python_function_is_built_and_answers(fake_lambda, go_parts, run_extpack, tmp_path, rie,
                                                          docker_daemon, python_base, made):
    library = fake_lambda.add_layer("python-deps", make_layers.build("python-deps.zip"))
    extension = fake_lambda.add_layer("parameters-standin", go_parts["x86_64"]["extension"])
    # runtime.py stands in for the runtime client AWS's Python base image has.
    code = (make_layers.ZipBuilder().file("app.py", APP_PY, 0o644).file("runtime.py", PY_RUNTIME, 0o644)
            .getvalue())
    fake_lambda.add_function("py", code, runtime="python3.12", handler="app.handler", layers=[library, extension])
    run_extpack("fetch", "--function", "py", "--region", "us-east-1", "--with-code", check=True)
    shutil.copy(rie, tmp_path / "aws-lambda-rie")

    run_extpack("render", "--base", python_base, "--rie", "--rie-binary", "aws-lambda-rie",
                "--entrypoint", "python3 /var/task/runtime.py", check=True)

    tag = "extpack-function/python:1"
    made.append(tag)
    docker_daemon.docker("build", "--network", "none", "-t", tag, tmp_path, timeout=600)
    listing = docker_daemon.docker("run", "--rm", "--entrypoint", "/bin/sh", tag, "-c",
                                   "ls /var/task /opt/extensions /opt/python").stdout.split()
    assert {"app.py", "runtime.py", "parameters-secrets-standin", "extpack_demo_dep"} <= set(listing)
    assert _invoke(docker_daemon, tag, made, "-e", f"AWS_SESSION_TOKEN={SESSION_TOKEN}") == "1.0.0"
