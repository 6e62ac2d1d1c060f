"""`extpack --version` says pyproject.toml's version, the one place it is written.

Run from a checkout (PYTHONPATH, no installation) it is that checkout's pyproject.toml; run from
an installed package it is the installed distribution's metadata. Each case is a copy of the
package with a version of its own, so the machine's installs cannot answer for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _copy_of_the_package(root: Path) -> Path:
    shutil.copytree(REPO_ROOT / "extpack", root / "extpack", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _version_line(pythonpath: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    result = subprocess.run([sys.executable, "-m", "extpack", "--version"], cwd="/", env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_a_checkout_reports_its_pyproject_version(tmp_path: Path) -> None:
    checkout = _copy_of_the_package(tmp_path)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    (checkout / "pyproject.toml").write_text(re.sub(r'(?m)^version = ".*"$', 'version = "9.8.7"', pyproject, count=1))

    assert _version_line(checkout) == "extpack, version 9.8.7"


def test_an_installed_package_reports_its_metadata_version(tmp_path: Path) -> None:
    site = _copy_of_the_package(tmp_path)  # no pyproject.toml beside the package, as in site-packages
    dist_info = site / "extpack-5.6.7.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: extpack\nVersion: 5.6.7\n")

    assert _version_line(site) == "extpack, version 5.6.7"


def test_this_checkout_reports_its_own_pyproject_version() -> None:
    version = re.search(r'(?m)^version = "(.*)"$', (REPO_ROOT / "pyproject.toml").read_text())[1]

    assert _version_line(REPO_ROOT) == f"extpack, version {version}"
    assert "__version__ =" not in (REPO_ROOT / "extpack" / "__init__.py").read_text()  # no second place
