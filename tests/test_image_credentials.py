"""Credential sources are tried in order; an ECR host defers to the helper docker's config names.

Only local files: no AWS call is made (an ECR source that would call AWS is not reached here).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from extpack.exceptions import UsageError
from extpack.image.credentials import DockerConfig, EcrToken, find_credentials

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def _config(folder: Path, **fields: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(fields))
    return path


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_first_source_with_credentials_wins(tmp_path: Path) -> None:
    first = _config(tmp_path / "a", auths={"reg.example:5000": _auth("first", "1")})
    second = _config(tmp_path / "b", auths={"reg.example:5000": _auth("second", "2")})
    found = find_credentials("reg.example:5000", [DockerConfig(first), DockerConfig(second)])
    assert found is not None and (found.username, found.source) == ("first", str(first))
    found = find_credentials("other.example", [DockerConfig(first), DockerConfig(second)])
    assert found is None  # no source has any: anonymous
    assert find_credentials("reg.example:5000", []) is None


def test_a_source_without_an_answer_passes_to_the_next(tmp_path: Path) -> None:
    config = _config(tmp_path, auths={"https://reg.example/v1/": _auth("user", "pw")})
    # not an ECR host: the ECR source has nothing to say and AWS is not asked
    found = find_credentials("reg.example", [EcrToken(config), DockerConfig(config)])
    assert found is not None and (found.username, found.password) == ("user", "pw")


def test_an_ecr_host_with_a_helper_in_the_config_is_left_to_the_helper(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, credHelpers={ECR_HOST: "extpack-test-nohelper"})
    monkeypatch.setenv("PATH", str(tmp_path))  # the helper is missing: the config's source must say so
    assert EcrToken(config).lookup(ECR_HOST) is None
    missing = f"docker-credential-extpack-test-nohelper (named in {config}) is not on PATH"
    with pytest.raises(UsageError, match=re.escape(missing)):
        find_credentials(ECR_HOST, [EcrToken(config), DockerConfig(config)])
