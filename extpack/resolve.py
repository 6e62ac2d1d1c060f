"""Step 2: ask the Lambda API where a layer version lives and what it must hash to.

botocore is imported on the first call, so commands that never call AWS start fast (the ECR
login in extpack.image.credentials imports boto3 the same way). It is used without boto3 on top: the same credential, profile, endpoint and retry chain, without
importing boto3's resource layer and s3transfer (a third of the start-up cost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from extpack import retry, validate
from extpack.exceptions import AwsError, LayerContentError, UsageError
from extpack.model import Arch
from extpack.source import LayerArn, Source


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer whose content is known by hash; `location` is a secret (a presigned URL)."""

    source: Source
    arn: str | None
    version: int | None
    sha256: str | None
    size: int | None
    architectures: tuple[Arch, ...] = ()
    location: str | None = field(default=None, repr=False)


class LambdaResolver:
    """Lambda API calls in each ARN's own region, through the standard AWS chain."""

    def __init__(self, *, profile: str | None = None, endpoint_url: str | None = None) -> None:
        self._profile = profile
        self._endpoint_url = endpoint_url
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._session = None

    def _client(self, region: str | None):
        # Sessions are not thread-safe; clients are, so create them under a lock.
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._make_client(region)
            return self._clients[region]

    def _make_client(self, region: str | None):
        import botocore.config
        import botocore.session

        if self._session is None:
            self._session = botocore.session.Session(profile=self._profile)
        config = botocore.config.Config(
            retries=retry.botocore_retries(self._session.get_config_variable("max_attempts")),
            connect_timeout=10,
            read_timeout=30,
            user_agent_extra="extpack",
        )
        try:
            return self._session.create_client("lambda", region_name=region, endpoint_url=self._endpoint_url,
                                               config=config)
        except ValueError as exc:  # botocore's word for a malformed endpoint URL
            raise UsageError(f"the Lambda endpoint {_endpoint_name(self._endpoint_url)} is not a valid URL ({exc}): "
                             "fix --endpoint-url, endpoint-url in the config, or AWS_ENDPOINT_URL_LAMBDA / "
                             "AWS_ENDPOINT_URL") from None

    def resolve(self, source: Source, arch: str) -> ResolvedLayer:
        """GetLayerVersionByArn for a versioned ARN; unversioned ARNs must be pinned first."""
        assert source.arn is not None and source.arn.version is not None
        arn = source.arn
        response = self._call(arn, "get_layer_version_by_arn", Arn=str(arn), meanwhile=_import_downloader_meanwhile)
        try:
            resolved = _checked_answer(response, source)
        except validate.Invalid as exc:
            raise AwsError(f"the Lambda API's answer is not valid: {exc}: check --endpoint-url / "
                           "AWS_ENDPOINT_URL_LAMBDA", layer=str(arn)) from None
        architectures = resolved.architectures
        if architectures and arch not in architectures:
            raise LayerContentError(
                f"layer is built for {', '.join(architectures)}, not {arch}: "
                f"use --arch {architectures[0]} or a layer version for {arch}",
                layer=str(arn),
            )
        return resolved

    def newest_version(self, arn: LayerArn, arch: str) -> int:
        """The newest version compatible with `arch` (versions that declare none are compatible)."""
        best = 0
        seen = 0
        try:
            client = self._client(arn.region)
            for page in client.get_paginator("list_layer_versions").paginate(LayerName=arn.layer_arn):
                for item in page.get("LayerVersions", []):
                    seen += 1
                    version, declared = _listed_version(item, arn)
                    if not declared or arch in declared:
                        best = max(best, version)
        except validate.Invalid as exc:
            raise AwsError(f"the Lambda API's list of versions is not valid: {exc}: check --endpoint-url / "
                           "AWS_ENDPOINT_URL_LAMBDA", layer=arn.layer_arn) from None
        except Exception as exc:  # botocore raises several unrelated types; aws_error sorts them
            raise aws_error(exc, arn.layer_arn) from exc
        if not seen:
            raise AwsError("layer not found (it has no versions you can see): check the name, account and region",
                           layer=arn.layer_arn)
        if not best:
            raise AwsError(f"no version of this layer is compatible with {arch}: check --arch", layer=arn.layer_arn)
        return best

    def _call(self, arn: LayerArn, operation: str, *, meanwhile: Callable[[], None] | None = None, **kwargs):
        return self.call(arn.region, operation, subject=str(arn), meanwhile=meanwhile, **kwargs)

    def call(self, region: str | None, operation: str, *, subject: str, hints: dict[str, str] | None = None,
             meanwhile: Callable[[], None] | None = None, **kwargs):
        """One Lambda API call in `region` (None: the profile's or AWS_DEFAULT_REGION's), its errors as
        extpack's, worded with `hints` (by error code) where given; `meanwhile` is started once the
        client exists, before the call."""
        try:
            client = self._client(region)
            if meanwhile is not None:
                # Only now: making the client imports botocore.httpsession inside
                # warnings.catch_warnings(), which is not thread-safe. A concurrent import of
                # requests could lose the filter requests sets for urllib3's DependencyWarning
                # and print that warning on stderr.
                meanwhile()
            return getattr(client, operation)(**kwargs)
        except Exception as exc:
            raise aws_error(exc, subject, hints) from exc


_downloader_import = threading.Lock()


def _import_downloader_meanwhile() -> None:
    """Import requests (~75 ms) in a thread while this one waits for the API's answer (tens of
    milliseconds over a real link): the download that follows the answer needs it."""
    if _downloader_import.acquire(blocking=False):
        threading.Thread(target=__import__, args=("requests",), name="extpack-import", daemon=True).start()


def _checked_answer(response: dict, source: Source) -> ResolvedLayer:
    """GetLayerVersionByArn's answer, each member checked: the version asked for, its size,
    checksum, download URL and architectures; a lying or broken endpoint stops here."""
    asked = source.arn
    if response.get("LayerVersionArn") != str(asked):
        raise validate.Invalid("LayerVersionArn", f"is not the version asked for ({asked}): "
                                                  f"{validate.shown(response.get('LayerVersionArn'))}")
    if validate.version(response.get("Version"), "Version") != asked.version:
        raise validate.Invalid("Version", f"is {response['Version']}, not the version asked for ({asked.version})")
    content = validate.mapping(response.get("Content"), "Content")
    return ResolvedLayer(
        source=source,
        arn=str(asked),
        version=asked.version,
        sha256=validate.code_sha256(content.get("CodeSha256"), "Content.CodeSha256"),
        size=validate.count(content.get("CodeSize"), "Content.CodeSize"),
        architectures=Arch.list_of_field(response.get("CompatibleArchitectures") or [],
                                             "CompatibleArchitectures"),
        location=validate.download_url(content.get("Location"), "Content.Location"),
    )


def _listed_version(item: object, layer: LayerArn) -> tuple[int, tuple[str, ...]]:
    """One ListLayerVersions item: a version of the layer asked about, and its architectures."""
    validate.mapping(item, "LayerVersions[]")
    version = validate.version(item.get("Version"), "LayerVersions[].Version")
    if item.get("LayerVersionArn") != f"{layer.layer_arn}:{version}":
        raise validate.Invalid("LayerVersions[].LayerVersionArn", f"is not version {version} of the layer asked for: "
                                                                  f"{validate.shown(item.get('LayerVersionArn'))}")
    declared = Arch.list_of_field(item.get("CompatibleArchitectures") or [],
                                      "LayerVersions[].CompatibleArchitectures")
    return version, declared


def _endpoint_name(endpoint_url: str | None) -> str:
    import os

    return repr(endpoint_url or os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or os.environ.get("AWS_ENDPOINT_URL")
                or "(botocore's default)")


_CODE_HINTS = {
    "ResourceNotFoundException": "layer version not found: check the name, the version and the region in the ARN",
    "AccessDeniedException": "access denied: the credentials need lambda:GetLayerVersion on this layer "
    "(a layer in another account must be shared with yours)",
    "TooManyRequestsException": "throttled by the Lambda API after retries: try again later or lower --jobs",
    "ThrottlingException": "throttled by the Lambda API after retries: try again later or lower --jobs",
    "InvalidParameterValueException": "the Lambda API rejected the ARN: check it",
    "UnrecognizedClientException": "the AWS credentials are not valid: check AWS_PROFILE / --profile",
    "InvalidSignatureException": "the AWS request signature was rejected: check the credentials and the clock",
    "ExpiredTokenException": "the AWS session token has expired: refresh your credentials",
}


def aws_error(exc: Exception, layer: str, hints: dict[str, str] | None = None) -> Exception:
    import botocore.exceptions as bx

    if isinstance(exc, (AwsError, UsageError, LayerContentError)):
        return exc
    if isinstance(exc, bx.NoRegionError):
        return UsageError("no AWS region to call the Lambda API in: give --region (or region in extpack.toml, "
                          "or AWS_DEFAULT_REGION), or name it by its ARN", layer=layer)
    if isinstance(exc, bx.ProfileNotFound):
        return UsageError(f"AWS profile {exc.kwargs.get('profile')!r} not found: check --profile / AWS_PROFILE",
                          layer=layer)
    if isinstance(exc, bx.NoCredentialsError):
        return AwsError(
            "no AWS credentials found: set AWS_PROFILE or --profile, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or fetch a local .zip instead)",
            layer=layer,
        )
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        hint = (hints or {}).get(code) or _CODE_HINTS.get(code) or f"Lambda API error {code}: {error.get('Message', '').strip()}"
        return AwsError(hint, layer=layer)
    from urllib.parse import urlsplit

    endpoint = urlsplit(getattr(exc, "kwargs", {}).get("endpoint_url") or "")
    at = f" at {endpoint.scheme}://{endpoint.hostname}{f':{endpoint.port}' if endpoint.port else ''}" \
        if endpoint.hostname else ""
    if isinstance(exc, bx.SSLError):
        return AwsError(f"the TLS certificate of the Lambda API{at} was not accepted (certificate verify failed): "
                        "check the system's CA certificates, or set AWS_CA_BUNDLE to a private CA's", layer=layer)
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                        bx.ConnectionClosedError, bx.HTTPClientError)):
        return AwsError(f"cannot reach the Lambda API{at}: check the network, the region and --endpoint-url",
                        layer=layer)
    if isinstance(exc, bx.BotoCoreError):
        return AwsError(f"AWS client error: {exc}", layer=layer)
    if isinstance(exc, (ValueError, TypeError, AttributeError)):
        # botocore's parser met a member of the wrong type (a Version of "one", a list that is a string).
        return AwsError(f"the Lambda API's answer is not valid ({exc}): check --endpoint-url / "
                        "AWS_ENDPOINT_URL_LAMBDA", layer=layer)
    return exc
