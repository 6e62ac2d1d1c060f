"""extpack doctor through the real CLI: one fixture stage (or image) per finding.

fetch itself refuses stages with doctor errors, so the broken stages are made by fetching
a clean layer and then changing the stage on disk (chmod, extra files, swapped binaries),
which is also how they break in real life (a COPY, an unzip, a hand edit).  Each test
asserts the complete set of findings (severity, code, path) from --json, the fix line of
the text output, and the exit code (0 without errors, 6 with; --strict counts warnings).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import make_layers
import pytest
from make_layers import ZipBuilder, elf_header

SCRIPT = "#!/bin/sh\necho ready\n"
X86_ELF = elf_header("x86_64") + bytes(64)
ARM_ELF = elf_header("arm64") + bytes(64)
EXT = "opt/extensions"


# --------------------------------------------------------------------------- helpers


def elf_with_interpreter(interpreter: str, arch: str = "x86_64") -> bytes:
    """A minimal ELF64 executable whose one program header is a PT_INTERP naming
    ``interpreter`` (what a dynamically linked binary carries). `readelf -l` reads it as
    "Requesting program interpreter: ...". Not runnable."""
    data = interpreter.encode() + b"\0"
    phoff, phentsize = 64, 56
    offset = phoff + phentsize
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, make_layers.ELF_MACHINE[arch], 1, 0x401000, phoff, 0, 0, 64, phentsize, 1, 64, 0, 0)
    program_header = struct.pack("<IIQQQQQQ", 3, 4, offset, 0x400000 + offset, 0x400000 + offset,
                                 len(data), len(data), 1)  # PT_INTERP, PF_R
    return header + program_header + data


def clean_layer() -> ZipBuilder:
    """A layer doctor has nothing to say about: a script and an ELF extension, a config
    file, a library with its soname link."""
    return (ZipBuilder()
            .dir("extensions")
            .file("extensions/ready", SCRIPT, 0o755)
            .file("extensions/probe", X86_ELF, 0o755)
            .dir("data")
            .file("data/config.json", "{}\n", 0o644)
            .dir("lib")
            .file("lib/libx.so.1.0", X86_ELF, 0o644)
            .symlink("lib/libx.so.1", "libx.so.1.0"))


def fetch(run_extpack, tmp_path: Path, layer: ZipBuilder | bytes, *, name: str = "layer.zip",
          stage: str = "stage", arch: str | None = None) -> Path:
    """Write the zip into tmp_path and fetch it into tmp_path/STAGE (lock STAGE.lock)."""
    (tmp_path / name).write_bytes(layer if isinstance(layer, bytes) else layer.getvalue())
    extra = ["--arch", arch] if arch else []
    run_extpack("fetch", name, "--stage-dir", stage, "--lock", f"{stage}.lock", *extra, check=True)
    return tmp_path / stage


def doctor(run_extpack, *args, check: int, **kwargs) -> dict:
    """`extpack doctor ARGS --json`; returns the parsed document."""
    result = run_extpack("doctor", *args, "--json", check=check, **kwargs)
    data = json.loads(result.stdout)
    assert data["schema"] == "extpack.doctor/v1"
    assert data["counts"] == {s: sum(f["severity"] == s for f in data["findings"])
                              for s in ("error", "warning", "info")}
    return data


def summary(data: dict) -> set[tuple[str, str, str | None]]:
    return {(f["severity"], f["code"], f["path"]) for f in data["findings"]}


def only(data: dict, code: str) -> dict:
    matches = [f for f in data["findings"] if f["code"] == code]
    assert len(matches) == 1, data["findings"]
    return matches[0]


def text_report(run_extpack, *args, check: int, **kwargs) -> str:
    result = run_extpack("doctor", *args, check=check, **kwargs)
    if check == 6:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("extpack: error: doctor found "), result.stderr
    else:
        assert result.stderr == ""
    return result.stdout


def assert_reported(run_extpack, target: list[str], expected: set, *, code: str, fix: str,
                    message_part: str, exit_code: int, strict_exit: int | None = None) -> dict:
    """The whole finding set, the one finding's fix and message, its text lines, and the
    exit code without and with --strict."""
    data = doctor(run_extpack, *target, check=exit_code)
    assert summary(data) == expected
    finding = only(data, code)
    assert finding["fix"] == fix
    assert message_part in finding["message"]
    text = text_report(run_extpack, *target, check=exit_code)
    where = f"/{finding['path']}: " if finding["path"] else ""
    assert f"{finding['severity']}: {where}{finding['message']}\n    fix: {fix}\n" in text
    if strict_exit is not None:
        run_extpack("doctor", *target, "--strict", check=strict_exit)
    return finding


def chmod(path: Path, mode: int) -> None:
    os.chmod(path, mode)
    assert stat.S_IMODE(path.lstat().st_mode) == mode


# --------------------------------------------------------------------------- a clean stage


def test_clean_stage_has_no_findings(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())

    data = doctor(run_extpack, stage, check=0)
    assert data["findings"] == [] and data["fixed"] == []
    assert data["target"] == f"stage {stage}"
    assert text_report(run_extpack, stage, "--strict", check=0).strip() == \
        f"stage {stage}: 0 error(s), 0 warning(s), 0 note(s)"


def test_default_stage_comes_from_cwd(run_extpack, tmp_path):
    fetch(run_extpack, tmp_path, clean_layer(), stage=".extpack")
    chmod(tmp_path / ".extpack" / EXT / "probe", 0o644)

    data = doctor(run_extpack, check=6)
    assert summary(data) == {("error", "extension-not-executable", f"{EXT}/probe")}


# --------------------------------------------------------------------------- extensions


def test_extension_not_executable(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    chmod(stage / EXT / "probe", 0o644)

    assert_reported(run_extpack, [str(stage)], {("error", "extension-not-executable", f"{EXT}/probe")},
                    code="extension-not-executable", fix=f"chmod 0755 /{EXT}/probe (in the layer zip)",
                    message_part="not executable (mode 0644)", exit_code=6)


@pytest.mark.parametrize("mode", [0o700, 0o744, 0o750])
def test_extension_executable_only_by_owner(run_extpack, tmp_path, mode):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    chmod(stage / EXT / "ready", mode)

    assert_reported(run_extpack, [str(stage)], {("error", "extension-not-for-others", f"{EXT}/ready")},
                    code="extension-not-for-others", fix=f"chmod 0755 /{EXT}/ready, or run extpack doctor --fix",
                    message_part=f"mode {mode:04o}: the non-root user", exit_code=6)


def test_elf_for_the_other_cpu(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / "probe").write_bytes(ARM_ELF)

    assert_reported(run_extpack, [str(stage)], {("error", "extension-wrong-cpu", f"{EXT}/probe")},
                    code="extension-wrong-cpu",
                    fix="use the layer's x86_64 build, or --arch arm64 if the function is arm64",
                    message_part="built for arm64, not x86_64", exit_code=6)
    # The function is arm64 after all: the same stage is then fine.
    assert doctor(run_extpack, stage, "--arch", "arm64", check=0)["findings"] == []


def test_arch_flag_flips_the_check(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())  # x86_64 binaries, fetched for x86_64

    assert_reported(run_extpack, [str(stage), "--arch", "arm64"],
                    {("error", "extension-wrong-cpu", f"{EXT}/probe")}, code="extension-wrong-cpu",
                    fix="use the layer's arm64 build, or --arch x86_64 if the function is x86_64",
                    message_part="built for x86_64, not arm64", exit_code=6)
    assert doctor(run_extpack, stage, "--arch", "x86_64", check=0)["findings"] == []


def test_arm64_extension_fetched_for_arm64_is_clean(run_extpack, tmp_path, fake_lambda):
    layer = fake_lambda.add_layer("probe", make_layers.build("elf-arm64.zip"), architectures=("arm64",))
    run_extpack("fetch", layer.arn, "--arch", "arm64", check=True)

    data = doctor(run_extpack, check=0)  # the arch comes from the stage's manifest
    assert data["findings"] == []
    # ... and it is really the arm64 binary that was judged clean.
    assert only(doctor(run_extpack, "--arch", "x86_64", check=6), "extension-wrong-cpu")["path"] == f"{EXT}/probe"


def test_symlink_extension_to_an_executable_in_opt_is_fine(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, make_layers.build("ext-symlink.zip"))
    assert (stage / EXT / "linked").is_symlink()

    assert doctor(run_extpack, stage, check=0)["findings"] == []


def test_dangling_symlink_extension_is_an_error(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, make_layers.build("ext-symlink.zip"))
    (stage / "opt" / "linked" / "real-extension").unlink()

    assert_reported(run_extpack, [str(stage)], {("error", "extension-dangling", f"{EXT}/linked")},
                    code="extension-dangling", fix="ship the target in a layer, or remove the link",
                    message_part="a symlink to ../linked/real-extension", exit_code=6)


def test_directory_in_extensions(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / "helpers").mkdir()
    chmod(stage / EXT / "helpers", 0o755)

    assert_reported(run_extpack, [str(stage)], {("error", "extension-not-file", f"{EXT}/helpers")},
                    code="extension-not-file", fix="move it out of /opt/extensions",
                    message_part="a dir: Lambda starts every entry", exit_code=6)


@pytest.mark.parametrize("name", ["._ready", ".DS_Store"])
def test_macos_junk_in_extensions(run_extpack, tmp_path, name):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / name).write_bytes(b"\x00\x05\x16\x07 AppleDouble")

    assert_reported(run_extpack, [str(stage)], {("error", "junk-extension", f"{EXT}/{name}")},
                    code="junk-extension",
                    fix=f"remove it from the layer (zip -d LAYER.zip 'extensions/{name}'), or run extpack doctor --fix",
                    message_part="AppleDouble", exit_code=6)


def test_crlf_in_a_shebang_line(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / "ready").write_bytes(b"#!/bin/sh\r\necho ready\r\n")

    assert_reported(run_extpack, [str(stage)], {("error", "script-crlf", f"{EXT}/ready")},
                    code="script-crlf", fix="sed -i 's/\\r$//' ready before zipping (or set the file's git eol=lf)",
                    message_part="CRLF", exit_code=6)


def test_empty_shebang_line(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / "ready").write_bytes(b"#!\necho ready\n")

    assert_reported(run_extpack, [str(stage)], {("error", "script-no-interpreter", f"{EXT}/ready")},
                    code="script-no-interpreter", fix="name the interpreter, e.g. #!/bin/sh",
                    message_part="empty #! line", exit_code=6)


def _many_extensions(count: int) -> ZipBuilder:
    zb = ZipBuilder().dir("extensions")
    for i in range(count):
        zb.file(f"extensions/ext-{i:02d}", SCRIPT, 0o755)
    return zb


def test_more_than_ten_extensions(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, _many_extensions(10))
    # Ten is Lambda's limit, and junk does not count towards it (it is its own error).
    (stage / EXT / ".DS_Store").write_bytes(b"junk")
    assert summary(doctor(run_extpack, stage, check=6)) == {("error", "junk-extension", f"{EXT}/.DS_Store")}
    (stage / EXT / "ext-10").write_text(SCRIPT)
    chmod(stage / EXT / "ext-10", 0o755)

    assert_reported(run_extpack, [str(stage)], {("error", "too-many-extensions", EXT),
                                                ("error", "junk-extension", f"{EXT}/.DS_Store")},
                    code="too-many-extensions", fix="drop the layers whose extensions the function does not need",
                    message_part="11 extensions, but Lambda starts at most 10", exit_code=6)


# --------------------------------------------------------------------------- modes and links


def test_file_only_root_can_read_is_a_warning(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    chmod(stage / "opt" / "data" / "config.json", 0o600)

    assert_reported(run_extpack, [str(stage)], {("warning", "not-readable", "opt/data/config.json")},
                    code="not-readable", fix="run extpack doctor --fix (adds the read bits)",
                    message_part="mode 0600: the function's non-root user cannot read it", exit_code=0,
                    strict_exit=6)


def test_private_directory_is_a_warning(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    chmod(stage / "opt" / "data", 0o700)

    assert_reported(run_extpack, [str(stage)], {("warning", "not-readable", "opt/data")},
                    code="not-readable", fix="run extpack doctor --fix (adds the read bits)",
                    message_part="mode 0700: the function's non-root user cannot list and enter it", exit_code=0,
                    strict_exit=6)


@pytest.mark.parametrize("target", ["/usr/lib/libssl.so.3", "../../etc/ssl/cert.pem"])
def test_symlink_outside_opt_is_a_warning_with_its_target(run_extpack, tmp_path, target):
    stage = fetch(run_extpack, tmp_path, clean_layer().symlink("data/link", target))

    finding = assert_reported(run_extpack, [str(stage)], {("warning", "symlink-outside-opt", "opt/data/link")},
                              code="symlink-outside-opt", fix="make sure the base image has it",
                              message_part=f"points outside /opt, to {target}", exit_code=0, strict_exit=6)
    assert finding["message"].endswith(target)


def test_dangling_symlink_outside_extensions_is_a_warning(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / "opt" / "lib" / "libx.so.1.0").unlink()

    assert_reported(run_extpack, [str(stage)], {("warning", "symlink-dangling", "opt/lib/libx.so.1")},
                    code="symlink-dangling", fix="ship the target, or drop the link",
                    message_part="points to libx.so.1.0, which does not exist", exit_code=0, strict_exit=6)


# --------------------------------------------------------------------------- what the manifest says


def test_declared_architectures_disagree_with_the_binaries(run_extpack, tmp_path, fake_lambda):
    # fetch cannot produce this on its own: it refuses a layer that does not declare the
    # --arch (before download), and an extension binary for another CPU than --arch (after).
    # So the layer declares x86_64, is fetched for x86_64, and its binary is then what the
    # publisher really shipped: arm64.  For an arm64 function, the only thing left to say
    # is that the declaration is wrong.
    layer = fake_lambda.add_layer("probe", make_layers.build("elf-x86_64.zip"), architectures=("x86_64",))
    run_extpack("fetch", layer.arn, check=True)
    stage = tmp_path / ".extpack"
    assert doctor(run_extpack, check=0)["findings"] == []
    (stage / EXT / "probe").write_bytes(ARM_ELF)

    assert_reported(run_extpack, ["--arch", "arm64"], {("warning", "architectures-mismatch", None)},
                    code="architectures-mismatch", fix="tell the layer's publisher; trust the binaries, not the "
                    "declaration", message_part=f"layer {layer.arn} declares x86_64 but its extensions are built "
                    "for arm64", exit_code=0, strict_exit=6)
    # For the declared (x86_64) function it is an error as well.
    assert summary(doctor(run_extpack, check=6)) == {("error", "extension-wrong-cpu", f"{EXT}/probe"),
                                                     ("warning", "architectures-mismatch", None)}


def test_undeclared_architectures_are_not_a_mismatch(run_extpack, tmp_path, fake_lambda):
    layer = fake_lambda.add_layer("probe", make_layers.build("elf-arm64.zip"), architectures=())
    run_extpack("fetch", layer.arn, "--arch", "arm64", check=True)

    assert doctor(run_extpack, check=0)["findings"] == []


def test_fetch_refuses_a_binary_that_contradicts_the_declaration(run_extpack, tmp_path, fake_lambda):
    layer = fake_lambda.add_layer("probe", make_layers.build("elf-arm64.zip"), architectures=("x86_64",))

    result = run_extpack("fetch", layer.arn, check=5)

    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"extpack: error: {layer.arn}: /opt/extensions/probe")
    assert "arm64" in line and "--arch" in line
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()


def test_layers_overriding_each_other_are_listed_as_info(run_extpack, tmp_path):
    (tmp_path / "a.zip").write_bytes(make_layers.build("override-a.zip"))
    (tmp_path / "b.zip").write_bytes(make_layers.build("override-b.zip"))
    run_extpack("fetch", "a.zip", "b.zip", check=True)

    assert_reported(run_extpack, [], {("info", "overrides", None)}, code="overrides",
                    fix="reorder the layers if an override is not intended",
                    message_part="layer b.zip replaces 2 file(s) of earlier layers: /opt/shared/config.txt, "
                    "/opt/shared/tool.sh", exit_code=0, strict_exit=0)


def test_sizes_over_lambda_limits(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    manifest_path = stage / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["layers"][0]["unzipped_size"] = 250 * 1024 * 1024 + 1
    manifest["total_size"] = 10 * 1024 ** 3 + 1
    manifest_path.write_text(json.dumps(manifest))

    data = doctor(run_extpack, stage, check=6)
    assert summary(data) == {("error", "layer-too-large", None), ("error", "image-too-large", None)}
    assert only(data, "layer-too-large")["fix"] == "split the layer or drop what the function does not use"
    assert "layer.zip unzips to 262144001 bytes" in only(data, "layer-too-large")["message"]
    assert only(data, "image-too-large")["fix"] == "drop layers the function does not need"


# --------------------------------------------------------------------------- fetch runs the checks


def _layer_with(*entries) -> bytes:
    zb = ZipBuilder().file("ok.txt", "fine\n").dir("extensions")
    for add in entries:
        add(zb)
    return zb.getvalue()


FETCH_REFUSES = {
    # case: (layer, what the one line must say for a fix)
    "owner-only": (_layer_with(lambda z: z.file("extensions/x", SCRIPT, 0o700)), "fix: chmod 0755 /opt/extensions/x"),
    "junk-executable": (_layer_with(lambda z: z.file("extensions/x", SCRIPT, 0o755),
                                    lambda z: z.file("extensions/._x", "junk", 0o755)),
                        "zip -d LAYER.zip 'extensions/._x'"),
    "crlf": (_layer_with(lambda z: z.file("extensions/x", "#!/bin/sh\r\necho\r\n", 0o755)), "sed -i 's/\\r$//' x"),
    "too-many": (_many_extensions(11).getvalue(), "drop the layers whose extensions the function does not need"),
    "not-executable": (make_layers.build("ext-not-executable.zip"), "0755"),
    "wrong-cpu": (make_layers.build("elf-arm64.zip"), "--arch"),
    "junk-not-executable": pytest.param(
        _layer_with(lambda z: z.file("extensions/x", SCRIPT, 0o755), lambda z: z.file("extensions/._x", "junk")),
        "zip -d LAYER.zip 'extensions/._x'"),
    "dangling-link": pytest.param(
        _layer_with(lambda z: z.symlink("extensions/x", "../nowhere")), "ship the target in a layer"),
    "directory": pytest.param(
        _layer_with(lambda z: z.dir("extensions/sub"), lambda z: z.file("extensions/sub/x", SCRIPT, 0o755)),
        "move it out of /opt/extensions"),
}


@pytest.mark.parametrize(("layer", "fix"), FETCH_REFUSES.values(), ids=FETCH_REFUSES.keys())
def test_fetch_refuses_error_level_content_in_one_line(run_extpack, tmp_path, layer, fix):
    (tmp_path / "bad.zip").write_bytes(layer)

    result = run_extpack("fetch", "bad.zip", check=5)

    line, = result.stderr.strip().splitlines()
    assert line.startswith("extpack: error: bad.zip: /opt/extensions")
    assert fix in line
    assert result.stdout == ""
    assert not (tmp_path / ".extpack").exists() and not (tmp_path / "extpack.lock").exists()


def test_fetch_warns_and_strict_fetch_refuses_a_private_file(run_extpack, tmp_path, tree_snapshot):
    (tmp_path / "private.zip").write_bytes(clean_layer().file("data/secret.txt", "s\n", 0o600).getvalue())

    strict = run_extpack("fetch", "private.zip", "--strict", check=5)
    line, = strict.stderr.strip().splitlines()
    assert line.startswith("extpack: error: private.zip: /opt/data/secret.txt: mode 0600")
    assert "; fix: " in line
    assert tree_snapshot(tmp_path / ".extpack") == {} and not (tmp_path / "extpack.lock").exists()

    plain = run_extpack("fetch", "private.zip", check=0)
    assert "warning: /opt/data/secret.txt: mode 0600: the function's non-root user cannot read it" in plain.stderr
    assert stat.S_IMODE((tmp_path / ".extpack/opt/data/secret.txt").stat().st_mode) == 0o600
    # The warning stays a warning for doctor too.
    assert summary(doctor(run_extpack, check=0)) == {("warning", "not-readable", "opt/data/secret.txt")}


# --------------------------------------------------------------------------- --fix


def test_fix_adds_read_bits_removes_junk_and_refreshes_the_manifest(run_extpack, tmp_path):
    layer = (clean_layer().file("data/secret.txt", "s\n", 0o600)
             .dir("private", 0o700).file("private/inner.txt", "i\n", 0o644))
    stage = fetch(run_extpack, tmp_path, layer)
    (stage / EXT / "._ready").write_bytes(b"\x00\x05\x16\x07")
    chmod(stage / EXT / "ready", 0o700)
    run_extpack("verify", "--stage-dir", stage, "--lock", "stage.lock", check=6)  # hand-made changes show
    before = doctor(run_extpack, stage, check=6)
    assert summary(before) == {("error", "junk-extension", f"{EXT}/._ready"),
                               ("error", "extension-not-for-others", f"{EXT}/ready"),
                               ("warning", "not-readable", "opt/data/secret.txt"),
                               ("warning", "not-readable", "opt/private")}

    result = run_extpack("doctor", stage, "--fix", check=0)

    fixed = {line for line in result.stdout.splitlines() if line.startswith("fixed: ")}
    assert fixed == {f"fixed: removed /{EXT}/._ready", f"fixed: chmod 0755 /{EXT}/ready",
                     "fixed: chmod 0644 /opt/data/secret.txt", "fixed: chmod 0755 /opt/private"}
    assert result.stdout.rstrip().endswith(f"stage {stage}: 0 error(s), 0 warning(s), 0 note(s)")
    assert not (stage / EXT / "._ready").exists()
    assert stat.S_IMODE((stage / "opt/data/secret.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((stage / "opt/private").stat().st_mode) == 0o755
    assert stat.S_IMODE((stage / EXT / "ready").stat().st_mode) == 0o755
    run_extpack("verify", "--stage-dir", stage, "--lock", "stage.lock", check=0)
    after = doctor(run_extpack, stage, "--fix", check=0)
    assert after["findings"] == [] and after["fixed"] == []


def test_fix_leaves_what_is_not_safe_to_fix(run_extpack, tmp_path, tree_snapshot):
    stage = fetch(run_extpack, tmp_path, clean_layer().symlink("data/link", "/usr/lib/libssl.so.3"))
    chmod(stage / EXT / "probe", 0o644)  # which bits? the layer's publisher must say
    before = tree_snapshot(stage)

    data = doctor(run_extpack, stage, "--fix", check=6)

    assert data["fixed"] == []
    assert summary(data) == {("error", "extension-not-executable", f"{EXT}/probe"),
                             ("warning", "symlink-outside-opt", "opt/data/link")}
    assert tree_snapshot(stage) == before


def test_fix_removes_a_hidden_directory_in_extensions(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / ".cache").mkdir()
    (stage / EXT / ".cache" / "state").write_text("x\n")
    assert summary(doctor(run_extpack, stage, check=6)) == {("error", "junk-extension", f"{EXT}/.cache")}

    data = doctor(run_extpack, stage, "--fix", check=0)

    assert data["fixed"] == [f"removed /{EXT}/.cache"] and data["findings"] == []
    assert not (stage / EXT / ".cache").exists()


@pytest.mark.parametrize("replace", ["dangling-link", "directory"])
def test_extension_replaced_after_fetch_is_reported_not_a_crash(run_extpack, tmp_path, replace):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    (stage / EXT / "probe").unlink()
    if replace == "dangling-link":
        (stage / EXT / "probe").symlink_to("gone")
        expected = ("error", "extension-dangling", f"{EXT}/probe")
    else:
        (stage / EXT / "probe").mkdir()
        chmod(stage / EXT / "probe", 0o755)
        expected = ("error", "extension-not-file", f"{EXT}/probe")

    assert summary(doctor(run_extpack, stage, check=6)) == {expected}


def test_extension_link_outside_opt_is_a_warning_on_a_stage(run_extpack, tmp_path):
    (tmp_path / "outside.zip").write_bytes(_layer_with(lambda z: z.symlink("extensions/x", "/usr/bin/x-ext")))

    result = run_extpack("fetch", "outside.zip", check=0)

    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning: /opt/extensions/x"))
    assert "/usr/bin/x-ext" in warning
    data = doctor(run_extpack, check=0)
    assert [(f["severity"], f["path"]) for f in data["findings"]] == [("warning", f"{EXT}/x")]
    assert "/usr/bin/x-ext" in data["findings"][0]["message"]


# --------------------------------------------------------------------------- OCI layouts


def _image(run_extpack, stage: Path, out: str) -> Path:
    run_extpack("image", "--stage-dir", stage, "-o", out, check=True)
    return stage.parent / out


def test_oci_layout_gives_the_same_extension_findings(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer().file("extensions/plain", "not a script\n", 0o755))
    ext = stage / EXT
    chmod(ext / "probe", 0o700)
    (ext / "plain").write_bytes(ARM_ELF)
    (ext / "._probe").write_bytes(b"junk")
    (ext / "sub").mkdir()
    chmod(ext / "sub", 0o755)
    (ext / "crlf").write_bytes(b"#!/bin/sh\r\necho\r\n")
    chmod(ext / "crlf", 0o755)
    (ext / "lazy").write_bytes(X86_ELF)
    chmod(ext / "lazy", 0o644)
    chmod(stage / "opt/data/config.json", 0o600)
    on_stage = doctor(run_extpack, stage, check=6)
    assert summary(on_stage) == {
        ("error", "extension-not-for-others", f"{EXT}/probe"), ("error", "extension-wrong-cpu", f"{EXT}/plain"),
        ("error", "junk-extension", f"{EXT}/._probe"), ("error", "extension-not-file", f"{EXT}/sub"),
        ("error", "script-crlf", f"{EXT}/crlf"), ("error", "extension-not-executable", f"{EXT}/lazy"),
        ("warning", "not-readable", "opt/data/config.json")}

    layout = _image(run_extpack, stage, "oci")
    in_image = doctor(run_extpack, "--oci", layout, check=6)

    assert in_image["target"] == f"OCI layout {layout}"
    # The image has no /bin/sh: the one sound #!/bin/sh script is the one new finding.
    assert summary(in_image) == summary(on_stage) | {("error", "script-interpreter-missing", f"{EXT}/ready")}
    assert {(f["code"], f["path"], f["fix"]) for f in on_stage["findings"]} <= \
        {(f["code"], f["path"], f["fix"]) for f in in_image["findings"]}


def test_oci_layout_checks_interpreters(run_extpack, tmp_path):
    loader = "/lib64/ld-linux-x86-64.so.2"
    layer = (ZipBuilder().dir("extensions")
             .file("extensions/sh-ext", SCRIPT, 0o755)
             .file("extensions/dynamic", elf_with_interpreter(loader), 0o755)
             .file("extensions/own-loader", elf_with_interpreter("/opt/lib/ld.so"), 0o755)
             .file("extensions/static", X86_ELF, 0o755)
             .file("extensions/own-shell", "#!/opt/bin/sh -e\necho\n", 0o755)
             .dir("lib").file("lib/ld.so", X86_ELF, 0o755)
             .dir("bin").file("bin/real-sh", X86_ELF, 0o755).symlink("bin/sh", "real-sh"))
    stage = fetch(run_extpack, tmp_path, layer)
    # A stage has no root filesystem: interpreters cannot be checked there.
    assert doctor(run_extpack, stage, check=0)["findings"] == []
    layout = _image(run_extpack, stage, "oci")

    data = doctor(run_extpack, "--oci", layout, check=6)

    assert summary(data) == {("error", "script-interpreter-missing", f"{EXT}/sh-ext"),
                             ("error", "elf-interpreter-missing", f"{EXT}/dynamic")}
    script = only(data, "script-interpreter-missing")
    assert script["fix"] == "use a base image that has it, or change the #! line"
    assert "its interpreter /bin/sh is not in the image" in script["message"]
    elf = only(data, "elf-interpreter-missing")
    assert elf["fix"] == "use a base image with that libc, or a statically linked build of the extension"
    assert f"needs the loader {loader}" in elf["message"]
    text = text_report(run_extpack, "--oci", layout, check=6)
    assert f"error: /{EXT}/dynamic: {elf['message']}\n    fix: {elf['fix']}\n" in text


def test_oci_layout_of_an_arm64_stage_is_judged_as_arm64(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, make_layers.build("elf-arm64.zip"), arch="arm64")
    layout = _image(run_extpack, stage, "oci")
    assert doctor(run_extpack, "--oci", layout, "--arch", "arm64", check=0)["findings"] == []

    assert doctor(run_extpack, "--oci", layout, check=0)["findings"] == []


# --------------------------------------------------------------------------- usage errors


def _one_line_usage_error(result, message: str) -> None:
    assert result.stdout == ""
    line, = result.stderr.strip().splitlines()
    assert line.startswith("extpack: error: ") and message in line, result.stderr


def test_usage_errors(run_extpack, tmp_path):
    stage = fetch(run_extpack, tmp_path, clean_layer())
    layout = _image(run_extpack, stage, "oci")

    for args in ([stage, "--oci", layout], ["--image", "x:1", "--oci", layout], [stage, "--image", "x:1"]):
        _one_line_usage_error(run_extpack("doctor", *args, check=2), "give one of STAGE, --image or --oci")
    for args in (["--oci", layout], ["--image", "x:1"]):
        _one_line_usage_error(run_extpack("doctor", "--fix", *args, check=2), "--fix works on a stage, not on an image")
    _one_line_usage_error(run_extpack("doctor", check=2), "no stage at .extpack: run extpack fetch first")
    _one_line_usage_error(run_extpack("doctor", "missing", "--json", check=2), "no stage at missing")
    _one_line_usage_error(run_extpack("doctor", "--oci", stage, check=2), "is not an OCI image layout")
    _one_line_usage_error(run_extpack("doctor", "--arch", "mips", stage, check=2), "--arch")


def test_a_broken_oci_layout_is_one_line_naming_the_blob(run_extpack, tmp_path):
    layout = _image(run_extpack, fetch(run_extpack, tmp_path, clean_layer()), "oci")
    index = json.loads((layout / "index.json").read_text())
    manifest = layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]
    manifest.write_bytes(manifest.read_bytes() + b" ")
    _one_line_usage_error(run_extpack("doctor", "--oci", layout, check=2), "does not match its digest")
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"  # must not read outside the layout
    (layout / "index.json").write_text(json.dumps(index))
    _one_line_usage_error(run_extpack("doctor", "--oci", layout, check=2), "which is not a digest")


# --------------------------------------------------------------------------- local Docker images


@pytest.fixture
def docker_env(aws_env, docker_daemon):
    """aws_env plus what reaches the private daemon (extpack runs `docker save` with its env)."""
    return {**aws_env, **{k: v for k, v in docker_daemon.env.items() if k.startswith("DOCKER_")}}


@pytest.mark.docker
def test_docker_image_checks_interpreters_against_its_base(run_extpack, tmp_path, docker_daemon, busybox_base,
                                                            docker_env):
    layer = (ZipBuilder().dir("extensions")
             .file("extensions/sh-ext", SCRIPT, 0o755)
             .file("extensions/bash-ext", "#!/bin/bash\necho ready\n", 0o755)
             .file("extensions/dynamic", elf_with_interpreter("/lib64/ld-linux-x86-64.so.2"), 0o755)
             .dir("data").file("data/tool", "x", 0o644).symlink("data/shell", "/bin/sh"))
    stage = fetch(run_extpack, tmp_path, layer)
    # An extension linked to the base image's busybox (fetch would refuse it: see
    # test_extension_link_outside_opt_is_a_warning_on_a_stage).
    os.symlink("/bin/true", stage / EXT / "busybox-true")
    # On the stage, the link to /bin/sh cannot be checked; in the image it resolves.
    on_stage = json.loads(run_extpack("doctor", stage, "--json").stdout)
    assert ("warning", "symlink-outside-opt", "opt/data/shell") in summary(on_stage)
    run_extpack("render", "--stage-dir", stage, "--base", busybox_base, "--output", "Dockerfile", check=True)
    tag = f"extpack-test/doctor:{tmp_path.name.lower()}"
    docker_daemon.docker("build", "--network", "none", "-t", tag, tmp_path, timeout=300)
    try:
        data = doctor(run_extpack, "--image", tag, env=docker_env, check=6)

        assert data["target"] == f"image {tag}"
        # busybox has /bin/sh (and /bin/true, a link to it), but no bash and no glibc loader.
        assert summary(data) == {("error", "script-interpreter-missing", f"{EXT}/bash-ext"),
                                 ("error", "elf-interpreter-missing", f"{EXT}/dynamic")}
        bash = only(data, "script-interpreter-missing")
        assert "its interpreter /bin/bash is not in the image" in bash["message"]
        assert bash["fix"] == "use a base image that has it, or change the #! line"
        text = text_report(run_extpack, "--image", tag, env=docker_env, check=6)
        assert f"error: /{EXT}/bash-ext: {bash['message']}\n    fix: {bash['fix']}\n" in text
    finally:
        docker_daemon.docker("rmi", "-f", tag, check=False)


@pytest.mark.docker
def test_docker_image_that_does_not_exist(run_extpack, docker_daemon, docker_env):
    result = run_extpack("doctor", "--image", "extpack-test/no-such-image:1", env=docker_env, check=2)

    _one_line_usage_error(result, "cannot read image extpack-test/no-such-image:1: ")
