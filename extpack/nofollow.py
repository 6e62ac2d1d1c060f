"""File operations on a tree that never follow a symlink out of it.

Everything works relative to directory file descriptors opened with O_NOFOLLOW, one
component at a time, so a directory swapped for a link (before or during a run) is met as
a link and refused or removed, never entered; and a path counts only from the tree's root,
so a deep tree is not limited by where the tree happens to live. Walks and removal are
iterative: a tree 2,000 levels deep needs no recursion.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
from collections.abc import Iterator
from typing import NamedTuple

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO put in a tree must not hang the reader.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
OWNER_ALL = 0o700
# A walk holds one descriptor per level; a tree as deep as a 4 KB path allows needs ~2,000.
_DEEP = 256


def open_dir(name: str | os.PathLike, dir_fd: int | None = None) -> int:
    """A directory's descriptor; OSError (ELOOP/ENOTDIR) when `name` is a symlink."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def open_beneath(root_fd: int, rel: str, flags: int = FILE_FLAGS) -> int:
    """Open `rel` below `root_fd`, refusing a symlink at every component (ELOOP/ENOTDIR)."""
    parent_fd, name = open_parent(root_fd, rel)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    finally:
        if parent_fd != root_fd:
            os.close(parent_fd)


def open_parent(root_fd: int, rel: str) -> tuple[int, str]:
    """(descriptor of rel's directory, rel's last name); close the descriptor unless it is root_fd."""
    *parents, name = rel.split("/")
    current = root_fd
    try:
        for part in parents:
            following = open_dir(part, current)
            if current != root_fd:
                os.close(current)
            current = following
    except BaseException:
        if current != root_fd:
            os.close(current)
        raise
    return current, name


def chmod(dir_fd: int, name: str, mode: int) -> None:
    """chmod `name` (a file or directory, never a link's target), even one its owner cannot open."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except PermissionError:  # mode 0000 or 0311, as a non-root owner: O_PATH needs no permission
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, "is a symlink", name) from None
            os.chmod(f"/proc/self/fd/{fd}", mode)  # the inode just opened, whatever the path now is
        finally:
            os.close(fd)
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


class Item(NamedTuple):  # a tuple: made once per entry of every walk, it must be cheap
    """One entry met by `walk`: `dir_fd` is its directory's descriptor, valid while it is yielded."""

    rel: str
    name: str
    dir_fd: int
    stat: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)

    def readlink(self) -> str:
        return os.readlink(self.name, dir_fd=self.dir_fd)

    def open(self) -> int:
        return os.open(self.name, FILE_FLAGS, dir_fd=self.dir_fd)


def walk(root_fd: int, *, on_error=None) -> Iterator[Item]:
    """Every entry below `root_fd` (lstat'd, links never entered), each directory's entries
    before its subdirectories'. `on_error(rel, exc)` is called for a directory that cannot be
    opened or listed (then skipped); without it the OSError is raised."""
    stack: list[tuple[int, str, Iterator[str]]] = []  # the open directories above the current one
    fd, prefix = root_fd, ""
    try:
        while True:
            subdirs = []
            try:
                with os.scandir(fd) as entries:
                    listed = [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]
            except OSError as exc:
                if on_error is None:
                    raise
                on_error(prefix[:-1], exc)
                listed = []
            for name, st in listed:
                yield Item(prefix + name, name, fd, st)
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(name)
            stack.append((fd, prefix, iter(subdirs)))
            fd = -1
            while fd == -1 and stack:  # the next subdirectory to list, depth first
                parent_fd, parent_prefix, pending = stack[-1]
                name = next(pending, None)
                if name is None:
                    stack.pop()
                    if parent_fd != root_fd:
                        os.close(parent_fd)
                    continue
                try:
                    fd = open_dir(name, parent_fd)
                except OSError as exc:
                    if on_error is None:
                        raise
                    on_error(parent_prefix + name, exc)
                    continue
                prefix = parent_prefix + name + "/"
                if len(stack) > _DEEP:
                    _make_room_for_descriptors()
            if fd == -1:
                return
    finally:
        if fd not in (-1, root_fd):
            os.close(fd)
        for parent_fd, _, _ in stack:
            if parent_fd != root_fd:
                os.close(parent_fd)


def remove(path: str | os.PathLike) -> None:
    """Remove `path` and all below it, whatever modes its directories have; a symlink (at
    `path` or anywhere below) is removed, never followed. A missing path is not an error."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remove_entry(parent_fd, name)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent_fd)


def remove_entry(parent_fd: int, name: str) -> None:
    """Remove `name` in `parent_fd` (a file, a link, or a whole directory tree) iteratively."""
    top = _open_for_removal(parent_fd, name)
    if top is None:
        return
    stack: list[tuple[int, int, str, Iterator[str]]] = [(top, parent_fd, name, iter(_empty_files(top)))]
    try:
        while stack:
            fd, above, own_name, subdirs = stack[-1]
            child_name = next(subdirs, None)
            if child_name is None:
                stack.pop()
                os.close(fd)
                os.rmdir(own_name, dir_fd=above)
                continue
            child = _open_for_removal(fd, child_name)
            if child is not None:
                if len(stack) > _DEEP:
                    _make_room_for_descriptors()
                stack.append((child, fd, child_name, iter(())))
                stack[-1] = (child, fd, child_name, iter(_empty_files(child)))
    finally:
        for fd, _, _, _ in stack:
            os.close(fd)


def _open_for_removal(parent_fd: int, name: str) -> int | None:
    """A writable descriptor of directory `name`, or None once a non-directory was unlinked."""
    try:
        fd = open_dir(name, parent_fd)
    except PermissionError:  # 0000 or 0311 as a non-root owner: let ourselves in
        chmod(parent_fd, name, OWNER_ALL)
        fd = open_dir(name, parent_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=parent_fd)  # a file or a link: removed, not followed
        return None
    mode = os.fstat(fd).st_mode
    if mode & OWNER_ALL != OWNER_ALL:  # 0500: its entries cannot be unlinked until it is writable
        os.fchmod(fd, stat.S_IMODE(mode) | OWNER_ALL)
    return fd


def _empty_files(fd: int) -> list[str]:
    """Unlink every non-directory in `fd`; returns its subdirectories' names."""
    subdirs = []
    with os.scandir(fd) as entries:
        listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in listed:
        if is_dir:
            subdirs.append(name)
        else:
            os.unlink(name, dir_fd=fd)
    return subdirs


_room_made = False


def _make_room_for_descriptors() -> None:
    """Raise the soft descriptor limit to the hard one, once: a deep walk holds one per level."""
    global _room_made
    if _room_made:
        return
    _room_made = True
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass
