"""`extpack image --push`: the OCI distribution API against Debian's real docker-registry.

Each test starts its own registry on 127.0.0.1 (plain HTTP, so `insecure=True`), with
its access log on so the tests can count what the registry actually received. Auth is
tested for real too: htpasswd (Basic) and token auth (Bearer, with a small token
service here that signs JWTs the registry verifies against our certificate).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_factory import make_stage

from extpack.exceptions import UsageError
from extpack.image import build_image
from extpack.image.credentials import (
    Credentials,
    docker_config_credentials,
    ecr_credentials,
    parse_challenge,
)
from extpack.image.registry import RegistryError, push_image, push_reference

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
pytestmark = pytest.mark.skipif(
    not (os.access(REGISTRY_BIN, os.X_OK) and os.access(SKOPEO, os.X_OK)),
    reason="needs Debian's docker-registry and skopeo (apt-get install docker-registry skopeo)",
)

USER, PASSWORD = "pusher", "s3cret-Pa55"
REPO = "ext/demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    log: Path
    proc: subprocess.Popen[bytes]

    def requests(self, method: str, pattern: str) -> list[str]:
        """Request lines of the access log (combined format) with `method` and a path matching `pattern`."""
        text = self.log.read_text(errors="replace")
        lines = re.findall(r'"([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3})', text)
        return [path for m, path, _ in lines if m == method and re.search(pattern, path)]


def start_registry(tmp_path: Path, auth: dict | None = None) -> Registry:
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    path = tmp_path / f"registry-{port}.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    log = tmp_path / f"registry-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(path)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # 401 from an auth-protected registry: it is up
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"docker-registry did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
    return Registry(f"127.0.0.1:{port}", log, proc)


def stop(reg: Registry) -> None:
    reg.proc.terminate()
    try:
        reg.proc.wait(10)
    except subprocess.TimeoutExpired:
        reg.proc.kill()
        reg.proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path)
    yield reg
    stop(reg)


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return make_stage(tmp_path / "stage")


@pytest.fixture(autouse=True)
def _isolated_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read the developer's ~/.docker/config.json; tests write their own."""
    conf = tmp_path / "docker-config"
    conf.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(conf))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return conf


def skopeo_inspect(ref: str, *extra: str) -> dict:
    out = subprocess.run([SKOPEO, "inspect", "--tls-verify=false", *extra, f"docker://{ref}"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- plain pushes


def test_push_then_skopeo_sees_the_same_digest_and_no_blob_is_uploaded_twice(
    registry: Registry, stage: Path
) -> None:
    ref = f"{registry.host}/{REPO}:1"
    with build_image(stage) as b:
        first = push_image(b, ref, insecure=True)
        assert first.digest == b.digest
        assert sorted(first.uploaded) == sorted([b.layer.digest, b.config.digest]) and not first.skipped
        uploads_after_first = registry.requests("PUT", r"/blobs/uploads/")
        assert len(uploads_after_first) == 2

        second = push_image(b, ref, insecure=True)
        assert second.digest == b.digest and not second.uploaded
        assert registry.requests("PUT", r"/blobs/uploads/") == uploads_after_first  # nothing new was sent
        assert len(registry.requests("POST", r"/blobs/uploads/")) == 2  # no upload was even started

        # a new tag of the same image costs one manifest PUT, no blob
        assert push_image(b, f"{registry.host}/{REPO}:also", insecure=True).digest == b.digest
        assert registry.requests("PUT", r"/blobs/uploads/") == uploads_after_first
        digest = b.digest

    info = skopeo_inspect(ref)
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64"
    assert info["Labels"]["io.extpack.layer.0.arn"].endswith(":layer:demo:3")
    raw = skopeo_inspect(ref, "--raw")
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert skopeo_inspect(f"{registry.host}/{REPO}:also")["Digest"] == digest


def test_multi_arch_push_is_an_index_under_one_tag(registry: Registry, tmp_path: Path) -> None:
    amd = make_stage(tmp_path / "amd", arch="x86_64")
    arm = make_stage(tmp_path / "arm", arch="arm64",
                     tree={"extensions": (0o755, None), "extensions/demo": (0o755, b"arm64\n")})
    ref = f"{registry.host}/{REPO}:multi"
    with build_image(amd) as a, build_image(arm) as r:
        top = push_image([a, r], ref, insecure=True).digest
        per_arch = {"amd64": a.digest, "arm64": r.digest}
    raw = skopeo_inspect(ref, "--raw")
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["platform"]["architecture"]: m["digest"] for m in raw["manifests"]} == per_arch
    for arch, digest in per_arch.items():
        info = skopeo_inspect(f"{registry.host}/{REPO}@{digest}")
        assert info["Architecture"] == arch
    assert skopeo_inspect(ref)["Digest"] == top


# --------------------------------------------------------------------------- errors


def test_unreachable_registry_is_one_clear_line(stage: Path) -> None:
    port = free_port()  # nothing listens here
    with build_image(stage) as b, pytest.raises(RegistryError) as exc:
        push_image(b, f"127.0.0.1:{port}/{REPO}:1", insecure=True)
    msg = str(exc.value)
    assert f"registry 127.0.0.1:{port} is unreachable (connection refused)" in msg
    assert "\n" not in msg and exc.value.exit_code == 4


def test_https_to_a_plain_http_registry_suggests_insecure(registry: Registry, stage: Path) -> None:
    with build_image(stage) as b, pytest.raises(RegistryError, match="--insecure-registry"):
        push_image(b, f"{registry.host}/{REPO}:1")


def test_bad_references_are_usage_errors() -> None:
    for bad in ("Upper/Case:1", "127.0.0.1:5000/x@sha256:" + "0" * 64, "host:5000/a b:1"):
        with pytest.raises(UsageError):
            push_reference(bad)
    assert str(push_reference("alpine")) == "docker.io/library/alpine:latest"
    assert push_reference("localhost:5000/a/b:v1").repository == "a/b"
    assert push_reference("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ext:2").registry.endswith("amazonaws.com")


# --------------------------------------------------------------------------- auth: Basic (htpasswd)


def _bcrypt(password: str) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # libxcrypt's bcrypt; the registry reads $2b$ hashes
    except ImportError:
        pytest.skip("needs the crypt module to write an htpasswd file")
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("libcrypt has no bcrypt")
    return hashed


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{_bcrypt(PASSWORD)}\n")
    reg = start_registry(tmp_path, {"htpasswd": {"realm": "extpack-test", "path": str(htpasswd)}})
    yield reg
    stop(reg)


def test_basic_auth_from_docker_config_auths(basic_registry: Registry, stage: Path,
                                             _isolated_docker_config: Path) -> None:
    ref = f"{basic_registry.host}/{REPO}:1"
    with build_image(stage) as b:
        with pytest.raises(RegistryError) as exc:
            push_image(b, ref, insecure=True)
        assert f"docker login {basic_registry.host}" in str(exc.value)

        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (_isolated_docker_config / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": token}}}))
        assert push_image(b, ref, insecure=True).digest == b.digest

        # a wrong password: refused, and neither secret appears in the message
        wrong = base64.b64encode(f"{USER}:not-it".encode()).decode()
        (_isolated_docker_config / "config.json").write_text(json.dumps({"auths": {f"https://{basic_registry.host}": {"auth": wrong}}}))
        with pytest.raises(RegistryError) as exc:
            push_image(b, ref, insecure=True)
    msg = str(exc.value)
    assert "401" in msg and "docker login" in msg and "not-it" not in msg and wrong not in msg and "\n" not in msg


def test_basic_auth_from_a_credential_helper(basic_registry: Registry, stage: Path, tmp_path: Path,
                                             _isolated_docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    seen = tmp_path / "helper-stdin"
    helper = bindir / "docker-credential-extpacktest"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 2\ncat > "{seen}"\n'
        f"printf '%s' '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (_isolated_docker_config / "config.json").write_text(
        json.dumps({"credHelpers": {basic_registry.host: "extpacktest"}, "auths": {}}))
    with build_image(stage) as b:
        assert push_image(b, f"{basic_registry.host}/{REPO}:helper", insecure=True).digest == b.digest
    assert seen.read_text() == basic_registry.host  # the helper got the host on stdin

    # credsStore serves every host that has no credHelpers entry
    (_isolated_docker_config / "config.json").write_text(json.dumps({"credsStore": "extpacktest"}))
    creds = docker_config_credentials(basic_registry.host)
    assert creds is not None and (creds.username, creds.password) == (USER, PASSWORD)
    assert PASSWORD not in repr(creds)


# --------------------------------------------------------------------------- auth: Bearer (token service)


class TokenService:
    """A minimal Docker token service: Basic-authenticates, then signs an RS256 JWT."""

    def __init__(self, tmp_path: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "extpack-test-token")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        self.cert_path = tmp_path / "token.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests: list[dict] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                q = parse_qs(urlparse(self.path).query)
                header = self.headers.get("Authorization", "")
                user = None
                if header.startswith("Basic "):
                    u, _, p = base64.b64decode(header[6:]).decode().partition(":")
                    if (u, p) != (USER, PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u
                service.requests.append({"user": user, "scope": q.get("scope", []), "service": q.get("service")})
                access = []
                for scope in q.get("scope", []) if user else []:
                    kind, _, rest = scope.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": repo, "actions": actions.split(",")})
                body = json.dumps({"token": service.sign(user or "", access), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, subject: str, access: list[dict]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": "extpack-test-issuer", "sub": subject, "aud": "extpack-test-registry", "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(sig)}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenService]]:
    pytest.importorskip("cryptography")
    tokens = TokenService(tmp_path)
    reg = start_registry(tmp_path, {"token": {
        "realm": tokens.realm, "service": "extpack-test-registry", "issuer": "extpack-test-issuer",
        "rootcertbundle": str(tokens.cert_path)}})
    yield reg, tokens
    stop(reg)
    tokens.close()


def test_bearer_token_dance(token_registry: tuple[Registry, TokenService], stage: Path,
                            _isolated_docker_config: Path) -> None:
    reg, tokens = token_registry
    ref = f"{reg.host}/{REPO}:bearer"
    with build_image(stage) as b:
        # anonymous: the token service gives a token without push rights; the registry refuses
        with pytest.raises(RegistryError, match=f"docker login {re.escape(reg.host)}"):
            push_image(b, ref, insecure=True)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (_isolated_docker_config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
        assert push_image(b, ref, insecure=True).digest == b.digest
        digest = b.digest
    authed = [r for r in tokens.requests if r["user"] == USER]
    assert authed and f"repository:{REPO}:pull,push" in authed[0]["scope"]
    assert authed[0]["service"] == ["extpack-test-registry"]
    # skopeo reads it back with the same credentials
    out = subprocess.run([SKOPEO, "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{ref}"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Digest"] == digest


def test_explicit_credentials_win(token_registry: tuple[Registry, TokenService], stage: Path) -> None:
    reg, _ = token_registry
    with build_image(stage) as b:
        assert push_image(b, f"{reg.host}/{REPO}:explicit", insecure=True,
                          auth=Credentials(USER, PASSWORD)).digest == b.digest
        with pytest.raises(RegistryError, match="token service of .* refused the login") as exc:
            push_image(b, f"{reg.host}/{REPO}:explicit", insecure=True, auth=Credentials(USER, "wrong"))
        assert "wrong" not in str(exc.value)


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


# --------------------------------------------------------------------------- ECR


def test_ecr_token_comes_from_boto3_in_the_hosts_region(monkeypatch: pytest.MonkeyPatch) -> None:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        creds = ecr_credentials("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    finally:
        server.stop()
    assert creds is not None and creds.username == "AWS" and creds.password
    assert creds.source == "ECR (eu-west-1)"
    assert ecr_credentials("registry.example.com") is None


def test_importing_the_registry_does_not_import_boto3() -> None:
    code = "import sys, extpack.image, extpack.image.registry, extpack.image.layout; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False", out.stderr
