"""A large layer zip arrives as concurrent byte ranges (issue 15), through the real CLI.

The loopback server here is FakeLambda with blob answers that misbehave the ways servers
and proxies do with ranges: honouring them (and holding the first range open until a second
one is asked for, so a client that fetches one range at a time is caught), ignoring them
(200 with the whole zip), answering with other bytes than asked (a wrong Content-Range),
and an object replaced mid-download (If-Match answered 412). A range cut off mid-body, or
refused because its URL expired, resumes where it stopped instead of starting over.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import assert_clean_after_failure, assert_fails, cache_blobs
from lambda_server import FakeLambda, _Response

BLOB = 20 * 1024 * 1024  # over two ranges' worth: fetched as ranges
FAST_RETRIES = {"EXTPACK_RETRY_BACKOFF": "0.01"}


class RangeLambda(FakeLambda):
    def __init__(self) -> None:
        super().__init__()
        self.mode = "honour"  # "ignore", "wrong-range", "replace", "expire"
        self.replacement: bytes | None = None
        self._ranges = threading.Condition()
        self.ranges_asked = 0
        self.first_range_overlapped = False

    def _blob_response(self, h, data):
        if "Range" in h.headers:
            with self._ranges:
                self.ranges_asked += 1
                self._ranges.notify_all()
        response = super()._blob_response(h, data)
        if self.mode == "ignore" and response.status == 206:
            headers = [(k, v) for k, v in response.headers if k != "Content-Range"]
            return _Response(200, headers, data)
        if self.mode == "wrong-range" and response.status == 206:
            # A proxy that serves every range from the start, and says so.
            size = len(data)
            length = len(response.body)
            response.body = data[:length]
            response.headers = [(k, f"bytes 0-{length - 1}/{size}" if k == "Content-Range" else v)
                                for k, v in response.headers]
        if self.mode == "expire" and response.status == 206:
            self.expire_urls()  # every URL handed out so far: this answer is the last one served
            self.mode = "expired"
        if self.mode == "replace" and response.status == 206 and self.replacement is not None:
            layer = next(lv for lv in self.layers if lv.data is data)
            layer.data, self.replacement = self.replacement, None  # after this answer, another object
        return response

    def _send(self, h, response, fault):
        first = response.status == 206 and dict(response.headers)["Content-Range"].startswith("bytes 0-")
        if self.mode != "honour" or not first or fault is not None:
            return super()._send(h, response, fault)
        h.send_response(206)
        for name, value in response.headers:
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(response.body)))
        h.end_headers()
        h.wfile.flush()
        # The first range's body waits until another range is asked for: concurrent ranges.
        with self._ranges:
            self.first_range_overlapped = self._ranges.wait_for(lambda: self.ranges_asked >= 2, timeout=10)
        h.wfile.write(response.body)


@pytest.fixture
def fake_lambda_class():
    return RangeLambda


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(BLOB)


def big_layer(payload: bytes) -> bytes:
    return make_layers.ZipBuilder().dir("big").file("big/blob.bin", payload, stored=True).getvalue()


def staged_sha(tmp_path) -> str:
    return hashlib.sha256((tmp_path / ".extpack" / "opt" / "big" / "blob.bin").read_bytes()).hexdigest()


def ranges_of(calls) -> list[tuple[int, int]]:
    out = []
    for call in calls:
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", call.headers.get("Range", ""))
        assert found, f"a download without a byte range: {call.headers}"
        out.append((int(found[1]), int(found[2])))
    return sorted(out)


def test_a_large_zip_arrives_as_concurrent_ranges_that_cover_it_once(fake_lambda, run_extpack, payload, tmp_path):
    zip_bytes = big_layer(payload)
    layer = fake_lambda.add_layer("big", zip_bytes)

    run_extpack("fetch", layer.arn, check=True)

    assert staged_sha(tmp_path) == hashlib.sha256(payload).hexdigest()
    calls = fake_lambda.download_calls
    assert len(calls) >= 2 and all(c.status == 206 for c in calls)
    ranges = ranges_of(calls)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(zip_bytes) - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges)), f"gaps or overlaps: {ranges}"
    etag = '"' + hashlib.md5(zip_bytes).hexdigest() + '"'  # S3's ETag
    later = [c for c in calls if not c.headers["Range"].startswith("bytes=0-")]
    assert later and all(c.headers.get("If-Match") == etag for c in later)
    assert fake_lambda.first_range_overlapped, "the ranges were fetched one after another"
    assert cache_blobs(tmp_path / "cache") == [layer.sha256_hex]


def test_a_server_that_ignores_range_serves_the_zip_on_one_stream(fake_lambda, run_extpack, payload, tmp_path):
    fake_lambda.mode = "ignore"
    layer = fake_lambda.add_layer("big", big_layer(payload))

    run_extpack("fetch", layer.arn, check=True)

    assert staged_sha(tmp_path) == hashlib.sha256(payload).hexdigest()
    calls = fake_lambda.download_calls
    assert len(calls) == 1, "the probe's whole answer is the download: nothing is fetched twice"
    assert calls[0].headers.get("Range", "").startswith("bytes=0-") and calls[0].status == 200


def test_a_wrong_content_range_falls_back_to_one_stream(fake_lambda, run_extpack, aws_env, payload, tmp_path):
    fake_lambda.mode = "wrong-range"
    layer = fake_lambda.add_layer("big", big_layer(payload))

    run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES}, check=True)

    assert staged_sha(tmp_path) == hashlib.sha256(payload).hexdigest()
    calls = fake_lambda.download_calls
    assert any("Range" in c.headers and not c.headers["Range"].startswith("bytes=0-") for c in calls)
    # (ranges already in flight when the fallback starts may reach the server after it)
    plain = [c for c in calls if "Range" not in c.headers]
    assert len(plain) == 1 and plain[0].status == 200, "the fallback is not one plain stream"


def test_an_object_replaced_mid_download_is_never_stitched(fake_lambda, run_extpack, aws_env, payload, tmp_path):
    fake_lambda.mode = "replace"
    layer = fake_lambda.add_layer("big", big_layer(payload))
    layer.advertised_sha256 = layer.sha256_b64  # what the API said before the object changed
    fake_lambda.replacement = big_layer(bytes(reversed(payload)))
    before = tree_snapshot(tmp_path)

    result = run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES})

    line = assert_fails(result, 4, names=layer.arn)
    assert "checksum mismatch" in line
    assert any(c.status == 412 for c in fake_lambda.download_calls), "the later ranges were not asked If-Match"
    assert_clean_after_failure(tmp_path, tmp_path / "cache")
    assert {k: v for k, v in tree_snapshot(tmp_path).items() if not k.startswith("cache")} == \
        {k: v for k, v in before.items() if not k.startswith("cache")}


def served_bytes(calls) -> int:
    """Bytes the server was asked for in the ranges it answered."""
    return sum(end + 1 - start for start, end in ranges_of([c for c in calls if c.status == 206]))


def test_a_range_cut_off_mid_body_resumes_where_it_stopped(fake_lambda, run_extpack, aws_env, payload, tmp_path):
    zip_bytes = big_layer(payload)
    layer = fake_lambda.add_layer("big", zip_bytes)
    # The first range: its Content-Length, two thirds of its body, then the connection closes.
    fake_lambda.inject("truncate", layer.arn)

    run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES}, check=True)

    assert staged_sha(tmp_path) == hashlib.sha256(payload).hexdigest()
    calls = fake_lambda.download_calls
    first_end = ranges_of(calls[:1])[0][1]
    resumed = [c for c in calls[1:] if c.headers["Range"].endswith(f"-{first_end}")]
    assert resumed and not resumed[0].headers["Range"].startswith("bytes=0-"), "the cut range started over"
    assert resumed[0].headers.get("If-Match") == '"' + hashlib.md5(zip_bytes).hexdigest() + '"'
    assert served_bytes(calls) <= len(zip_bytes) + first_end + 1, "more than the cut range was fetched again"


def test_an_expired_url_gets_a_fresh_one_and_the_ranges_resume(fake_lambda, run_extpack, aws_env, payload, tmp_path):
    fake_lambda.mode = "expire"
    zip_bytes = big_layer(payload)
    layer = fake_lambda.add_layer("big", zip_bytes)

    run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES}, check=True)

    assert staged_sha(tmp_path) == hashlib.sha256(payload).hexdigest()
    assert len(fake_lambda.calls("GetLayerVersionByArn")) == 2, "one fresh URL from the API"
    calls = fake_lambda.download_calls
    assert any(c.status == 403 for c in calls)
    fresh = fake_lambda.issued_urls[-1]
    assert all(c.path == fresh[fresh.index("/layer-blobs/"):] for c in calls[calls.index(
        next(c for c in calls if c.status == 403)):] if c.status == 206)
    assert served_bytes(calls) == len(zip_bytes), "a range was fetched twice: the download started over"


def test_a_small_zip_cut_off_resumes_too(fake_lambda, run_extpack, aws_env, payload, tmp_path):
    zip_bytes = big_layer(payload[: 4 * 1024 * 1024])  # one range: too small to split
    layer = fake_lambda.add_layer("demo", zip_bytes)
    fake_lambda.inject("truncate", layer.arn)  # two thirds of the zip, then the connection closes

    run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES}, check=True)

    first, resumed = fake_lambda.download_calls
    assert first.headers["Range"] == f"bytes=0-{len(zip_bytes) - 1}"
    assert resumed.headers["Range"] != first.headers["Range"] and resumed.headers["Range"].endswith(
        f"-{len(zip_bytes) - 1}") and resumed.headers.get("If-Match")
    assert served_bytes([first, resumed]) < 2 * len(zip_bytes)
    assert cache_blobs(tmp_path / "cache") == [layer.sha256_hex]


def test_a_range_answer_offering_more_than_code_size_is_refused_at_once(fake_lambda, run_extpack, aws_env, payload,
                                                                       tmp_path):
    zip_bytes = big_layer(payload)
    layer = fake_lambda.add_layer("big", zip_bytes, code_size=len(zip_bytes) - 2 * 1024 * 1024)

    result = run_extpack("fetch", layer.arn, env={**aws_env, **FAST_RETRIES})

    line = assert_fails(result, 4, names=layer.arn)
    assert f"offers {len(zip_bytes)} bytes" in line
    assert len(fake_lambda.download_calls) == 1, "a server offering too much is not asked again"
    assert_clean_after_failure(tmp_path, tmp_path / "cache")
