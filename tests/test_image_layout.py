"""The OCI layout reader (`extpack.image.layout.read_layout`) reads back what the writer wrote,
and refuses a layout that is not one, is incomplete, or points outside itself."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_factory import make_stage

from extpack.exceptions import UsageError
from extpack.image import build_image, read_layout, write_oci_layout
from extpack.image.types import MEDIA_INDEX, MEDIA_MANIFEST, Platform
from extpack.model import Arch


@pytest.fixture(autouse=True)
def _no_ambient_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def test_reads_back_each_tag_with_its_config_and_layer(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with build_image(make_stage(tmp_path / "stage")) as b:
        write_oci_layout(b, layout, "demo:1")
        write_oci_layout(b, layout, "demo:2")
        written = (b.digest, b.config.data, b.layer.digest, b.platform)
    read = read_layout(layout)
    assert read.tags() == ["demo:1", "demo:2"]
    image = read.image("demo:2")
    digest, config, layer_digest, platform = written
    assert (image.descriptor.digest, image.descriptor.media_type) == (digest, MEDIA_MANIFEST)
    assert image.config == json.loads(config or b"") and image.platform == platform == Platform("amd64")
    assert [f"sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in image.layers] == [layer_digest]
    assert read.image().descriptor.ref_name == "demo:1"  # no tag: the first entry
    with pytest.raises(UsageError, match="holds no image tagged demo:3"):
        read.image("demo:3")


def test_an_index_gives_the_image_for_the_arch_asked(tmp_path: Path) -> None:
    amd = make_stage(tmp_path / "amd", arch="x86_64")
    arm = make_stage(tmp_path / "arm", arch="arm64")
    layout = tmp_path / "layout"
    with build_image(amd) as a, build_image(arm) as r:
        top = write_oci_layout([r, a], layout, "demo:multi")
        digests = {Arch.X86_64: a.digest, Arch.ARM64: r.digest}
    read = read_layout(layout)
    assert [(m.digest, m.media_type) for m in read.manifests] == [(top, MEDIA_INDEX)]
    for arch, digest in digests.items():
        image = read.image(arch=arch)
        assert image.descriptor.digest == digest and image.platform == Platform.of(arch)
        assert image.descriptor.platform == Platform.of(arch)  # the index entry names the platform too
    assert read.image().descriptor.digest == digests[Arch.X86_64]  # the index is sorted: amd64 first


def test_refuses_what_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not an OCI image layout"):
        read_layout(tmp_path)
    (tmp_path / "index.json").write_text("[]")
    with pytest.raises(UsageError, match="is not an OCI image layout"):
        read_layout(tmp_path)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "layout"
    with build_image(make_stage(tmp_path / "stage")) as b:
        write_oci_layout(b, path, "demo:1")
    return path


def _manifest_path(layout: Path) -> Path:
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    return layout / "blobs" / "sha256" / digest.split(":")[1]


def test_refuses_a_damaged_blob(layout: Path) -> None:
    manifest = _manifest_path(layout)
    manifest.write_bytes(manifest.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":3'))
    with pytest.raises(UsageError, match="does not match its digest"):
        read_layout(layout).image()


def test_refuses_a_missing_blob(layout: Path) -> None:
    _manifest_path(layout).unlink()
    with pytest.raises(UsageError, match="lacks blob sha256:"):
        read_layout(layout).image()


def test_a_digest_cannot_name_a_path_outside_the_layout(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(UsageError, match="which is not a digest"):
        read_layout(layout).image()


@pytest.mark.parametrize("document", [{"layers": 5, "config": {}}, {"layers": [], "config": "x"}, {"manifests": [1]}])
def test_refuses_a_manifest_that_is_not_one(layout: Path, document: dict) -> None:
    data = json.dumps(document).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(UsageError, match="is neither an image manifest nor an index"):
        read_layout(layout).image()
