"""extpack.lock: exactly which bytes each layer is, so the same lock gives the same stage."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extpack.exceptions import UsageError

LOCK_SCHEMA = "extpack.lock/v1"


@dataclass(frozen=True)
class LockedLayer:
    source: str  # as the user wrote it (ARN, path or URL)
    kind: str  # "arn" | "zip" | "url"
    sha256: str
    size: int
    arn: str | None = None  # the exact version ARN, for ARN sources
    version: int | None = None
    architectures: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        data = asdict(self)
        data["architectures"] = list(self.architectures)
        return data


@dataclass(frozen=True)
class Lock:
    arch: str
    layers: tuple[LockedLayer, ...]

    def find(self, source: str) -> LockedLayer | None:
        return next((layer for layer in self.layers if layer.source == source), None)

    def to_text(self) -> str:
        data = {"schema": LOCK_SCHEMA, "arch": self.arch, "layers": [layer.to_json() for layer in self.layers]}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_lock(path: Path) -> Lock | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        if data.get("schema") != LOCK_SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r} is not {LOCK_SCHEMA}")
        layers = tuple(
            LockedLayer(
                source=item["source"],
                kind=item["kind"],
                sha256=item["sha256"],
                size=int(item["size"]),
                arn=item.get("arn"),
                version=item.get("version"),
                architectures=tuple(item.get("architectures") or ()),
            )
            for item in data["layers"]
        )
        return Lock(arch=data["arch"], layers=layers)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"lock file {path} is not valid ({exc}): restore it from version control or delete it") from None
