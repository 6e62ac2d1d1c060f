"""A loopback fake of the AWS Lambda layer API and of the S3 presigned blob URLs.

moto does not implement GetLayerVersionByArn (and its Location is ``s3://``), so the
tests run this instead: a real HTTP server on 127.0.0.1 that the *real* boto3 client
talks to through ``endpoint_url`` / ``AWS_ENDPOINT_URL_LAMBDA``.  It answers the three
read-only layer operations exactly as botocore's rest-json model expects them
(paths, query strings, response members, error headers), and serves each layer zip at
a presigned-style URL on the same server, with fault injection on both sides.

Usage::

    with FakeLambda() as server:
        lv = server.add_layer("demo", zip_bytes)
        client = boto3.client("lambda", region_name="us-east-1",
                              endpoint_url=server.endpoint)
        client.get_layer_version_by_arn(Arn=lv.arn)

The presigned URL is a credential in real AWS, so every URL handed out carries
``server.secret_marker`` (in the path token, the security token and the signature);
``server.find_leaks()`` / ``server.assert_no_leaks()`` look for it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import hashlib
import json
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Union

__all__ = [
    "API_FAULTS",
    "API_OPERATIONS",
    "DOWNLOAD_FAULTS",
    "FakeLambda",
    "FunctionVersion",
    "Injection",
    "LayerVersion",
    "RequestRecord",
]

DEFAULT_ACCOUNT = "123456789012"
API_PREFIX = "/2018-10-31/layers"
FUNCTIONS_PREFIX = "/2015-03-31/functions"
BLOB_PREFIX = "/layer-blobs/"

API_OPERATIONS = frozenset(
    {"GetLayerVersionByArn", "GetLayerVersion", "ListLayerVersions", "GetFunction",
     "GetFunctionConfiguration"}
)

# Which faults make sense where.  Status faults answer with an error status; body
# faults change how (or whether) the body arrives.
API_FAULTS = frozenset({"429-throttle", "500", "503", "stall", "drop-mid-body", "html", "error"})
DOWNLOAD_FAULTS = frozenset(
    {
        "drop-mid-body",
        "500",
        "503",
        "403-expired",
        "truncate",
        "truncate-silent",
        "stall",
        "html",
        "oversize",
        "corrupt",
        "trickle",
        "redirect",
        "hold",
    }
)
# A HEAD has no body to break, so it consumes only faults that change the status line;
# body faults stay queued for the GET that follows.
_HEAD_FAULTS = frozenset({"500", "503", "403-expired", "html", "429-throttle", "stall", "redirect"})
# Deletes a member from an answer (see LayerVersion.answer).
OMIT = object()

Target = Literal["api", "download"]
ZipSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]

# The patterns of botocore's service-2.json (LayerVersionArn, LayerName).  botocore does
# not validate patterns client-side, so the server is where a malformed ARN is caught,
# exactly as with real AWS.
_LAYER_VERSION_ARN_RE = re.compile(
    r"arn:(?P<partition>[a-zA-Z0-9-]+):lambda:(?P<region>[a-zA-Z0-9-]+):(?P<account>\d{12})"
    r":layer:(?P<name>[a-zA-Z0-9-_]+):(?P<version>[0-9]+)"
)
_LAYER_ARN_RE = re.compile(
    r"arn:(?P<partition>[a-zA-Z0-9-]+):lambda:(?P<region>[a-zA-Z0-9-]+):(?P<account>\d{12})"
    r":layer:(?P<name>[a-zA-Z0-9-_]+)"
)
_LAYER_NAME_RE = re.compile(r"[a-zA-Z0-9-_]+")
# NamespacedFunctionName and NumericLatestPublishedOrAliasQualifier of botocore's model.
_MODEL_FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
    r"([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
)
_FUNCTION_NAME_RE = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9-_.]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
)
_MODEL_QUALIFIER_PATTERN = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"
_QUALIFIER_RE = re.compile(_MODEL_QUALIFIER_PATTERN)
_MODEL_VERSION_ARN_PATTERN = (
    r"arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+"
)
# SigV4: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/lambda/aws4_request, ..."
_CREDENTIAL_RE = re.compile(
    r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request"
)

_CHUNK = 64 * 1024
_OVERSIZE_EXTRA = 8 * 1024 * 1024


# --------------------------------------------------------------------------- records


class _Served:
    """Bytes served at a presigned URL (a layer zip, a function's code) and how the API hashes them."""

    data: bytes

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class LayerVersion(_Served):
    """One published layer version.  Mutable on purpose: a test may change what is
    advertised (``advertised_sha256`` / ``advertised_size``) or served (``data``)."""

    name: str
    version: int
    data: bytes
    account: str = DEFAULT_ACCOUNT
    region: str = "us-east-1"
    partition: str = "aws"
    architectures: tuple[str, ...] = ("x86_64",)
    runtimes: tuple[str, ...] = ()
    description: str = ""
    license_info: str | None = None
    created_date: str = ""
    # None = advertise the truth.  CodeSha256 is base64 of the raw digest, as AWS sends.
    advertised_sha256: str | None = None
    advertised_size: int | None = None
    # A lying API: members replaced in (or, set to OMIT, removed from) the answers about
    # this version; "Content.X" names a member of Content. `answer` is for
    # GetLayerVersion(ByArn), `list_answer` for this version's item in ListLayerVersions.
    answer: dict[str, Any] = field(default_factory=dict)
    list_answer: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_arn(self) -> str:
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:layer:{self.name}"

    @property
    def arn(self) -> str:
        """The layer *version* ARN."""
        return f"{self.layer_arn}:{self.version}"


    @property
    def code_sha256(self) -> str:
        """What the API advertises as ``Content.CodeSha256``."""
        return (
            self.advertised_sha256
            if self.advertised_sha256 is not None
            else self.sha256_b64
        )

    @property
    def code_size(self) -> int:
        """What the API advertises as ``Content.CodeSize``."""
        return self.advertised_size if self.advertised_size is not None else self.size


@dataclass
class FunctionVersion(_Served):
    """One version of a function ("$LATEST" or a published number), as GetFunction reports it.

    Mutable like LayerVersion: ``answer`` replaces (or, with OMIT, removes) members of the
    GetFunction answer, "Configuration.X" / "Code.X" (dotted paths reach deeper members), to
    make a lying API. It has a ``layer_arn`` (the unqualified function ARN) and ``arn`` so the
    presigned URLs and fault selectors treat it like a layer version."""

    name: str
    version: str
    data: bytes  # the code zip (empty for an image function)
    runtime: str | None = "python3.12"
    handler: str | None = "app.handler"
    layers: tuple[str, ...] = ()  # layer version ARNs, in the function's order
    architectures: tuple[str, ...] = ("x86_64",)
    environment: dict[str, str] = field(default_factory=dict)
    package_type: str = "Zip"
    image_uri: str | None = None
    account: str = DEFAULT_ACCOUNT
    region: str = "us-east-1"
    partition: str = "aws"
    description: str = ""
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_arn(self) -> str:
        """The function's unqualified ARN (named so grants and faults can match it)."""
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{self.name}"

    function_arn = layer_arn

    @property
    def arn(self) -> str:
        return f"{self.layer_arn}:{self.version}"


@dataclass(frozen=True)
class RequestRecord:
    """One request the server saw.  ``path`` is the raw request target (with query):
    this is the test's own log, so it is not redacted."""

    method: str
    path: str
    operation: str  # an API_OPERATIONS name, "Download", or "Unknown"
    region: str | None  # from the SigV4 credential scope; None when unsigned
    access_key: str | None  # from the SigV4 credential scope
    time: float  # time.time() when the request arrived
    status: int
    fault: str | None = None
    layer: str | None = None  # the version ARN (or layer ARN, for a listing) concerned
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_api(self) -> bool:
        return self.operation != "Download"


@dataclass
class Injection:
    """A queued fault: consumed once per matching request until ``remaining`` is 0."""

    fault: str
    target: Target
    layer: str | None
    remaining: int
    stall_seconds: float | None = None
    # "error": the API's answer (status, x-amzn-ErrorType, message), as a hostile server words it.
    error: tuple[int, str, str] | None = None
    # "redirect": the Location header sent (any text, even a malformed URL).
    location: str | None = None
    # "hold": the body waits for release() (or the server's stop).
    released: threading.Event = field(default_factory=threading.Event, repr=False)

    def release(self) -> None:
        self.released.set()


@dataclass
class _Grant:
    """A minted presigned URL."""

    token: str
    signature: str
    url: str
    layer: LayerVersion
    expires_at: float  # time.monotonic()
    revoked: bool = False


@dataclass
class _Subject:
    """What an API request is about, even when no such layer exists."""

    layer_arn: str
    name: str
    version_arn: str | None
    region: str
    account: str


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type_: str = "User",
        extra: dict[str, Any] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type_ = type_
        self.extra = extra or {}
        self.headers = list(headers)


# --------------------------------------------------------------------------- helpers


def _validation_error(value: str, member: str, constraint: str) -> _ApiError:
    # The Coral validation message AWS uses for model constraint violations.
    return _ApiError(
        400,
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {constraint}",
    )


def _created_date(version: int) -> str:
    # Deterministic, in the exact format Lambda uses: 2018-11-27T15:10:45.123+0000
    when = _dt.datetime(2024, 1, 1, 12, 0, 0) + _dt.timedelta(days=version - 1)
    return when.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _s3_error_xml(code: str, message: str, **extra: str) -> bytes:
    parts = [f"<Code>{code}</Code>", f"<Message>{message}</Message>"]
    parts += [f"<{k}>{v}</{k}>" for k, v in extra.items()]
    parts += [
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId>",
        f"<HostId>{base64.b64encode(secrets.token_bytes(48)).decode()}</HostId>",
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    ).encode()


_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from "
    b"an upstream server.</p><hr><address>corporate-proxy</address></body></html>\n"
)


def _read_zip_source(src: ZipSource) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    return Path(src).read_bytes()


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Python 3.11's ThreadingMixIn joins even daemon threads in server_close() when
    # block_on_close is set; a stalled handler must never make stop() wait.
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: FakeLambda, host: str) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # A client that hangs up (extpack aborting an oversize download, a timeout) is
        # normal here; anything else is a bug in the fake and must be visible.
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        if self.fake._stopping.is_set() and isinstance(exc, OSError):
            return
        text = traceback.format_exc()
        self.fake.errors.append(text)
        print(f"FakeLambda handler error:\n{text}", file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so botocore's and requests' connection pools keep connections alive, as
    # they would against AWS; every response therefore carries a Content-Length (or
    # closes the connection).
    protocol_version = "HTTP/1.1"
    server: _Server
    arrived: float = 0.0  # time.time() when the current request line was read

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # quiet: pytest shows stderr of failing tests, and this would drown it

    def do_GET(self) -> None:
        self.server.fake._dispatch(self)

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET


class FakeLambda:
    """A loopback Lambda layer API + presigned blob server.  See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        caller_account: str = DEFAULT_ACCOUNT,
        url_ttl: float = 600.0,
        strict_region: bool = True,
        allow_head: bool = True,
        chunk_size: int = _CHUNK,
        default_stall_seconds: float | None = None,
    ) -> None:
        """
        caller_account: the account the credentials "belong" to.  As in AWS, a missing
            layer in this account is ResourceNotFoundException (404); a missing layer in
            any other account is AccessDeniedException (403), because AWS cannot tell a
            stranger whether a layer exists.
        url_ttl: seconds a presigned URL stays valid (AWS: 600).
        strict_region: a request signed for region R asking for a layer ARN of region
            S != R is refused with AccessDeniedException, as AWS does (layers are
            regional).  This is how a test catches "the API call did not use the ARN's
            region".
        allow_head: real S3 refuses HEAD on a URL presigned for GET (the method is part
            of the signature: 403 SignatureDoesNotMatch).  Set False to get that.
        default_stall_seconds: how long "stall" hangs when inject() gives no time;
            None = until stop().
        """
        self.host = host
        self.caller_account = caller_account
        self.url_ttl = url_ttl
        self.strict_region = strict_region
        self.allow_head = allow_head
        self.chunk_size = chunk_size
        self.default_stall_seconds = default_stall_seconds
        # Hex, so it survives inside a hex signature and percent-encoding untouched.
        self.secret_marker: str = "5ec2e7" + secrets.token_hex(7)
        self.errors: list[str] = []

        self._lock = threading.RLock()
        self._layers: dict[str, dict[int, LayerVersion]] = {}  # layer ARN -> versions
        self._functions: dict[str, dict[str, FunctionVersion]] = {}  # function ARN -> versions
        self._aliases: dict[str, dict[str, str]] = {}  # function ARN -> alias -> version
        self._grants: dict[str, _Grant] = {}  # token -> grant
        self._issued: list[str] = []
        self._requests: list[RequestRecord] = []
        self._injections: list[Injection] = []
        self._denied: set[str] = set()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLambda:
        if self._httpd is not None:
            raise RuntimeError("FakeLambda already started")
        self._stopping.clear()
        self._httpd = _Server(self, self.host)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name=f"FakeLambda:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()  # wakes every stalled handler
        httpd.shutdown()
        # Idle keep-alive connections leave handler threads blocked in recv(); shutting
        # the sockets down wakes them so no thread outlives the server.
        with httpd.sockets_lock:
            sockets = list(httpd.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeLambda:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLambda not started")
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ layers

    def add_layer(
        self,
        name: str,
        zip_bytes_or_path: ZipSource,
        version: int | None = None,
        account: str = DEFAULT_ACCOUNT,
        region: str = "us-east-1",
        partition: str = "aws",
        architectures: Sequence[str] = ("x86_64",),
        runtimes: Sequence[str] = (),
        *,
        description: str = "",
        license_info: str | None = None,
        created_date: str | None = None,
        code_sha256: str | None = None,
        code_size: int | None = None,
    ) -> LayerVersion:
        """Publish a layer version.  ``version`` defaults to one more than the highest
        version of that layer ARN.  ``code_sha256`` (base64 of a raw digest, like AWS)
        and ``code_size`` override what the API advertises, to simulate a wrong checksum
        or size; the blob served is always the real bytes.  ``architectures=()`` omits
        CompatibleArchitectures, as for a layer published before arm64 existed."""
        if not _LAYER_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid layer name {name!r}")
        data = _read_zip_source(zip_bytes_or_path)
        with self._lock:
            lv = LayerVersion(
                name=name,
                version=0,
                data=data,
                account=account,
                region=region,
                partition=partition,
                architectures=tuple(architectures),
                runtimes=tuple(runtimes),
                description=description,
                license_info=license_info,
                advertised_sha256=code_sha256,
                advertised_size=code_size,
            )
            versions = self._layers.setdefault(lv.layer_arn, {})
            if version is None:
                version = max(versions, default=0) + 1
            if version < 1 or version in versions:
                raise ValueError(
                    f"{lv.layer_arn} version {version} is invalid or taken"
                )
            lv.version = version
            lv.created_date = created_date or _created_date(version)
            versions[version] = lv
            return lv

    def delete_layer(self, arn: str) -> None:
        """Delete a layer version (as DeleteLayerVersion would); URLs already handed out
        keep working until they expire, as S3 snapshots do."""
        with self._lock:
            lv = self.get_layer(arn)
            del self._layers[lv.layer_arn][lv.version]

    def get_layer(self, arn: str) -> LayerVersion:
        """The record for a version ARN (KeyError if unknown)."""
        m = _LAYER_VERSION_ARN_RE.fullmatch(arn)
        with self._lock:
            if m:
                layer_arn = arn.rsplit(":", 1)[0]
                lv = self._layers.get(layer_arn, {}).get(int(m["version"]))
                if lv is not None:
                    return lv
        raise KeyError(arn)

    @property
    def layers(self) -> list[LayerVersion]:
        with self._lock:
            return [lv for vs in self._layers.values() for lv in vs.values()]

    # ------------------------------------------------------------------ functions

    def add_function(
        self,
        name: str,
        code: ZipSource = b"",
        *,
        runtime: str | None = "python3.12",
        handler: str | None = "app.handler",
        layers: Sequence[str | LayerVersion] = (),
        architectures: Sequence[str] = ("x86_64",),
        environment: dict[str, str] | None = None,
        package_type: str = "Zip",
        image_uri: str | None = None,
        account: str = DEFAULT_ACCOUNT,
        region: str = "us-east-1",
        partition: str = "aws",
        description: str = "",
    ) -> FunctionVersion:
        """Create (or replace) a function's $LATEST.  ``layers`` are layer version ARNs (or
        LayerVersions) in the function's order; an image function has no code, runtime,
        handler or layers, and an ``image_uri``."""
        if not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", name):
            raise ValueError(f"invalid function name {name!r}")
        fv = FunctionVersion(
            name=name, version="$LATEST", data=_read_zip_source(code),
            runtime=runtime if package_type == "Zip" else None,
            handler=handler if package_type == "Zip" else None,
            layers=tuple(lv.arn if isinstance(lv, LayerVersion) else lv for lv in layers),
            architectures=tuple(architectures), environment=dict(environment or {}),
            package_type=package_type, image_uri=image_uri, account=account, region=region,
            partition=partition, description=description,
        )
        with self._lock:
            self._functions.setdefault(fv.layer_arn, {})["$LATEST"] = fv
        return fv

    def publish_version(self, function: FunctionVersion) -> FunctionVersion:
        """PublishVersion: a numbered copy of the function's $LATEST."""
        import dataclasses

        with self._lock:
            versions = self._functions[function.layer_arn]
            number = 1 + max((int(v) for v in versions if v.isdigit()), default=0)
            published = dataclasses.replace(versions["$LATEST"], version=str(number), answer={},
                                            environment=dict(versions["$LATEST"].environment))
            versions[published.version] = published
            return published

    def add_alias(self, function: FunctionVersion, alias: str, version: str) -> None:
        with self._lock:
            if version not in self._functions[function.layer_arn]:
                raise ValueError(f"{function.layer_arn} has no version {version}")
            self._aliases.setdefault(function.layer_arn, {})[alias] = version

    def get_function(self, arn: str, version: str = "$LATEST") -> FunctionVersion:
        with self._lock:
            return self._functions[arn][version]

    # ------------------------------------------------------------------ faults, access

    def inject(
        self,
        fault: str,
        layer: str | None = None,
        target: Target | None = None,
        times: int = 1,
        *,
        stall_seconds: float | None = None,
        error: tuple[int, str, str] | None = None,
        location: str | None = None,
    ) -> Injection:
        """Queue ``fault`` for the next ``times`` matching requests.

        layer: None (any request), a layer version ARN, a layer ARN or a bare layer name.
        target: "api" or "download"; when omitted it is "api" for "429-throttle" and
            "download" for everything else.
        Faults queued earlier are consumed first.  Download faults:
          drop-mid-body    full Content-Length, half the body, then a TCP reset
          truncate         full Content-Length, about 2/3 of the body, then a clean close
          truncate-silent  no Content-Length, half the body, clean close: the HTTP client
                           sees success, only a size/checksum check can tell
          500 / 503        S3 XML InternalError / SlowDown
          403-expired      S3 XML AccessDenied "Request has expired"
          stall            headers (full Content-Length) then nothing until
                           ``stall_seconds`` (default: until stop()), then close
          html             200 text/html error page instead of the zip
          oversize         200 with the zip followed by >= 8 MiB more than CodeSize
          corrupt          200, right size, one byte flipped (checksum mismatch)
          trickle          headers (full Content-Length) then one byte every
                           ``stall_seconds`` (default 1 s) until stop()
          redirect         302 to ``location``, sent as given (it may be malformed)
          hold             headers, then the whole body once the returned Injection's
                           release() is called: a download that is surely in progress
        API faults: 429-throttle (TooManyRequestsException), 500 / 503
        (ServiceException), stall, drop-mid-body, html (as above, on the JSON), and
        error: ``error=(status, code, message)`` answered as AWS answers errors.
        """
        if target is None:
            target = "api" if fault == "429-throttle" else "download"
        allowed = API_FAULTS if target == "api" else DOWNLOAD_FAULTS
        if target not in ("api", "download") or fault not in allowed:
            raise ValueError(f"fault {fault!r} is not supported on target {target!r}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if (fault == "error") != (error is not None) or (fault == "redirect") != (location is not None):
            raise ValueError("error= goes with the 'error' fault, location= with 'redirect'")
        inj = Injection(fault, target, layer, times, stall_seconds, error, location)
        with self._lock:
            self._injections.append(inj)
        return inj

    def clear_faults(self) -> None:
        with self._lock:
            self._injections.clear()

    @property
    def pending_faults(self) -> list[Injection]:
        with self._lock:
            return [i for i in self._injections if i.remaining > 0]

    def deny(self, arn_or_name: str) -> None:
        """API calls about this layer (version ARN, layer ARN or name) get
        AccessDeniedException (403), worded as AWS words it."""
        with self._lock:
            self._denied.add(arn_or_name)

    def allow(self, arn_or_name: str) -> None:
        with self._lock:
            self._denied.discard(arn_or_name)

    def expire_urls(self) -> None:
        """Make every URL handed out so far answer 403 "Request has expired", as if
        ten minutes had passed."""
        with self._lock:
            for grant in self._grants.values():
                grant.revoked = True

    # ------------------------------------------------------------------ observation

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def api_calls(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.is_api]

    @property
    def download_calls(self) -> list[RequestRecord]:
        return [r for r in self.requests if not r.is_api]

    def calls(self, operation: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.operation == operation]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def issued_urls(self) -> list[str]:
        """Every Content.Location handed out, in order."""
        with self._lock:
            return list(self._issued)

    def find_leaks(self, text: str | bytes) -> list[str]:
        """The secret fragments (marker, URL tokens) found in ``text``, case-insensitive."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        low = text.lower()
        with self._lock:
            needles = [self.secret_marker] + [g.token for g in self._grants.values()]
        return [n for n in needles if n.lower() in low]

    def assert_no_leaks(self, *items: str | bytes | os.PathLike[str]) -> None:
        """Fail if any text (str/bytes), or any file at or under a path (a PathLike, e.g.
        a ``Path``: files read as bytes, symlinks not followed), holds a presigned-URL
        secret."""
        found: list[str] = []
        for item in items:
            if isinstance(item, (str, bytes)):
                if self.find_leaks(item):
                    found.append(f"in text {_excerpt(item, self.secret_marker)!r}")
                continue
            root = Path(item)
            files = (
                [root]
                if root.is_file()
                else sorted(
                    p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                )
            )
            found += [f"in file {p}" for p in files if self.find_leaks(p.read_bytes())]
        if found:
            raise AssertionError("presigned URL secret leaked: " + "; ".join(found))

    # ------------------------------------------------------------------ request path

    def _record(
        self,
        h: _Handler,
        operation: str,
        status: int,
        fault: str | None,
        layer: str | None,
    ) -> None:
        auth = h.headers.get("Authorization", "")
        m = _CREDENTIAL_RE.search(auth)
        rec = RequestRecord(
            method=h.command,
            path=h.path,
            operation=operation,
            region=m.group(3) if m else None,
            access_key=m.group(1) if m else None,
            time=h.arrived,
            status=status,
            fault=fault,
            layer=layer,
            headers=dict(h.headers.items()),
        )
        with self._lock:
            self._requests.append(rec)

    def _take_fault(
        self, target: Target, subject: _Subject | None, method: str
    ) -> Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.remaining <= 0 or inj.target != target:
                    continue
                if method == "HEAD" and inj.fault not in _HEAD_FAULTS:
                    continue
                if inj.layer is not None and (
                    subject is None or not _matches(inj.layer, subject)
                ):
                    continue
                inj.remaining -= 1
                return inj
        return None

    def _signing_region(self, h: _Handler) -> str | None:
        m = _CREDENTIAL_RE.search(h.headers.get("Authorization", ""))
        return m.group(3) if m else None

    def _dispatch(self, h: _Handler) -> None:
        h.arrived = time.time()
        # Nothing here takes a body, but an unread one would be parsed as the next
        # request on this keep-alive connection.
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        split = urllib.parse.urlsplit(h.path)
        # Split before unquoting: an encoded "/" inside a segment stays inside it.
        raw_segments = split.path.split("/")
        segments = [urllib.parse.unquote(s) for s in raw_segments]
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if split.path.startswith(BLOB_PREFIX):
            self._serve_blob(h, segments[2] if len(segments) > 2 else "", query)
        else:
            self._serve_api(h, segments, query)

    # ---- API

    def _serve_api(
        self, h: _Handler, segments: list[str], query: dict[str, list[str]]
    ) -> None:
        operation = "Unknown"
        subject: _Subject | None = None
        fault: Injection | None = None
        try:
            # "/2018-10-31/layers/x/versions/3" -> ["", "2018-10-31", "layers", "x", ...]
            is_function = segments[1:3] == ["2015-03-31", "functions"]
            if (segments[1:3] != ["2018-10-31", "layers"] and not is_function) or h.command != "GET":
                raise _ApiError(404, "UnknownOperationException", "Unknown operation")
            rest = segments[3:]
            if is_function and len(rest) == 1 and rest[0]:
                operation = "GetFunction"
            elif is_function and len(rest) == 2 and rest[1] == "configuration":
                operation = "GetFunctionConfiguration"
            elif is_function:
                raise _ApiError(404, "UnknownOperationException", "Unknown operation")
            elif not rest and query.get("find") == ["LayerVersion"]:
                operation = "GetLayerVersionByArn"
            elif len(rest) == 2 and rest[1] == "versions":
                operation = "ListLayerVersions"
            elif len(rest) == 3 and rest[1] == "versions":
                operation = "GetLayerVersion"
            else:
                raise _ApiError(404, "UnknownOperationException", "Unknown operation")

            region = self._signing_region(h)
            if region is None:
                raise _ApiError(
                    403,
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token",
                )
            subject = self._subject(operation, rest, query, region)
            fault = self._take_fault("api", subject, h.command)
            if fault is not None and fault.fault in ("429-throttle", "500", "503"):
                raise _fault_api_error(fault.fault)
            if fault is not None and fault.fault == "error":
                status, code, message = fault.error
                raise _ApiError(status, code, message)
            if fault is not None and fault.fault == "html":
                # A proxy answering in place of the API.
                response = _html_response()
                self._record(
                    h, operation, 200, "html", subject.version_arn or subject.layer_arn
                )
                self._send(h, response, None)
                return

            if operation == "ListLayerVersions":
                body = self._list_versions(subject, query, region)
            elif is_function:
                body = self._function_body(operation, subject, region)
            else:
                lv = self._resolve(subject, region)
                body = self._version_body(lv, self._mint(lv))
            response = _Response(
                200, [("Content-Type", "application/json")], json.dumps(body).encode()
            )
        except _ApiError as err:
            payload: dict[str, Any] = {
                "Type": err.type_,
                "message": err.message,
                **err.extra,
            }
            response = _Response(
                err.status,
                [
                    ("Content-Type", "application/json"),
                    ("x-amzn-ErrorType", err.code),
                    *err.headers,
                ],
                json.dumps(payload).encode(),
            )
        response.headers.append(("x-amzn-RequestId", str(uuid.uuid4())))
        layer_label = None
        if subject is not None:
            layer_label = subject.version_arn or subject.layer_arn
        self._record(
            h, operation, response.status, fault.fault if fault else None, layer_label
        )
        self._send(h, response, fault)

    def _subject(
        self, operation: str, rest: list[str], query: dict[str, list[str]], region: str
    ) -> _Subject:
        if operation in ("GetFunction", "GetFunctionConfiguration"):
            return self._function_subject(rest[0], query, region)
        if operation == "GetLayerVersionByArn":
            arn = (query.get("Arn") or [""])[0]
            m = _LAYER_VERSION_ARN_RE.fullmatch(arn)
            if not m or len(arn) > 140:
                raise _validation_error(
                    arn,
                    "arn",
                    "Member must satisfy regular expression pattern: "
                    + _MODEL_VERSION_ARN_PATTERN,
                )
            return _Subject(
                arn.rsplit(":", 1)[0], m["name"], arn, m["region"], m["account"]
            )

        layer_name = rest[0]
        if len(layer_name) > 140 or not (
            _LAYER_ARN_RE.fullmatch(layer_name) or _LAYER_NAME_RE.fullmatch(layer_name)
        ):
            raise _validation_error(
                layer_name,
                "layerName",
                "Member must satisfy regular expression pattern",
            )
        m = _LAYER_ARN_RE.fullmatch(layer_name)
        if m:
            layer_arn, name, lregion, account = (
                layer_name,
                m["name"],
                m["region"],
                m["account"],
            )
        else:
            # A bare name means "in the caller's account, in the region of the call".
            name, lregion, account = layer_name, region, self.caller_account
            layer_arn = f"arn:{self._partition_for(region)}:lambda:{region}:{account}:layer:{name}"
        version_arn = None
        if operation == "GetLayerVersion":
            if not rest[2].isdigit():
                raise _validation_error(
                    rest[2], "versionNumber", "Member must be a number"
                )
            version_arn = f"{layer_arn}:{int(rest[2])}"
        return _Subject(layer_arn, name, version_arn, lregion, account)

    def _function_subject(
        self, function_name: str, query: dict[str, list[str]], region: str
    ) -> _Subject:
        """A FunctionName (name, partial or full ARN, optionally qualified) and the Qualifier
        query; ``version_arn`` is the qualified ARN asked for (None for an unqualified call)."""
        m = _FUNCTION_NAME_RE.fullmatch(function_name)
        if not m or len(function_name) > 256:
            raise _validation_error(function_name, "functionName",
                                    "Member must satisfy regular expression pattern: "
                                    + _MODEL_FUNCTION_NAME_PATTERN)
        qualifier = _first(query, "Qualifier")
        if qualifier is not None and (not _QUALIFIER_RE.fullmatch(qualifier) or len(qualifier) > 128):
            raise _validation_error(qualifier, "qualifier", "Member must satisfy regular expression pattern: "
                                    + _MODEL_QUALIFIER_PATTERN)
        if m["qualifier"] and qualifier is not None and m["qualifier"] != qualifier:
            raise _ApiError(400, "InvalidParameterValueException",
                            "The derived qualifier from the function name does not match the specified qualifier.")
        qualifier = m["qualifier"] or qualifier
        fregion = m["region"] or region
        account = m["account"] or self.caller_account
        function_arn = f"arn:{m['partition'] or self._partition_for(fregion)}:lambda:{fregion}:{account}" \
                       f":function:{m['name']}"
        return _Subject(function_arn, m["name"], f"{function_arn}:{qualifier}" if qualifier else None,
                        fregion, account)

    def _function_body(self, operation: str, subject: _Subject, region: str) -> dict[str, Any]:
        self._check_access(subject, region, subject.version_arn or subject.layer_arn,
                           "lambda:" + operation)
        qualifier = subject.version_arn.rsplit(":", 1)[1] if subject.version_arn else None
        with self._lock:
            versions = self._functions.get(subject.layer_arn, {})
            version = self._aliases.get(subject.layer_arn, {}).get(qualifier or "", qualifier or "$LATEST")
            fv = versions.get(version)
        if fv is None:
            if subject.account != self.caller_account:
                raise self._access_denied(subject.layer_arn, "lambda:" + operation)
            raise _ApiError(404, "ResourceNotFoundException",
                            f"Function not found: {subject.version_arn or subject.layer_arn}")
        configuration = self._function_configuration(fv, qualifier)
        if operation == "GetFunctionConfiguration":
            return _with_lies({"Configuration": configuration}, fv.answer)["Configuration"]
        if fv.package_type == "Image":
            code = {"RepositoryType": "ECR", "ImageUri": fv.image_uri,
                    "ResolvedImageUri": f"{(fv.image_uri or '').split(':')[0]}@sha256:{fv.sha256_hex}"}
        else:
            code = {"RepositoryType": "S3", "Location": self._mint(fv)}
        return _with_lies({"Configuration": configuration, "Code": code,
                           "Tags": {"team": "testing"}}, fv.answer)

    def _function_configuration(self, fv: FunctionVersion, qualifier: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "FunctionName": fv.name,
            "FunctionArn": f"{fv.layer_arn}:{qualifier}" if qualifier else fv.layer_arn,
            "Role": f"arn:{fv.partition}:iam::{fv.account}:role/{fv.name}-role",
            "CodeSize": fv.size,
            "Description": fv.description,
            "Timeout": 3,
            "MemorySize": 128,
            "LastModified": "2024-01-01T12:00:00.000+0000",
            "CodeSha256": fv.sha256_b64,
            "Version": fv.version,
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": str(uuid.UUID(int=int(fv.sha256_hex[:32], 16))),
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": fv.package_type,
            "Architectures": list(fv.architectures),
            "EphemeralStorage": {"Size": 512},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fv.name}"},
        }
        if fv.package_type == "Zip":
            out["Runtime"] = fv.runtime
            out["Handler"] = fv.handler
            out["RuntimeVersionConfig"] = {"RuntimeVersionArn": f"arn:{fv.partition}:lambda:{fv.region}::"
                                           "runtime:" + "0" * 64}
        if fv.environment:
            out["Environment"] = {"Variables": dict(fv.environment)}
        if fv.layers:
            out["Layers"] = [{"Arn": arn, "CodeSize": self._layer_size(arn)} for arn in fv.layers]
        return out

    def _layer_size(self, arn: str) -> int:
        try:
            return self.get_layer(arn).size
        except KeyError:
            return 0

    @staticmethod
    def _partition_for(region: str) -> str:
        if region.startswith("cn-"):
            return "aws-cn"
        if region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    def _access_denied(
        self, resource: str, action: str = "lambda:GetLayerVersion"
    ) -> _ApiError:
        return _ApiError(
            403,
            "AccessDeniedException",
            f"User: arn:aws:iam::{self.caller_account}:user/testing is not authorized to perform: "
            f"{action} on resource: {resource} because no resource-based policy allows the "
            f"{action} action",
        )

    def _check_access(
        self, subject: _Subject, region: str, resource: str, action: str
    ) -> None:
        with self._lock:
            denied = any(_matches(sel, subject) for sel in self._denied)
        if denied or (self.strict_region and subject.region != region):
            raise self._access_denied(resource, action)

    def _resolve(self, subject: _Subject, region: str) -> LayerVersion:
        assert subject.version_arn is not None
        self._check_access(
            subject, region, subject.version_arn, "lambda:GetLayerVersion"
        )
        try:
            return self.get_layer(subject.version_arn)
        except KeyError:
            if subject.account != self.caller_account:
                # AWS will not confirm or deny a stranger's layer: 403, not 404.
                raise self._access_denied(subject.version_arn) from None
            raise _ApiError(
                404,
                "ResourceNotFoundException",
                "The resource you requested does not exist.",
            ) from None

    def _list_versions(
        self, subject: _Subject, query: dict[str, list[str]], region: str
    ) -> dict[str, Any]:
        self._check_access(
            subject, region, subject.layer_arn, "lambda:ListLayerVersions"
        )
        max_items_raw = (query.get("MaxItems") or ["50"])[0]
        if not max_items_raw.isdigit() or not 1 <= int(max_items_raw) <= 50:
            raise _validation_error(
                max_items_raw,
                "maxItems",
                "Member must have value less than or equal to 50",
            )
        max_items = int(max_items_raw)
        arch = _first(query, "CompatibleArchitecture")
        runtime = _first(query, "CompatibleRuntime")
        with self._lock:
            # Newest first, as AWS lists them.  An unknown layer lists as empty (200), not
            # 404: the caller has to turn "no versions" into "not found" itself.
            versions = sorted(
                self._layers.get(subject.layer_arn, {}).values(),
                key=lambda v: -v.version,
            )
        if arch:
            versions = [v for v in versions if arch in v.architectures]
        if runtime:
            versions = [v for v in versions if runtime in v.runtimes]
        marker = _first(query, "Marker")
        if marker:
            start = _decode_marker(marker)
            versions = [v for v in versions if v.version <= start]
        page, more = versions[:max_items], versions[max_items:]
        body: dict[str, Any] = {"LayerVersions": [self._list_item(v) for v in page]}
        if more:
            body["NextMarker"] = _encode_marker(more[0].version)
        return body

    @staticmethod
    def _common_members(lv: LayerVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "LayerVersionArn": lv.arn,
            "Version": lv.version,
            "Description": lv.description,
            "CreatedDate": lv.created_date,
        }
        # AWS omits the lists (and LicenseInfo) when the publisher gave none.
        if lv.runtimes:
            out["CompatibleRuntimes"] = list(lv.runtimes)
        if lv.license_info is not None:
            out["LicenseInfo"] = lv.license_info
        if lv.architectures:
            out["CompatibleArchitectures"] = list(lv.architectures)
        return out

    def _list_item(self, lv: LayerVersion) -> dict[str, Any]:
        return _with_lies(self._common_members(lv), lv.list_answer)

    def _version_body(self, lv: LayerVersion, location: str) -> dict[str, Any]:
        return _with_lies({
            "Content": {
                "Location": location,
                "CodeSha256": lv.code_sha256,
                "CodeSize": lv.code_size,
            },
            "LayerArn": lv.layer_arn,
            **self._common_members(lv),
        }, lv.answer)

    def _mint(self, lv: LayerVersion) -> str:
        """A fresh presigned-style URL for ``lv``'s blob, shaped like Lambda's S3 links."""
        m = self.secret_marker
        token = f"{m}{secrets.token_hex(12)}"
        signature = (m + secrets.token_hex(32))[:64]
        security_token = (
            "SECRET" + m + base64.b64encode(secrets.token_bytes(96)).decode()
        )
        now = _dt.datetime.now(_dt.timezone.utc)
        params = [
            ("versionId", secrets.token_urlsafe(24)),
            ("X-Amz-Security-Token", security_token),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Date", now.strftime("%Y%m%dT%H%M%SZ")),
            ("X-Amz-SignedHeaders", "host"),
            ("X-Amz-Expires", str(int(self.url_ttl))),
            (
                "X-Amz-Credential",
                f"ASIA{m[:12].upper()}/{now:%Y%m%d}/{lv.region}/s3/aws4_request",
            ),
            ("X-Amz-Signature", signature),
        ]
        qs = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        url = f"{self.endpoint}{BLOB_PREFIX}{token}?{qs}"
        with self._lock:
            self._grants[token] = _Grant(
                token, signature, url, lv, time.monotonic() + self.url_ttl
            )
            self._issued.append(url)
        return url

    # ---- blobs

    def _serve_blob(self, h: _Handler, token: str, query: dict[str, list[str]]) -> None:
        with self._lock:
            grant = self._grants.get(token)
        subject = None
        if grant is not None:
            lv = grant.layer
            subject = _Subject(lv.layer_arn, lv.name, lv.arn, lv.region, lv.account)
        fault = (
            self._take_fault("download", subject, h.command)
            if h.command in ("GET", "HEAD")
            else None
        )
        response: _Response
        if h.command not in ("GET", "HEAD"):
            response = _xml_response(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )
        elif fault is not None and fault.fault in ("500", "503", "403-expired", "html"):
            response = _download_status_fault(fault.fault, self.url_ttl)
        elif fault is not None and fault.fault == "redirect":
            response = _Response(302, [("Location", fault.location)], b"")
        elif grant is None:
            response = _xml_response(
                404, "NoSuchKey", "The specified key does not exist."
            )
        elif (query.get("X-Amz-Signature") or [""])[0] != grant.signature:
            response = _xml_response(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        elif h.command == "HEAD" and not self.allow_head:
            response = _Response(403, [("Content-Type", "application/xml")], b"")
        elif grant.revoked or time.monotonic() > grant.expires_at:
            response = _download_status_fault("403-expired", self.url_ttl)
        else:
            response = self._blob_response(h, grant.layer.data)
        self._record(
            h,
            "Download",
            response.status,
            fault.fault if fault else None,
            grant.layer.arn if grant else None,
        )
        self._send(h, response, fault)

    @staticmethod
    def _etag_of(data: bytes) -> str:
        return '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324 - S3's ETag

    def _blob_response(self, h: _Handler, data: bytes) -> _Response:
        etag = self._etag_of(data)
        headers = [
            ("Content-Type", "application/zip"),
            ("Accept-Ranges", "bytes"),
            ("ETag", etag),
            ("Last-Modified", email.utils.formatdate(1704110400, usegmt=True)),
            ("x-amz-request-id", secrets.token_hex(8).upper()),
        ]
        if_match = h.headers.get("If-Match")
        if if_match is not None and if_match.strip() not in (etag, "*"):
            # As S3: the object is not the one the client holds parts of.
            return _xml_response(412, "PreconditionFailed",
                                 "At least one of the pre-conditions you specified did not hold", Condition="If-Match")
        rng = h.headers.get("Range")
        if rng:
            # Single byte ranges only (what a resuming downloader sends).
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m and (m[1] or m[2]):
                if m[1]:
                    start = int(m[1])
                    end = min(int(m[2]), len(data) - 1) if m[2] else len(data) - 1
                else:
                    start, end = max(len(data) - int(m[2]), 0), len(data) - 1
                if start < len(data) and start <= end:
                    headers.append(
                        ("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    )
                    return _Response(206, headers, data[start : end + 1])
                return _Response(416, [("Content-Range", f"bytes */{len(data)}")], b"")
        return _Response(200, headers, data)

    # ---- the wire

    def _send(self, h: _Handler, response: _Response, fault: Injection | None) -> None:
        kind = fault.fault if fault else None
        body = response.body
        declared: int | None = len(body)
        send = body
        ending: Literal["keep", "close", "reset"] = "keep"
        stall: float | None = None

        if kind == "drop-mid-body":
            send, ending = body[: len(body) // 2], "reset"
        elif kind == "truncate":
            send, ending = (
                body[: max(len(body) * 2 // 3, 0)] if len(body) > 1 else b"",
                "close",
            )
        elif kind == "truncate-silent":
            send, declared, ending = body[: len(body) // 2], None, "close"
        elif kind == "oversize":
            extra = max(_OVERSIZE_EXTRA, 4 * len(body))
            send = body + b"\0" * extra
            declared = len(send)
        elif kind == "corrupt" and body:
            i = len(body) // 2
            send = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
        elif kind == "trickle":
            ending = "close"
            stall = fault.stall_seconds if fault.stall_seconds is not None else 1.0
        elif kind == "stall":
            send, ending = b"", "close"
            stall = (
                fault.stall_seconds
                if fault and fault.stall_seconds is not None
                else self.default_stall_seconds
            )
        if h.command == "HEAD":
            send = b""

        try:
            h.send_response(response.status)
            for name, value in response.headers:
                h.send_header(name, value)
            if declared is not None:
                h.send_header("Content-Length", str(declared))
            if ending != "keep":
                h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.flush()
            if kind == "stall":
                self._stopping.wait(stall)
            while kind == "hold" and not fault.released.wait(0.05) and not self._stopping.is_set():
                pass
            view = memoryview(send)
            step = 1 if kind == "trickle" else self.chunk_size
            for off in range(0, len(view), step):
                if kind == "trickle" and off:
                    h.wfile.flush()
                    self._stopping.wait(stall)
                if self._stopping.is_set():
                    ending = "close"
                    break
                h.wfile.write(view[off : off + step])
        except (ConnectionError, TimeoutError):
            ending = "close"
        if ending != "keep":
            h.close_connection = True
            if ending == "reset":
                # SO_LINGER 0: close() sends RST, a mid-transfer network failure rather
                # than a polite end of stream.
                try:
                    h.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                except OSError:
                    pass
            try:
                if ending == "close":
                    h.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if ending == "reset":
                h.connection.close()


# --------------------------------------------------------------------------- module helpers


def _with_lies(body: dict[str, Any], lies: dict[str, Any]) -> dict[str, Any]:
    for key, value in lies.items():
        *parents, member = key.split(".")
        target = body
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is OMIT:
            target.pop(member, None)
        else:
            target[member] = value
    return body


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _matches(selector: str, subject: _Subject) -> bool:
    """selector is a version ARN, layer ARN or bare name."""
    if selector in (subject.layer_arn, subject.name):
        return True
    if subject.version_arn is not None:
        return selector == subject.version_arn
    # A listing is about the whole layer: a version ARN selector covers it too.
    return selector.rsplit(":", 1)[0] == subject.layer_arn and bool(
        _LAYER_VERSION_ARN_RE.fullmatch(selector)
    )


def _fault_api_error(kind: str) -> _ApiError:
    if kind == "429-throttle":
        return _ApiError(
            429,
            "TooManyRequestsException",
            "Rate exceeded",
            extra={"Reason": "CallerRateLimitExceeded", "retryAfterSeconds": "1"},
            headers=[("Retry-After", "1")],
        )
    status = 503 if kind == "503" else 500
    return _ApiError(
        status,
        "ServiceException",
        "An internal error occurred. Try again.",
        type_="Service",
    )


def _xml_response(status: int, code: str, message: str, **extra: str) -> _Response:
    return _Response(
        status,
        [("Content-Type", "application/xml")],
        _s3_error_xml(code, message, **extra),
    )


def _download_status_fault(kind: str, ttl: float) -> _Response:
    if kind == "500":
        return _xml_response(
            500, "InternalError", "We encountered an internal error. Please try again."
        )
    if kind == "503":
        return _xml_response(503, "SlowDown", "Please reduce your request rate.")
    if kind == "403-expired":
        now = _dt.datetime.now(_dt.timezone.utc)
        return _xml_response(
            403,
            "AccessDenied",
            "Request has expired",
            **{
                "X-Amz-Expires": str(int(ttl)),
                "Expires": (now - _dt.timedelta(seconds=5)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
    return _html_response()


def _html_response() -> _Response:
    # A proxy or captive portal answering 200 in place of the real thing.
    return _Response(200, [("Content-Type", "text/html; charset=utf-8")], _HTML_PAGE)


def _encode_marker(next_version: int) -> str:
    # Opaque like AWS's markers, so a client cannot get away with computing them.
    return base64.urlsafe_b64encode(
        json.dumps({"v": next_version, "n": "fake"}).encode()
    ).decode()


def _decode_marker(marker: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(marker.encode()))["v"]
        if isinstance(value, int):
            return value
    except (ValueError, KeyError, TypeError):
        pass
    raise _ApiError(400, "InvalidParameterValueException", "Invalid pagination marker.")


def _excerpt(text: str | bytes, needle: str) -> str:
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    i = s.lower().find(needle.lower())
    return s[max(0, i - 60) : i + 60] if i >= 0 else s[:120]
