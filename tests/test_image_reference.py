"""The one image-reference grammar (`extpack.image.reference`): docker's rules, checked piece by piece."""

from __future__ import annotations

import pytest

from extpack.exceptions import UsageError
from extpack.image.archive import docker_tag
from extpack.image.reference import Reference, check_ref_name, parse_reference
from extpack.image.registry import push_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "parsed"), [
    ("alpine", Reference(None, "alpine")),
    ("team/ext:2", Reference(None, "team/ext", "2")),
    ("localhost/x", Reference("localhost", "x")),
    ("localhost:5000/a/b:v1", Reference("localhost:5000", "a/b", "v1")),
    ("127.0.0.1:5000/ext/demo", Reference("127.0.0.1:5000", "ext/demo")),
    ("Registry.Example.com/a__b/c-d.e:V_1.0-rc", Reference("Registry.Example.com", "a__b/c-d.e", "V_1.0-rc")),
    (f"ghcr.io/o/r@{DIGEST}", Reference("ghcr.io", "o/r", None, DIGEST)),
    (f"host:443/o/r:1@{DIGEST}", Reference("host:443", "o/r", "1", DIGEST)),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ext:2",
     Reference("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "ext", "2")),
])
def test_parts(text: str, parsed: Reference) -> None:
    assert parse_reference(text) == parsed


def test_a_first_component_is_a_host_only_with_a_dot_a_colon_or_localhost() -> None:
    assert parse_reference("team/ext").domain is None
    assert parse_reference("localhost/ext").domain == "localhost"
    assert parse_reference("my.host/ext").domain == "my.host"
    assert parse_reference("myhost:80/ext").domain == "myhost:80"
    assert parse_reference("localhost").path == "localhost"  # no slash: a name, not a host


@pytest.mark.parametrize(("text", "registry", "repository", "api_host", "full"), [
    ("alpine", "docker.io", "library/alpine", "registry-1.docker.io", "docker.io/library/alpine"),
    ("docker.io/alpine:3", "docker.io", "library/alpine", "registry-1.docker.io", "docker.io/library/alpine:3"),
    ("team/ext:2", "docker.io", "team/ext", "registry-1.docker.io", "docker.io/team/ext:2"),
    ("localhost:5000/a/b:v1", "localhost:5000", "a/b", "localhost:5000", "localhost:5000/a/b:v1"),
    (f"ghcr.io/o/r@{DIGEST}", "ghcr.io", "o/r", "ghcr.io", f"ghcr.io/o/r@{DIGEST}"),
])
def test_docker_hub_defaults(text: str, registry: str, repository: str, api_host: str, full: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.api_host, str(ref)) == (registry, repository, api_host, full)


def test_latest_is_added_only_where_nothing_names_the_image() -> None:
    assert parse_reference("alpine").tagged().tag == "latest"
    assert parse_reference("alpine:3").tagged().tag == "3"
    assert parse_reference(f"alpine@{DIGEST}").tagged() == Reference(None, "alpine", None, DIGEST)
    assert parse_reference("demo-ext").familiar() == "demo-ext:latest"
    assert parse_reference("localhost:5000/x").familiar() == "localhost:5000/x:latest"  # the host stays as written


@pytest.mark.parametrize("bad", [
    "", "Upper/Case:1", "host:5000/a b:1", "a//b", "a/", "/a", "-a", "a-", "a:", ":1", "a:b:c", "a:-1",
    "a:" + "t" * 129, "a@sha256:short", "a@", "a@:" + "0" * 64, "bad_host:5000/x", "host:port/x", "a..b",
])
def test_bad_references_name_the_label(bad: str) -> None:
    with pytest.raises(UsageError, match=r"^bad --push value .*lower-case name"):
        parse_reference(bad, label="--push value")


def test_a_push_needs_a_tag_and_gets_latest() -> None:
    assert str(push_reference("localhost:5000/x")) == "localhost:5000/x:latest"
    with pytest.raises(UsageError, match="a push needs a tag, not a digest"):
        push_reference(f"localhost:5000/x@{DIGEST}")


def test_a_docker_archive_tag_is_written_as_given_plus_latest() -> None:
    assert docker_tag("demo-ext") == "demo-ext:latest"
    assert docker_tag("ext/opt:1") == "ext/opt:1"
    with pytest.raises(UsageError, match="not a digest"):
        docker_tag(f"demo@{DIGEST}")
    with pytest.raises(UsageError, match="^bad tag 'Demo'"):
        docker_tag("Demo")


@pytest.mark.parametrize("good", ["demo:1", "team/ext:2", "Demo--x", "v1.0", "a@b+c"])
def test_layout_ref_names(good: str) -> None:
    check_ref_name(good)


@pytest.mark.parametrize("bad", ["", "no spaces", "a:", ":a", "a//b", "a---b", "é"])
def test_bad_layout_ref_names(bad: str) -> None:
    with pytest.raises(UsageError, match="bad tag"):
        check_ref_name(bad)
