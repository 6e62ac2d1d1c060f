"""A layer zip is unpacked while its byte ranges arrive (issue 15).

Through the real CLI against the loopback Lambda API: entries whose bytes have arrived are
written into the layer's private tree while another range is still held by the server, and
the stage that results is the one the same zip gives from a local file; a range that arrives
corrupted is never trusted (the whole-zip sha256 fails, the download starts over and the
layer is unpacked from the verified zip); a hostile zip is refused with the same line as
from a file. In-process, for arrival orders no server produces on demand: whatever order
and however cut the bytes arrive in, the tree is the one unpack_layer makes of the whole zip.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import wait as wait_for
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import assert_fails
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extpack.priority_pool import PriorityPool
from extpack.stream_unpack import WORTH_STREAMING, StreamingUnpack
from extpack.unpack import unpack_layer

MiB = 1 << 20
WAIT = 30.0  # seconds a test waits for a condition before it fails


def layered_zip(payload: bytes) -> bytes:
    """Entries of every kind before and after a blob that spans several byte ranges."""
    builder = make_layers.ZipBuilder().dir("early", 0o750)
    builder.file("early/notes.txt", "early notes\n" * 500).file("early/tool", b"#!/bin/sh\necho hi\n", 0o755)
    builder.symlink("early/latest", "notes.txt").file("early/empty", b"")
    builder.file("big/blob.bin", payload, stored=True)
    builder.dir("late").file("late/marker.txt", "written from the last range\n" * 200)
    builder.file("late/data.json", '{"k": 1}\n' * 3000).symlink("late/link", "../early/tool")
    return builder.getvalue()


@pytest.fixture(scope="module")
def payload() -> bytes:
    # Large enough to be unpacked while it arrives (WORTH_STREAMING), in many ranges.
    return os.urandom(WORTH_STREAMING + MiB)


def extpack_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "extpack", *args]


def paths_named(root: Path, relative: str) -> list[Path]:
    return [p for p in root.rglob(Path(relative).name) if p.as_posix().endswith(relative)]


def test_entries_are_written_while_a_range_is_still_downloading(fake_lambda, aws_env, run_extpack, payload,
                                                                tmp_path):
    zip_bytes = layered_zip(payload)
    layer = fake_lambda.add_layer("streamed", zip_bytes)
    held = fake_lambda.inject("hold", layer=layer.arn)  # the first request: the range at byte 0
    stage = tmp_path / ".extpack" / "opt"

    with subprocess.Popen(extpack_argv("fetch", layer.arn), cwd=tmp_path, env=aws_env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as fetch:
        try:
            deadline = time.monotonic() + WAIT
            # The last range (the central directory and the late entries) arrives while the
            # first is held: the late entries are written into the private tree meanwhile.
            while not paths_named(tmp_path, "late/marker.txt") and time.monotonic() < deadline \
                    and fetch.poll() is None:
                held.released.wait(0.02)
            written_early = paths_named(tmp_path, "late/marker.txt")
            assert not stage.exists(), "the stage was made before the download was verified"
        finally:
            held.release()
        out, err = fetch.communicate(timeout=WAIT)
    assert fetch.returncode == 0, err
    assert written_early, "no entry was written before the whole zip had arrived"
    assert all(stage not in p.parents for p in written_early)

    (tmp_path / "from-file").mkdir()
    zip_path = tmp_path / "from-file" / "layer.zip"
    zip_path.write_bytes(zip_bytes)
    run_extpack("fetch", str(zip_path), "--stage-dir", "from-file/stage", "--lock", "from-file/extpack.lock",
                check=True)
    assert tree_snapshot(stage) == tree_snapshot(tmp_path / "from-file" / "stage" / "opt")


def test_a_corrupted_range_is_never_trusted(fake_lambda, aws_env, run_extpack, payload, tmp_path):
    zip_bytes = layered_zip(payload)
    layer = fake_lambda.add_layer("streamed", zip_bytes)
    held = fake_lambda.inject("hold", layer=layer.arn)  # the range at byte 0 ...
    fake_lambda.inject("corrupt", layer=layer.arn)  # ... and the last range, one byte flipped
    held.release()  # the hold only makes the corrupt fault fall on the second request

    run_extpack("fetch", layer.arn, env={**aws_env, "EXTPACK_RETRY_BACKOFF": "0.01"}, check=True)

    assert not fake_lambda.pending_faults, "the corrupted range was never asked for"
    stage = tmp_path / ".extpack" / "opt"
    assert (stage / "big" / "blob.bin").read_bytes() == payload
    assert (stage / "late" / "marker.txt").read_text() == "written from the last range\n" * 200
    ranged = [c for c in fake_lambda.download_calls if c.status == 206]
    assert len(ranged) > len({c.headers["Range"] for c in ranged}), "the corrupted download was not started over"


def test_a_hostile_zip_is_refused_as_from_a_file(fake_lambda, aws_env, run_extpack, payload, tmp_path):
    hostile = make_layers.ZipBuilder().file("big/blob.bin", payload, stored=True) \
        .file("late/ok.txt", "fine").file("../escaped.txt", "outside").getvalue()
    layer = fake_lambda.add_layer("hostile", hostile)
    zip_path = tmp_path / "hostile.zip"
    zip_path.write_bytes(hostile)

    streamed = assert_fails(run_extpack("fetch", layer.arn), 5, names=layer.arn)
    from_file = assert_fails(run_extpack("fetch", str(zip_path)), 5, names=str(zip_path))

    assert streamed.replace(layer.arn, "LAYER") == from_file.replace(str(zip_path), "LAYER")
    assert not paths_named(tmp_path, "escaped.txt")
    assert not (tmp_path / ".extpack").exists()


# In-process: any arrival order.

entries = st.lists(
    st.tuples(st.sampled_from(["file", "stored", "exec", "symlink", "dir"]), st.integers(0, 200_000)),
    min_size=1, max_size=12)


def build_zip(spec: list[tuple[str, int]], seed: int) -> bytes:
    builder = make_layers.ZipBuilder()
    rng = random.Random(seed)
    for n, (kind, size) in enumerate(spec):
        name = f"d{n % 3}/e{n}"
        data = rng.randbytes(size // 2) + b"x" * (size - size // 2)  # half noise, half compressible
        if kind == "dir":
            builder.dir(name, 0o700 + n % 8 * 0o10)
        elif kind == "symlink":
            builder.symlink(name, f"../d0/e{rng.randrange(len(spec))}")
        else:
            builder.file(name, data, 0o755 if kind == "exec" else 0o640, stored=kind == "stored")
    return builder.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=entries, seed=st.integers(0, 2**32), cuts=st.lists(st.floats(0, 1), max_size=12),
       order=st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_tree_of_the_whole_zip(tmp_path_factory, spec, seed, cuts, order):
    zip_bytes = build_zip(spec, seed)
    work = tmp_path_factory.mktemp("stream")
    whole = work / "whole.zip"
    whole.write_bytes(zip_bytes)
    expected = unpack_layer(whole, work / "expected", name="layer")

    arriving = work / "arriving.zip"
    bounds = sorted({0, len(zip_bytes), *(int(c * len(zip_bytes)) for c in cuts)})
    pieces = list(zip(bounds, bounds[1:]))
    order.shuffle(pieces)
    pool = PriorityPool(2, name="test-inflate")
    fd = os.open(arriving, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        unpacking = StreamingUnpack(arriving, len(zip_bytes), work / "streamed", name="layer", max_size=1 << 30,
                                    pool=pool, priority=0, cancelled=threading.Event())
        for start, end in pieces:
            os.pwrite(fd, zip_bytes[start:end], start)
            unpacking.arrived(start, end)
        tree = unpacking.finish()
    finally:
        os.close(fd)
        pool.shutdown()

    assert tree is not None, "the unpack gave up on a valid zip"
    assert tree.nodes == expected.nodes
    assert list(tree.nodes) == list(expected.nodes)
    assert (tree.files, tree.unzipped_size, tree.declared_size) == \
        (expected.files, expected.unzipped_size, expected.declared_size)
    assert tree_snapshot(work / "streamed") == tree_snapshot(work / "expected")


def test_the_pool_runs_earlier_layers_first_and_a_cancelled_queue_is_done():
    pool = PriorityPool(1, name="test-pool")
    gate = threading.Event()
    ran: list[int] = []
    try:
        blocker = pool.submit(0, gate.wait, WAIT)
        queued = [pool.submit(priority, ran.append, priority) for priority in (3, 1, 2, 1)]
        gate.set()
        assert not wait_for([blocker, *queued], timeout=WAIT).not_done
        assert ran == [1, 1, 2, 3]

        gate.clear()
        blocker = pool.submit(0, gate.wait, WAIT)
        queued = [pool.submit(5, ran.append, 5) for _ in range(3)]
        pool.shutdown(wait=False, cancel_futures=True)
        # A fetch that failed waits for its layers' entries: cancelled ones must count as done.
        assert not wait_for(queued, timeout=WAIT).not_done
        assert all(f.cancelled() for f in queued)
    finally:
        gate.set()
        pool.shutdown()
