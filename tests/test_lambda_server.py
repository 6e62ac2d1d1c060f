"""The fake Lambda speaks the API the way the real boto3 expects, and its faults and
fixture zips behave as documented.  If these fail, every extpack test built on them
is meaningless, so they check the fake against botocore itself, not against itself."""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import make_layers
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from lambda_server import FakeLambda, LayerVersion

REGION = "us-east-1"
# Careful: in a Config, retries "max_attempts" counts *retries*; "total_max_attempts"
# (like the AWS_MAX_ATTEMPTS variable) counts the first try too.
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


def client(
    server: FakeLambda, region: str = REGION, config: Config | None = None
) -> Any:
    return boto3.client(
        "lambda",
        region_name=region,
        endpoint_url=server.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.fixture
def demo(fake_lambda: FakeLambda) -> LayerVersion:
    return fake_lambda.add_layer(
        "demo-extension", make_layers.build("demo-extension.zip")
    )


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# --------------------------------------------------------------------------- API round trips


def test_get_layer_version_by_arn_round_trip(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    resp = client(fake_lambda).get_layer_version_by_arn(Arn=demo.arn)

    assert (
        resp["LayerVersionArn"]
        == demo.arn
        == "arn:aws:lambda:us-east-1:123456789012:layer:demo-extension:1"
    )
    assert resp["LayerArn"] == demo.layer_arn
    assert resp["Version"] == 1
    assert resp["CompatibleArchitectures"] == ["x86_64"]
    assert "CompatibleRuntimes" not in resp  # omitted when the publisher gave none
    assert resp["CreatedDate"] == "2024-01-01T12:00:00.000+0000"
    content = resp["Content"]
    assert content["CodeSize"] == demo.size
    assert base64.b64decode(content["CodeSha256"]) == hashlib.sha256(demo.data).digest()
    assert content["Location"].startswith(f"{fake_lambda.endpoint}/layer-blobs/")
    assert fake_lambda.secret_marker in content["Location"]
    assert fake_lambda.issued_urls == [content["Location"]]

    body = requests.get(content["Location"], timeout=10)
    assert body.status_code == 200
    assert (
        base64.b64encode(hashlib.sha256(body.content).digest()).decode()
        == content["CodeSha256"]
    )


def test_each_call_mints_a_fresh_url_and_all_stay_valid(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    lam = client(fake_lambda)
    urls = [
        lam.get_layer_version_by_arn(Arn=demo.arn)["Content"]["Location"]
        for _ in range(3)
    ]
    assert len(set(urls)) == 3
    assert fake_lambda.issued_urls == urls
    for url in urls:
        assert requests.get(url, timeout=10).content == demo.data


def test_request_log_records_operation_region_and_key(fake_lambda: FakeLambda) -> None:
    lv = fake_lambda.add_layer("eu-layer", b"zip", region="eu-west-1")
    client(fake_lambda, region="eu-west-1").get_layer_version_by_arn(Arn=lv.arn)
    (rec,) = fake_lambda.api_calls
    assert rec.operation == "GetLayerVersionByArn"
    assert rec.region == "eu-west-1"
    assert rec.access_key == "testing"
    assert rec.status == 200
    assert rec.layer == lv.arn
    # What botocore actually sends: the ARN fully percent-encoded, colons included.
    assert rec.path == "/2018-10-31/layers?find=LayerVersion&Arn=" + lv.arn.replace(
        ":", "%3A"
    )
    assert fake_lambda.download_calls == []


def test_endpoint_from_environment(
    fake_lambda: FakeLambda,
    demo: LayerVersion,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The standard chain extpack relies on: AWS_ENDPOINT_URL_LAMBDA, no endpoint_url.
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "empty").touch()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", fake_lambda.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "envkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    lam = boto3.session.Session().client("lambda", region_name="us-east-1")
    assert lam.get_layer_version_by_arn(Arn=demo.arn)["Version"] == 1
    assert fake_lambda.api_calls[-1].access_key == "envkey"


def test_get_layer_version_by_name_and_by_layer_arn(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    fake_lambda.add_layer("demo-extension", b"v2 bytes")
    lam = client(fake_lambda)
    by_arn = lam.get_layer_version(LayerName=demo.layer_arn, VersionNumber=1)
    by_name = lam.get_layer_version(LayerName="demo-extension", VersionNumber=2)
    assert by_arn["LayerVersionArn"] == demo.arn
    assert by_name["Version"] == 2
    assert by_name["Content"]["CodeSize"] == len(b"v2 bytes")
    assert [r.operation for r in fake_lambda.api_calls] == [
        "GetLayerVersion",
        "GetLayerVersion",
    ]
    # The layer ARN travels url-encoded inside the path segment.
    assert fake_lambda.api_calls[0].path.startswith(
        "/2018-10-31/layers/arn%3Aaws%3Alambda%3A"
    )


def test_list_layer_versions_newest_first_with_filters(fake_lambda: FakeLambda) -> None:
    for arch, runtimes in [
        (("x86_64",), ("python3.12",)),
        (("arm64",), ("python3.12",)),
        (("x86_64", "arm64"), ("nodejs20.x",)),
        ((), ()),
    ]:
        fake_lambda.add_layer("multi", b"x", architectures=arch, runtimes=runtimes)
    lam = client(fake_lambda)
    layer_arn = "arn:aws:lambda:us-east-1:123456789012:layer:multi"

    versions = lam.list_layer_versions(LayerName=layer_arn)["LayerVersions"]
    assert [v["Version"] for v in versions] == [4, 3, 2, 1]
    assert "CompatibleArchitectures" not in versions[0]
    assert "Content" not in versions[0]  # listings carry no download link
    arm = lam.list_layer_versions(LayerName=layer_arn, CompatibleArchitecture="arm64")[
        "LayerVersions"
    ]
    assert [v["Version"] for v in arm] == [3, 2]
    py = lam.list_layer_versions(LayerName="multi", CompatibleRuntime="python3.12")[
        "LayerVersions"
    ]
    assert [v["Version"] for v in py] == [2, 1]
    assert fake_lambda.issued_urls == []


def test_list_layer_versions_pagination_with_boto3_paginator(
    fake_lambda: FakeLambda,
) -> None:
    for _ in range(7):
        fake_lambda.add_layer("paged", b"x")
    lam = client(fake_lambda)
    pages = list(
        lam.get_paginator("list_layer_versions").paginate(
            LayerName="arn:aws:lambda:us-east-1:123456789012:layer:paged",
            PaginationConfig={"PageSize": 3},
        )
    )
    assert [[v["Version"] for v in p["LayerVersions"]] for p in pages] == [
        [7, 6, 5],
        [4, 3, 2],
        [1],
    ]
    assert "NextMarker" in pages[0] and "NextMarker" not in pages[-1]
    calls = fake_lambda.calls("ListLayerVersions")
    assert len(calls) == 3
    assert "MaxItems=3" in calls[0].path and "Marker=" not in calls[0].path
    assert "Marker=" in calls[1].path


def test_list_unknown_layer_is_empty_not_404(fake_lambda: FakeLambda) -> None:
    resp = client(fake_lambda).list_layer_versions(LayerName="no-such-layer")
    assert resp["LayerVersions"] == []


# --------------------------------------------------------------------------- API errors


def test_not_found_in_own_account(fake_lambda: FakeLambda, demo: LayerVersion) -> None:
    with pytest.raises(ClientError) as exc:
        client(fake_lambda).get_layer_version_by_arn(Arn=demo.layer_arn + ":99")
    assert error_code(exc) == "ResourceNotFoundException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert (
        exc.value.response["Error"]["Message"]
        == "The resource you requested does not exist."
    )
    assert exc.value.response["ResponseMetadata"]["RequestId"]


def test_missing_layer_of_another_account_is_access_denied(
    fake_lambda: FakeLambda,
) -> None:
    with pytest.raises(ClientError) as exc:
        client(fake_lambda).get_layer_version_by_arn(
            Arn="arn:aws:lambda:us-east-1:999999999999:layer:x:1"
        )
    assert error_code(exc) == "AccessDeniedException"


def test_deny(fake_lambda: FakeLambda, demo: LayerVersion) -> None:
    fake_lambda.deny(demo.arn)
    lam = client(fake_lambda)
    with pytest.raises(ClientError) as exc:
        lam.get_layer_version_by_arn(Arn=demo.arn)
    assert error_code(exc) == "AccessDeniedException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert (
        "is not authorized to perform: lambda:GetLayerVersion"
        in exc.value.response["Error"]["Message"]
    )
    fake_lambda.allow(demo.arn)
    assert lam.get_layer_version_by_arn(Arn=demo.arn)["Version"] == 1


def test_wrong_region_is_access_denied(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    with pytest.raises(ClientError) as exc:
        client(fake_lambda, region="eu-west-1").get_layer_version_by_arn(Arn=demo.arn)
    assert error_code(exc) == "AccessDeniedException"
    assert fake_lambda.api_calls[-1].region == "eu-west-1"


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:lambda:us-east-1:123456789012:layer:demo-extension",  # no version
        "arn:aws:lambda:us-east-1:1234:layer:demo-extension:1",  # short account
        "not-an-arn",
    ],
)
def test_malformed_arn_is_validation_error(fake_lambda: FakeLambda, arn: str) -> None:
    # botocore checks no patterns client-side: the server is what rejects these.
    with pytest.raises(ClientError) as exc:
        client(fake_lambda).get_layer_version_by_arn(Arn=arn)
    assert error_code(exc) == "ValidationException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        ("429-throttle", "TooManyRequestsException", 429),
        ("500", "ServiceException", 500),
        ("503", "ServiceException", 503),
    ],
)
def test_api_status_faults(
    fake_lambda: FakeLambda, demo: LayerVersion, fault: str, code: str, status: int
) -> None:
    fake_lambda.inject(fault, target="api")
    with pytest.raises(ClientError) as exc:
        client(fake_lambda, config=NO_RETRY).get_layer_version_by_arn(Arn=demo.arn)
    assert error_code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert fake_lambda.api_calls[-1].fault == fault
    assert fake_lambda.pending_faults == []


def test_throttle_is_retried_by_botocore_defaults(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    fake_lambda.inject("429-throttle", layer=demo.arn)
    resp = client(fake_lambda).get_layer_version_by_arn(Arn=demo.arn)
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    assert [c.status for c in fake_lambda.api_calls] == [429, 200]


def test_api_html_is_silently_an_empty_response(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    # Surprise worth knowing: botocore's rest-json parser swallows an unparseable 200
    # body and returns a response with no members at all, so a caller must treat a
    # missing Content/Location as an error rather than index into it.
    fake_lambda.inject("html", target="api")
    resp = client(fake_lambda, config=NO_RETRY).get_layer_version_by_arn(Arn=demo.arn)
    assert set(resp) == {"ResponseMetadata"}
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_api_stall_hits_botocore_read_timeout(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    fake_lambda.inject("stall", target="api")
    cfg = Config(
        read_timeout=0.5,
        connect_timeout=1,
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    start = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client(fake_lambda, config=cfg).get_layer_version_by_arn(Arn=demo.arn)
    assert time.monotonic() - start < 5


def test_api_drop_mid_body_is_retried(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    fake_lambda.inject("drop-mid-body", target="api")
    resp = client(fake_lambda).get_layer_version_by_arn(Arn=demo.arn)
    assert resp["Version"] == 1
    assert [c.fault for c in fake_lambda.api_calls] == ["drop-mid-body", None]


def test_fault_targets_only_the_named_layer(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    other = fake_lambda.add_layer("other", b"other")
    fake_lambda.inject("500", layer="demo-extension", target="api", times=2)
    lam = client(fake_lambda, config=NO_RETRY)
    assert lam.get_layer_version_by_arn(Arn=other.arn)["Version"] == 1
    for _ in range(2):
        with pytest.raises(ClientError):
            lam.get_layer_version_by_arn(Arn=demo.arn)
    assert lam.get_layer_version_by_arn(Arn=demo.arn)["Version"] == 1


def test_inject_rejects_nonsense() -> None:
    server = FakeLambda()
    with pytest.raises(ValueError):
        server.inject("403-expired", target="api")
    with pytest.raises(ValueError):
        server.inject("no-such-fault")


# --------------------------------------------------------------------------- downloads


def location(server: FakeLambda, lv: LayerVersion) -> str:
    return str(
        client(server).get_layer_version_by_arn(Arn=lv.arn)["Content"]["Location"]
    )


def test_download_streamed_and_head(fake_lambda: FakeLambda) -> None:
    lv = fake_lambda.add_layer(
        "big", make_layers.big_zip(2 * 1024 * 1024, files=1) + bytes(300_000)
    )
    url = location(fake_lambda, lv)
    with requests.get(url, stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == lv.size
        data = b"".join(r.iter_content(65536))
    assert hashlib.sha256(data).hexdigest() == lv.sha256_hex

    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == lv.size
    assert [c.method for c in fake_lambda.download_calls] == ["GET", "HEAD"]
    assert all(
        c.operation == "Download" and c.layer == lv.arn
        for c in fake_lambda.download_calls
    )


def test_head_refused_like_s3_when_asked(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    fake_lambda.allow_head = False
    assert requests.head(location(fake_lambda, demo), timeout=10).status_code == 403


def test_range_request(fake_lambda: FakeLambda, demo: LayerVersion) -> None:
    r = requests.get(
        location(fake_lambda, demo), headers={"Range": "bytes=100-"}, timeout=10
    )
    assert r.status_code == 206
    assert r.content == demo.data[100:]
    assert r.headers["Content-Range"] == f"bytes 100-{demo.size - 1}/{demo.size}"


def test_url_without_signature_is_refused(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    r = requests.get(url.split("?")[0], timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    assert (
        requests.get(
            url.replace("/layer-blobs/", "/layer-blobs/x"), timeout=10
        ).status_code
        == 404
    )


def test_advertised_checksum_override(fake_lambda: FakeLambda) -> None:
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    lv = fake_lambda.add_layer("liar", b"real bytes", code_sha256=wrong, code_size=999)
    content = client(fake_lambda).get_layer_version_by_arn(Arn=lv.arn)["Content"]
    assert content["CodeSha256"] == wrong and content["CodeSize"] == 999
    assert requests.get(content["Location"], timeout=10).content == b"real bytes"


def test_drop_mid_body_raises_in_requests(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("drop-mid-body", layer=demo.arn)
    with pytest.raises(
        (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    ):
        with requests.get(url, stream=True, timeout=10) as r:
            for _ in r.iter_content(1024):
                pass
    assert (
        requests.get(url, timeout=10).content == demo.data
    )  # consumed: next one is clean


def test_truncate_raises_in_requests(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=10)


def test_truncate_silent_only_a_size_check_catches(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("truncate-silent")
    r = requests.get(url, timeout=10)
    assert r.status_code == 200
    assert 0 < len(r.content) < demo.size


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [("500", 500, b"InternalError"), ("503", 503, b"SlowDown")],
)
def test_download_server_errors(
    fake_lambda: FakeLambda, demo: LayerVersion, fault: str, status: int, needle: bytes
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject(fault, target="download")
    r = requests.get(url, timeout=10)
    assert r.status_code == status and needle in r.content
    assert requests.get(url, timeout=10).status_code == 200


def test_403_expired_then_a_fresh_url_works(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("403-expired")
    r = requests.get(url, timeout=10)
    assert r.status_code == 403
    assert (
        b"<Code>AccessDenied</Code>" in r.content
        and b"Request has expired" in r.content
    )
    assert fake_lambda.secret_marker not in r.text
    assert requests.get(location(fake_lambda, demo), timeout=10).content == demo.data


def test_expire_urls_and_ttl(fake_lambda: FakeLambda, demo: LayerVersion) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.expire_urls()
    assert requests.get(url, timeout=10).status_code == 403
    fake_lambda.url_ttl = 0.2
    short = location(fake_lambda, demo)
    assert "X-Amz-Expires=0" in short
    time.sleep(0.3)
    assert requests.get(short, timeout=10).status_code == 403
    fake_lambda.url_ttl = 600
    assert requests.get(location(fake_lambda, demo), timeout=10).status_code == 200


def test_html_instead_of_zip(fake_lambda: FakeLambda, demo: LayerVersion) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("html")
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.content.lstrip().startswith(b"<!DOCTYPE html>")


def test_oversize_serves_far_more_than_codesize(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("oversize")
    with requests.get(url, stream=True, timeout=10) as r:
        assert int(r.headers["Content-Length"]) > demo.size + 8 * 1024 * 1024 - 1
        got = 0
        for chunk in r.iter_content(65536):
            got += len(chunk)
            if got > demo.size:
                break  # what extpack must do: stop at CodeSize + 1, hang up
    assert got > demo.size
    # The server shrugs off the hang-up (no entry in fake_lambda.errors, checked by the
    # fixture) and keeps serving.
    assert requests.get(url, timeout=10).content == demo.data


def test_corrupt_has_right_size_wrong_hash(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("corrupt")
    data = requests.get(url, timeout=10).content
    assert (
        len(data) == demo.size and hashlib.sha256(data).hexdigest() != demo.sha256_hex
    )


def test_stall_times_out_the_client(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("stall")
    start = time.monotonic()
    with pytest.raises(
        (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)
    ):
        with requests.get(url, stream=True, timeout=(2, 0.5)) as r:
            r.content  # noqa: B018 - the read is the point
    assert time.monotonic() - start < 5


def test_stall_for_a_while_then_close(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("stall", stall_seconds=0.3)
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=10)
    assert 0.25 < time.monotonic() - start < 5


def test_head_does_not_consume_body_faults(
    fake_lambda: FakeLambda, demo: LayerVersion
) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("corrupt")
    assert requests.head(url, timeout=10).status_code == 200
    assert len(fake_lambda.pending_faults) == 1
    assert (
        hashlib.sha256(requests.get(url, timeout=10).content).hexdigest()
        != demo.sha256_hex
    )


def test_fault_times_and_order(fake_lambda: FakeLambda, demo: LayerVersion) -> None:
    url = location(fake_lambda, demo)
    fake_lambda.inject("503", times=2)
    fake_lambda.inject("500")
    statuses = [requests.get(url, timeout=10).status_code for _ in range(4)]
    assert statuses == [503, 503, 500, 200]
    assert [c.fault for c in fake_lambda.download_calls] == ["503", "503", "500", None]


def test_stop_is_fast_with_stalled_and_idle_connections() -> None:
    server = FakeLambda().start()
    lv = server.add_layer("s", b"data")
    url = location(server, lv)
    server.inject("stall", times=3)
    errors: list[BaseException] = []

    def stalled_get() -> None:
        try:
            requests.get(url, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=stalled_get) for _ in range(3)]
    for t in threads:
        t.start()
    idle = socket.create_connection(
        ("127.0.0.1", server.port)
    )  # keep-alive, never sends
    deadline = time.monotonic() + 5
    while len(server.download_calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 2
    for t in threads:
        t.join(5)
    idle.close()
    assert len(errors) == 3  # every stalled client got an error, none hung
    assert not server.errors


# --------------------------------------------------------------------------- secrets


def test_leak_detection(
    fake_lambda: FakeLambda, demo: LayerVersion, tmp_path: Path
) -> None:
    url = location(fake_lambda, demo)
    assert fake_lambda.find_leaks(f"downloading {url}")
    assert fake_lambda.find_leaks(url.upper().encode())
    assert not fake_lambda.find_leaks(f"downloading {demo.arn}")
    (tmp_path / "ok.json").write_text(demo.arn)
    fake_lambda.assert_no_leaks("clean text", b"clean bytes", tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "log.txt").write_text(f"GET {url.split('?')[0]}")
    with pytest.raises(AssertionError, match="log.txt"):
        fake_lambda.assert_no_leaks(tmp_path)
    for part in ("X-Amz-Signature=", "X-Amz-Security-Token=SECRET", "/layer-blobs/"):
        segment = url.split(part, 1)[1][:40]
        assert fake_lambda.secret_marker in segment


# --------------------------------------------------------------------------- fixture zips


def test_every_fixture_is_byte_identical_across_builds() -> None:
    first = {name: make_layers.build(name) for name in make_layers.LAYERS}
    second = {name: make_layers.build(name) for name in make_layers.LAYERS}
    assert first == second
    assert make_layers.big_zip(1000) == make_layers.big_zip(1000)


def test_script_writes_the_same_bytes(tmp_path: Path) -> None:
    script = Path(make_layers.__file__)
    subprocess.run(
        [sys.executable, str(script), str(tmp_path)], check=True, capture_output=True
    )
    for name in make_layers.LAYERS:
        assert (tmp_path / name).read_bytes() == make_layers.build(name), name


def _entries(data: bytes) -> list[tuple[str, int, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [
            (i.orig_filename, i.external_attr >> 16, zf.read(i)) for i in zf.infolist()
        ]


def test_committed_demo_zip_is_current() -> None:
    # Entry-level comparison: deflate output may differ between zlib builds.
    committed = (Path(make_layers.__file__).parent / "demo-extension.zip").read_bytes()
    assert _entries(committed) == _entries(make_layers.build("demo-extension.zip"))


def test_demo_extension_layout() -> None:
    entries = {
        name: (mode, data)
        for name, mode, data in _entries(make_layers.build("demo-extension.zip"))
    }
    mode, script = entries["extensions/demo-extension"]
    assert (
        stat.S_ISREG(mode)
        and stat.S_IMODE(mode) == 0o755
        and script.startswith(b"#!/bin/sh\n")
    )
    mode, target = entries["demo-extension/lib/libdemo.so.1"]
    assert stat.S_ISLNK(mode) and target == b"libdemo.so.1.0"
    mode, lib = entries["demo-extension/lib/libdemo.so.1.0"]
    assert stat.S_IMODE(mode) == 0o644 and len(lib) > 4096
    assert (
        stat.S_ISDIR(entries["extensions/"][0])
        and stat.S_IMODE(entries["extensions/"][0]) == 0o755
    )
    with zipfile.ZipFile(io.BytesIO(make_layers.build("demo-extension.zip"))) as zf:
        assert all(
            i.create_system == 3 and i.date_time == (1980, 1, 1, 0, 0, 0)
            for i in zf.infolist()
        )


@pytest.mark.parametrize(
    ("name", "machine"), [("elf-x86_64.zip", 62), ("elf-arm64.zip", 183)]
)
def test_elf_probe(name: str, machine: int) -> None:
    ((path, mode, data),) = [
        e for e in _entries(make_layers.build(name)) if not e[0].endswith("/")
    ]
    assert path == "extensions/probe" and stat.S_IMODE(mode) == 0o755
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    assert int.from_bytes(data[18:20], "little") == machine


def names(fixture: str) -> list[str]:
    return [e[0] for e in _entries(make_layers.build(fixture))]


def modes(fixture: str) -> dict[str, int]:
    return {e[0]: e[1] for e in _entries(make_layers.build(fixture))}


def test_hostile_fixtures_are_what_they_claim() -> None:
    for name in make_layers.REFUSED | {"evil-duplicate.zip", "evil-setuid.zip"}:
        if name.startswith("evil-"):
            assert names(name)[0] == "ok.txt", name  # benign entry first
    assert "../escape.txt" in names("evil-dotdot.zip")
    assert "a/../../escape.txt" in names("evil-nested-dotdot.zip")
    assert "/tmp/escape.txt" in names("evil-absolute.zip")
    assert {"..\\escape.txt", "a\\..\\..\\x"} <= set(names("evil-backslash.zip"))
    assert names("evil-symlink-escape.zip")[1:] == ["link", "link/escape.txt"]
    assert stat.S_ISLNK(modes("evil-symlink-through.zip")["data"])
    assert stat.S_ISCHR(modes("evil-device.zip")["dev/evil-tty"])
    assert stat.S_ISFIFO(modes("evil-fifo.zip")["evil-fifo"])
    assert make_layers.NUL_NAME in make_layers.build("evil-nul.zip")
    assert "bad\x00name.txt" in names("evil-nul.zip")  # orig_filename keeps the NUL
    assert names("evil-duplicate.zip").count("dup.txt") == 2
    assert modes("evil-setuid.zip")["bin/suid-tool"] & stat.S_ISUID
    assert modes("evil-setuid.zip")["bin/sgid-tool"] & stat.S_ISGID


def test_override_pair() -> None:
    a = {n: (m, d) for n, m, d in _entries(make_layers.build("override-a.zip"))}
    b = {n: (m, d) for n, m, d in _entries(make_layers.build("override-b.zip"))}
    assert a["shared/config.txt"][1] != b["shared/config.txt"][1]
    assert a["shared/tool.sh"][1] == b["shared/tool.sh"][1]
    assert (
        stat.S_IMODE(a["shared/tool.sh"][0]) == 0o644
        and stat.S_IMODE(b["shared/tool.sh"][0]) == 0o755
    )
    assert "a-only.txt" in a and "b-only.txt" in b


def test_broken_archives() -> None:
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(make_layers.build("not-a-zip.zip")))
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(make_layers.build("truncated.zip")))
    with zipfile.ZipFile(io.BytesIO(make_layers.build("bad-crc.zip"))) as zf:
        with pytest.raises(zipfile.BadZipFile, match="CRC"):
            zf.read("data.txt")


def test_big_layer_is_small_on_disk() -> None:
    data = make_layers.build("big-layer.zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sum(i.file_size for i in zf.infolist()) == make_layers.BIG_LAYER_BYTES
    assert len(data) < 64 * 1024


def test_layer_zips_fixture(layer_zips: Path) -> None:
    assert sorted(p.name for p in layer_zips.iterdir()) == sorted(make_layers.LAYERS)


# --------------------------------------------------------------------------- functions (GetFunction)


@pytest.fixture
def function(fake_lambda: FakeLambda, demo: LayerVersion):
    code = make_layers.ZipBuilder().file("app.py", b"def handler(e, c):\n    return 1\n", 0o644).getvalue()
    fn = fake_lambda.add_function("orders", code, runtime="python3.12", handler="app.handler", layers=[demo],
                                  architectures=["arm64"], environment={"TABLE": "orders-table"})
    return fn


def test_get_function_round_trip_and_code_at_location(fake_lambda: FakeLambda, function, demo) -> None:
    answer = client(fake_lambda).get_function(FunctionName="orders")
    config = answer["Configuration"]
    assert (config["FunctionName"], config["Version"], config["PackageType"]) == ("orders", "$LATEST", "Zip")
    assert (config["Runtime"], config["Handler"], config["Architectures"]) == ("python3.12", "app.handler", ["arm64"])
    assert config["Layers"] == [{"Arn": demo.arn, "CodeSize": demo.size}]
    assert config["Environment"]["Variables"] == {"TABLE": "orders-table"}
    assert config["CodeSha256"] == function.sha256_b64 and config["CodeSize"] == function.size
    assert answer["Code"]["RepositoryType"] == "S3"
    body = requests.get(answer["Code"]["Location"], timeout=10).content
    assert base64.b64encode(hashlib.sha256(body).digest()).decode() == config["CodeSha256"]
    assert fake_lambda.calls("GetFunction")[0].region == REGION


def test_get_function_versions_aliases_and_arns(fake_lambda: FakeLambda, function) -> None:
    first = fake_lambda.publish_version(function)
    function.handler = "app.other"  # $LATEST moves on; version 1 keeps what was published
    fake_lambda.add_alias(function, "live", first.version)
    lam = client(fake_lambda)
    by_alias = lam.get_function(FunctionName=function.function_arn, Qualifier="live")["Configuration"]
    assert (by_alias["Version"], by_alias["Handler"]) == ("1", "app.handler")
    assert by_alias["FunctionArn"] == f"{function.function_arn}:live"
    assert lam.get_function(FunctionName="orders:1")["Configuration"]["Version"] == "1"
    assert lam.get_function(FunctionName="orders")["Configuration"]["Handler"] == "app.other"
    plain = lam.get_function_configuration(FunctionName="orders", Qualifier="1")
    assert plain["Version"] == "1" and "Code" not in plain


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"FunctionName": "missing"}, "ResourceNotFoundException"),
    ({"FunctionName": "orders", "Qualifier": "7"}, "ResourceNotFoundException"),
    ({"FunctionName": "orders:1", "Qualifier": "2"}, "InvalidParameterValueException"),
    ({"FunctionName": "arn:aws:lambda:us-east-1:999999999999:function:x"}, "AccessDeniedException"),
    ({"FunctionName": "arn:aws:lambda:eu-west-1:123456789012:function:orders"}, "AccessDeniedException"),
    ({"FunctionName": "bad name!"}, "ValidationException"),
])
def test_get_function_errors(fake_lambda: FakeLambda, function, kwargs, code) -> None:
    fake_lambda.publish_version(function)
    with pytest.raises(ClientError) as exc:
        client(fake_lambda, config=NO_RETRY).get_function(**kwargs)
    assert error_code(exc) == code


def test_get_function_denied_and_image_functions(fake_lambda: FakeLambda, function) -> None:
    image = fake_lambda.add_function("already", package_type="Image",
                                     image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1")
    answer = client(fake_lambda).get_function(FunctionName="already")
    assert answer["Configuration"]["PackageType"] == "Image" and "Runtime" not in answer["Configuration"]
    assert answer["Code"]["ImageUri"] == image.image_uri and "Location" not in answer["Code"]
    fake_lambda.deny("orders")
    with pytest.raises(ClientError) as exc:
        client(fake_lambda).get_function(FunctionName="orders")
    assert error_code(exc) == "AccessDeniedException"


def test_get_function_lies_reach_nested_members(fake_lambda: FakeLambda, function) -> None:
    from lambda_server import OMIT

    function.answer = {"Configuration.Environment.Variables": {"BAD NAME": "x"}, "Code.Location": OMIT}
    answer = client(fake_lambda).get_function(FunctionName="orders")
    assert answer["Configuration"]["Environment"]["Variables"] == {"BAD NAME": "x"}
    assert "Location" not in answer["Code"]
