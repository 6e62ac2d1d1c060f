"""The .dockerignore matcher render uses to tell whether docker build would leave the stage out.

It is held to moby's own patternmatcher (what BuildKit and the classic builder run, built
from tests/go-patternmatcher) over every short pattern of a tricky alphabet, and to docker-py's
PatternMatcher by a property test; a bad line is exit 2 naming the file and line, through
the real CLI.
"""

from __future__ import annotations

import itertools
import random
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from docker.utils.build import Pattern
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lambda_parts import go_build

from extpack.dockerignore import BadPattern, is_ignored, parse_rule

TESTS_DIR = Path(__file__).resolve().parent
DEMO_ZIP = TESTS_DIR.parent / "fixtures" / "demo-extension.zip"


# --------------------------------------------------------------------------- through the CLI

@pytest.fixture
def staged(run_extpack, tmp_path: Path) -> Path:
    shutil.copy(DEMO_ZIP, tmp_path / DEMO_ZIP.name)
    run_extpack("fetch", DEMO_ZIP.name, check=True)
    return tmp_path


@pytest.mark.parametrize("bad_line", ["[", "logs/[]a]", "x\\", "!"])
def test_a_bad_pattern_is_a_usage_error_naming_the_file_and_line(staged: Path, run_extpack, bad_line: str) -> None:
    ignore_file = staged / ".dockerignore"
    ignore_file.write_text(f"# build outputs\nnode_modules\n{bad_line}\n")

    result = run_extpack("render", check=2)

    assert f"{ignore_file}:3:" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("extpack: error: ") and result.stderr.count("\n") == 1
    assert not (staged / "Dockerfile").exists()


# --------------------------------------------------------------------------- against moby

def _known_moby_quirk(pattern: str) -> bool:
    """Patterns where moby's regex departs from the filepath.Match rules it documents; extpack keeps the rules.

    moby copies these characters into a Go regex unescaped: `^` outside a class (an anchor),
    `\\` before a letter or at the end (`\\d`, `\\$`), `|{}` (alternation, repetition), and `*`
    or `?` inside a class (a nested class).
    """
    outside_classes = re.sub(r"\[\^?[^]]*\]", "", pattern)
    return bool("^" in outside_classes or re.search(r"\\(\w|/|$)|[|{}]|\[(?:\\.|[^]\\])*[*?]", pattern))


ALPHABET = "a[]-^\\!*?/. "
PATHS = ["a", "!", "^", "-", "]", ".a", "a.b", "ab", "]a", " a", "a/a", "b/a", "a/b/c", "ab/-/a.b"]
TWO_LINE_FILES = ["a\n!a/b", "*\n!a", "**\n!**/b", "a/b\n!a", "# a\na", " # a\nb", "\ufeff#a\n*", "a\n!a\nb"]


def _every_pattern(alphabet: str, longest: int) -> list[str]:
    return ["".join(chars) for size in range(1, longest + 1) for chars in itertools.product(alphabet, repeat=size)]


def _extpack_verdict(dockerignore: str, path: str) -> str:
    try:
        rules = [rule for rule in map(parse_rule, dockerignore.removeprefix("\ufeff").split("\n")) if rule]
    except BadPattern:
        return "bad"
    return "ignored" if is_ignored(path, rules) else "kept"


@pytest.fixture(scope="module")
def moby_verdicts(tmp_path_factory: pytest.TempPathFactory):
    helper = go_build(TESTS_DIR / "go-patternmatcher", tmp_path_factory.mktemp("moby") / "patternmatcher")

    def verdicts(cases: list[tuple[str, str]]) -> list[str]:
        lines = "".join(f"{text.replace(chr(10), chr(0x1e))}\t{path}\n" for text, path in cases)
        out = subprocess.run([str(helper)], input=lines, capture_output=True, text=True, check=True).stdout
        assert out.count("\n") == len(cases)
        return out.split()
    return verdicts


def _longer_patterns(count: int, seed: int = 18) -> list[str]:
    """A fixed sample of 5 to 10 characters: the same corpus on every run."""
    chooser = random.Random(seed)
    return ["".join(chooser.choices(ALPHABET + "b", k=chooser.randint(5, 10))) for _ in range(count)]


def test_every_short_pattern_is_judged_as_moby_judges_it(moby_verdicts) -> None:
    patterns = [p for p in _every_pattern(ALPHABET, 3) + _every_pattern("a[]-^\\*/", 4) + _longer_patterns(20000)
                if not _known_moby_quirk(p)]
    cases = [(p, path) for p in patterns for path in PATHS] + [(f, path) for f in TWO_LINE_FILES for path in PATHS]
    expected = moby_verdicts(cases)

    # "malformed": docker's own check misses the bad class (it stops at the first part of the
    # pattern that does not match "."), so it matches by whatever regex it makes of it; extpack
    # holds every line to filepath.Match's grammar and rejects it.
    expected = ["bad" if verdict == "malformed" else verdict for verdict in expected]
    differing = [(text, path, want, got) for (text, path), want in zip(cases, expected)
                 if (got := _extpack_verdict(text, path)) != want]

    assert not differing, f"{len(differing)} of {len(cases)} differ from moby, e.g. {differing[:10]}"
    assert {"bad", "ignored", "kept"} <= set(expected)  # the corpus exercises every outcome


def test_moby_quirks_are_still_there(moby_verdicts) -> None:
    """If moby fixes a quirk above, this fails, and the exclusion can go."""
    assert moby_verdicts([("^*", "a"), ("[*]", "]"), ("\\a", "a")]) == ["ignored", "ignored", "kept"]
    assert [_extpack_verdict(p, path) for p, path in [("^*", "a"), ("[*]", "]"), ("\\a", "a")]] == [
        "kept", "kept", "ignored"]


# --------------------------------------------------------------------------- against docker-py

def _segment(text: str) -> bool:
    return text not in (".", "..")


PATTERN = st.text(alphabet="ab.*?[]-/", min_size=1, max_size=8)
PATH = st.lists(st.text(alphabet="ab.-[]", min_size=1, max_size=3).filter(_segment), min_size=1, max_size=3)


@settings(max_examples=3000, deadline=None)
@given(PATTERN, PATH.map("/".join))
def test_each_pattern_matches_what_docker_py_matches(pattern: str, path: str) -> None:
    """docker-py's PatternMatcher, where it follows moby.

    Left out: patterns moby rejects (docker-py has no syntax check), a cleaned pattern
    starting with `..` (docker-py drops it, Go keeps it), and `**` before a literal tail
    (moby matches that as a plain suffix, docker-py as `(.*/)?tail`).
    """
    try:
        rule = parse_rule(pattern)
    except BadPattern:
        assume(False)
    assume(rule is not None and not rule.pattern.startswith(".."))
    assume(not (rule.pattern.startswith("**") and rule.regex.pattern.startswith(".*") and rule.pattern != "**"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # docker-py's own regex for `[[`
        try:
            theirs = Pattern(pattern).match(path)
        except re.error:  # a backwards range, which extpack rejects too
            assume(False)
    assert bool(rule.regex.fullmatch(path)) == theirs
