"""Push an image (or a multi-arch index) with the OCI distribution API.

Order: ping `/v2/` (learns the auth scheme; fails fast on a wrong address), then per
blob HEAD (skip what the registry has) -> POST an upload -> one monolithic PUT
`?digest=`, then the manifests by digest and the tag last, so a tag never points at
something half-pushed. Auth: none, Basic, or the Bearer token dance, credentials
looked up (see `credentials`) only when the registry asks for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import quote, urljoin

import requests

from extpack import retry as retries
from extpack.exceptions import DownloadError, UsageError
from extpack.image.credentials import Credentials, find_credentials, parse_challenge
from extpack.image.reference import DEFAULT_TAG, Reference, parse_reference
from extpack.image.types import (
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    Blob,
    ImageBuild,
    Target,
    target_for,
)

log = logging.getLogger(__name__)

_RETRY_STATUS = {429, 500, 502, 503, 504}
_TIMEOUT = 300.0  # seconds for one request: a big layer on a slow link takes a while


class RegistryError(DownloadError):
    """The registry could not be reached or refused the push (exit 4, as other HTTP errors)."""


def push_reference(ref: str) -> Reference:
    """Where a push goes: `HOST[:PORT]/NAME[:TAG]`, `latest` when no tag is given; never a digest."""
    parsed = parse_reference(ref)
    if parsed.digest:
        raise UsageError(f"cannot push to {ref!r}: a push needs a tag, not a digest (e.g. HOST/NAME:TAG)")
    return parsed.tagged()


def push_order(target: Target) -> Iterator[Blob]:
    """Blobs in the order a registry needs them: layers and configs, then manifests, then the index."""
    rank = {MEDIA_LAYER_GZIP: 0, MEDIA_CONFIG: 0, MEDIA_MANIFEST: 1, MEDIA_INDEX: 2}
    yield from sorted(target.blobs, key=lambda b: (rank.get(b.media_type, 0), b.digest))


@dataclass
class PushResult:
    digest: str  # what the tag points at: the manifest, or the index for several builds
    reference: str
    uploaded: list[str] = field(default_factory=list)  # blob digests sent
    skipped: list[str] = field(default_factory=list)  # blob digests the registry already had


Body = Callable[[], IO[bytes] | bytes] | None


class _Client:
    def __init__(
        self, ref: Reference, *, insecure: bool, auth: Credentials | None, session: requests.Session, timeout: float
    ) -> None:
        self.ref = ref
        self.base = f"{'http' if insecure else 'https'}://{ref.api_host}/v2/"
        self.insecure = insecure
        self.session = session
        # connect quickly or fail (a black-holed host), but let a big blob take its time
        self.timeout = timeout
        self._timeouts = (min(30.0, timeout), timeout)
        self._creds = auth
        self._creds_looked_up = auth is not None
        self._auth_header: str | None = None

    # -- errors ----------------------------------------------------------------------

    def _where(self) -> str:
        return f"registry {self.ref.registry}"

    def _connection_error(self, e: requests.RequestException) -> RegistryError:
        if isinstance(e, requests.exceptions.SSLError):
            hint = (
                "if it serves plain HTTP (a local registry), pass --insecure-registry"
                if not self.insecure
                else "check its certificate"
            )
            return RegistryError(f"TLS handshake with {self._where()} failed: {hint}")
        if isinstance(e, requests.Timeout):
            return RegistryError(f"{self._where()} did not answer in {self.timeout:.0f} s: check it is up and reachable")
        reason = "connection refused" if "refused" in str(e).lower() else e.__class__.__name__
        hint = "check the host and port and that the registry is running"
        if not self.insecure:
            hint += "; for a plain-HTTP registry pass --insecure-registry"
        return RegistryError(f"{self._where()} is unreachable ({reason}): {hint}")

    def _login_hint(self) -> str:
        host = self.ref.registry
        if self._creds is None:
            return f"no credentials for {host}: run `docker login {host}` (extpack reads ~/.docker/config.json)"
        src = "given" if self._creds.source == "given" else f"from {self._creds.source}"
        return f"the credentials {src} were refused: run `docker login {host}` again"

    def _status_error(self, r: requests.Response, action: str) -> RegistryError:
        code, message = "", ""
        try:
            errors = r.json().get("errors") or []
            if errors:
                code, message = str(errors[0].get("code", "")), str(errors[0].get("message", ""))
        except (ValueError, AttributeError):
            pass
        detail = " ".join(f"{code} {message}".split())[:200]
        detail = f" {detail}" if detail else ""
        if r.status_code == 401:
            return RegistryError(f"{self._where()} refused access to {self.ref.repository} (HTTP 401{detail}, {action}): "
                                 + self._login_hint())
        if r.status_code == 403:
            return RegistryError(
                f"{self._where()} denied access to {self.ref.repository} (HTTP 403{detail}, {action}): "
                f"check that your account may push to {self.ref.repository}"
            )
        if r.status_code == 404 and action.startswith("starting"):
            return RegistryError(
                f"{self._where()} has no repository {self.ref.repository} (HTTP 404{detail}): create it first"
            )
        return RegistryError(f"{self._where()} answered HTTP {r.status_code}{detail} to {action}: retry, or check the registry's logs")

    # -- transport -------------------------------------------------------------------

    def request(
        self, method: str, url: str, action: str, *, body: Body = None, headers: dict[str, str] | None = None,
        ok: Sequence[int] = (200, 201, 202, 204), allow: Sequence[int] = (), retry: bool = True,
    ) -> requests.Response:
        """One logical request: auth challenges answered once, transient errors retried."""
        answered_challenge = False
        attempt = 0
        while True:
            attempt += 1
            h = dict(headers or {})
            if self._auth_header:
                h["Authorization"] = self._auth_header
            data = body() if body else None
            try:
                r = self.session.request(method, url, data=data, headers=h, timeout=self._timeouts, allow_redirects=True)
            except requests.RequestException as e:
                if retry and attempt < retries.attempts() and not isinstance(e, requests.exceptions.SSLError):
                    time.sleep(retries.backoff(attempt))
                    continue
                raise self._connection_error(e) from None
            finally:
                if data is not None and hasattr(data, "close"):
                    data.close()
            if r.status_code == 401 and not answered_challenge and "WWW-Authenticate" in r.headers:
                answered_challenge = True
                self._authorize(r.headers["WWW-Authenticate"], action)
                continue
            if retry and r.status_code in _RETRY_STATUS and attempt < retries.attempts():
                after = r.headers.get("Retry-After", "")
                time.sleep(min(float(after), 10.0) if after.isdigit() else retries.backoff(attempt))
                continue
            if r.status_code in ok or r.status_code in allow:
                return r
            raise self._status_error(r, action)

    def _credentials(self) -> Credentials | None:
        if not self._creds_looked_up:
            self._creds_looked_up = True
            self._creds = find_credentials(self.ref.registry)
            if self._creds:
                log.debug("using credentials from %s for %s", self._creds.source, self.ref.registry)
        return self._creds

    def _authorize(self, challenge: str, action: str) -> None:
        scheme, params = parse_challenge(challenge)
        creds = self._credentials()
        self._creds = creds
        if scheme == "basic":
            if creds is None or creds.identity_token:
                raise RegistryError(
                    f"{self._where()} needs a login for {action}: run `docker login {self.ref.registry}`"
                )
            self._auth_header = creds.basic_header()
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self._where()} asks for an unsupported auth scheme {scheme!r}: use docker to push")
        # Ask for push rights up front: the challenge to a HEAD names only "pull".
        scopes = [f"repository:{self.ref.repository}:pull,push"]
        if params.get("scope") and params["scope"] not in scopes:
            scopes.append(params["scope"])
        realm = params["realm"]
        try:
            if creds is not None and creds.identity_token:
                r = self.session.post(realm, timeout=self._timeouts, data={
                    "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": params.get("service", ""), "scope": " ".join(scopes), "client_id": "extpack",
                })
            else:
                q = {"scope": scopes, "service": params.get("service", "")}
                q = {k: v for k, v in q.items() if v}
                basic = (creds.username, creds.password) if creds else None
                r = self.session.get(realm, params=q, auth=basic, timeout=self._timeouts)
        except requests.RequestException as e:
            raise RegistryError(
                f"the token service of {self._where()} is unreachable ({e.__class__.__name__}): check the network"
            ) from None
        if r.status_code in (401, 403):
            raise RegistryError(
                f"the token service of {self._where()} refused the login (HTTP {r.status_code}, {action}): "
                + self._login_hint()
            )
        if r.status_code != 200:
            raise RegistryError(f"{self._where()} token service answered HTTP {r.status_code}: retry later")
        try:
            token = r.json().get("token") or r.json().get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RegistryError(f"{self._where()} token service sent no token: retry, or push with docker")
        self._auth_header = f"Bearer {token}"

    # -- the distribution API --------------------------------------------------------

    def ping(self) -> None:
        # no retries: a wrong address or a stopped registry should fail at once
        self.request("GET", self.base, f"connecting to {self.ref.registry}", retry=False)

    def ensure_blob(self, blob: Blob) -> bool:
        """Upload `blob` unless the registry has it; True when it was uploaded."""
        repo = self.ref.repository
        head = self.request(
            "HEAD", f"{self.base}{repo}/blobs/{blob.digest}", f"checking blob {blob.digest[:19]}", allow=(404,)
        )
        if head.status_code == 200:
            return False
        start = self.request(
            "POST", f"{self.base}{repo}/blobs/uploads/", f"starting an upload to {repo}", ok=(202,)
        )
        location = start.headers.get("Location")
        if not location:
            raise RegistryError(f"{self._where()} sent no upload location: it does not speak the OCI distribution API")
        url = urljoin(self.base, location)
        url += ("&" if "?" in url else "?") + "digest=" + quote(blob.digest, safe="")
        self.request(
            "PUT", url, f"uploading blob {blob.digest[:19]} ({blob.size} bytes)", body=blob.open,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}, ok=(201, 204),
        )
        return True

    def put_manifest(self, blob: Blob, reference: str) -> None:
        assert blob.data is not None
        r = self.request(
            "PUT", f"{self.base}{self.ref.repository}/manifests/{reference}", f"putting the manifest {reference}",
            body=lambda: blob.data or b"", headers={"Content-Type": blob.media_type}, ok=(200, 201),
        )
        got = r.headers.get("Docker-Content-Digest")
        if got and got != blob.digest:
            raise RegistryError(
                f"{self._where()} stored the manifest as {got}, not {blob.digest}: it rewrote it; push with docker"
            )


def push_image(
    builds: ImageBuild | Sequence[ImageBuild],
    ref: str,
    *,
    insecure: bool = False,
    auth: Credentials | None = None,
) -> PushResult:
    """Push one build (an image manifest) or several (an index, one manifest per platform).

    `auth` skips the credential lookup (`credentials.find_credentials`) for these credentials.
    """
    target = target_for(builds)
    image_ref = push_reference(ref)
    session = requests.Session()
    client = _Client(image_ref, insecure=insecure, auth=auth, session=session, timeout=_TIMEOUT)
    result = PushResult(target.digest, f"{image_ref}@{target.digest}")
    try:
        client.ping()
        for blob in push_order(target):
            if blob.media_type in (MEDIA_MANIFEST, MEDIA_INDEX):
                # by digest first; the tag is put last, below
                if blob is not target.top:
                    client.put_manifest(blob, blob.digest)
                continue
            if client.ensure_blob(blob):
                log.info("uploaded %s (%d bytes) to %s", blob.digest, blob.size, image_ref.registry)
                result.uploaded.append(blob.digest)
            else:
                log.info("%s already in %s: skipped", blob.digest, image_ref.registry)
                result.skipped.append(blob.digest)
        client.put_manifest(target.top, image_ref.tag or DEFAULT_TAG)
    finally:
        session.close()
    return result

