"""Unsafe layer content (exit 5): refused through the real CLI, with nothing written
outside the stage and the previous stage and lock left byte-identical.

Each test first stages a good layer (so there is something to lose), then fetches the
good layer followed by the hostile one: the refusal happens after layer 1 was unpacked
into the build directory, the case most likely to leave something half-made behind.

The project lives three levels below ``tmp_path`` (``tmp_path/w1/w2/proj``), deeper than
any fixture's escape reaches, and the whole of ``tmp_path`` is snapshotted: an entry that
escaped the stage by ``..`` or through a symlink shows up as a difference.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import make_layers
import pytest
from conftest import tree_snapshot
from failure_checks import (
    assert_clean_after_failure,
    assert_fails,
    assert_no_leak,
    copy_good_stage,
    good_template_fixture,  # noqa: F401 - registers the good_template fixture
    zip_bytes,
)

EVIL = sorted(n for n in make_layers.LAYERS if n.startswith("evil-") and n != "evil-setuid.zip")
# What each refusal must say (besides naming the layer).
SAYS = {
    "evil-absolute.zip": "absolute",
    "evil-backslash.zip": "backslash",
    "evil-device.zip": "device",
    "evil-dotdot.zip": "..",
    "evil-duplicate.zip": "more than once",
    "evil-fifo.zip": "FIFO",
    "evil-nested-dotdot.zip": "..",
    "evil-nul.zip": "NUL",
    "evil-symlink-escape.zip": "symlink",
    "evil-symlink-through.zip": "symlink",
}
# Absolute paths the fixtures aim at, outside any tmp_path.
ABSOLUTE_TARGETS = [
    Path("/tmp/escape.txt"),
    Path(make_layers.SYMLINK_THROUGH_TARGET) / make_layers.SYMLINK_THROUGH_NAME,
    Path("/tmp/extpack-evil-chain.txt"),
    Path("/tmp/extpack-evil-second-layer.txt"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "w1" / "w2" / "proj"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def outside_world():
    """The absolute escape targets: asserts afterwards that none appeared or changed."""
    before = {p: _state(p) for p in ABSOLUTE_TARGETS}
    yield
    after = {p: _state(p) for p in ABSOLUTE_TARGETS}
    assert after == before, "a hostile layer wrote outside the stage"


def _state(path: Path):
    if not os.path.lexists(path):
        return None
    st = path.lstat()
    content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else b""
    return st.st_mode, st.st_ino, st.st_mtime_ns, content


@pytest.fixture
def previous(project, good_template) -> dict:
    """A good stage and lock already in ``project``; their snapshot."""
    return copy_good_stage(good_template, project)


def _refused(run_extpack, tmp_path, project, layer_zips, source, *, code=5, names=None, extra=()):
    """With a good stage in place, fetch good + ``source``; assert the refusal left
    everything under tmp_path exactly as it was, and return the error line."""
    assert (project / "extpack.lock").is_file(), "use the `previous` fixture"
    before = tree_snapshot(tmp_path)
    result = run_extpack("fetch", layer_zips / "demo-extension.zip", source, *extra, cwd=project)
    line = assert_fails(result, code, names=names or str(source))
    assert tree_snapshot(tmp_path) == before
    assert_clean_after_failure(project, tmp_path / "cache")
    return line


# --------------------------------------------------------------------------- fixture zips


@pytest.mark.parametrize("name", EVIL)
def test_every_evil_fixture_is_refused_as_a_local_zip(
    run_extpack, tmp_path, project, previous, layer_zips, outside_world, name
):
    line = _refused(run_extpack, tmp_path, project, layer_zips, layer_zips / name)
    assert SAYS[name] in line, f"the error does not say what is wrong ({SAYS[name]!r}): {line}"


@pytest.mark.parametrize("name", ["evil-dotdot.zip", "evil-symlink-through.zip", "evil-device.zip"])
def test_evil_layer_from_an_arn_is_refused(
    fake_lambda, run_extpack, tmp_path, project, previous, layer_zips, outside_world, name
):
    layer = fake_lambda.add_layer("evil", make_layers.build(name))

    result = run_extpack("fetch", layer_zips / "demo-extension.zip", layer.arn, cwd=project)

    assert_fails(result, 5, names=layer.arn)
    assert tree_snapshot(project) == previous
    # The blob matched CodeSha256, so it may stay cached (it is what the API vouched for);
    # nothing else may.
    assert_clean_after_failure(project, tmp_path / "cache", blobs_allowed={layer.sha256_hex})
    assert_no_leak(fake_lambda, result.stdout, result.stderr)


def test_setuid_and_setgid_bits_are_dropped_not_refused(run_extpack, layer_zips, tmp_path):
    run_extpack("fetch", layer_zips / "evil-setuid.zip", check=True)

    opt = tmp_path / ".extpack" / "opt"
    for tool in ("suid-tool", "sgid-tool"):
        assert stat.S_IMODE((opt / "bin" / tool).stat().st_mode) == 0o755
    assert (opt / "ok.txt").read_text() == "benign content\n"


# --------------------------------------------------------------------------- crafted zips


def _raw_zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    """(name, data, unix mode incl. type) entries, written with zipfile directly."""
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are the point
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=make_layers.FIXED_DATE)
            info.create_system = 3
            info.external_attr = (mode & 0xFFFF) << 16
            archive.writestr(info, data)
    return buf.getvalue()


def _patch_method(raw: bytes, method: int) -> bytes:
    data = bytearray(raw)
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, local + 8, method)
    struct.pack_into("<H", data, central + 10, method)
    return bytes(data)


def _encrypted() -> bytes:
    data = bytearray(_raw_zip([("secret.txt", b"x" * 64, stat.S_IFREG | 0o644)]))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        flags = struct.unpack_from("<H", data, at + off)[0]
        struct.pack_into("<H", data, at + off, flags | 0x1)
    return bytes(data)


REG = stat.S_IFREG | 0o644
SYMLINK = stat.S_IFLNK | 0o777
# kind -> (zip builder, what the one-line error must say)
CRAFTED = {
    "dot-slash-dotdot": (lambda: _raw_zip([("ok.txt", b"ok", REG), ("./../escape.txt", b"x", REG)]), ".."),
    "deep-dotdot": (lambda: _raw_zip([("a/b/../../../../escape.txt", b"x", REG)]), ".."),
    "drive-letter": (lambda: _raw_zip([("ok.txt", b"ok", REG), ("C:/escape.txt", b"x", REG)]), "absolute"),
    "control-char": (lambda: _raw_zip([("ok.txt", b"ok", REG), ("bad\x1bname", b"x", REG)]), "control"),
    "name-too-long": (lambda: _raw_zip([("ok.txt", b"ok", REG), ("n" * 300, b"x", REG)]), "longer"),
    "block-device": (lambda: _raw_zip([("ok.txt", b"ok", REG), ("dev/sda", b"", stat.S_IFBLK | 0o600)]),
                     "block device"),
    "socket": (lambda: _raw_zip([("ok.txt", b"ok", REG), ("run/sock", b"", stat.S_IFSOCK | 0o600)]), "socket"),
    "file-then-dir-same-name": (lambda: _raw_zip([("x", b"file", REG), ("x/y", b"under", REG)]), "'x'"),
    "dir-then-symlink-same-name": (lambda: _raw_zip([("d/f", b"f", REG), ("d", b"/tmp", SYMLINK)]), "'d'"),
    "symlink-chain-escape": (lambda: _raw_zip([
        ("a", b"b", SYMLINK), ("b", b"/tmp", SYMLINK), ("a/extpack-evil-chain.txt", b"x", REG),
    ]), "symlink"),
    "duplicate-symlink": (lambda: _raw_zip([("l", b"target-1", SYMLINK), ("l", b"target-2", SYMLINK)]),
                          "more than once"),
    "unsupported-method": (lambda: _patch_method(_raw_zip([("ok.txt", b"ok" * 32, REG)]), 97), "compression"),
    "encrypted": (_encrypted, "encrypted"),
}


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_crafted_hostile_zip_is_refused(
    run_extpack, tmp_path, project, previous, layer_zips, outside_world, kind
):
    path = tmp_path / f"{kind}.zip"
    build, says = CRAFTED[kind]
    path.write_bytes(build())
    line = _refused(run_extpack, tmp_path, project, layer_zips, path)
    assert says in line, line


def test_zip_whose_directory_lies_about_sizes_is_refused_on_real_bytes(
    run_extpack, tmp_path, project, previous, layer_zips
):
    # 2 MiB of zeros declared as 1000 bytes in both headers: the declared total passes
    # --max-layer-size 1MB, the real bytes do not.  Refused either way, nothing written.
    raw = bytearray(make_layers.big_zip(2 * 1024 * 1024, files=1))
    local_name = raw.find(b"big/zeros-0.bin")
    central_name = raw.find(b"big/zeros-0.bin", local_name + 1)
    for sig, off, name_at in ((b"PK\x03\x04", 22, local_name), (b"PK\x01\x02", 24, central_name)):
        struct.pack_into("<I", raw, raw.rfind(sig, 0, name_at) + off, 1000)  # uncompressed size
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as check:
        assert sum(i.file_size for i in check.infolist()) < 1024 * 1024

    _refused(run_extpack, tmp_path, project, layer_zips, path, extra=("--max-layer-size", "1MB"))


# --------------------------------------------------------------------------- size limit


def test_layer_over_max_layer_size_is_refused(run_extpack, tmp_path, project, previous, layer_zips):
    line = _refused(run_extpack, tmp_path, project, layer_zips, layer_zips / "big-layer.zip",
                    extra=("--max-layer-size", "1MB"))
    # The message names the limit applied, not Lambda's 250 MB.
    assert "more than the max-layer-size limit of 1048576 bytes" in line and "Lambda" not in line, line


def test_the_size_limit_is_per_layer_not_for_the_whole_stage(run_extpack, tmp_path):
    # Two layers of 3 MiB each under a 4 MiB limit: each fits, together they do not.
    (tmp_path / "one.zip").write_bytes(make_layers.big_zip(3 * 1024 * 1024))
    (tmp_path / "two.zip").write_bytes(
        zip_bytes(lambda z: z.dir("other").file("other/zeros.bin", bytes(3 * 1024 * 1024))))

    run_extpack("fetch", "one.zip", "two.zip", "--max-layer-size", "4MB", check=True)

    assert (tmp_path / ".extpack/opt/other/zeros.bin").stat().st_size == 3 * 1024 * 1024


# --------------------------------------------------------------------------- extensions


def test_extension_that_is_not_executable_is_refused(run_extpack, tmp_path, project, previous, layer_zips):
    line = _refused(run_extpack, tmp_path, project, layer_zips, layer_zips / "ext-not-executable.zip")
    assert "/opt/extensions/lazy" in line and "executable" in line


def test_arm64_extension_is_refused_for_x86_64(run_extpack, tmp_path, project, previous, layer_zips):
    line = _refused(run_extpack, tmp_path, project, layer_zips, layer_zips / "elf-arm64.zip")
    assert "/opt/extensions/probe" in line and "arm64" in line


def test_the_same_arm64_layer_passes_with_arch_arm64(run_extpack, tmp_path, layer_zips):
    run_extpack("fetch", layer_zips / "elf-arm64.zip", "--arch", "arm64", check=True)

    probe = tmp_path / ".extpack/opt/extensions/probe"
    assert probe.read_bytes()[:4] == b"\x7fELF" and probe.stat().st_mode & 0o111


def test_x86_64_extension_is_refused_for_arm64(run_extpack, layer_zips):
    assert_fails(run_extpack("fetch", layer_zips / "elf-x86_64.zip", "--arch", "arm64"), 5,
                 names="elf-x86_64.zip")


def test_layer_for_another_architecture_is_refused_before_download(
    fake_lambda, run_extpack, tmp_path, project, previous, layer_zips
):
    layer = fake_lambda.add_layer("arm-only", make_layers.build("elf-arm64.zip"), architectures=("arm64",))

    result = run_extpack("fetch", layer.arn, cwd=project)

    line = assert_fails(result, 5, names=layer.arn)
    assert "arm64" in line
    assert fake_lambda.download_calls == []
    assert len(fake_lambda.calls("GetLayerVersionByArn")) == 1
    assert tree_snapshot(project) == previous
    assert_clean_after_failure(project, tmp_path / "cache")


# --------------------------------------------------------------------------- across layers


def _file_layer():
    return zip_bytes(lambda z: z.file("conf", "a file\n"))


def _dir_layer():
    return zip_bytes(lambda z: z.dir("conf").file("conf/x", "under a directory\n"))


@pytest.mark.parametrize(("first", "second"), [(_file_layer, _dir_layer), (_dir_layer, _file_layer)],
                         ids=["file-then-dir", "dir-then-file"])
def test_file_and_directory_of_the_same_name_across_layers(
    run_extpack, tmp_path, project, previous, layer_zips, first, second
):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    a.write_bytes(first())
    b.write_bytes(second())
    before = tree_snapshot(tmp_path)

    line = assert_fails(run_extpack("fetch", a, b, cwd=project), 5, names=str(b))

    assert "conf" in line
    assert tree_snapshot(tmp_path) == before
    assert_clean_after_failure(project, tmp_path / "cache")


@pytest.mark.parametrize("target", ["/tmp", "../../../..", "real"])
def test_later_layer_cannot_write_through_an_earlier_layers_symlink(
    run_extpack, tmp_path, project, previous, layer_zips, outside_world, target
):
    # The link alone is legitimate (layers link to /usr/lib and the like); writing through
    # it from the next layer is not, wherever it points.
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    a.write_bytes(zip_bytes(lambda z: z.dir("real").symlink("data", target)))
    b.write_bytes(zip_bytes(lambda z: z.file("data/extpack-evil-second-layer.txt", "through\n")))
    run_extpack("fetch", a, "--stage-dir", "alone", "--lock", "alone.lock", cwd=project, check=True)  # a by itself is fine
    assert os.readlink(project / "alone/opt/data") == target
    before = tree_snapshot(tmp_path)

    line = assert_fails(run_extpack("fetch", a, b, cwd=project), 5, names=str(b))

    assert "symlink" in line
    assert tree_snapshot(tmp_path) == before
    assert_clean_after_failure(project, tmp_path / "cache")


@pytest.mark.parametrize("case", ["symlink-then-write", "file-then-dir", "dir-then-file"])
def test_clashes_across_layers_from_arns_are_refused_after_both_are_unpacked(
    fake_lambda, run_extpack, tmp_path, project, previous, outside_world, case
):
    # Through ARNs each layer is unpacked on its own (in parallel, into the cache's trees),
    # so the clash is found when the trees are laid over each other: nothing may be placed.
    first, second = {
        "symlink-then-write": (lambda: zip_bytes(lambda z: z.symlink("data", "/tmp")),
                               lambda: zip_bytes(lambda z: z.file("data/extpack-evil-second-layer.txt", "x\n"))),
        "file-then-dir": (_file_layer, _dir_layer),
        "dir-then-file": (_dir_layer, _file_layer),
    }[case]
    a = fake_lambda.add_layer("first", first())
    b = fake_lambda.add_layer("second", second())
    before = tree_snapshot(project)

    line = assert_fails(run_extpack("fetch", a.arn, b.arn, cwd=project), 5, names=b.arn)

    assert ("symlink" if case == "symlink-then-write" else "conf") in line
    assert tree_snapshot(project) == before == previous
    assert_clean_after_failure(project, tmp_path / "cache", blobs_allowed={a.sha256_hex, b.sha256_hex})


def test_a_refused_layer_stops_the_others_and_leaves_no_temporary_tree(
    fake_lambda, run_extpack, tmp_path, project, previous, layer_zips
):
    # Layers 1 and 3 are large enough to still be unpacking when layer 2 is refused.
    import random

    def big(seed: int) -> bytes:
        rng = random.Random(seed)
        builder = make_layers.ZipBuilder()
        for part in range(40):
            builder.file(f"big{seed}/part-{part}.bin", rng.randbytes(256 * 1024))
        return builder.getvalue()

    layers = [fake_lambda.add_layer("big1", big(1)),
              fake_lambda.add_layer("evil", make_layers.build("evil-dotdot.zip")),
              fake_lambda.add_layer("big3", big(3))]

    result = run_extpack("fetch", *(layer.arn for layer in layers), "--jobs", "3", cwd=project)

    assert_fails(result, 5, names=layers[1].arn)
    assert tree_snapshot(project) == previous
    assert_clean_after_failure(project, tmp_path / "cache", blobs_allowed={layer.sha256_hex for layer in layers})
    trees = tmp_path / "cache" / "trees" / "v1"
    stored = {p.name for p in trees.iterdir()} if trees.is_dir() else set()
    assert layers[1].sha256_hex not in stored  # a refused layer leaves no tree behind


def _overlapping_zip() -> bytes:
    """Two central-directory entries whose data are the same bytes of the zip (the
    'overlapping files' bomb: N entries, one compressed payload, N times the output)."""
    raw = bytearray(zip_bytes(lambda z: z.file("a.bin", b"\0" * 100_000).file("b.bin", b"\0" * 100_000)))
    first = raw.find(b"PK\x01\x02")
    second = raw.find(b"PK\x01\x02", first + 4)
    offset_of_first = struct.unpack_from("<L", raw, first + 42)[0]
    struct.pack_into("<L", raw, second + 42, offset_of_first)  # b.bin's "local header" is a.bin's
    return bytes(raw)


def test_overlapping_entries_are_refused_as_a_zip_bomb(run_extpack, tmp_path, project, previous, layer_zips):
    bomb = tmp_path / "overlap.zip"
    bomb.write_bytes(_overlapping_zip())

    line = _refused(run_extpack, tmp_path, project, layer_zips, bomb)

    assert "overlap" in line


@pytest.mark.parametrize("names", [
    pytest.param(["Conf/a", "conf/a", "CONF/A"], id="case-collision"),
    pytest.param(["\uff0e\uff0e/escape-fullwidth", "\u2025/escape-leader", "a\u2215b"], id="unicode-look-alikes"),
])
def test_names_that_only_look_alike_stay_distinct_and_inside(run_extpack, tmp_path, project, previous, names):
    # Linux filesystems compare bytes: neither case nor look-alike dots fold into another
    # name or into "..", so every entry is its own file inside the stage, as unzip makes it.
    layer = tmp_path / "alike.zip"
    builder = make_layers.ZipBuilder()
    for n, name in enumerate(names):
        builder.file(name, f"entry {n}\n")
    layer.write_bytes(builder.getvalue())
    outside_before = tree_snapshot(tmp_path / "w1" / "w2")

    run_extpack("fetch", layer, cwd=project, check=True)

    opt = project / ".extpack" / "opt"
    for n, name in enumerate(names):
        assert (opt / name).read_text() == f"entry {n}\n"
    outside_after = {p: e for p, e in tree_snapshot(tmp_path / "w1" / "w2").items()
                     if not p.startswith("proj/")}
    assert outside_after == {p: e for p, e in outside_before.items() if not p.startswith("proj/")}
