"""extpack's version, written in one place: pyproject.toml."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

UNKNOWN = "0+unknown"


def package_version() -> str:
    """The checkout's pyproject.toml when extpack runs from one, else the installed distribution's metadata.

    The checkout comes first because it is the code that runs: under PYTHONPATH the metadata
    found may be another install's, and an editable install's metadata keeps the version it
    was installed with.
    """
    return _checkout_version() or _installed_version()


def _checkout_version() -> str | None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    version = project.get("version")
    return version if project.get("name") == "extpack" and isinstance(version, str) else None


def _installed_version() -> str:
    try:
        return metadata.version("extpack")
    except metadata.PackageNotFoundError:
        return UNKNOWN
