"""`fetch --function`: a zip function's configuration, read with GetFunction, as a lock record.

The function's layers (in its order), architecture, runtime, handler, the names of its
environment variables and its code's checksum become the `function` record of the lock; the
code itself is downloaded, verified and unpacked into `<stage>/task` like a layer. The answer is
checked field by field as layer answers are: a lying endpoint stops here (exit 3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from extpack import validate
from extpack.exceptions import AwsError, UsageError
from extpack.lock import Lock, LockedFunction
from extpack.manifest import StagedFile, StagedTask
from extpack.model import DEFAULT_ARCH, Arch, EntryType
from extpack.resolve import LambdaResolver

if TYPE_CHECKING:
    from extpack.fetch_types import FetchOptions
    from extpack.unpack import LayerTree

WRAPPER_VARIABLE = "AWS_LAMBDA_EXEC_WRAPPER"
_HINTS = {
    "ResourceNotFoundException": "function not found: check the name, the qualifier (version or alias) and the "
    "region (--region, or the ARN's own)",
    "AccessDeniedException": "access denied: the credentials need lambda:GetFunction on this function",
    "InvalidParameterValueException": "the Lambda API rejected the function name or qualifier: check them",
    "ValidationException": "the Lambda API rejected the function name or qualifier: check them",
}


@dataclass(frozen=True)
class FunctionRef:
    """A function as the user named it: a name (in `region`, else the profile's) or an ARN."""

    source: str
    name: str  # the function's name, without account, region or qualifier
    function_name: str  # what GetFunction is called with: the name, or the unqualified ARN
    region: str | None
    qualifier: str | None

    @property
    def display(self) -> str:
        return f"{self.source}:{self.qualifier}" if self.qualifier and not self.source.endswith(
            f":{self.qualifier}") else self.source


@dataclass(frozen=True)
class FunctionAnswer:
    """GetFunction's answer, every member checked; `location` is a presigned URL (a secret)."""

    record: LockedFunction  # code_sha256 / code_size filled in
    location: str | None = field(default=None, repr=False)


def parse_function(text: str, qualifier: str | None = None, region: str | None = None) -> FunctionRef:
    """--function NAME|ARN and --qualifier; an ARN's own region wins over `region` (exit 2 when malformed)."""
    text = text.strip()
    if qualifier is not None and not validate.QUALIFIER_RE.fullmatch(qualifier):
        raise UsageError(f"bad --qualifier {validate.shown(qualifier)}: give a version number, $LATEST or an alias "
                         "name (letters, digits, - and _)")
    if text.startswith("arn:"):
        try:
            match = validate.function_arn_match(text, "function ARN")
        except validate.Invalid as exc:
            raise UsageError(f"malformed --function {validate.shown(text)}: it {exc.problem}") from None
        if match["qualifier"] and qualifier and match["qualifier"] != qualifier:
            raise UsageError(f"--function {text} names qualifier {match['qualifier']}, --qualifier says {qualifier}: "
                             "give one of them")
        unqualified = text if not match["qualifier"] else text.rsplit(":", 1)[0]
        return FunctionRef(text, match["name"], unqualified, match["region"], match["qualifier"] or qualifier)
    if not validate.FUNCTION_NAME_RE.fullmatch(text):
        raise UsageError(f"malformed --function {validate.shown(text)}: give a function name (letters, digits, - "
                         "and _, at most 64) or its ARN (arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME)")
    return FunctionRef(text, text, text, region, qualifier)


def read_function(resolver: LambdaResolver, ref: FunctionRef) -> FunctionAnswer:
    """GetFunction, in the ARN's region (else `ref.region`, else the profile's); exit 3 when
    the function cannot be read, exit 2 when it is already an image."""
    kwargs = {"FunctionName": ref.function_name, **({"Qualifier": ref.qualifier} if ref.qualifier else {})}
    response = resolver.call(ref.region, "get_function", subject=f"function {ref.display}", hints=_HINTS, **kwargs)
    try:
        return _checked_answer(response, ref)
    except validate.Invalid as exc:
        raise AwsError(f"the Lambda API's answer is not valid: {exc}: check --endpoint-url / "
                       "AWS_ENDPOINT_URL_LAMBDA", layer=f"function {ref.display}") from None


def _checked_answer(response: dict, ref: FunctionRef) -> FunctionAnswer:
    config = validate.mapping(response.get("Configuration"), "Configuration")
    code = validate.mapping(response.get("Code", {}), "Code")
    arn = _checked_arn(config.get("FunctionArn"), ref)
    if config.get("FunctionName") != ref.name:
        raise validate.Invalid("Configuration.FunctionName", f"is not the function asked for ({ref.name}): "
                                                             f"{validate.shown(config.get('FunctionName'))}")
    version = validate.matching(config.get("Version"), validate.FUNCTION_VERSION_RE, "Configuration.Version",
                                "$LATEST or a version number")
    if ref.qualifier and (ref.qualifier.isdigit() or ref.qualifier == "$LATEST") and version != ref.qualifier:
        raise validate.Invalid("Configuration.Version", f"is {version}, not the version asked for ({ref.qualifier})")
    package = validate.one_of(config.get("PackageType", "Zip"), ("Zip", "Image"), "Configuration.PackageType")
    if package == "Image":
        image = validate.optional_text(code.get("ImageUri"), "Code.ImageUri") or "an image"
        raise UsageError(f"already an image: {image} (PackageType Image has no layers or code zip to convert)",
                         layer=f"function {ref.display}")
    architectures = Arch.list_of_field(config.get("Architectures", [DEFAULT_ARCH]), "Configuration.Architectures")
    if len(architectures) != 1:
        raise validate.Invalid("Configuration.Architectures", f"must name one architecture, not {len(architectures)}")
    variables = _variables(config.get("Environment"))
    location = code.get("Location")
    record = LockedFunction(
        source=ref.source,
        qualifier=ref.qualifier,
        arn=arn,
        version=version,
        runtime=validate.matching(config.get("Runtime"), validate.RUNTIME_RE, "Configuration.Runtime", "a runtime"),
        handler=validate.matching(config.get("Handler"), validate.HANDLER_RE, "Configuration.Handler",
                                  "a handler (one word)"),
        architecture=architectures[0],
        layers=tuple(_layer_arn(item, index) for index, item in
                     enumerate(validate.sequence(config.get("Layers", []), "Configuration.Layers"))),
        environment=tuple(sorted(variables)),
        wrapper=validate.optional_text(variables.get(WRAPPER_VARIABLE), f"Environment.Variables.{WRAPPER_VARIABLE}"),
        code_sha256=validate.code_sha256(config.get("CodeSha256"), "Configuration.CodeSha256"),
        code_size=validate.count(config.get("CodeSize"), "Configuration.CodeSize"),
    )
    return FunctionAnswer(record, None if location is None else validate.download_url(location, "Code.Location"))


def _checked_arn(value: object, ref: FunctionRef) -> str:
    """FunctionArn: this function, in the region and account asked about, with the qualifier asked for."""
    match = validate.function_arn_match(value, "Configuration.FunctionArn")
    asked = validate.FUNCTION_ARN_RE.fullmatch(ref.function_name)
    wrong = match["name"] != ref.name or (ref.region is not None and match["region"] != ref.region) or (
        asked is not None and (match["account"], match["partition"]) != (asked["account"], asked["partition"]))
    if wrong or (match["qualifier"] or None) != ref.qualifier:
        raise validate.Invalid("Configuration.FunctionArn", f"is not the function asked for ({ref.display}): "
                                                            f"{validate.shown(value)}")
    return value


def _layer_arn(item: object, index: int) -> str:
    where = f"Configuration.Layers[{index}]"
    validate.mapping(item, where)
    if "CodeSize" in item:
        validate.count(item["CodeSize"], f"{where}.CodeSize")
    return validate.layer_version_arn(item.get("Arn"), f"{where}.Arn")


def _variables(environment: object) -> dict[str, str]:
    """Environment.Variables: names checked, values only for their type (they are never kept)."""
    if environment is None:
        return {}
    variables = validate.mapping(validate.mapping(environment, "Configuration.Environment").get("Variables", {}),
                                 "Configuration.Environment.Variables")
    for name, value in variables.items():
        validate.matching(name, validate.ENV_NAME_RE, "Configuration.Environment.Variables",
                          "a map of environment variable names")
        if not isinstance(value, str):
            raise validate.Invalid(f"Configuration.Environment.Variables.{name}", "must be a string")
    return variables


def without_code(record: LockedFunction) -> LockedFunction:
    """The record as locked when the code is not fetched: no checksum to hold it to."""
    return replace(record, code_sha256=None, code_size=None)


def record_differences(locked: LockedFunction, answered: LockedFunction) -> list[str]:
    """What GetFunction now says differently from the lock (the code only when the lock pins it)."""
    fields = ["arn", "version", "runtime", "handler", "architecture", "layers", "environment", "wrapper"]
    if locked.code_sha256 is not None:
        fields.append("code_sha256")
    return [f"function {name}: the lock has {getattr(locked, name)!r}, the Lambda API says {getattr(answered, name)!r}"
            for name in fields if getattr(locked, name) != getattr(answered, name)]


def stage_task(tree: LayerTree, root: Path, sha256: str, size: int) -> StagedTask:
    """Give the unpacked code's directories their modes (the unpacker keeps them private) and
    describe it for the manifest."""
    os.chmod(root, 0o755)
    entries = []
    for path, node in sorted(tree.nodes.items()):
        mode = node.mode if node.type != "dir" else (node.mode or 0o755)
        if node.type == "dir":
            os.chmod(root / path, mode)
        entries.append(StagedFile(path, EntryType(node.type), mode, node.size, node.target, sha256=node.sha256,
                                  mtime=node.mtime))
    return StagedTask(sha256, size, tree.unzipped_size, tuple(entries))


@dataclass
class FunctionPlan:
    """The function a fetch converts: `record` is what the lock will hold."""

    ref: FunctionRef
    record: LockedFunction
    with_code: bool
    location: str | None = field(default=None, repr=False)  # None until GetFunction has answered

    @property
    def display(self) -> str:
        return f"function {self.ref.display}"

    def code_location(self, resolver: LambdaResolver) -> str:
        """Code.Location; a frozen fetch that finds the code uncached asks now, and holds the
        answer to the lock."""
        from extpack.exceptions import DriftError

        if self.location is None:
            answer = read_function(resolver, self.ref)
            differences = record_differences(self.record, answer.record)
            if differences:
                raise DriftError(f"the function differs from the lock ({differences[0]}): run extpack fetch "
                                 "without --frozen to update the lock", layer=self.display, details=differences)
            self.location = answer.location
        if self.location is None:
            raise AwsError("the Lambda API gave no Code.Location for the function's code", layer=self.display)
        return self.location

    def fresh_location(self, resolver: LambdaResolver) -> str | None:
        """A new presigned URL, for a download whose URL expired."""
        return read_function(resolver, self.ref).location


def plan_function(options: FetchOptions, lock: Lock | None, resolver: LambdaResolver) -> FunctionPlan | None:
    """The function of this fetch: `--function` (read now, or from the lock with --frozen), or the
    lock's own for a plain `fetch --frozen`. Sets `options.arch` to the function's."""
    from extpack.exceptions import DriftError

    locked = lock.function if lock is not None else None
    if locked is not None and options.frozen:  # a frozen fetch asks where the lock says the function is
        options.region = validate.FUNCTION_ARN_RE.fullmatch(locked.arn)["region"]
    if options.function is None:
        if options.with_code or options.qualifier:
            raise UsageError("--with-code and --qualifier go with --function NAME|ARN")
        if not (options.frozen and locked is not None and not options.sources):
            return None
        options.arch = locked.architecture
        return FunctionPlan(parse_function(locked.source, locked.qualifier, options.region), locked,
                            locked.code_sha256 is not None)
    ref = parse_function(options.function, options.qualifier, options.region)
    if options.frozen:
        if locked is None or (locked.source, locked.qualifier) != (ref.source, ref.qualifier):
            raise DriftError(f"--frozen: {options.lock_path} holds "
                             f"{'no function' if locked is None else 'function ' + locked.source}, not {ref.display}: "
                             "run extpack fetch --function without --frozen and commit the lock",
                             layer=f"function {ref.display}")
        if options.with_code != (locked.code_sha256 is not None):
            raise DriftError(f"--frozen: {options.lock_path} was made {'without' if options.with_code else 'with'} "
                             "--with-code: run extpack fetch without --frozen to update the lock",
                             layer=f"function {ref.display}")
        _agree_on_arch(options, locked, ref)
        return FunctionPlan(ref, locked, options.with_code)
    answer = read_function(resolver, ref)
    record = answer.record if options.with_code else without_code(answer.record)
    _agree_on_arch(options, record, ref)
    return FunctionPlan(ref, record, options.with_code, answer.location)


def _agree_on_arch(options: FetchOptions, record: LockedFunction, ref: FunctionRef) -> None:
    if options.explicit_arch and options.arch != record.architecture:
        raise UsageError(f"the function runs on {record.architecture}, but --arch (or arch in the config) says "
                         f"{options.arch}: leave --arch out, or convert a function built for {options.arch}",
                         layer=f"function {ref.display}")
    options.arch = record.architecture
