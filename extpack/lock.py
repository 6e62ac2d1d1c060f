"""extpack.lock: exactly which bytes each layer is, so the same lock gives the same stage."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extpack import validate
from extpack.exceptions import UsageError
from extpack.model import Arch, SourceKind

LOCK_SCHEMA = "extpack.lock/v1"


@dataclass(frozen=True)
class LockedLayer:
    source: str  # as the user wrote it (ARN, path or URL)
    kind: SourceKind
    sha256: str
    size: int
    arn: str | None = None  # the exact version ARN, for ARN sources
    version: int | None = None
    architectures: tuple[Arch, ...] = field(default=())

    def to_json(self) -> dict:
        data = asdict(self)
        data["architectures"] = list(self.architectures)
        return data


@dataclass(frozen=True)
class LockedFunction:
    """The zip function a stage was converted from (`fetch --function`): its configuration as
    GetFunction reported it. Environment variables by name only: their values are often secrets."""

    source: str  # the name or ARN as the user gave it
    qualifier: str | None
    arn: str  # FunctionArn as answered (qualified when a qualifier was asked for)
    version: str  # "$LATEST" or the published version the qualifier resolved to
    runtime: str
    handler: str
    architecture: str
    layers: tuple[str, ...]  # the function's own layer version ARNs, in its order
    environment: tuple[str, ...]  # variable names, sorted
    wrapper: str | None = None  # AWS_LAMBDA_EXEC_WRAPPER: configuration, not a secret
    code_sha256: str | None = None  # hex; set when the code was fetched (--with-code)
    code_size: int | None = None

    def to_json(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "environment": list(self.environment)}


@dataclass(frozen=True)
class Lock:
    arch: Arch
    layers: tuple[LockedLayer, ...]
    function: LockedFunction | None = None

    def find(self, source: str) -> LockedLayer | None:
        return next((layer for layer in self.layers if layer.source == source), None)

    def to_text(self) -> str:
        data = {"schema": LOCK_SCHEMA, "arch": self.arch, "layers": [layer.to_json() for layer in self.layers]}
        if self.function is not None:  # a lock without one stays byte for byte what it was
            data["function"] = self.function.to_json()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_lock(path: Path) -> Lock | None:
    """The lock at `path` (None if there is none), every field checked against its grammar.

    The lock is edited in pull requests: its sha256 names a cache path, its ARNs reach
    messages and Dockerfiles, so a value of the wrong shape stops here (exit 2).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"lock file {path} is not valid JSON ({exc}): restore it from version control or delete it") \
            from None
    try:
        return _lock_from_json(data)
    except validate.Invalid as exc:
        raise UsageError(f"lock file {path}: field {exc}: restore it from version control or delete it") from None


def _lock_from_json(data: object) -> Lock:
    validate.mapping(data, "(top level)")
    if data.get("schema") != LOCK_SCHEMA:
        raise validate.Invalid("schema", f"is {validate.shown(data.get('schema'))}, not {LOCK_SCHEMA!r}")
    arch = Arch.of_field(data.get("arch"), "arch")
    items = validate.sequence(data.get("layers"), "layers")
    function = None if data.get("function") is None else locked_function(data["function"], "function")
    return Lock(arch=arch, layers=tuple(_locked_layer(item, f"layers[{i}]") for i, item in enumerate(items)),
                function=function)


def locked_function(item: object, where: str) -> LockedFunction:
    """A `function` record, every field checked as GetFunction's answer is."""
    validate.mapping(item, where)
    source = validate.text(item.get("source"), f"{where}.source")
    if source.startswith("arn:"):
        validate.function_arn_match(source, f"{where}.source")
    else:
        validate.matching(source, validate.FUNCTION_NAME_RE, f"{where}.source", "a function name")
    qualifier = item.get("qualifier")
    if qualifier is not None:
        validate.matching(qualifier, validate.QUALIFIER_RE, f"{where}.qualifier", "a version or alias")
    code_sha256 = validate.optional_sha256_hex(item.get("code_sha256"), f"{where}.code_sha256")
    code_size = item.get("code_size")
    return LockedFunction(
        source=source,
        qualifier=qualifier,
        arn=validate.function_arn_match(item.get("arn"), f"{where}.arn")[0],
        version=validate.matching(item.get("version"), validate.FUNCTION_VERSION_RE, f"{where}.version",
                                  "$LATEST or a version number"),
        runtime=validate.matching(item.get("runtime"), validate.RUNTIME_RE, f"{where}.runtime", "a runtime"),
        handler=validate.matching(item.get("handler"), validate.HANDLER_RE, f"{where}.handler", "a handler"),
        architecture=Arch.of_field(item.get("architecture"), f"{where}.architecture"),
        layers=tuple(validate.layer_version_arn(arn, f"{where}.layers[{i}]")
                     for i, arn in enumerate(validate.sequence(item.get("layers"), f"{where}.layers"))),
        environment=tuple(validate.matching(name, validate.ENV_NAME_RE, f"{where}.environment[{i}]",
                                            "an environment variable name")
                          for i, name in enumerate(validate.sequence(item.get("environment"),
                                                                     f"{where}.environment"))),
        wrapper=validate.optional_text(item.get("wrapper"), f"{where}.wrapper"),
        code_sha256=code_sha256,
        code_size=None if code_size is None else validate.count(code_size, f"{where}.code_size"),
    )


def _locked_layer(item: object, where: str) -> LockedLayer:
    validate.mapping(item, where)
    kind = SourceKind(validate.one_of(item.get("kind"), tuple(SourceKind), f"{where}.kind"))
    source = validate.text(item.get("source"), f"{where}.source")
    arn = validate.optional_layer_version_arn(item.get("arn"), f"{where}.arn")
    version = validate.optional_version(item.get("version"), f"{where}.version")
    if kind == "arn":
        _check_pin(source, arn, version, where)
    return LockedLayer(
        source=source,
        kind=kind,
        sha256=validate.sha256_hex(item.get("sha256"), f"{where}.sha256"),
        size=validate.count(item.get("size"), f"{where}.size"),
        arn=arn,
        version=version,
        architectures=Arch.list_of_field(item.get("architectures") or [], f"{where}.architectures"),
    )


def _check_pin(source: str, arn: str | None, version: int | None, where: str) -> None:
    """An ARN source is pinned to a version of that same layer (a versioned source may be pinned
    to a newer version than it names: `extpack lock --upgrade --to-latest`)."""
    wanted = validate.layer_arn_match(source, f"{where}.source")
    if arn is None or version is None:
        raise validate.Invalid(f"{where}.arn", "and .version are required for a layer ARN source")
    if wanted["version"] is not None and version < int(wanted["version"]):
        raise validate.Invalid(f"{where}.version", f"is {version}, older than the version {wanted['version']} "
                                                   "the source names")
    if arn != f"{validate.layer_arn_of(wanted)}:{version}":
        raise validate.Invalid(f"{where}.arn", f"is not version {version} of the source's layer: {validate.shown(arn)}")


def lock_changes(old: Lock | None, new: Lock) -> list[dict]:
    """Per source: the pinned ARN (or sha256 prefix) before and after."""
    def pin(layer):
        return layer.arn or f"sha256:{layer.sha256[:12]}"

    before = {layer.source: pin(layer) for layer in old.layers} if old else {}
    after = {layer.source: pin(layer) for layer in new.layers}
    changes = [{"source": source, "from": before.get(source), "to": value}
               for source, value in after.items() if before.get(source) != value]
    changes += [{"source": source, "from": value, "to": None} for source, value in before.items() if source not in after]
    return changes
