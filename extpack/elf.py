"""Read the CPU an ELF binary is built for, from the first bytes of its header."""

from __future__ import annotations

import struct

from extpack.model import Arch

ELF_MAGIC = b"\x7fELF"
# e_machine values from the ELF specification: Lambda's CPUs, and the 32-bit ones it never runs.
MACHINES = {**{arch.elf_machine: arch.value for arch in Arch}, 3: "x86 (32-bit)", 40: "arm (32-bit)"}
HEADER_BYTES = 20


def elf_arch(header: bytes) -> str | None:
    """The architecture named by an ELF header, `None` when the bytes are not ELF."""
    if len(header) < HEADER_BYTES or not header.startswith(ELF_MAGIC):
        return None
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack_from(byte_order + "H", header, 18)
    return MACHINES.get(machine, f"unknown CPU (e_machine {machine})")


PT_INTERP = 3
MAX_INTERP = 4096


def elf_interpreter(read_at) -> str | None:
    """The PT_INTERP path of an ELF file (its dynamic loader), `None` for a static binary.

    `read_at(offset, size)` reads from the file, so this works on a stage file or a tar member.
    """
    ident = read_at(0, 64)
    if len(ident) < 52 or not ident.startswith(ELF_MAGIC):
        return None
    is64 = ident[4] == 2
    order = "<" if ident[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(order + "Q", ident, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", ident, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 0x2A)
    table = read_at(phoff, phentsize * min(phnum, 256))
    for index in range(min(phnum, 256)):
        entry = table[index * phentsize:(index + 1) * phentsize]
        if len(entry) < (56 if is64 else 32):
            return None
        if struct.unpack_from(order + "I", entry, 0)[0] != PT_INTERP:
            continue
        if is64:
            offset, = struct.unpack_from(order + "Q", entry, 0x08)
            size, = struct.unpack_from(order + "Q", entry, 0x20)
        else:
            offset, = struct.unpack_from(order + "I", entry, 0x04)
            size, = struct.unpack_from(order + "I", entry, 0x10)
        return read_at(offset, min(size, MAX_INTERP)).rstrip(b"\x00").decode("utf-8", "replace")
    return None
