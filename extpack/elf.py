"""Read the CPU an ELF binary is built for, from the first bytes of its header."""

from __future__ import annotations

import struct

ELF_MAGIC = b"\x7fELF"
# e_machine values from the ELF specification, by the names Lambda uses for architectures.
MACHINES = {62: "x86_64", 183: "arm64", 3: "x86 (32-bit)", 40: "arm (32-bit)"}
HEADER_BYTES = 20


def elf_arch(header: bytes) -> str | None:
    """The architecture named by an ELF header, `None` when the bytes are not ELF."""
    if len(header) < HEADER_BYTES or not header.startswith(ELF_MAGIC):
        return None
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack_from(byte_order + "H", header, 18)
    return MACHINES.get(machine, f"unknown CPU (e_machine {machine})")
