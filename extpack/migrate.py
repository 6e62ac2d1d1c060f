"""From a zip function to a container image: the image its runtime maps to, and what is left to do.

The runtime picks AWS's base image and extpack's template; the handler becomes the CMD. The
migration report says what was converted, which environment variables the image function
needs (names only: values are often secrets), and what the infrastructure code must change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from extpack.config import DEFAULT_TEMPLATE
from extpack.exceptions import UsageError
from extpack.lock import LockedFunction

if TYPE_CHECKING:
    from extpack.render_options import RenderOptions

ECR = "public.ecr.aws/lambda"
# Runtimes AWS still publishes a base image for and has not deprecated (Lambda's runtime
# deprecation table); a deprecated one has no supported image to convert to.
SUPPORTED_RUNTIMES = (
    "python3.10", "python3.11", "python3.12", "python3.13", "python3.14",
    "nodejs20.x", "nodejs22.x", "nodejs24.x",
    "java8.al2", "java11", "java17", "java21", "java25",
    "ruby3.3", "ruby3.4", "ruby4.0",
    "dotnet8", "dotnet10",
    "provided.al2", "provided.al2023",
)
_RUNTIME_RE = re.compile(r"(?P<family>python|nodejs|java|ruby|dotnet|provided)(?P<version>.*)")


@dataclass(frozen=True)
class ImagePlan:
    """What a runtime becomes: extpack's template and AWS's base image for it."""

    template: str
    base: str
    custom: bool  # provided.*: the code's own bootstrap is the runtime


def image_for_runtime(runtime: str) -> ImagePlan:
    """python3.12 → the python template on public.ecr.aws/lambda/python:3.12, and so on (exit 2
    for a runtime with no supported AWS base image)."""
    match = _RUNTIME_RE.fullmatch(runtime)
    if runtime not in SUPPORTED_RUNTIMES or match is None:
        raise UsageError(f"the function's runtime {runtime} has no supported AWS base image (unknown or "
                         f"deprecated): move the function to one of {', '.join(SUPPORTED_RUNTIMES)}, or give "
                         "render --template and --base yourself")
    family, version = match["family"], match["version"]
    if family == "python":
        return ImagePlan("python", f"{ECR}/python:{version}", False)
    if family == "nodejs":
        return ImagePlan("nodejs", f"{ECR}/nodejs:{version.removesuffix('.x')}", False)
    if family == "provided":
        return ImagePlan("aws-base", f"{ECR}/provided:{version.lstrip('.')}", True)
    return ImagePlan("aws-base", f"{ECR}/{family}:{version}", False)


def iac_changes(function: LockedFunction) -> list[str]:
    """What the infrastructure code (SAM, CDK, Terraform, Serverless) must change for the image."""
    changes = ["PackageType: Image",
               "ImageUri: the image you build from this stage and push to ECR",
               "remove Handler and Runtime (the image's CMD and base image carry them)"]
    if function.layers:
        changes.append(f"remove Layers ({len(function.layers)}: they are in the image under /opt)")
    changes.append(f"keep Architectures: [{function.architecture}] (the image is built for it)")
    changes.append(f"ImageConfig.Command only to override the image's CMD ({function.handler})")
    return changes


def to_set(function: LockedFunction) -> list[str]:
    """The variables the image function needs set: all but the exec wrapper, which the image keeps."""
    kept = "AWS_LAMBDA_EXEC_WRAPPER" if _kept_wrapper(function) else None
    return [name for name in function.environment if name != kept]


def _kept_wrapper(function: LockedFunction) -> bool:
    """render keeps a wrapper that is a staged script under /opt (see with_function_defaults)."""
    return function.wrapper is not None and function.wrapper.startswith("/opt/")


def migration_json(function: LockedFunction) -> dict:
    plan = _plan_or_none(function.runtime)
    return {
        "function": function.to_json(),
        "image": None if plan is None else {"template": plan.template, "base": plan.base, "cmd": [function.handler]},
        "environment": to_set(function),
        "infrastructure": iac_changes(function),
    }


def migration_text(function: LockedFunction, stage_dir) -> list[str]:
    """The report's lines, for stdout after the fetch table."""
    plan = _plan_or_none(function.runtime)
    code = f", code -> {stage_dir}/task" if function.code_sha256 else " (code not fetched: add --with-code)"
    lines = [(f"converted function {function.arn} (version {function.version}): {function.runtime}, handler "
              f"{function.handler}, {function.architecture}, {len(function.layers)} layer(s) -> {stage_dir}/opt"
              f"{code}")]
    if plan is not None:
        lines.append(f"image: extpack render uses the {plan.template} template on {plan.base}, CMD "
                     f"[\"{function.handler}\"]")
    else:
        lines.append(f"image: {function.runtime} has no supported AWS base image: render needs --template and --base")
    names = to_set(function)
    if names:
        lines.append("set these environment variables on the image function (values were not copied): "
                     + ", ".join(names))
    if _kept_wrapper(function):
        lines.append(f"AWS_LAMBDA_EXEC_WRAPPER={function.wrapper} is kept in the image (extpack render --wrapper)")
    lines.append("in your infrastructure code: " + "; ".join(iac_changes(function)))
    return lines


def _plan_or_none(runtime: str) -> ImagePlan | None:
    try:
        return image_for_runtime(runtime)
    except UsageError:
        return None


TASK_ROOT, RUNTIME_DIR = "/var/task", "/var/runtime"  # what Lambda sets LAMBDA_TASK_ROOT / _RUNTIME_DIR to


def with_function_defaults(options: RenderOptions, task: str | None) -> tuple[RenderOptions, list[str]]:
    """RenderOptions with what the lock's function says filled in where no flag or config did:
    template and base from the runtime, CMD from the handler, the staged code (`task`, relative to
    the build context; None when not staged) copied to the task root (and a custom runtime's
    bootstrap to the runtime dir), and its exec wrapper. Returns the options and warnings."""
    from dataclasses import replace

    from extpack import runtime_env
    from extpack.lock import read_lock
    from extpack.render_options import BUILTIN, DEFAULT_BASE, Copy

    lock = read_lock(options.lock_path)
    function = lock.function if lock is not None else None
    if function is None:
        return replace(options, template=options.template or DEFAULT_TEMPLATE), []
    try:
        plan = image_for_runtime(function.runtime)
    except UsageError:
        if options.template is None:
            raise
        plan = None  # the user named the template (and base) themselves
    template = options.template or plan.template
    base = options.base or (plan.base if plan is not None and template == plan.template else None)
    kind = runtime_env.base_kind(base or (BUILTIN[template][1] if template in BUILTIN
                                          else DEFAULT_BASE), options.rie or template == "alpine-rie")
    custom = function.runtime.startswith("provided")
    warnings, copies, entrypoint = [], [], options.entrypoint
    if task is not None:
        # A base that is not AWS's sets no LAMBDA_TASK_ROOT: use the path Lambda gives it.
        copies.append(Copy(f"{task}/", f"{TASK_ROOT}/" if kind is runtime_env.BaseKind.OTHER
                                     else "${LAMBDA_TASK_ROOT}/"))
        if custom and kind is runtime_env.BaseKind.CUSTOM:  # AWS's provided base starts /var/runtime/bootstrap
            copies.append(Copy(f"{task}/bootstrap", "${LAMBDA_RUNTIME_DIR}/bootstrap"))
        elif custom and not entrypoint:  # elsewhere the code's bootstrap is the runtime
            entrypoint = [f"{TASK_ROOT}/bootstrap"]
    else:
        warnings.append(f"the function's code is not staged (extpack fetch --function {function.source} "
                        "--with-code): the image will hold its layers only, unless --copy or --app-dir adds it")
    wrapper = options.wrapper
    if wrapper is None and function.wrapper is not None:
        if _kept_wrapper(function):
            wrapper = function.wrapper
        else:
            warnings.append(f"the function's {runtime_env.WRAPPER_VARIABLE} is {function.wrapper}, not a staged "
                            "script under /opt: set it on the image function, or give --env")
    return replace(options, template=template, base=base, copies=copies + list(options.copies),
                   cmd=options.cmd or [options.handler or function.handler], entrypoint=entrypoint,
                   wrapper=wrapper), warnings
