"""The words every extpack module shares: architectures, source kinds, tree entries, severities,
what counts as an extension, and Lambda's limits.

Types only (and the few pure rules that belong to them): this module imports no other extpack
module but `exceptions` and `validate` (which import none), so any module may import it
without forming a cycle.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from enum import Enum

from extpack import validate
from extpack.exceptions import UsageError


class _StrEnum(str, Enum):
    """An enum whose members are their strings: JSON, messages and comparisons see the value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Arch(_StrEnum):
    """A CPU as Lambda names it, with its OCI, Docker and ELF spellings."""

    X86_64 = "x86_64"
    ARM64 = "arm64"

    @classmethod
    def parse(cls, spelling: object) -> Arch:
        """Any accepted spelling (Lambda's, OCI's, Docker's platform, the kernel's), any case;
        exit 2 for anything else."""
        arch = _SPELLINGS.get(spelling.lower()) if isinstance(spelling, str) else None
        if arch is None:
            raise UsageError(f"unknown architecture {spelling!r}: use x86_64 or arm64 "
                             "(or amd64, aarch64, linux/amd64, linux/arm64)")
        return arch

    @classmethod
    def of_field(cls, value: object, field: str) -> Arch:
        """A file's or a peer's `arch` field, in Lambda's spelling only (validate.Invalid otherwise)."""
        if value not in ARCH_NAMES:
            raise validate.Invalid(field, f"must be {' or '.join(ARCH_NAMES)}, not {validate.shown(value)}")
        return cls(value)

    @classmethod
    def list_of_field(cls, value: object, field: str) -> tuple[Arch, ...]:
        """A list of architectures (a layer's compatible ones), in Lambda's spelling only."""
        if not isinstance(value, (list, tuple)) or any(item not in ARCH_NAMES for item in value):
            raise validate.Invalid(field, f"must be a list of {' and '.join(ARCH_NAMES)}, not {validate.shown(value)}")
        return tuple(map(cls, value))

    @property
    def oci(self) -> str:
        """The OCI/Go name: amd64 or arm64."""
        return "amd64" if self is Arch.X86_64 else "arm64"

    @property
    def oci_variant(self) -> str | None:
        return None if self is Arch.X86_64 else "v8"

    @property
    def docker_platform(self) -> str:
        """What `docker build --platform` and a Dockerfile's `FROM --platform` take."""
        return f"linux/{self.oci}"

    @property
    def elf_machine(self) -> int:
        """e_machine in an ELF header: EM_X86_64 or EM_AARCH64."""
        return 62 if self is Arch.X86_64 else 183

    @property
    def other(self) -> Arch:
        return Arch.ARM64 if self is Arch.X86_64 else Arch.X86_64


_SPELLINGS = {
    "x86_64": Arch.X86_64, "amd64": Arch.X86_64, "linux/amd64": Arch.X86_64,
    "arm64": Arch.ARM64, "aarch64": Arch.ARM64, "linux/arm64": Arch.ARM64, "linux/arm64/v8": Arch.ARM64,
}
ARCH_NAMES = tuple(arch.value for arch in Arch)  # ("x86_64", "arm64"): what --arch and the files accept
DEFAULT_ARCH = Arch.X86_64


class SourceKind(_StrEnum):
    """Where a layer comes from."""

    ARN = "arn"
    ZIP = "zip"
    URL = "url"


class EntryType(_StrEnum):
    """What a path in a tree is. A stage holds files, dirs and symlinks only; OTHER (a device,
    a fifo, a socket) is found in images and in stages someone changed."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"

    @classmethod
    def of_mode(cls, mode: int) -> EntryType:
        """The type of an lstat() result's st_mode."""
        return _TYPE_OF_FORMAT.get(stat.S_IFMT(mode), cls.OTHER)  # one lookup: called for every file of a tree


STAGED_TYPES = (EntryType.FILE, EntryType.DIR, EntryType.SYMLINK)
# A type by its name: a dict lookup, cheaper than EntryType(name) for every entry of a tree.
STAGED_TYPE_NAMED = {kind.value: kind for kind in STAGED_TYPES}
_TYPE_OF_FORMAT = {stat.S_IFREG: EntryType.FILE, stat.S_IFDIR: EntryType.DIR, stat.S_IFLNK: EntryType.SYMLINK}


# Not frozen, though nothing changes an entry once made: a frozen dataclass's __init__ sets each
# field through object.__setattr__, and a tree has thousands of entries, made on every run (manifest,
# views): ~1 µs more an entry, 5-10 ms of a no-op fetch or a render. Hashable by value all the same.
@dataclass(slots=True, unsafe_hash=True)
class TreeEntry:
    """One path of a tree (a stage's /opt, an image's root), as the checks and detectors see it."""

    path: str  # relative to the tree's root, no leading slash
    type: EntryType
    mode: int  # the permission bits
    size: int = 0
    target: str | None = None  # a symlink's, as written
    layer: int = 0  # in a stage: the index of the layer it came from


class Severity(_StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


EXTENSIONS_DIR = "extensions"  # under /opt: Lambda starts each executable directly in it
_IN_EXTENSIONS = EXTENSIONS_DIR + "/"


def is_extension(path: str) -> bool:
    """Whether `path` (relative to /opt) is directly in /opt/extensions, where Lambda looks."""
    return path.startswith(_IN_EXTENSIONS) and path.count("/") == 1


# Lambda's quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAYER_UNZIPPED_LIMIT = 250 * 1024 * 1024  # a layer (and function with its layers), unzipped
IMAGE_LIMIT = 10 * 1024 ** 3  # a container image, uncompressed
MAX_EXTENSIONS = 10  # extensions Lambda starts for one function


def size_limit_text(limit: int) -> str:
    """A size limit as a message names it: Lambda's own is called that."""
    if limit == LAYER_UNZIPPED_LIMIT:
        return "Lambda's 250 MB layer limit"
    return f"the max-layer-size limit of {limit} bytes"
