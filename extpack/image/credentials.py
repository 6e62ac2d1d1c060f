"""Registry credentials: sources tried in order (an ECR token, then docker's config and its
credential helpers); when none has any, the registry is tried anonymously.

Secrets live only in `Credentials` objects and request headers; nothing here logs them,
and `Credentials.__repr__` hides them so a stray debug print cannot leak one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from extpack.exceptions import AwsError, UsageError
from extpack.image.reference import DOCKER_HUB, DOCKER_HUB_API

log = logging.getLogger(__name__)

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class Credentials:
    """A user name and secret; a user of `<token>` marks an OAuth2 identity (refresh) token."""

    username: str
    password: str = field(repr=False)
    source: str = "given"  # where they came from, for messages: the config file, "helper NAME", "ECR (REGION)"

    @property
    def identity_token(self) -> str | None:
        return self.password if self.username == "<token>" else None

    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def ecr_region(host: str) -> str | None:
    m = _ECR_HOST.match(host)
    return m.group(2) if m else None


def ecr_credentials(host: str) -> Credentials | None:
    """A 12-hour login token from `ecr.get_authorization_token` in the host's region.

    None when boto3 finds no AWS credentials at all (so a `docker login` can still be
    used); AwsError when AWS answers with an error.
    """
    region = ecr_region(host)
    if region is None:
        return None
    import boto3  # lazy: only pushes to ECR pay for importing boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        data = boto3.client("ecr", region_name=region).get_authorization_token()["authorizationData"][0]
    except NoCredentialsError:
        return None
    except ClientError as e:
        err = e.response.get("Error", {})
        raise AwsError(
            f"ECR get-authorization-token in {region} failed ({err.get('Code', 'error')}: {err.get('Message', '')}): "
            "check AWS_PROFILE and that your identity may call ecr:GetAuthorizationToken"
        ) from None
    except BotoCoreError as e:
        raise AwsError(f"ECR get-authorization-token in {region} failed ({e}): check your AWS configuration") from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return Credentials(user, password, source=f"ECR ({region})")


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _host_of_key(key: str) -> str:
    """config.json keys are `host`, `https://host`, or `https://host/v1/`: keep the host."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0]


def _run_helper(name: str, server: str, config_path: Path) -> Credentials | None:
    exe = f"docker-credential-{name}"
    try:
        proc = subprocess.run([exe, "get"], input=server, check=False, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UsageError(f"credential helper {exe} (named in {config_path}) is not on PATH: install it") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"credential helper {exe} did not answer in 60 s: check it works (`{exe} list`)") from None
    if proc.returncode != 0:
        # "credentials not found in native keychain" is the normal "no entry" answer
        log.debug("%s has no credentials for %s", exe, server)
        return None
    try:
        data = json.loads(proc.stdout)
        return Credentials(data["Username"], data["Secret"], source=f"helper {name}")
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"credential helper {exe} printed something that is not credentials JSON: check it") from None


def docker_config_credentials(host: str, config_path: Path | None = None) -> Credentials | None:
    """Look up `host` as docker does: credHelpers[host], then credsStore, then auths."""
    path = config_path or docker_config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path} ({e.__class__.__name__}): fix or remove it") from None
    server = DOCKER_HUB_AUTH_KEY if host in (DOCKER_HUB, DOCKER_HUB_API) else host
    want = _host_of_key(server)

    helpers = {_host_of_key(k): v for k, v in (config.get("credHelpers") or {}).items()}
    if want in helpers:
        return _run_helper(helpers[want], server, path)
    if config.get("credsStore"):
        creds = _run_helper(config["credsStore"], server, path)
        if creds:
            return creds
    for key, entry in (config.get("auths") or {}).items():
        if _host_of_key(key) != want or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials("<token>", entry["identitytoken"], source=str(path))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                raise UsageError(f"the auth entry for {key} in {path} is not base64: run docker login {host}") from None
            return Credentials(user, password, source=str(path))
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"], source=str(path))
    return None


class CredentialSource(Protocol):
    def lookup(self, host: str) -> Credentials | None:
        """Credentials for `host`, or None to let the next source answer."""


@dataclass(frozen=True)
class EcrToken:
    """A fresh token from AWS for an ECR host, unless docker's config names a helper for it
    (e.g. `ecr-login`): a `docker login` to ECR expires after 12 hours."""

    config_path: Path | None = None

    def lookup(self, host: str) -> Credentials | None:
        if not ecr_region(host) or host in _helper_hosts(self.config_path or docker_config_path()):
            return None
        return ecr_credentials(host)


@dataclass(frozen=True)
class DockerConfig:
    """Docker's config.json: its credential helpers and its `auths`."""

    config_path: Path | None = None

    def lookup(self, host: str) -> Credentials | None:
        return docker_config_credentials(host, self.config_path)


def _helper_hosts(path: Path) -> set[str]:
    try:
        helpers = json.loads(path.read_text()).get("credHelpers") or {}
    except (OSError, ValueError, AttributeError):
        helpers = {}
    return {_host_of_key(k) for k in helpers}


DEFAULT_SOURCES: tuple[CredentialSource, ...] = (EcrToken(), DockerConfig())


def find_credentials(host: str, sources: Sequence[CredentialSource] = DEFAULT_SOURCES) -> Credentials | None:
    """The first credentials a source has for `host`, in order; None: try the registry anonymously."""
    for source in sources:
        creds = source.lookup(host)
        if creds:
            return creds
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="a:b:pull,push"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest)
    }
    return scheme.lower(), params
