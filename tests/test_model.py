"""The shared vocabulary: every spelling of an architecture, the enums as JSON sees them, the
extension predicate and the size-limit wording."""

from __future__ import annotations

import json

import pytest

from extpack import validate
from extpack.exceptions import UsageError
from extpack.model import (
    ARCH_NAMES,
    LAYER_UNZIPPED_LIMIT,
    Arch,
    EntryType,
    Severity,
    SourceKind,
    is_extension,
    size_limit_text,
)

SPELLINGS = {
    "x86_64": Arch.X86_64, "X86_64": Arch.X86_64, "amd64": Arch.X86_64, "AMD64": Arch.X86_64,
    "linux/amd64": Arch.X86_64,
    "arm64": Arch.ARM64, "ARM64": Arch.ARM64, "aarch64": Arch.ARM64, "linux/arm64": Arch.ARM64,
    "linux/arm64/v8": Arch.ARM64,
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_accepted_spelling_parses(spelling):
    assert Arch.parse(spelling) is SPELLINGS[spelling]


@pytest.mark.parametrize("spelling", ["i386", "x86", "arm", "armv7", "linux/386", "", " x86_64", None, 64])
def test_an_unknown_spelling_is_one_usage_error(spelling):
    with pytest.raises(UsageError) as raised:
        Arch.parse(spelling)
    assert raised.value.exit_code == 2
    assert str(raised.value).startswith(f"unknown architecture {spelling!r}: use x86_64 or arm64")


def test_each_arch_has_its_oci_docker_and_elf_spellings():
    assert (Arch.X86_64.oci, Arch.X86_64.oci_variant, Arch.X86_64.docker_platform, Arch.X86_64.elf_machine) == \
        ("amd64", None, "linux/amd64", 62)
    assert (Arch.ARM64.oci, Arch.ARM64.oci_variant, Arch.ARM64.docker_platform, Arch.ARM64.elf_machine) == \
        ("arm64", "v8", "linux/arm64", 183)
    assert Arch.X86_64.other is Arch.ARM64 and Arch.ARM64.other is Arch.X86_64
    assert ARCH_NAMES == ("x86_64", "arm64")
    for arch in Arch:  # each spelling of an arch parses back to it
        assert {Arch.parse(s) for s in (arch.value, arch.oci, arch.docker_platform)} == {arch}


def test_a_file_field_takes_lambdas_spelling_only():
    assert Arch.of_field("arm64", "arch") is Arch.ARM64
    with pytest.raises(validate.Invalid, match="arch must be x86_64 or arm64, not 'amd64'"):
        Arch.of_field("amd64", "arch")
    assert Arch.list_of_field(["x86_64", "arm64"], "a") == (Arch.X86_64, Arch.ARM64)
    with pytest.raises(validate.Invalid, match="must be a list of x86_64 and arm64"):
        Arch.list_of_field("x86_64", "a")


def test_the_enums_are_their_strings_in_json_and_messages():
    values = [Arch.ARM64, SourceKind.URL, EntryType.SYMLINK, Severity.WARNING]
    assert json.dumps(values) == '["arm64", "url", "symlink", "warning"]'
    assert [f"{v}" for v in values] == [str(v) for v in values] == ["arm64", "url", "symlink", "warning"]
    assert Arch.ARM64 == "arm64" and {"x86_64": 1}[Arch.X86_64] == 1


@pytest.mark.parametrize("path,expected", [
    ("extensions/collector", True), ("extensions/.hidden", True),
    ("extensions", False), ("extensions/dir/inner", False),
    ("opt/extensions/x", False), ("extensionsx/y", False), ("python/extensions/x", False),
])
def test_an_extension_is_directly_in_extensions(path, expected):
    assert is_extension(path) is expected


def test_the_size_limit_is_named_as_applied():
    assert size_limit_text(LAYER_UNZIPPED_LIMIT) == "Lambda's 250 MB layer limit"
    assert size_limit_text(1 << 20) == "the max-layer-size limit of 1048576 bytes"
