"""One retry policy for Lambda API calls and downloads (issue 15), through the real CLI.

The same number of attempts for both (5, or AWS_MAX_ATTEMPTS), and a failure is told by
its exception's type, never by the text of its message (which carries the URL).
"""

from __future__ import annotations

import socket

import make_layers
from failure_checks import assert_clean_after_failure, assert_fails

FAST = {"EXTPACK_RETRY_BACKOFF": "0.01"}


def test_downloads_take_as_many_attempts_as_aws_max_attempts_says(fake_lambda, run_extpack, aws_env, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fake_lambda.inject("500", layer.arn, times=2)

    result = run_extpack("fetch", layer.arn, env={**aws_env, **FAST, "AWS_MAX_ATTEMPTS": "2"})

    line = assert_fails(result, 4, names=layer.arn)
    assert "after 2 attempts" in line
    assert len(fake_lambda.download_calls) == 2
    assert_clean_after_failure(tmp_path, tmp_path / "cache")


def test_the_lambda_api_gets_as_many_attempts_as_a_download(fake_lambda, run_extpack, tmp_path):
    layer = fake_lambda.add_layer("demo", make_layers.build("demo-extension.zip"))
    fake_lambda.inject("500", layer.arn, target="api", times=4)

    run_extpack("fetch", layer.arn, check=True)

    assert len(fake_lambda.calls("GetLayerVersionByArn")) == 5
    assert (tmp_path / ".extpack" / "opt" / "extensions" / "demo-extension").is_file()


def test_a_refused_connection_is_told_by_its_type_not_by_the_words_in_its_url(run_extpack, aws_env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The exception's text carries the URL: words in it must not decide what went wrong.
    url = f"http://127.0.0.1:{port}/ReadTimeout/Name-or-service-not-known/layer.zip"

    result = run_extpack("fetch", url, env={**aws_env, **FAST, "AWS_MAX_ATTEMPTS": "2"})

    line = assert_fails(result, 4)
    assert "connection to 127.0.0.1 refused" in line and "timed out" not in line
