#!/usr/bin/env python3
"""Coverage-guided fuzzing of extpack's input parsers with atheris (libFuzzer), by hand.

Optional and not part of the test suite (pytest does not collect this file, and nothing
else needs atheris). The bounded, always-run versions of these targets are the hypothesis
properties in tests/test_fuzz.py; this is for long runs that look for new bugs:

    pip install atheris
    python tests/fuzz_atheris.py source -max_total_time=60
    python tests/fuzz_atheris.py entry  -max_total_time=60
    mkdir -p /tmp/unpack-corpus
    python tests/fuzz_atheris.py unpack -max_total_time=300 -rss_limit_mb=2048 /tmp/unpack-corpus

TARGET is one of source, entry, unpack; everything after it goes to libFuzzer. An empty
corpus directory given to ``unpack`` is seeded with the valid zips test_fuzz.py mutates.
The known bugs of test_fuzz.KNOWN_BUGS are tolerated (each counted once on stderr);
``EXTPACK_FUZZ_KNOWN_BUGS=fail`` makes them crash the run like any new finding.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "fixtures", HERE.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["extpack", "zipfile"]):
    from extpack.exceptions import DownloadError, LayerContentError, UsageError
    from extpack.source import parse_source
    from extpack.unpack import _validated_entry

from test_fuzz import BASES, known_bug, stage_one  # noqa: E402  (the known-bug table, seed zips, staging)

_seen_known: set[str] = set()


def _tolerate(exc: BaseException) -> None:
    bug = known_bug(exc)
    if bug is None:
        raise exc
    if bug.ident not in _seen_known:
        _seen_known.add(bug.ident)
        print(f"fuzz_atheris: known bug {bug.ident}: {type(exc).__name__}: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- targets

_SOURCE_BASE = Path(tempfile.mkdtemp(prefix="extpack-atheris-src-"))


def fuzz_source(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(512)
    try:
        source = parse_source(text, base_dir=_SOURCE_BASE)
        source.display  # noqa: B018 - used in every message: must not raise
    except UsageError as exc:
        assert "\n" not in str(exc), repr(str(exc))
        return
    except Exception as exc:  # noqa: BLE001
        _tolerate(exc)
        return
    if source.kind == "arn":
        assert str(source.arn) == text.strip(), (text, source.arn)


def fuzz_entry(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    info = zipfile.ZipInfo(fdp.ConsumeUnicodeNoSurrogates(600))
    info.create_system = fdp.ConsumeIntInRange(0, 255)
    info.external_attr = fdp.ConsumeIntInRange(0, 2**32 - 1)
    info.flag_bits = fdp.ConsumeIntInRange(0, 0xFFFF)
    info.compress_type = fdp.ConsumeIntInRange(0, 0xFFFF)
    try:
        entry = _validated_entry(info, "fuzz")
    except LayerContentError:
        return
    if entry is None:
        return
    parts = entry.path.split("/")
    assert not entry.path.startswith("/") and "\\" not in entry.path, entry.path
    assert not any(p in ("", ".", "..") for p in parts), entry.path
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in entry.path), entry.path
    assert os.path.normpath(os.path.join("/stage/opt", entry.path)).startswith("/stage/opt/"), entry.path
    assert 0 <= entry.mode <= 0o777 and entry.type in ("file", "dir", "symlink"), entry


def _listing(top: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), top))
    return out


def fuzz_unpack(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="extpack-atheris-") as sandbox:
        top = Path(sandbox)
        (top / "layer.zip").write_bytes(data)
        root = top / "s1" / "s2" / "opt"
        root.parent.mkdir(parents=True)
        try:
            stage_one(root, top / "layer.zip", max_size=1 << 20).finish()
        except (DownloadError, LayerContentError):
            pass
        except Exception as exc:  # noqa: BLE001
            _tolerate(exc)
        outside = {p for p in _listing(top) if not (p == "s1/s2/opt" or p.startswith("s1/s2/opt/"))}
        assert outside == {"layer.zip", "s1", "s1/s2"}, f"written outside the stage: {sorted(outside)}"
        for dirpath, _, _ in os.walk(root):  # leave nothing unremovable behind
            os.chmod(dirpath, 0o755)


TARGETS = {"source": fuzz_source, "entry": fuzz_entry, "unpack": fuzz_unpack}


def _seed(corpus_args: list[str]) -> None:
    for arg in corpus_args:
        corpus = Path(arg)
        if not arg.startswith("-") and corpus.is_dir() and not any(corpus.iterdir()):
            for name, raw in BASES.items():
                (corpus / f"seed-{name}.zip").write_bytes(raw)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    target = sys.argv[1]
    libfuzzer_args = [sys.argv[0], *sys.argv[2:]]
    if target == "unpack":
        _seed(sys.argv[2:])
    atheris.Setup(libfuzzer_args, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
