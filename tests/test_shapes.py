"""Layer shapes (extensions, wrapper scripts, library roots) and what render derives from them."""

from __future__ import annotations

import pytest

from extpack.model import EntryType, TreeEntry
from extpack.runtime_env import BaseKind, base_kind, layer_env
from extpack.shapes import LibraryRoot, Shapes, detect, is_wrapper_script

WRAPPERS = {
    "exec-quoted": '#!/bin/sh\nexport WRAPPED=1\nexec "$@"\n',
    "exec-braced-after-dashdash": '#!/bin/bash\nexec -- "${@}"\n',
    "exec-unquoted-in-if": '#!/bin/sh\nif [ -n "$X" ]; then exec $@; fi\n',
    "exec-a-program-with-the-args": '#!/bin/bash\nexec python3 /opt/python/bin/instrument "$@"\n',
    # ADOT's Python otel-instrument ends by running the instrumenter with "$@", without exec
    "last-command-passes-args": '#!/bin/bash\n: <<END\ndocs\nEND\nexport X=1\npython3 "$R/otel" "$@"\n',
    "python-execvp": "#!/usr/bin/env python3\nimport os, sys\nos.execvp(sys.argv[1], sys.argv[1:])\n",
}
NOT_WRAPPERS = {
    "no-shebang": 'exec "$@"\n',
    "exec-only-in-a-comment": '#!/bin/sh\n# exec "$@"\necho hello\n',
    "loops-over-its-args": '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n',
    "echoes-its-args-last": '#!/bin/sh\necho "$@"\n',
    "runs-nothing-given": "#!/bin/sh\nexec /opt/bin/server --port 8080\n",
    "elf": "\x7fELF\x02\x01\x01",
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_scripts_that_run_their_arguments_are_wrappers(name):
    assert is_wrapper_script(WRAPPERS[name].encode())


@pytest.mark.parametrize("name", sorted(NOT_WRAPPERS))
def test_other_files_are_not_wrappers(name):
    assert not is_wrapper_script(NOT_WRAPPERS[name].encode())


def _entry(path: str, kind: str, mode: int, layer: int) -> TreeEntry:
    return TreeEntry(path, EntryType(kind), mode, layer=layer)


def _detect(entries: list[TreeEntry], contents: dict[str, str]) -> Shapes:
    return detect(entries, lambda path: contents[path].encode())


def test_a_wrapper_is_an_executable_file_directly_under_opt():
    script = WRAPPERS["exec-quoted"]
    contents = {"otel-instrument": script, "not-executable": script, "tools/nested": script,
                "extensions/ext": script}
    entries = [_entry("otel-instrument", "file", 0o755, 1), _entry("not-executable", "file", 0o644, 0),
               _entry("tools", "dir", 0o755, 0), _entry("tools/nested", "file", 0o755, 0),
               _entry("extensions", "dir", 0o755, 0), _entry("extensions/ext", "file", 0o755, 0),
               _entry("link", "symlink", 0o777, 0)]
    shapes = _detect(entries, contents)
    assert [(w.path, w.layer) for w in shapes.wrappers] == [("/opt/otel-instrument", 1)]
    assert shapes.extensions == ("/opt/extensions/ext",)


def test_library_roots_per_runtime_with_the_layers_that_fill_them():
    dirs = ["python", "python/lib", "python/lib/python3.12", "python/lib/python3.12/site-packages",
            "nodejs", "nodejs/node_modules", "nodejs/node20", "nodejs/node20/node_modules", "java", "java/lib",
            "ruby", "ruby/gems", "ruby/gems/3.3.0", "ruby/lib", "bin", "lib", "empty", "python/lib/python2.7",
            "share"]
    files = {"python/lib/python3.12/site-packages/dd.py": 0, "python/mylib.py": 2,
             "nodejs/node_modules/x.js": 1, "nodejs/node20/node_modules/y.js": 1, "java/lib/a.jar": 0,
             "ruby/gems/3.3.0/g.gem": 0, "ruby/lib/r.rb": 0, "bin/jq": 1, "lib/libz.so": 0, "share/doc": 0}
    entries = [_entry(d, "dir", 0o755, 0) for d in dirs] + [_entry(f, "file", 0o644, i) for f, i in files.items()]
    roots = {r.path: (r.runtime, r.variable, r.layers) for r in _detect(entries, {}).library_roots}
    assert roots == {
        "/opt/bin": ("all", "PATH", (1,)),
        "/opt/lib": ("all", "LD_LIBRARY_PATH", (0,)),
        "/opt/java/lib": ("java", "CLASSPATH", (0,)),
        "/opt/nodejs/node20/node_modules": ("nodejs", "NODE_PATH", (1,)),
        "/opt/nodejs/node_modules": ("nodejs", "NODE_PATH", (1,)),
        "/opt/python": ("python", "PYTHONPATH", (0, 2)),
        "/opt/python/lib/python3.12/site-packages": ("python", "PYTHONPATH", (0,)),
        "/opt/ruby/gems/3.3.0": ("ruby", "GEM_PATH", (0,)),
        "/opt/ruby/lib": ("ruby", "RUBYLIB", (0,)),
    }


def test_an_empty_library_folder_is_not_a_root():
    entries = [_entry("bin", "dir", 0o755, 0), _entry("python", "dir", 0o755, 0)]
    assert _detect(entries, {}).library_roots == ()


def test_shapes_survive_the_manifest_round_trip():
    shapes = _detect([_entry("w", "file", 0o755, 0), _entry("lib", "dir", 0o755, 0),
                      _entry("lib/a.so", "file", 0o644, 0)], {"w": WRAPPERS["exec-quoted"]})
    assert Shapes.from_json(shapes.to_json()) == shapes


@pytest.mark.parametrize("base, rie, kind", [
    ("public.ecr.aws/lambda/python:3.12", False, BaseKind.MANAGED),
    ("amazon/aws-lambda-nodejs:20", False, BaseKind.MANAGED),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/lambda/java@sha256:" + "ab" * 32, False,
     BaseKind.MANAGED),
    ("public.ecr.aws/lambda/provided:al2023", False, BaseKind.CUSTOM),
    ("public.ecr.aws/lambda/python:3.12", True, BaseKind.OTHER),
    ("alpine:3.20", False, BaseKind.OTHER),
    ("python:3.12-slim", False, BaseKind.OTHER),
])
def test_which_bases_honour_the_wrapper_and_the_layer_paths(base, rie, kind):
    assert base_kind(base, rie) is kind


def test_layer_env_keeps_the_bases_value_first_and_lambdas_order():
    roots = (LibraryRoot("/opt/bin", "all", "PATH", (0,)),
             LibraryRoot("/opt/lib", "all", "LD_LIBRARY_PATH", (0,)),
             LibraryRoot("/opt/nodejs/node18/node_modules", "nodejs", "NODE_PATH", (0,)),
             LibraryRoot("/opt/nodejs/node20/node_modules", "nodejs", "NODE_PATH", (0,)),
             LibraryRoot("/opt/nodejs/node_modules", "nodejs", "NODE_PATH", (0,)),
             LibraryRoot("/opt/python", "python", "PYTHONPATH", (0,)),
             LibraryRoot("/opt/python/lib/python3.12/site-packages", "python", "PYTHONPATH", (0,)),
             LibraryRoot("/opt/java/lib", "java", "CLASSPATH", (0,)))
    env = layer_env(Shapes(library_roots=roots), BaseKind.OTHER)
    assert env == [
        ("PATH", "${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}:/opt/bin"),
        ("LD_LIBRARY_PATH", "${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH}:}/opt/lib"),
        ("PYTHONPATH", "${PYTHONPATH:+${PYTHONPATH}:}/opt/python/lib/python3.12/site-packages:/opt/python"),
        ("NODE_PATH", "${NODE_PATH:+${NODE_PATH}:}/opt/nodejs/node20/node_modules:"
                      "/opt/nodejs/node18/node_modules:/opt/nodejs/node_modules"),
        ("CLASSPATH", "${CLASSPATH:+${CLASSPATH}:}/opt/java/lib/*"),
    ]
    assert layer_env(Shapes(library_roots=roots), BaseKind.MANAGED) == []
    assert layer_env(Shapes(library_roots=roots), BaseKind.CUSTOM) == []
