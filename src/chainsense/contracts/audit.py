"""Slither over the project's own contracts (``chainsense contracts audit``, ``make audit``).

Slither needs web3<8, which the project venv cannot hold, so it lives in its own tool env,
``.tools/slither``, installed from the pinned ``tools/slither/requirements.txt`` the first time it
is needed (and again when that file or the Python version changes). The audit itself is
``tools/slither/audit.py``, run with that env's Python: it compiles with solc-js through Node (no
native solc, nothing downloaded), runs every Slither detector, and exits 1 when a High or Medium
finding has no ``// slither-disable-next-line <detector> -- <reason>`` comment above it.

Needs a source checkout (``tools/`` and ``contracts/``), Node.js and ``node_modules`` (``npm ci``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from chainsense.errors import ChainSenseError

__all__ = ["AuditError", "run_audit"]

TOOL_ENV = Path(".tools/slither")
REQUIREMENTS = Path("tools/slither/requirements.txt")
SCRIPT = Path("tools/slither/audit.py")
_STAMP = ".chainsense-requirements"
"""File in the tool env naming what it was installed from; a mismatch means reinstall."""


class AuditError(ChainSenseError):
    """The contract audit could not run (missing Node, node_modules, tool env, ...)."""


def run_audit(*, repo_root: Path) -> int:
    """Run Slither over ``repo_root``'s contracts; return the audit's exit code.

    Output (the findings and a summary line) streams to stdout; progress to stderr. 0: no High or
    Medium finding is unexplained; 1: at least one is; 2: the audit script could not compile or
    analyse the contracts.

    Raises:
        AuditError: not a source checkout, Node.js or node_modules missing, or the Slither tool
            env could not be installed.
    """
    repo_root = repo_root.resolve()
    _check_prerequisites(repo_root)
    python = _ensure_tool_env(repo_root)
    completed = subprocess.run(
        [str(python), str(repo_root / SCRIPT), "--repo-root", str(repo_root)],
        cwd=repo_root,
        check=False,
    )
    return completed.returncode


def _check_prerequisites(repo_root: Path) -> None:
    for needed in (SCRIPT, REQUIREMENTS):
        if not (repo_root / needed).is_file():
            raise AuditError(
                f"{repo_root} is not a ChainSense source checkout ({needed} is missing); "
                "run the audit from the repository root"
            )
    if shutil.which("node") is None:
        raise AuditError("node is not on PATH: install Node.js (>= 18), then run `npm ci`")
    for package in ("solc", "@openzeppelin/contracts"):
        if not (repo_root / "node_modules" / package / "package.json").is_file():
            raise AuditError(f"node_modules/{package} is missing: run `npm ci`")


def _ensure_tool_env(repo_root: Path) -> Path:
    """Create (or refresh) ``.tools/slither`` and return its Python."""
    env_dir = repo_root / TOOL_ENV
    python = env_dir / "bin" / "python"
    stamp = env_dir / _STAMP
    wanted = _requirements_stamp(repo_root)
    if python.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        return python

    print(f"creating Slither tool env in {TOOL_ENV}...", file=sys.stderr, flush=True)
    venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--require-virtualenv",
            "-r",
            str(repo_root / REQUIREMENTS),
        ],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        raise AuditError(
            f"installing the Slither tool env from {REQUIREMENTS} failed "
            f"(exit {install.returncode}):\n{install.stdout.strip()}"
        )
    stamp.write_text(wanted, encoding="utf-8")  # last: a half-made env is rebuilt next time
    print("Slither tool env ready", file=sys.stderr, flush=True)
    return python


def _requirements_stamp(repo_root: Path) -> str:
    digest = hashlib.sha256((repo_root / REQUIREMENTS).read_bytes()).hexdigest()
    version = ".".join(str(part) for part in sys.version_info[:2])
    return f"python {version}\nrequirements sha256 {digest}\n"
