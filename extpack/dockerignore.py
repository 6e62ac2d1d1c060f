"""Docker's .dockerignore rules, to tell whether a build context would leave a path out.

Follows moby's patternmatcher (what both BuildKit and the classic builder use): a line is
trimmed and cleaned like a Go path, `*` and `?` stop at `/`, `**` crosses directories,
`[...]` is a character class, `\\` escapes the next character, a rule applies to a path or
any of its parents, and the last matching rule wins. A pattern Go's `filepath.Match`
rejects, or moby cannot compile, is a syntax error for docker build, so it is one here too.
Where moby's regex departs from the filepath.Match rules it documents (a `^` outside a class,
`|{}`, `\\` before a letter, `*` inside a class), this follows the rules.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from extpack.exceptions import UsageError

_WILDCARDS = re.compile(r"[*?\[\]\\]")


class BadPattern(ValueError):
    """A pattern docker build would reject (Go's filepath.ErrBadPattern)."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    regex: re.Pattern[str]
    negated: bool


def read_rules(path: Path) -> list[Rule]:
    """The rules of a .dockerignore file; a bad line is a usage error naming the file and line."""
    rules = []
    # moby splits on "\n" only (and drops a "\r" before it); a BOM at the start is not a pattern
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    for number, line in enumerate(text.split("\n"), 1):
        try:
            rule = parse_rule(line)
        except BadPattern as exc:
            raise UsageError(f"{path}:{number}: {exc}: docker build would reject this file too; "
                             "fix or remove the line") from None
        if rule is not None:
            rules.append(rule)
    return rules


def parse_rule(line: str) -> Rule | None:
    """One .dockerignore line as a rule; None for a blank line or a comment.

    Two steps, as in moby: the file reader makes the pattern relative to the context, then
    the matcher trims and cleans it again and takes a leading `!` as a negation.
    """
    if line.startswith("#"):  # only a `#` in the first column starts a comment
        return None
    pattern = line.strip()
    if not pattern:
        return None
    inverted = pattern.startswith("!")
    if inverted:
        pattern = pattern[1:].strip()
    if pattern:
        pattern = _go_clean(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]
    pattern = _go_clean(("!" if inverted else "") + pattern)
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
        if not pattern:
            raise BadPattern("'!' alone is not a pattern")
    try:
        return Rule(pattern, re.compile(translate(pattern)), negated)
    except re.error as exc:
        raise BadPattern(f"pattern {pattern!r}: {exc}") from None


def _go_clean(path: str) -> str:
    """Go's filepath.Clean (after trimming): posixpath keeps a leading "//", Go makes it "/"."""
    return posixpath.normpath(re.sub("^/+", "/", path.strip()))


def is_ignored(path: str, rules: list[Rule]) -> bool:
    """Whether a context-relative path is left out: a rule matching it or a parent applies; the last one wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    ignored = False
    for rule in rules:
        if any(rule.regex.fullmatch(candidate) for candidate in candidates):
            ignored = not rule.negated
    return ignored


def translate(pattern: str) -> str:
    """A Python regex for a cleaned pattern, as moby compiles it; BadPattern where Go's Match fails."""
    literal_tail = pattern[2:]
    if pattern.startswith("**") and not literal_tail.startswith("/") and not _WILDCARDS.search(literal_tail):
        # moby matches `**` and a literal tail as a plain suffix: `**.log` ignores `logs/a.log`
        return ".*" + re.escape(literal_tail)
    regex, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            index += 2
            if pattern.startswith("/", index):
                index += 1
            regex += ".*" if index == len(pattern) else "(?:.*/)?"
            continue
        index += 1
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "\\":
            if index == len(pattern):
                raise BadPattern(f"pattern {pattern!r} ends with a lone '\\'")
            regex += re.escape(pattern[index])
            index += 1
        elif char == "[":
            members, index = _character_class(pattern, index)
            regex += members
        else:
            regex += re.escape(char)
    return regex


def _character_class(pattern: str, index: int) -> tuple[str, int]:
    """The class after a `[` at index-1, by Go's filepath.Match grammar.

    Members are characters or ranges lo-hi, `\\` escapes one, a leading `^` negates (a
    leading `!` is a member: Go has no `!` negation), and there is at least one member.
    """
    members, count = "", 0
    if pattern.startswith("^", index):
        members, index = "^", index + 1
    while True:
        if pattern.startswith("]", index) and count > 0:
            return f"[{members}]", index + 1
        low, index = _class_char(pattern, index)
        if pattern.startswith("-", index):
            high, index = _class_char(pattern, index + 1)
            if high < low:
                raise BadPattern(f"pattern {pattern!r} has the backwards range {low}-{high}")
            members += f"{re.escape(low)}-{re.escape(high)}"
        else:
            members += re.escape(low)
        count += 1


def _class_char(pattern: str, index: int) -> tuple[str, int]:
    """One possibly escaped character of a class; Go rejects `-`, `]` or the end here."""
    if index >= len(pattern) or pattern[index] in "-]":
        raise BadPattern(f"pattern {pattern!r} has an unclosed or malformed '[...]' class")
    if pattern[index] == "\\":
        index += 1
        if index >= len(pattern):
            raise BadPattern(f"pattern {pattern!r} has an unclosed '[...]' class")
    if index + 1 >= len(pattern):
        raise BadPattern(f"pattern {pattern!r} has an unclosed '[...]' class")
    return pattern[index], index + 1
