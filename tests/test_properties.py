"""Property-based tests: random zips of benign and hostile entries through the real CLI.

Each example writes layer zips byte by byte (so names may hold NUL, backslashes or
control characters and external_attr may claim any file type), runs the installed
``extpack fetch`` on them, and checks the result against an independent model of what
the stage must be:

* accepted -> exit 0 and ``<stage>/opt`` is exactly the tree the model computed from the
  entries (types, permission bits, file contents, symlink targets), and the manifest
  agrees with it;
* refused  -> exit 5, one error line naming the layer, nothing on stdout, and the whole
  sandbox (previous stage, lock, cache, the zips, and every directory an escape could
  reach) byte-identical to before.

The model (``expected_stage``) applies the rules of DESIGN.md as extpack documents them in
extpack/unpack.py: names are normalised by dropping empty and ``.`` components; a name
with NUL or control characters, a backslash, a leading ``/`` or a drive (``X:``), or a
``..`` component is refused; device/FIFO/socket/unknown types, encryption and unknown
compression methods are refused; a path may appear once per layer (directories
excepted); nothing is written below a symlink or a file; a directory never replaces a
non-directory or the other way round; setuid/setgid/sticky bits are dropped, and a
zero permission field means the default (0644 files, 0755 directories, as for zips
made on DOS). Across layers the last writer wins.

Reproducing: ``CI=1`` loads a derandomised profile; otherwise hypothesis's example
database replays failures. ``EXTPACK_PROPERTY_EXAMPLES`` changes the example count.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import _clean_environ, _extpack_command, tree_snapshot
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------- settings


EXAMPLES = int(os.environ.get("EXTPACK_PROPERTY_EXAMPLES", "35"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# The project sits this deep below the sandbox, and no generated '..' chain climbs higher
# than the sandbox itself: whatever escapes the stage lands where the snapshot sees it.
PROJECT_DEPTH = ("w1", "w2", "w3", "proj")
MAX_UP = 2 + len(PROJECT_DEPTH)  # opt -> .extpack.build-X -> proj -> w3 -> w2 -> w1 -> sandbox
SANDBOX = "{SANDBOX}"  # replaced by the sandbox's absolute path when a zip is written
TIMEOUT = 60

# --------------------------------------------------------------------------- entries and zips

ZIP_STORED, ZIP_DEFLATED, ZIP_BZIP2, ZIP_LZMA = 0, 8, 12, 14
UNIX, DOS = 3, 0
FLAG_ENCRYPTED, FLAG_UTF8 = 0x1, 0x800
S_IFREG, S_IFDIR, S_IFLNK = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK
SPECIAL_TYPES = {
    stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    # Not file types at all: an extractor must not guess.
    0o030000: "unknown type", 0o050000: "unknown type", 0o070000: "unknown type", 0o110000: "unknown type",
    0o130000: "unknown type", 0o150000: "unknown type", 0o160000: "unknown type", 0o170000: "unknown type",
}


@dataclass(frozen=True)
class Entry:
    """One zip entry as written: raw name, the st_mode stored in external_attr, data."""

    name: str
    mode: int  # the high 16 bits of external_attr (type and permission bits)
    data: bytes = b""
    method: int = ZIP_DEFLATED
    create_system: int = UNIX
    flags: int = 0
    hostile: str | None = None  # why the generator meant this entry to be refused

    def concrete(self, sandbox: str) -> Entry:
        return replace(self, name=self.name.replace(SANDBOX, sandbox),
                       data=self.data.replace(SANDBOX.encode(), os.fsencode(sandbox)))


def _compress(method: int, data: bytes) -> bytes:
    if method == ZIP_STORED:
        return data
    if method == ZIP_DEFLATED:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush()
    if method == ZIP_BZIP2:
        return bz2.compress(data)
    if method == ZIP_LZMA:
        compressor = zipfile._get_compressor(ZIP_LZMA)  # zip's own LZMA framing (props header)
        return compressor.compress(data) + compressor.flush()
    return data  # an unsupported method: the bytes are never read


_VERSION_NEEDED = {ZIP_STORED: 20, ZIP_DEFLATED: 20, ZIP_BZIP2: 46, ZIP_LZMA: 63}
_DOS_DATE, _DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00:00


def write_zip(entries: list[Entry], *, dos_date: int = _DOS_DATE, dos_time: int = _DOS_TIME) -> bytes:
    """A zip holding exactly ``entries``: raw names (any bytes but '/'-separated), raw
    external_attr, flags and method; duplicates kept. Info-ZIP's layout, no extras."""
    body, central = bytearray(), bytearray()
    for entry in entries:
        name = entry.name.encode("utf-8", "surrogatepass")
        flags = entry.flags | (FLAG_UTF8 if not entry.name.isascii() else 0)
        packed = _compress(entry.method, entry.data)
        crc = zlib.crc32(entry.data)
        version = _VERSION_NEEDED.get(entry.method, 20)
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", version, flags, entry.method, dos_time, dos_date,
                            crc, len(packed), len(entry.data), len(name), 0)
        body += name + packed
        central += struct.pack("<4s6H3L5HLL", b"PK\x01\x02", (entry.create_system << 8) | 20, version, flags,
                               entry.method, dos_time, dos_date, crc, len(packed), len(entry.data), len(name),
                               0, 0, 0, 0, (entry.mode & 0xFFFF) << 16 | _dos_attr(entry), offset)
        central += name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(body), 0)
    return bytes(body + central + end)


def _dos_attr(entry: Entry) -> int:
    return 0x10 if stat.S_ISDIR(entry.mode) or entry.name.endswith("/") else 0


# --------------------------------------------------------------------------- the model

Tree = dict[str, tuple[str, int, str]]  # path -> (type, permission bits, sha256 | target | "")


class Refused(Exception):
    """The model's verdict: extpack must refuse this layer."""


def _normalised(entry: Entry) -> tuple[str, str, int] | None:
    """(path, kind, mode) for an entry, None for one that names nothing ('./'), or Refused."""
    name = entry.name
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise Refused("NUL or control character in the name")
    if "\\" in name:
        raise Refused("backslash in the name")
    if name.startswith("/") or name[1:2] == ":":
        raise Refused("absolute or drive path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused("'..' component")
    if not parts:
        return None
    path = "/".join(parts)
    if len(path.encode()) > 4095 or any(len(part.encode()) > 255 for part in parts):
        raise Refused("name too long")
    if entry.flags & FLAG_ENCRYPTED:
        raise Refused("encrypted")
    if entry.method not in _VERSION_NEEDED:
        raise Refused("unsupported compression method")
    unix = entry.mode if entry.create_system == UNIX else 0
    kind_bits, permissions = stat.S_IFMT(unix), stat.S_IMODE(unix) & 0o777
    # unzip makes a name ending in '/' a directory and any other name a file, whatever the mode.
    if name.endswith("/"):
        if kind_bits not in (S_IFDIR, 0) or entry.data:
            raise Refused("named as a directory but not one")
        return path, "dir", permissions or 0o755
    if kind_bits == S_IFDIR:
        raise Refused("a directory without the trailing '/'")
    if kind_bits == S_IFLNK:
        return path, "symlink", 0o777
    if kind_bits in (S_IFREG, 0):
        return path, "file", permissions or 0o644
    raise Refused(SPECIAL_TYPES.get(kind_bits, "unknown type"))


def _kind_at(path: str, planned: dict[str, str], tree: Tree) -> str | None:
    return planned.get(path) or (tree[path][0] if path in tree else None)


def apply_layer(tree: Tree, entries: list[Entry]) -> Tree:
    """The stage after one more layer, or Refused. ``tree`` is not modified."""
    items = []
    seen: dict[str, str] = {}
    for entry in entries:
        normal = _normalised(entry)
        if normal is None:
            continue
        path, kind, mode = normal
        if path in seen and not (seen[path] == "dir" == kind):
            raise Refused(f"{path!r} twice in one layer")
        seen[path] = kind
        items.append((path, kind, mode, entry))
    planned: dict[str, str] = {}
    for path, kind, _, _ in items:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if _kind_at(parent, planned, tree) in ("symlink", "file"):
                raise Refused(f"{path!r} is below the {_kind_at(parent, planned, tree)} {parent!r}")
            planned.setdefault(parent, "dir")
        existing = _kind_at(path, planned, tree)
        if existing is not None and (existing == "dir") != (kind == "dir"):
            raise Refused(f"{path!r} is a {kind} where there is a {existing}")
        planned[path] = kind
    new = dict(tree)
    for path, kind, mode, entry in items:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            new.setdefault("/".join(parts[:depth]), ("dir", 0o755, ""))
        if kind == "dir":
            new[path] = ("dir", mode, "")
        elif kind == "symlink":
            if not entry.data or b"\x00" in entry.data or len(entry.data) > 4095:
                raise Refused(f"symlink {path!r} has an invalid target")
            new[path] = ("symlink", 0o777, entry.data.decode("utf-8", "surrogateescape"))
        else:
            new[path] = ("file", mode, hashlib.sha256(entry.data).hexdigest())
    return new


def expected_stage(layers: list[list[Entry]]) -> Tree:
    tree: Tree = {}
    for entries in layers:
        tree = apply_layer(tree, entries)
    return dict(sorted(tree.items()))


# --------------------------------------------------------------------------- strategies

# Names a benign layer uses. None is special to a Linux filesystem; several would trip a
# sloppy extractor: look-alikes of '..' ('…', '․․' ONE DOT LEADER x2, '．．' fullwidth),
# '...', dot files, spaces, a colon not in second place, case variants, non-ASCII.
NAMES = ["a", "A", "b", "lib", "bin", "x.so.1", "...", ".hidden", "\u2024\u2024", "\uff0e\uff0e", "\u2026",
         "sp ace", "-dash", "k8s:conf", "é", "日本", "ok~"]
LEAF = "leaf"

shapes = st.recursive(st.just(LEAF), lambda children: st.dictionaries(st.sampled_from(NAMES), children,
                                                                      min_size=1, max_size=3), max_leaves=7)
top_shapes = st.dictionaries(st.sampled_from(NAMES), shapes, min_size=1, max_size=4)


def _flatten(shape: dict, prefix: str = "") -> tuple[list[str], list[str]]:
    dirs, leaves = [], []
    for name, child in sorted(shape.items()):
        path = prefix + name
        if child == LEAF:
            leaves.append(path)
        else:
            dirs.append(path)
            more_dirs, more_leaves = _flatten(child, path + "/")
            dirs += more_dirs
            leaves += more_leaves
    return dirs, leaves


def _spellings(path: str, trailing: bool) -> st.SearchStrategy[str]:
    """Harmless ways to write the same path: './a/b', 'a//b', 'a/./b', 'b/'."""
    tail = "/" if trailing else ""
    parts = path.split("/")
    return st.sampled_from([
        path + tail, "./" + path + tail, "/".join(parts[:1] + ["."] + parts[1:]) + tail,
        "//".join(parts) + tail, path + "/",
    ] if trailing else [path, "./" + path, "//".join(parts), "/".join(parts[:1] + ["."] + parts[1:])])


file_modes = st.one_of(st.sampled_from([0o644, 0o755, 0o600, 0o444, 0o4755, 0o2755, 0o6755, 0o1777, 0o000, 0o4000]),
                       st.integers(0, 0o7777))
dir_modes = st.one_of(st.sampled_from([0o755, 0o700, 0o555, 0o2775, 0o1777, 0o000]), st.integers(0, 0o7777))
contents = st.one_of(st.binary(max_size=64), st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8),
                                                        st.integers(1, 500)))
methods = st.sampled_from([ZIP_STORED, ZIP_DEFLATED, ZIP_DEFLATED, ZIP_BZIP2, ZIP_LZMA])


@st.composite
def file_entries(draw, path: str) -> Entry:
    how = draw(st.sampled_from(["unix", "unix", "unix", "perms-only", "dos"]))
    mode = draw(file_modes)
    if how == "unix":
        mode |= S_IFREG
    return Entry(draw(_spellings(path, False)), mode, draw(contents), draw(methods), DOS if how == "dos" else UNIX)


@st.composite
def symlink_entries(draw, path: str, others: list[str]) -> Entry:
    depth = path.count("/")
    relative = [("../" * depth) + other for other in others] + ["."]
    target = draw(st.one_of(
        st.sampled_from(relative),
        st.sampled_from(["/opt/" + other for other in others] + ["/usr/lib/libc.so.6", "/etc/hostname",
                                                                   SANDBOX, "../" * MAX_UP, "dangling"]),
    ))
    return Entry(draw(_spellings(path, False)), S_IFLNK | 0o777, target.encode(), draw(st.sampled_from([0, 8])))


@st.composite
def dir_entries(draw, path: str) -> Entry:
    how = draw(st.sampled_from(["unix", "unix", "perms-only", "dos"]))
    mode = draw(dir_modes)
    if how == "unix":
        return Entry(draw(_spellings(path, True)), S_IFDIR | mode, b"", ZIP_STORED)
    # Without a type in the mode, only the trailing '/' makes it a directory.
    return Entry(draw(_spellings(path, True)), mode, b"", ZIP_STORED, DOS if how == "dos" else UNIX)


@st.composite
def benign_layers(draw, shape: dict) -> list[Entry]:
    """A layer that puts files or symlinks on some leaves of ``shape`` and explicit entries
    on some of its directories (maybe twice), in any order: never refused on its own,
    nor on top of another layer of the same shape."""
    dirs, leaves = _flatten(shape)
    entries = []
    for leaf in leaves:
        what = draw(st.sampled_from(["file", "file", "symlink", "absent"]))
        if what == "file":
            entries.append(draw(file_entries(leaf)))
        elif what == "symlink":
            entries.append(draw(symlink_entries(leaf, dirs + leaves)))
    for directory in dirs:
        for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
            entries.append(draw(dir_entries(directory)))
    if draw(st.booleans()):
        entries.append(Entry(draw(st.sampled_from(["./", ".", ""])), S_IFDIR | 0o755, b"", ZIP_STORED))
    return draw(st.permutations(entries))


def _hostile(name: str, reason: str, mode: int = S_IFREG | 0o644, data: bytes = b"escaped\n", **kw) -> Entry:
    return Entry(name, mode, data, hostile=reason, **kw)


ESCAPE = "extpack-escaped.txt"
_up = st.integers(1, MAX_UP).map(lambda n: "../" * n)


@st.composite
def hostile_entries(draw, benign: list[Entry]) -> list[Entry]:
    """One hostile construct (one or a few entries). Some use the benign layer's paths."""
    kind = draw(st.sampled_from(["dotdot", "absolute", "backslash", "control", "special", "through-symlink",
                                 "duplicate", "below-file", "clash", "encrypted", "method", "too-long",
                                 "bad-target"]))
    event(f"hostile: {kind}")
    prefix = draw(st.sampled_from(["", "a/", "a/b/", "./"]))
    if kind == "dotdot":
        name = draw(st.one_of(
            _up.map(lambda up: prefix + up + ESCAPE),
            st.sampled_from(["..", "../", "a/..", "a/../b", "./../" + ESCAPE, ".//..//" + ESCAPE,
                             "a/./../../" + ESCAPE, "a/b/../../../../" + ESCAPE]),
        ))
        mode = draw(st.sampled_from([S_IFREG | 0o644, S_IFDIR | 0o755, S_IFLNK | 0o777]))
        return [_hostile(name, kind, mode, b"target" if stat.S_ISLNK(mode) else b"")]
    if kind == "absolute":
        name = draw(st.sampled_from([SANDBOX + "/" + ESCAPE, SANDBOX + "/w1/" + ESCAPE, "/" + ESCAPE, "//" + ESCAPE,
                                     "/", "C:/" + ESCAPE, "c:" + ESCAPE, "Z:", "/./" + ESCAPE]))
        return [_hostile(name, kind)]
    if kind == "backslash":
        name = draw(st.sampled_from(["..\\" + ESCAPE, "a\\..\\..\\" + ESCAPE, "\\" + ESCAPE, "a\\b",
                                     "C:\\" + ESCAPE, prefix + "x\\..\\..\\" + ESCAPE]))
        return [_hostile(name, kind)]
    if kind == "control":
        char = draw(st.sampled_from(["\x00", "\x01", "\x1b", "\n", "\r", "\t", "\x7f", "\x1f"]))
        at = draw(st.sampled_from(["start", "middle", "end"]))
        name = {"start": char + "name", "middle": "na" + char + "me", "end": "name" + char}[at]
        return [_hostile(prefix + name, kind)]
    if kind == "special":
        file_type = draw(st.sampled_from(sorted(SPECIAL_TYPES)))
        return [_hostile(prefix + "special", SPECIAL_TYPES[file_type], file_type | 0o644, b"")]
    if kind == "through-symlink":
        link = draw(st.sampled_from(["evil-link", "a-evil-link"]))
        target = draw(st.sampled_from([SANDBOX, SANDBOX + "/w1", "../" * MAX_UP, "/tmp", ".", "evil-hop"]))
        entries = [_hostile(link, kind, S_IFLNK | 0o777, target.encode())]
        if target == "evil-hop":  # a chain: link -> evil-hop -> the sandbox
            entries.append(_hostile("evil-hop", kind, S_IFLNK | 0o777, SANDBOX.encode()))
        below = draw(st.sampled_from([ESCAPE, "sub/" + ESCAPE, "sub/"]))
        mode = S_IFDIR | 0o755 if below.endswith("/") else S_IFREG | 0o644
        entries.append(_hostile(f"{link}/{below}", kind, mode))
        return entries
    if kind == "encrypted":
        return [_hostile(prefix + "encrypted.bin", kind, flags=FLAG_ENCRYPTED, method=ZIP_STORED)]
    if kind == "method":
        return [_hostile(prefix + "odd-method.bin", kind, method=draw(st.sampled_from([1, 6, 9, 93, 97, 99])))]
    if kind == "too-long":
        name = draw(st.sampled_from(["n" * 256, "é" * 128, "/".join(["d" * 200] * 21)]))
        return [_hostile(name, kind)]
    if kind == "bad-target":
        target = draw(st.sampled_from([b"", b"a\x00b", b"t" * 4096]))
        return [_hostile(prefix + "bad-link", kind, S_IFLNK | 0o777, target)]
    # The rest need a path the benign part already uses.
    normal = [(n, e) for e in benign if not e.hostile and (n := _normalised(e)) is not None]
    non_dirs = [(n, e) for n, e in normal if n[1] != "dir"]
    if kind == "duplicate" and normal:
        (path, kind_of, _), original = draw(st.sampled_from(normal))
        spelling = draw(st.sampled_from([path, "./" + path, path.replace("/", "//")]))
        if kind_of == "dir":  # a second directory entry is fine; a file of that name is not
            return [_hostile(spelling, "duplicate", S_IFREG | 0o644, b"other")]
        other = draw(st.sampled_from([S_IFREG | 0o644, S_IFLNK | 0o777, S_IFDIR | 0o755]))
        data = b"" if stat.S_ISDIR(other) else original.data + b"-different"
        return [_hostile(spelling, "duplicate", other, data)]
    if kind == "below-file" and non_dirs:
        (path, _, _), _ = draw(st.sampled_from(non_dirs))
        below = draw(st.sampled_from([ESCAPE, "sub/" + ESCAPE, "sub/"]))
        mode = S_IFDIR | 0o755 if below.endswith("/") else S_IFREG | 0o644
        return [_hostile(f"{path}/{below}", "below-file-or-symlink", mode)]
    if kind == "clash" and normal:
        (path, kind_of, _), _ = draw(st.sampled_from(normal))
        if kind_of == "dir":
            return [_hostile(path, "clash", S_IFREG | 0o644, b"file where a dir is")]
        return [_hostile(path + "/", "clash", S_IFDIR | 0o755, b"")]
    return [_hostile("../" + ESCAPE, "dotdot")]  # nothing to collide with: fall back


@st.composite
def mixed_layers(draw) -> list[Entry]:
    """A benign layer with 0-3 hostile constructs spliced in at random places."""
    entries = list(draw(benign_layers(draw(top_shapes))))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        evil = draw(hostile_entries(entries))
        at = draw(st.integers(0, len(entries)))
        entries[at:at] = evil
    return entries


# --------------------------------------------------------------------------- running extpack

# Layer 1 of every single-layer example: staged before, so a refusal has something to lose,
# and unpacked into the build directory before the generated layer is looked at.
GOOD_LAYER = [
    Entry("good/", S_IFDIR | 0o755, method=ZIP_STORED),
    Entry("good/tool", S_IFREG | 0o755, b"#!/bin/sh\necho good\n"),
    Entry("good/data.txt", S_IFREG | 0o644, b"good data\n" * 20),
    Entry("good/link", S_IFLNK | 0o777, b"data.txt", ZIP_STORED),
]


def _env(sandbox: Path) -> dict[str, str]:
    env = _clean_environ()
    env.update({"EXTPACK_CACHE_DIR": str(sandbox / "cache"), "NO_COLOR": "1"})
    return env


def extpack(*args: str | os.PathLike[str], cwd: Path, sandbox: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed extpack, as a Makefile would run it (module-level: no fixtures)."""
    return subprocess.run(_extpack_command() + [os.fspath(a) for a in args], cwd=cwd,
                          env={**_env(sandbox), **(env or {})}, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TIMEOUT)


class Sandbox:
    """A fresh temporary directory with a project PROJECT_DEPTH levels down."""

    def __enter__(self) -> Sandbox:
        self._tmp = tempfile.TemporaryDirectory(prefix="extpack-prop-")
        self.root = Path(self._tmp.name).resolve()
        self.project = self.root.joinpath(*PROJECT_DEPTH)
        self.project.mkdir(parents=True)
        (self.root / "zips").mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def zip(self, name: str, entries: list[Entry]) -> Path:
        path = self.root / "zips" / name
        path.write_bytes(write_zip([entry.concrete(str(self.root)) for entry in entries]))
        return path

    def concrete(self, layers: list[list[Entry]]) -> list[list[Entry]]:
        return [[entry.concrete(str(self.root)) for entry in layer] for layer in layers]


def _describe(layers: list[list[Entry]]) -> str:
    return "\n".join(f"layer {i + 1}: " + ", ".join(f"{e.name!r} {e.mode:o} {e.data[:40]!r}" for e in layer)
                     for i, layer in enumerate(layers))


def _leftovers(project: Path) -> list[str]:
    return sorted(p.name for p in project.iterdir() if ".build-" in p.name or ".old-" in p.name)


def check_fetch(box: Sandbox, layers: list[list[Entry]], zips: list[Path]
                ) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run ``extpack fetch ZIPS`` in the project and check it against the model; returns
    "accepted" or "refused", and the finished process."""
    concrete = box.concrete(layers)
    try:
        expected = expected_stage(concrete)
        verdict = None
    except Refused as refusal:
        expected, verdict = None, str(refusal)
    note(_describe(concrete))
    note(f"model: {'refuse: ' + verdict if verdict else 'accept'}")
    before = tree_snapshot(box.root)
    result = extpack("fetch", *zips, cwd=box.project, sandbox=box.root)
    note(f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    assert "Traceback" not in result.stderr, result.stderr
    assert _leftovers(box.project) == []
    if expected is None:
        assert result.returncode == 5, f"the model refuses ({verdict}); extpack exited {result.returncode}"
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("extpack: error: "), result.stderr
        assert any(str(z) in lines[0] for z in zips), f"the error names no layer: {lines[0]}"
        assert result.stdout == ""
        assert tree_snapshot(box.root) == before, "a refused fetch changed the sandbox"
        return "refused", result
    assert result.returncode == 0, f"the model accepts; extpack exited {result.returncode}: {result.stderr}"
    stage = box.project / ".extpack"
    assert tree_snapshot(stage / "opt") == expected
    manifest = json.loads((stage / "manifest.json").read_text())
    described = {f["path"]: (f["type"], int(f["mode"], 8), f["target"] or f["sha256"] or "")
                 for f in manifest["files"]}
    assert described == expected
    # Nothing appeared outside the project (an escape would land in the sandbox).
    outside = {path: entry for path, entry in tree_snapshot(box.root).items()
               if not path.startswith("/".join(PROJECT_DEPTH))}
    assert outside == {p: e for p, e in before.items() if not p.startswith("/".join(PROJECT_DEPTH))}
    return "accepted", result


# --------------------------------------------------------------------------- the properties


@pytest.fixture(scope="module")
def good_stage() -> Path:
    """A project holding a stage and lock made from GOOD_LAYER, copied into each example."""
    with Sandbox() as box:
        good = box.zip("good.zip", GOOD_LAYER)
        result = extpack("fetch", good, cwd=box.project, sandbox=box.root)
        assert result.returncode == 0, result.stderr
        template = Path(tempfile.mkdtemp(prefix="extpack-prop-good-"))
        shutil.copytree(box.root, template / "sandbox", symlinks=True)
    yield template / "sandbox"
    shutil.rmtree(template)


def test_model_matches_the_fixture_rules():
    """The model itself, on cases whose answer is known from the fixtures and DESIGN."""
    assert expected_stage([GOOD_LAYER])["good/link"] == ("symlink", 0o777, "data.txt")
    assert expected_stage([[Entry("s", S_IFREG | 0o4755, b"x")]])["s"][1] == 0o755
    assert expected_stage([[Entry("./a//b", S_IFREG | 0o640, b"x")]]) == {
        "a": ("dir", 0o755, ""), "a/b": ("file", 0o640, hashlib.sha256(b"x").hexdigest())}
    for refused in (
        [Entry("../x", S_IFREG)], [Entry("a\\b", S_IFREG)], [Entry("/x", S_IFREG)], [Entry("C:/x", S_IFREG)],
        [Entry("x\x00y", S_IFREG)], [Entry("f", stat.S_IFIFO)], [Entry("d", stat.S_IFCHR)],
        [Entry("d", S_IFREG, b"1"), Entry("d", S_IFREG, b"2")],
        [Entry("l", S_IFLNK, b"/tmp"), Entry("l/x", S_IFREG)],
        [Entry("f", S_IFREG, b"1"), Entry("f/x", S_IFREG)],
        [Entry("d/x", S_IFREG), Entry("d", S_IFLNK, b"/tmp")],
    ):
        with pytest.raises(Refused):
            expected_stage([refused])


@PROPERTY_SETTINGS
@given(layer=mixed_layers())
def test_a_random_layer_is_staged_exactly_or_refused_leaving_everything_untouched(good_stage, layer):
    """good.zip + a random mix of benign and hostile entries: the stage is the model's
    tree, or the fetch fails with exit 5 and the previous stage and lock are untouched."""
    hostile = sorted({e.hostile for e in layer if e.hostile})
    with Sandbox() as box:
        shutil.rmtree(box.root)
        shutil.copytree(good_stage, box.root, symlinks=True)
        good = box.root / "zips" / "good.zip"
        generated = box.zip("generated.zip", layer)
        if hostile:  # the generator's intent and the model agree
            with pytest.raises(Refused):
                expected_stage(box.concrete([GOOD_LAYER, layer]))
        outcome, _ = check_fetch(box, [GOOD_LAYER, layer], [good, generated])
    event(f"{outcome} ({'hostile' if hostile else 'benign only'})")


@pytest.fixture(scope="module")
def lambda_api():
    """One loopback Lambda API for the module: layers published by an example stay, harmlessly."""
    from lambda_server import FakeLambda

    server = FakeLambda()
    server.start()
    yield server
    server.stop()


@PROPERTY_SETTINGS
@given(data=st.data(), shape=top_shapes)
def test_two_benign_layers_stage_as_last_writer_wins(lambda_api, data, shape):
    """Two layers over the same shape of paths: every path holds what the last layer that
    has it put there (files and symlinks replace each other, a later directory entry sets
    the mode), and every replacement is reported."""
    first = data.draw(benign_layers(shape), label="layer 1")
    second = data.draw(benign_layers(shape), label="layer 2")
    with Sandbox() as box:
        zips = [box.zip("one.zip", first), box.zip("two.zip", second)]
        layers = box.concrete([first, second])
        # Last writer wins, computed directly (no refusal is possible for one shape).
        lww: Tree = {}
        for layer in layers:
            for entry in layer:
                normal = _normalised(entry)
                if normal is None:
                    continue
                path, kind, mode = normal
                parts = path.split("/")
                for depth in range(1, len(parts)):
                    lww.setdefault("/".join(parts[:depth]), ("dir", 0o755, ""))
                lww[path] = (kind, mode, entry.data.decode("utf-8", "surrogateescape") if kind == "symlink"
                             else hashlib.sha256(entry.data).hexdigest() if kind == "file" else "")
        assert expected_stage(layers) == dict(sorted(lww.items()))
        outcome, result = check_fetch(box, [first, second], zips)
        assert outcome == "accepted"
        # Every file or symlink of layer 2 that was already there from layer 1 is reported.
        leaves = [{n[0] for e in layer if (n := _normalised(e)) and n[1] != "dir"} for layer in layers]
        for path in sorted(leaves[0] & leaves[1]):
            assert f"override: /opt/{path} from layer 2" in result.stderr, (path, result.stderr)
        # What fetch wrote, verify accepts: manifest, lock and stage agree.
        verify = extpack("verify", cwd=box.project, sandbox=box.root)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        manifest = json.loads((box.project / ".extpack" / "manifest.json").read_text())
        for entry in manifest["files"]:
            if entry["type"] != "dir" and entry["path"] in leaves[1]:
                assert entry["layer"] == 1
                assert entry["overrode"] == ([0] if entry["path"] in leaves[0] else [])
            elif entry["type"] != "dir":
                assert entry["layer"] == 0
        event(f"overrides: {min(len(leaves[0] & leaves[1]), 3)}{'+' if len(leaves[0] & leaves[1]) > 3 else ''}")
        # The same layers through the Lambda API take the other road: unpacked into the cache's
        # trees (in parallel), then hard-linked into a stage; once cold, once from those trees.
        arns = [lambda_api.add_layer(f"prop{n}", zip_path.read_bytes(), architectures=()).arn
                for n, zip_path in enumerate(zips)]
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_ENDPOINT_URL_LAMBDA": lambda_api.endpoint, "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        for stage in ("via-api", "via-trees"):
            fetched = extpack("fetch", *arns, "--stage-dir", stage, "--lock", f"{stage}.lock", cwd=box.project,
                              sandbox=box.root, env=aws)
            assert fetched.returncode == 0, fetched.stderr
            assert tree_snapshot(box.project / stage / "opt") == expected_stage(layers), stage



def test_a_zip_with_zeroed_timestamps_is_staged():
    """Some zip writers leave every DOS date and time 0 (1980-00-00 00:00); unzip extracts
    such a zip, and extpack must stage it like any other."""
    layer = [Entry("d/", S_IFDIR | 0o755, method=ZIP_STORED), Entry("d/f", S_IFREG | 0o755, b"#!/bin/sh\n"),
             Entry("d/l", S_IFLNK | 0o777, b"f", ZIP_STORED)]
    with Sandbox() as box:
        path = box.root / "zips" / "zero-dates.zip"
        path.write_bytes(write_zip(layer, dos_date=0, dos_time=0))
        result = extpack("fetch", path, cwd=box.project, sandbox=box.root)
        assert result.returncode == 0, result.stderr
        assert tree_snapshot(box.project / ".extpack" / "opt") == expected_stage([layer])
