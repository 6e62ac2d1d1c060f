"""extpack fetch's refusals for bad arguments (exit 2), AWS API errors (exit 3) and corrupt
zips (exit 4/5), through the real CLI.

Each error is exactly one line on stderr that names the layer, with no traceback and
nothing on stdout.  Usage errors are found before any network call: the fake Lambda API
must not see a single request.
"""

from __future__ import annotations

import socket

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import (
    assert_clean_after_failure,
    assert_fails,
    assert_no_leak,
    copy_good_stage,
    good_template_fixture,  # noqa: F401 - registers the good_template fixture
)

ACCOUNT = "123456789012"
GOOD = f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:1"

MALFORMED_ARNS = {
    "unknown-partition": f"arn:aws-moon:lambda:us-east-1:{ACCOUNT}:layer:demo:1",
    "cn-partition-us-region": f"arn:aws-cn:lambda:us-east-1:{ACCOUNT}:layer:demo:1",
    "aws-partition-cn-region": f"arn:aws:lambda:cn-north-1:{ACCOUNT}:layer:demo:1",
    "gov-partition-eu-region": f"arn:aws-us-gov:lambda:eu-west-1:{ACCOUNT}:layer:demo:1",
    "aws-partition-gov-region": f"arn:aws:lambda:us-gov-west-1:{ACCOUNT}:layer:demo:1",
    "11-digit-account": "arn:aws:lambda:us-east-1:12345678901:layer:demo:1",
    "13-digit-account": "arn:aws:lambda:us-east-1:1234567890123:layer:demo:1",
    "non-numeric-account": "arn:aws:lambda:us-east-1:12345678901x:layer:demo:1",
    "version-0": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:0",
    "negative-version": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:-1",
    "empty-version": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:",
    "missing-layer": f"arn:aws:lambda:us-east-1:{ACCOUNT}:demo:1",
    "function-not-layer": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:demo:1",
    "other-service": f"arn:aws:s3:us-east-1:{ACCOUNT}:layer:demo:1",
    "missing-region": f"arn:aws:lambda::{ACCOUNT}:layer:demo:1",
    "bad-region": f"arn:aws:lambda:useast1:{ACCOUNT}:layer:demo:1",
    "empty-name": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer::1",
    "dot-in-name": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:my.layer:1",
    "name-too-long": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:{'n' * 141}:1",
    "trailing-field": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:1:extra",
    "trailing-junk": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:1abc",
    "trailing-slash": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:demo:1/",
    "space-inside": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:de mo:1",
}


def _assert_usage_error(result, fake_lambda, *, names: str) -> str:
    line = assert_fails(result, 2, names=names)
    assert fake_lambda.requests == [], "a usage error reached the network"
    return line


# --------------------------------------------------------------------------- usage (exit 2)


@pytest.mark.parametrize("arn", list(MALFORMED_ARNS.values()), ids=list(MALFORMED_ARNS))
def test_malformed_arn_is_a_usage_error_before_any_request(fake_lambda, run_extpack, tmp_path, arn):
    fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))  # GOOD exists
    before = tree_snapshot(tmp_path)

    line = _assert_usage_error(run_extpack("fetch", GOOD, arn), fake_lambda, names=arn)

    assert "ARN" in line
    assert tree_snapshot(tmp_path) == before  # no stage, lock, cache or build dir


def test_malformed_arn_in_the_config_is_a_usage_error(fake_lambda, run_extpack, tmp_path):
    bad = MALFORMED_ARNS["11-digit-account"]
    (tmp_path / "extpack.toml").write_text(f'layers = ["{GOOD}", "{bad}"]\n')

    _assert_usage_error(run_extpack("fetch"), fake_lambda, names=bad)


def test_missing_zip_path(fake_lambda, run_extpack, tmp_path):
    _assert_usage_error(run_extpack("fetch", GOOD, "no-such-layer.zip"), fake_lambda, names="no-such-layer.zip")
    assert not (tmp_path / ".extpack").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/layer.zip",
        "http://10.0.0.5:8080/layer.zip",
        "ftp://example.com/layer.zip",
        "https:///layer.zip",
    ],
)
def test_url_that_is_not_https_or_loopback_is_refused(fake_lambda, run_extpack, url):
    line = _assert_usage_error(run_extpack("fetch", url), fake_lambda, names=url)
    assert "https://" in line


def test_refused_url_does_not_echo_its_query(fake_lambda, run_extpack):
    secret = "X-Amz-Signature=0123456789abcdef5ec2e7"
    result = run_extpack("fetch", f"http://example.com/layer.zip?{secret}")

    line = _assert_usage_error(result, fake_lambda, names="http://example.com/layer.zip")
    assert "5ec2e7" not in line and "Signature" not in line


def test_no_sources_and_no_config(fake_lambda, run_extpack, tmp_path):
    assert not (tmp_path / "extpack.toml").exists() and not (tmp_path / "pyproject.toml").exists()

    line = assert_fails(run_extpack("fetch"), 2)

    assert "extpack.toml" in line  # says what to do
    assert fake_lambda.requests == []


@pytest.mark.parametrize("args", [["--max-layer-size", "lots"], ["--jobs", "0"]], ids=["size", "jobs"])
def test_bad_option_value_is_one_line(fake_lambda, run_extpack, args):
    line = assert_fails(run_extpack("fetch", GOOD, *args), 2)
    assert args[0] in line or args[1] in line
    assert fake_lambda.requests == []


def test_unknown_arch_is_a_usage_error(fake_lambda, run_extpack):
    result = run_extpack("fetch", GOOD, "--arch", "mips")

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mips" in result.stderr
    assert fake_lambda.requests == []


@pytest.mark.parametrize("args", [["--arch", "mips"], ["--jobs", "many"], ["--no-such-flag"]],
                         ids=["arch", "jobs-type", "unknown-flag"])
def test_click_usage_errors_are_one_line(fake_lambda, run_extpack, args):
    assert_fails(run_extpack("fetch", GOOD, *args), 2)


# --------------------------------------------------------------------------- AWS (exit 3)


@pytest.fixture
def demo(fake_lambda):
    return fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))


def _assert_aws_error(result, fake_lambda, tmp_path, arn: str) -> str:
    line = assert_fails(result, 3, names=arn)
    assert fake_lambda.download_calls == []
    assert_clean_after_failure(tmp_path, tmp_path / "cache")
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()
    assert_no_leak(fake_lambda, result.stdout, result.stderr)
    return line


def test_unknown_version_is_not_found(fake_lambda, run_extpack, tmp_path, demo):
    missing = f"{demo.layer_arn}:{demo.version + 1}"

    line = _assert_aws_error(run_extpack("fetch", missing), fake_lambda, tmp_path, missing)

    assert "not found" in line
    assert [c.status for c in fake_lambda.calls("GetLayerVersionByArn")] == [404]


def test_unknown_layer_without_version_is_not_found(fake_lambda, run_extpack, tmp_path, demo):
    missing = demo.layer_arn.replace(":demo", ":nosuch")

    line = _assert_aws_error(run_extpack("fetch", missing), fake_lambda, tmp_path, missing)

    assert "not found" in line


def test_access_denied(fake_lambda, run_extpack, tmp_path, demo):
    fake_lambda.deny(demo.arn)

    line = _assert_aws_error(run_extpack("fetch", demo.arn), fake_lambda, tmp_path, demo.arn)

    assert "access denied" in line.lower()
    assert [c.status for c in fake_lambda.calls("GetLayerVersionByArn")] == [403]


def test_access_denied_does_not_print_credentials_even_verbose(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    fake_lambda.deny(demo.arn)
    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY"
    env = {**aws_env, "AWS_ACCESS_KEY_ID": "AKIAEXTPACKTESTKEY01", "AWS_SECRET_ACCESS_KEY": secret}

    result = run_extpack("--verbose", "fetch", demo.arn, env=env)

    assert result.returncode == 3
    assert secret not in result.stdout + result.stderr
    assert_no_leak(fake_lambda, result.stdout, result.stderr)


def test_throttled_after_retries(fake_lambda, run_extpack, tmp_path, demo):
    fake_lambda.inject("429-throttle", times=10)

    line = _assert_aws_error(run_extpack("fetch", demo.arn), fake_lambda, tmp_path, demo.arn)

    assert "throttled" in line
    calls = fake_lambda.calls("GetLayerVersionByArn")
    assert len(calls) > 1 and {c.status for c in calls} == {429}  # retried, then gave up


def test_throttled_once_is_retried_and_succeeds(fake_lambda, run_extpack, tmp_path, demo):
    fake_lambda.inject("429-throttle", times=1)

    run_extpack("fetch", demo.arn, check=True)

    assert [c.status for c in fake_lambda.calls("GetLayerVersionByArn")] == [429, 200]
    assert (tmp_path / ".extpack/opt/extensions/demo-extension").is_file()


def test_no_credentials(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}

    line = _assert_aws_error(run_extpack("fetch", demo.arn, env=env), fake_lambda, tmp_path, demo.arn)

    assert "credentials" in line
    assert fake_lambda.requests == []


@pytest.mark.parametrize("how", ["flag", "env"])
def test_unknown_profile_is_a_usage_error(fake_lambda, run_extpack, aws_env, demo, how):
    env = {**aws_env, "AWS_PROFILE": "no-such-profile"} if how == "env" else aws_env
    args = ["--profile", "no-such-profile"] if how == "flag" else []

    line = _assert_usage_error(run_extpack("fetch", demo.arn, *args, env=env), fake_lambda, names=demo.arn)

    assert "'no-such-profile' not found" in line


def test_unreachable_endpoint(fake_lambda, run_extpack, tmp_path, aws_env, demo):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**aws_env, "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{port}"}

    line = _assert_aws_error(run_extpack("fetch", demo.arn, env=env), fake_lambda, tmp_path, demo.arn)

    assert "reach" in line
    assert fake_lambda.requests == []


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_api_error_leaves_previous_stage_and_lock(fake_lambda, run_extpack, tmp_path, good_template, demo):
    project = tmp_path / "proj"
    project.mkdir()
    before = copy_good_stage(good_template, project)
    fake_lambda.deny(demo.arn)

    assert_fails(run_extpack("fetch", demo.arn, cwd=project), 3, names=demo.arn)

    assert tree_snapshot(project) == before


# --------------------------------------------------------------------------- corrupt zips (exit 4 / 5)

# extpack's split: a file that cannot be opened as a zip at all (an error page, a
# truncated download: no end-of-central-directory record) is a download/integrity
# problem, exit 4; a readable zip with a bad entry (CRC mismatch) is invalid layer
# content, exit 5.
CORRUPT = {
    "not-a-zip.zip": (4, "not a valid zip"),
    "truncated.zip": (4, "not a valid zip"),
    "bad-crc.zip": (5, "CRC"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_local_zip(run_extpack, tmp_path, layer_zips, good_template, name):
    code, says = CORRUPT[name]
    project = tmp_path / "proj"
    project.mkdir()
    before = copy_good_stage(good_template, project)

    line = assert_fails(run_extpack("fetch", layer_zips / "demo-extension.zip", layer_zips / name, cwd=project),
                        code, names=name)

    assert says in line
    assert tree_snapshot(project) == before
    assert_clean_after_failure(project, tmp_path / "cache")


@pytest.mark.nonroot  # also run as nobody by tests/test_nonroot.py
def test_corrupt_zip_from_an_arn_names_the_arn(fake_lambda, run_extpack, tmp_path):
    # The API vouches for these bytes (CodeSha256 matches), so the download succeeds and
    # the blob may be cached; the content is what is wrong.
    layer = fake_lambda.add_layer("broken", make_layers.build("truncated.zip"))

    line = assert_fails(run_extpack("fetch", layer.arn), 4, names=layer.arn)

    assert "not a valid zip" in line
    assert_clean_after_failure(tmp_path, tmp_path / "cache", blobs_allowed={layer.sha256_hex})
    assert not (tmp_path / ".extpack").exists()


def test_a_cache_that_cannot_be_written_is_a_usage_error(fake_lambda, run_extpack, tmp_path, aws_env):
    fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    line = assert_fails(run_extpack("fetch", GOOD, env={**aws_env, "EXTPACK_CACHE_DIR": str(not_a_folder)}), 2)
    assert str(not_a_folder) in line and "--no-cache" in line
    assert not (tmp_path / ".extpack").exists()
