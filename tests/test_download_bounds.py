"""Downloads are bounded in bytes and in time (issue 13, class 7).

The byte cap is min(CodeSize, the zip bound --max-layer-size implies); a CodeSize over the
bound is refused before a byte is fetched; the whole download has a deadline of the read
timeout plus its size at EXTPACK_MIN_RATE, so a server trickling bytes cannot hold a fetch;
a redirect to a URL that does not parse is a failed attempt, never an internal error.
"""

from __future__ import annotations

import make_layers
from conftest import tree_snapshot
from failure_checks import assert_clean_after_failure, assert_fails, assert_no_leak

FAST_RETRIES = {"EXTPACK_RETRY_BACKOFF": "0.01"}


def test_a_code_size_over_the_bound_is_refused_before_any_byte_is_fetched(fake_lambda, run_extpack, tmp_path):
    # 10 MB layers are zips of at most ~12 MiB: a CodeSize of 50 MiB cannot be one.
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"), code_size=50 * 2**20)

    result = run_extpack("fetch", layer.arn, "--max-layer-size", "10MB")

    line = assert_fails(result, 5, names=layer.arn)
    assert "52428800 bytes" in line and "--max-layer-size" in line
    assert fake_lambda.download_calls == []
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()


def test_a_server_trickling_bytes_fails_at_the_deadline(fake_lambda, run_extpack, aws_env, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    # A byte every 0.2 s never trips the 1 s read timeout; the deadline (1 s of grace, then
    # 1 MB/s for 7 KB) does. The server keeps trickling for half an hour otherwise.
    fake_lambda.inject("trickle", layer.arn, stall_seconds=0.2)
    env = {**aws_env, **FAST_RETRIES, "EXTPACK_HTTP_TIMEOUT": "1", "EXTPACK_MIN_RATE": "1000000"}
    before = tree_snapshot(tmp_path)

    result = run_extpack("fetch", layer.arn, env=env, timeout=60)

    line = assert_fails(result, 4, names=layer.arn)
    assert "too slow" in line and "EXTPACK_MIN_RATE" in line and "127.0.0.1" in line
    assert len(fake_lambda.download_calls) == 1, "a download past its deadline is not tried again"
    assert_no_leak(fake_lambda, result.stderr)
    assert_clean_after_failure(tmp_path, tmp_path / "cache")
    assert {k: v for k, v in tree_snapshot(tmp_path).items() if not k.startswith("cache")} == \
        {k: v for k, v in before.items() if not k.startswith("cache")}


def test_a_redirect_to_a_malformed_url_is_a_failed_attempt(fake_lambda, run_extpack, aws_env, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fake_lambda.inject("redirect", layer.arn, times=5, location="http://[::1/evil\x1b[31m")

    result = run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES})

    line = assert_fails(result, 4, names=layer.arn)
    assert "redirected to a malformed URL" in line and "\x1b" not in line
    assert len(fake_lambda.download_calls) == 5
    assert_clean_after_failure(tmp_path, tmp_path / "cache")


def test_a_malformed_redirect_then_a_good_answer_succeeds(fake_lambda, run_extpack, aws_env, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fake_lambda.inject("redirect", layer.arn, location="http://[zz]/")

    run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES}, check=True)

    assert (tmp_path / ".extpack" / "opt" / "extensions" / "demo-extension").is_file()
