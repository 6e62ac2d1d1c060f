"""The zip parser agrees with Info-ZIP `unzip` or refuses (issue 13, class 5).

Hostile zips are laid out byte by byte with make_layers.RawZip (zipfile will not write
them) and fetched through the real CLI: each is refused with exit 5 and one line naming the
layer. A differential property test fetches random benign and mutated zips and unpacks them
with `unzip`: extpack stages exactly what unzip extracts, or refuses.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import tree_snapshot
from failure_checks import assert_fails
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from make_layers import RawZip

from extpack.zipcheck import MAX_CENTRAL_DIRECTORY_BYTES, MAX_ENTRIES

REG = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755
PEAK_RSS_LIMIT_MB = 150


def _refused(run_extpack, tmp_path: Path, raw: bytes, *extra: str) -> str:
    layer = tmp_path / "hostile.zip"
    layer.write_bytes(raw)
    result = run_extpack("fetch", layer, "--no-cache", *extra)
    line = assert_fails(result, 5, names=str(layer))
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()
    return line


# --------------------------------------------------------------------------- memory


def _one_entry(name: str = "a.txt", data: bytes = b"hello\n") -> RawZip:
    raw = RawZip()
    raw.central(name, raw.local(name, data), data)
    return raw


def _peak_rss_mb(tmp_path: Path, command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command`` under a fresh Python whose only child it is: that parent's
    RUSAGE_CHILDREN peak is the command's own, whatever else this test session has run."""
    report = tmp_path / "peak-rss-kb"
    probe = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
             "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
             "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, str(report), *command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    return result, int(report.read_text()) / 1024  # Linux reports kilobytes


@pytest.mark.parametrize("layout", [
    # The end record (ZIP64) declares two million entries; the directory holds one.
    pytest.param(lambda: _one_entry().getvalue(declared_entries=2_000_000), id="declared"),
    # A million real central directory entries (all naming one local header), declared truly.
    pytest.param(lambda: _one_entry().repeat_central(1_000_000).getvalue(), id="held"),
    # The end record says one; the directory holds more than the limit (yet under its size
    # limit): the count is not taken on trust.
    pytest.param(lambda: _one_entry().repeat_central(MAX_ENTRIES + 10_000).getvalue(declared_entries=1),
                 id="understated"),
])
def test_too_many_entries_are_refused_before_the_directory_is_parsed(tmp_path, aws_env, layout):
    layer = tmp_path / "many.zip"
    layer.write_bytes(layout())
    command = [sys.executable, "-m", "extpack", "fetch", str(layer), "--no-cache"]

    result, peak_mb = _peak_rss_mb(tmp_path, command, aws_env)

    line = assert_fails(result, 5, names=str(layer))
    assert "entries" in line and str(MAX_ENTRIES) in line, line
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"extpack peaked at {peak_mb:.0f} MB refusing {layer.name}"


def test_a_zip_at_the_limits_is_staged_within_the_memory_bound(tmp_path, aws_env):
    # The largest zip extpack accepts: every entry it allows, with long paths up to the size
    # limit of the central directory. Its whole fetch stays within the bound too.
    layer = tmp_path / "at-limit.zip"
    per_entry = MAX_CENTRAL_DIRECTORY_BYTES // MAX_ENTRIES - 46 - 1  # central header: 46 bytes + name
    with zipfile.ZipFile(layer, "w") as archive:
        for i in range(MAX_ENTRIES):
            stem = f"nodejs/node_modules/pkg{i // 500:03d}/file-{i:06d}"
            info = zipfile.ZipInfo((stem + "-" * (per_entry - len(stem) - 3))[:per_entry - 3] + ".js")
            info.external_attr = 0o100644 << 16
            archive.writestr(info, b"x")
    command = [sys.executable, "-m", "extpack", "fetch", str(layer), "--no-cache"]

    result, peak_mb = _peak_rss_mb(tmp_path, command, aws_env)

    assert result.returncode == 0, result.stderr
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"extpack peaked at {peak_mb:.0f} MB staging {MAX_ENTRIES} entries"


def test_a_central_directory_over_its_size_limit_is_refused(run_extpack, tmp_path):
    # 1,200 entries with 60 KB names: under the entry limit, but a 72 MB
    # central directory that zipfile would read whole into memory.
    raw = RawZip()
    name = "n" * 60_000
    raw.central(name, raw.local(name, b""), b"").repeat_central(1_200)

    line = _refused(run_extpack, tmp_path, raw.getvalue())

    assert "central directory" in line and "MiB" in line, line


# --------------------------------------------------------------------------- local headers


def _extra_quoting_bomb() -> bytes:
    """Two entries that inflate the same bytes: a.bin's local header declares an extra field
    that swallows b.bin's local header, so a.bin's data starts where b.bin's does. The
    central directory's offsets leave room for each entry's name and data, so a check that
    ignores the local extra length passes it."""
    payload = b"\0" * 4096
    raw = RawZip()
    squeezed = len(RawZip._payload(payload, zipfile.ZIP_DEFLATED)[0])
    b_header = 30 + len("b.bin")
    a = raw.local("a.bin", payload, extra=b"\0" * squeezed, method=zipfile.ZIP_DEFLATED,
                  data_offset_extra=squeezed + b_header, omit_data=True)
    b = raw.local("b.bin", payload, method=zipfile.ZIP_DEFLATED)
    assert b == a + 30 + len("a.bin") + squeezed
    return raw.central("a.bin", a, payload, method=zipfile.ZIP_DEFLATED) \
        .central("b.bin", b, payload, method=zipfile.ZIP_DEFLATED).getvalue()


def test_entries_sharing_data_through_the_local_extra_field_are_refused(run_extpack, tmp_path):
    line = _refused(run_extpack, tmp_path, _extra_quoting_bomb())

    assert "overlap" in line and "'a.bin'" in line, line


def test_data_running_into_the_central_directory_is_refused(run_extpack, tmp_path):
    raw = RawZip()
    raw.central("a.txt", raw.local("a.txt", b"x" * 100, data_offset_extra=50), b"x" * 100)

    line = _refused(run_extpack, tmp_path, raw.getvalue())

    assert "overlap" in line and "central directory" in line, line


def test_a_local_header_naming_another_file_is_refused(run_extpack, tmp_path):
    # unzip extracts the central directory's name ("safe.txt", with a warning); a reader of
    # local headers would write "evil.txt".
    raw = RawZip()
    raw.central("safe.txt", raw.local("evil.txt", b"hello\n"), b"hello\n")

    line = _refused(run_extpack, tmp_path, raw.getvalue())

    assert "'safe.txt'" in line and "local header" in line, line


def test_a_local_header_with_another_method_is_refused(run_extpack, tmp_path):
    raw = RawZip()
    offset = raw.local("a.txt", b"hello\n")
    raw.central("a.txt", offset, b"hello\n")
    data = bytearray(raw.getvalue())
    data[offset + 8] = zipfile.ZIP_DEFLATED  # the local header's method; the directory says stored

    line = _refused(run_extpack, tmp_path, bytes(data))

    assert "method" in line, line


# --------------------------------------------------------------------------- directories


@pytest.mark.parametrize(("name", "mode", "data", "says"), [
    pytest.param("x/", REG, b"", "named as a directory", id="file-named-x-slash"),
    pytest.param("x/", REG, b"data", "named as a directory", id="file-with-data-named-x-slash"),
    pytest.param("x/", DIR, b"data", "named as a directory", id="directory-with-data"),
    pytest.param("x/", stat.S_IFLNK | 0o777, b"target", "named as a directory", id="symlink-named-x-slash"),
    pytest.param("x", DIR, b"", "trailing '/'", id="directory-without-slash"),
])
def test_entries_unzip_would_make_something_else_are_refused(run_extpack, tmp_path, name, mode, data, says):
    # unzip decides by the trailing slash alone: "x/" is always a directory (its data
    # dropped), "x" never is. extpack refuses what it would otherwise unpack differently.
    raw = _one_entry("ok.txt", b"ok\n")
    raw.central(name, raw.local(name, data), data, mode=mode)

    line = _refused(run_extpack, tmp_path, raw.getvalue())

    assert says in line and repr(name) in line, line


# --------------------------------------------------------------------------- differential

DIRECTORIES = ["d/", "d/e/", "f/"]
LEAVES = ["x", "d/y", "d/e/z", "f/w", "q"]
LINK_TARGETS = ["x", "d/y", "../q", "nowhere"]
MUTATIONS = ["none", "local-name", "dir-with-data", "file-with-slash", "dir-without-slash", "duplicate",
             "overlap", "count", "truncate", "flip-byte"]


@st.composite
def layer_entries(draw) -> list[tuple[str, int, bytes, int]]:
    """(name, mode, data, method) for a benign layer: distinct leaves, optional directory
    entries, in any order."""
    entries = []
    for leaf in draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=len(LEAVES), unique=True)):
        if draw(st.booleans()):
            data = draw(st.binary(max_size=300))
            mode = stat.S_IFREG | draw(st.sampled_from([0o644, 0o755, 0o600, 0o444]))
            entries.append((leaf, mode, data, draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))))
        else:
            entries.append((leaf, stat.S_IFLNK | 0o777, draw(st.sampled_from(LINK_TARGETS)).encode(),
                            zipfile.ZIP_STORED))
    for directory in draw(st.lists(st.sampled_from(DIRECTORIES), unique=True)):
        entries.append((directory, stat.S_IFDIR | draw(st.sampled_from([0o755, 0o750, 0o700])), b"",
                        zipfile.ZIP_STORED))
    return draw(st.permutations(entries))


def _build(entries, mutation: str, pick: int) -> bytes:
    raw = RawZip()
    chosen = entries[pick % len(entries)]
    offsets = []
    for name, mode, data, method in entries:
        if mutation == "dir-with-data" and (name, mode, data, method) == chosen:
            name, mode, data = name.rstrip("/") + "/", DIR, b"data"
        elif mutation == "file-with-slash" and (name, mode, data, method) == chosen:
            name, mode = name.rstrip("/") + "/", REG
        elif mutation == "dir-without-slash" and (name, mode, data, method) == chosen:
            name, mode, data = name.rstrip("/"), DIR, b""
        local_name = name
        if mutation == "local-name" and (name, mode, data, method) == chosen:
            local_name = name[:-1] + ("Q" if name[-1] != "Q" else "R")
        offsets.append(raw.local(local_name, data, method=method))
        raw.central(name, offsets[-1], data, mode=mode, method=method)
        if mutation == "duplicate" and (name, mode, data, method) == chosen:
            raw.central(name, raw.local(name, data + b"!", method=method), data + b"!", mode=mode, method=method)
        if mutation == "overlap" and len(offsets) == 2:  # a third entry that points at an earlier one's data
            raw.central("overlapping", offsets[0], entries[0][2], mode=REG, method=entries[0][3])
    out = raw.getvalue(declared_entries=len(entries) + 1 if mutation == "count" else None)
    if mutation == "truncate":
        out = out[: max(1, pick % len(out))]
    elif mutation == "flip-byte":
        flipped = bytearray(out)
        flipped[pick % len(out)] ^= 0x5A
        out = bytes(flipped)
    return out


def _late_directories(entries) -> set[str]:
    """Directories whose entry comes after an entry below them. unzip has made them by then
    and leaves them 0755 (it applies a directory entry's mode only to a directory it creates);
    extpack applies the entry's mode. A known difference, in the mode only."""
    late, seen = set(), []
    for name, *_ in entries:
        if name.endswith("/") and any(earlier.startswith(name) for earlier in seen):
            late.add(name.rstrip("/"))
        seen.append(name)
    return late


def _without_modes(snapshot: dict, paths: set[str]) -> dict:
    return {path: (kind, None if path in paths else mode, content)
            for path, (kind, mode, content) in snapshot.items()}


def _unzip(layer: Path, into: Path) -> int:
    into.mkdir()
    # umask 022: the directories unzip makes for parents are 0755, as extpack's are.
    return subprocess.run(["sh", "-c", 'umask 022; exec unzip -qq -o "$0" -d "$1"', str(layer), str(into)],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60).returncode


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=layer_entries(), mutation=st.sampled_from(MUTATIONS), pick=st.integers(0, 1 << 16))
# A flipped name length makes the central entry run past the directory's end: zipfile cuts the
# name where the directory ends, unzip reads on into the end record (found by this test).
@example(entries=[("x", stat.S_IFREG | 0o644, b"", zipfile.ZIP_STORED)], mutation="flip-byte", pick=159)
# The local header's flags (6), CRC (14) and the end record's disk number (83) of a one-link
# zip: zipfile reads the central directory's and ignores the disk, unzip does not.
@example(entries=[("x", stat.S_IFLNK | 0o777, b"x", zipfile.ZIP_STORED)], mutation="flip-byte", pick=6)
@example(entries=[("x", stat.S_IFLNK | 0o777, b"x", zipfile.ZIP_STORED)], mutation="flip-byte", pick=14)
@example(entries=[("x", stat.S_IFLNK | 0o777, b"x", zipfile.ZIP_STORED)], mutation="flip-byte", pick=83)
def test_extpack_stages_what_unzip_extracts_or_refuses(run_extpack, tmp_path, entries, mutation, pick):
    work = tmp_path / f"example-{os.getpid()}-{pick}-{mutation}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    layer = work / "layer.zip"
    layer.write_bytes(_build(entries, mutation, pick))
    note(f"entries={entries!r} mutation={mutation}")
    unzip_code = _unzip(layer, work / "unzipped")

    result = run_extpack("fetch", layer, "--no-cache", "--stage-dir", work / "stage", "--lock", work / "lock",
                         cwd=work)

    note(f"unzip exit {unzip_code}; extpack exit {result.returncode}: {result.stderr}")
    if result.returncode == 0:
        assert unzip_code == 0, "extpack staged a zip unzip complains about"
        late = _late_directories(entries)
        assert _without_modes(tree_snapshot(work / "stage" / "opt"), late) == \
            _without_modes(tree_snapshot(work / "unzipped"), late)
    else:
        assert result.returncode in (4, 5), result.stderr
        assert_fails(result, result.returncode, names=str(layer))
        assert mutation != "none", "a benign layer was refused"
    shutil.rmtree(work)
