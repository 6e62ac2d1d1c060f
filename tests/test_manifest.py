"""The stage manifest's one reader and one writer: the JSON fetch writes is byte-for-byte what it
was before the manifest had types, reading and writing it back changes no byte, and a damaged
manifest is the same exit-2 line it always was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import make_layers
import pytest

from extpack import manifest
from extpack.exceptions import UsageError
from extpack.manifest import StagedFile
from extpack.model import STAGED_TYPES, Arch, EntryType, SourceKind

GOLDEN = Path(__file__).parent / "golden" / "manifest.json"
FIXTURE_ZIPS = ("demo-extension.zip", "override-a.zip", "override-b.zip", "python-deps.zip", "ext-symlink.zip")
# A wrapper script and a library root, so the golden holds every kind of shape.
WRAPPER_ZIP = (
    make_layers.ZipBuilder()
    .file("otel-instrument", '#!/bin/sh\nexport WRAPPED_BY=otel\nexec "$@"\n', 0o755)
    .dir("bin", 0o755)
    .file("bin/tool", "#!/bin/sh\necho tool\n", 0o755)
    .getvalue()
)


def stage_golden_layers(run_extpack, tmp_path: Path, layer_zips: Path) -> Path:
    """Fetch the golden's layers (local zips, named relatively, so the manifest names no temp dir)."""
    for name in FIXTURE_ZIPS:
        shutil.copy(layer_zips / name, tmp_path / name)
    (tmp_path / "wrapper.zip").write_bytes(WRAPPER_ZIP)
    run_extpack("fetch", *FIXTURE_ZIPS, "wrapper.zip", check=True)
    return tmp_path / ".extpack" / "manifest.json"


def test_fetch_writes_the_golden_manifest_byte_for_byte(run_extpack, tmp_path, layer_zips):
    written = stage_golden_layers(run_extpack, tmp_path, layer_zips).read_bytes()
    assert written == GOLDEN.read_bytes()


def test_reading_and_writing_the_golden_changes_no_byte():
    golden = GOLDEN.read_text()
    assert manifest.text(manifest.parse(json.loads(golden), GOLDEN)) == golden


def test_the_golden_reads_as_typed_values():
    read = manifest.parse(json.loads(GOLDEN.read_text()), GOLDEN)
    assert read.arch is Arch.X86_64
    assert [layer.kind for layer in read.layers] == [SourceKind.ZIP] * 6
    assert [layer.index for layer in read.layers] == list(range(6))
    assert {f.type for f in read.files} == set(STAGED_TYPES)
    assert read.total_size == sum(f.size for f in read.files)
    assert [f.path for f in read.extensions()] == [f.path for f in read.files if f.path.startswith("extensions/")
                                                   and f.path.count("/") == 1]
    assert read.shapes is not None and [w.path for w in read.shapes.wrappers] == ["/opt/otel-instrument"]
    overridden = [f for f in read.files if f.overrode]
    assert overridden and all(f.layer > max(f.overrode) for f in overridden)


def test_a_manifest_without_the_optional_keys_writes_back_what_it_read():
    data = {"schema": manifest.SCHEMA, "arch": "arm64", "total_size": 3,
            "layers": [{"index": 0, "source": "a.zip", "kind": "zip", "arn": None, "name": "a", "version": None,
                        "sha256": "c" * 64, "size": 9, "unzipped_size": 3, "architectures": ["arm64"], "files": 1}],
            "files": [{"path": "x", "type": "file", "mode": "0644", "size": 3, "sha256": "d" * 64, "target": None,
                       "mtime": 5, "layer": 0, "overrode": []}]}
    read = manifest.parse(data, Path("m.json"))
    assert read.max_layer_size is None and read.shapes is None
    assert json.loads(manifest.text(read)) == data


@pytest.mark.parametrize("edit,field", [
    (lambda m: m.__setitem__("arch", "amd64"), "arch"),
    (lambda m: m["layers"][0].__setitem__("kind", "s3"), "layers[0].kind"),
    (lambda m: m["layers"][0].__setitem__("sha256", "x"), "layers[0].sha256"),
    (lambda m: m["files"][0].__setitem__("path", "../etc"), "files[0].path"),
    (lambda m: m["files"][0].__setitem__("mode", "755"), "files[0].mode"),
    (lambda m: m["files"][0].__setitem__("type", "fifo"), "files[0].type"),
    (lambda m: m["files"][0].__setitem__("type", ["file"]), "files[0].type"),
    (lambda m: m["files"][0].__setitem__("overrode", [-1]), "files[0].overrode[0]"),
    (lambda m: m.__setitem__("files", {}), "files"),
], ids=["arch", "kind", "sha256", "path", "mode", "type", "type-not-text", "overrode", "files"])
def test_a_field_of_the_wrong_shape_is_exit_2_naming_file_and_field(edit, field):
    data = json.loads(GOLDEN.read_text())
    edit(data)
    with pytest.raises(UsageError) as raised:
        manifest.parse(data, Path("stage/manifest.json"))
    assert raised.value.exit_code == 2
    assert str(raised.value).startswith(f"manifest stage/manifest.json: field {field} ")
    assert str(raised.value).endswith(": run extpack fetch to rebuild the stage")


def test_no_manifest_or_not_extpacks_is_none_and_load_says_fetch(tmp_path):
    assert manifest.read(tmp_path / "missing") is None
    (tmp_path / manifest.NAME).write_text('{"schema": "someone-else/v1"}')
    assert manifest.read(tmp_path) is None
    with pytest.raises(UsageError, match="no stage at .*: run extpack fetch first"):
        manifest.load(tmp_path)


def test_a_files_line_is_what_json_writes_for_it():
    """text() formats each file's line itself (json's encoder per entry was the slow part of writing a
    manifest): every line must be exactly json's, whatever the path or link target holds."""
    golden = manifest.parse(json.loads(GOLDEN.read_text()), GOLDEN)
    odd = [StagedFile("caf\u00e9/\u2028\"q\"\\b", EntryType.SYMLINK, 0o777, 0, "t\x00\x1f\x7f\ud800\U0001f600"),
           StagedFile("x", EntryType.FILE, 0o4755, 2**40, None, 7, "e" * 64, None, (0, 3))]
    for entry in [*golden.files, *odd]:
        assert entry.json_line() == json.dumps(entry.to_json(), sort_keys=True)
