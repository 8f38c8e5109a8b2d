"""Compiled contract artifacts shipped with the package (built by ``make contracts``).

Users who point ChainSense at an external RPC endpoint need no Node.js: everything needed to deploy
and call the contracts is in these JSON files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from chainsense.errors import ArtifactError

__all__ = ["Artifact", "artifact_names", "load_artifact", "load_artifact_file"]


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_references: dict[str, list[dict[str, int]]]
    compiler: dict[str, Any]
    sources: dict[str, str]
    sha256: str
    """sha256 of the artifact file itself: recorded with each deployment."""


def artifact_names() -> list[str]:
    """Names of every shipped artifact."""
    folder = resources.files(__package__).joinpath("artifacts")
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


@cache
def load_artifact(name: str) -> Artifact:
    """Load the artifact of contract ``name`` (for example ``"DeviceRegistry"``)."""
    path = resources.files(__package__).joinpath("artifacts", f"{name}.json")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"no artifact for contract {name!r}; known: {', '.join(artifact_names())}"
        ) from None
    return _parse(name, raw)


def load_artifact_file(path: Path) -> Artifact:
    """Load an artifact from any file (for example, to check a chain against other builds)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc
    return _parse(str(path), raw)


def _parse(name: str, raw: bytes) -> Artifact:
    try:
        data = json.loads(raw)
        return Artifact(
            name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            immutable_references=data.get("immutableReferences", {}),
            compiler=data["compiler"],
            sources=data["sources"],
            sha256="0x" + hashlib.sha256(raw).hexdigest(),
        )
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"artifact {name!r} is malformed: {exc}") from exc
