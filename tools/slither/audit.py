"""Run Slither over the ChainSense contracts, compiled with solc-js. Downloads nothing.

Runs inside the Slither tool env (``.tools/slither``, from ``tools/slither/requirements.txt``); the
project venv cannot host Slither (it needs web3<8). ``chainsense contracts audit`` creates that env
and runs this script with it; by hand::

    .tools/slither/bin/python tools/slither/audit.py [--repo-root DIR]

How: there is no native solc, so instead of letting crytic-compile call ``solc`` (or solc-select),
a small crytic-compile platform (:class:`SolcJsPlatform`) sends the standard-JSON input to
``node tools/slither/solc-standard-json.mjs`` (npm ``solc``, pinned in package-lock.json) and hands
the output to crytic-compile's own standard-JSON parser. Slither then runs every detector it has.

Findings are kept when they touch the project's own files (contracts/src, contracts/interfaces);
OpenZeppelin under node_modules is never reported on its own. A finding is *accepted* when one of
its lines is preceded by ``// slither-disable-next-line <detector> -- <reason>`` (or lies inside a
``// slither-disable-start <detector> -- <reason>`` ... ``// slither-disable-end <detector>``
block). A disable comment without a ``-- reason`` accepts nothing.

Exit code: 0 when no High or Medium finding is unexplained, 1 when one is, 2 when the audit could
not run (compile error, missing node, ...).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crytic_compile import CryticCompile
from crytic_compile.compilation_unit import CompilationUnit
from crytic_compile.compiler.compiler import CompilerVersion
from crytic_compile.platform.abstract_platform import AbstractPlatform
from crytic_compile.platform.solc_standard_json import parse_standard_json_output
from crytic_compile.platform.types import Type
from slither import Slither
from slither.detectors import all_detectors
from slither.detectors.abstract_detector import AbstractDetector

PROJECT_DIRS = ("contracts/interfaces", "contracts/src")
NODE_SCRIPT = "tools/slither/solc-standard-json.mjs"
ARTIFACTS_DIR = "src/chainsense/contracts/artifacts"

# Same compiler settings as contracts/build.mjs (SETTINGS); checked against the shipped artifacts
# at run time. build.mjs resolves `@openzeppelin/...` through an import callback; here a remapping
# does the same, so every source unit name is a real repository path (node_modules/...).
OPTIMIZER = {"enabled": True, "runs": 200}
EVM_VERSION = "cancun"
REMAPPINGS = ["@openzeppelin/=node_modules/@openzeppelin/"]
# Slither's detectors work on the AST; skipping code generation halves the solc-js time. (Bytecode
# is build.mjs's business: `node contracts/build.mjs --check`.)
OUTPUT_SELECTION = {"*": {"*": ["abi", "metadata", "devdoc", "userdoc"], "": ["ast"]}}
_NO_CODE = {"object": "", "sourceMap": ""}

IMPACT_ORDER = ("High", "Medium", "Low", "Informational", "Optimization")
FAILING_IMPACTS = frozenset({"High", "Medium"})

_DISABLE = re.compile(
    r"^\s*//\s*slither-disable-(?P<kind>next-line|start|end)\s+(?P<checks>[A-Za-z0-9_,-]+)"
    r"(?:\s+--\s*(?P<reason>\S.*?))?\s*$"
)


class AuditError(Exception):
    """The audit could not run (as opposed to: it ran and found something)."""


# --------------------------------------------------------------------------------------------------
# Compiling with solc-js


def standard_json_input(repo_root: Path) -> dict[str, Any]:
    sources: dict[str, dict[str, str]] = {}
    for folder in PROJECT_DIRS:
        for path in sorted((repo_root / folder).glob("*.sol")):
            key = path.relative_to(repo_root).as_posix()
            sources[key] = {"content": path.read_text(encoding="utf-8")}
    if not sources:
        raise AuditError(f"no .sol files in {', '.join(PROJECT_DIRS)} under {repo_root}")
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": OPTIMIZER,
            "evmVersion": EVM_VERSION,
            "metadata": {"bytecodeHash": "ipfs"},
            "remappings": REMAPPINGS,
            "outputSelection": OUTPUT_SELECTION,
        },
    }


def check_settings_match_build(repo_root: Path) -> None:
    """Warn when the shipped artifacts were built with other settings than the ones audited."""
    for artifact in sorted((repo_root / ARTIFACTS_DIR).glob("*.json")):
        settings = json.loads(artifact.read_text(encoding="utf-8"))["compiler"]["settings"]
        if settings.get("optimizer") != OPTIMIZER or settings.get("evmVersion") != EVM_VERSION:
            print(
                f"warning: {artifact.relative_to(repo_root)} was built with optimizer="
                f"{settings.get('optimizer')} evmVersion={settings.get('evmVersion')}; the audit "
                f"uses optimizer={OPTIMIZER} evmVersion={EVM_VERSION} "
                "(update tools/slither/audit.py)",
                file=sys.stderr,
            )
            return


def compile_with_solc_js(repo_root: Path, solc_input: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise AuditError("node is not on PATH: install Node.js (>= 18), then run `npm ci`")
    if not (repo_root / "node_modules" / "solc").is_dir():
        raise AuditError("node_modules/solc is missing: run `npm ci` in the repository root")
    proc = subprocess.run(
        [node, NODE_SCRIPT],
        input=json.dumps(solc_input),
        capture_output=True,
        text=True,
        cwd=repo_root,
        check=False,
    )
    if proc.returncode != 0:
        raise AuditError(f"solc-js failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    try:
        output: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise AuditError(f"solc-js printed no JSON: {exc}\n{proc.stderr.strip()}") from exc
    messages = output.get("errors", [])
    for message in messages:
        print(message.get("formattedMessage", message.get("message", "")).rstrip(), file=sys.stderr)
    errors = [m for m in messages if m.get("severity") == "error"]
    if errors:
        raise AuditError(f"solc reported {len(errors)} error(s)")
    return output


def compiler_version_of(output: dict[str, Any]) -> str:
    """The solc version, from the metadata solc embedded in its own output."""
    for contracts in output.get("contracts", {}).values():
        for contract in contracts.values():
            full = json.loads(contract["metadata"])["compiler"]["version"]
            match = re.match(r"\d+\.\d+\.\d+", full)
            if match:
                return match.group(0)
    raise AuditError("solc output has no contract metadata to read the compiler version from")


class SolcJsPlatform(AbstractPlatform):
    """crytic-compile platform: the project's sources compiled by solc-js through node."""

    NAME = "solc-js"
    PROJECT_URL = "https://github.com/ethereum/solc-js"
    TYPE = Type.SOLC_STANDARD_JSON

    def __init__(self, repo_root: Path) -> None:
        super().__init__(str(repo_root))
        self._repo_root = repo_root

    def compile(self, crytic_compile: CryticCompile, **_kwargs: str) -> None:
        solc_input = standard_json_input(self._repo_root)
        output = compile_with_solc_js(self._repo_root, solc_input)
        unit = CompilationUnit(crytic_compile, "solc-js")
        unit.compiler_version = CompilerVersion(
            compiler="solc",
            version=compiler_version_of(output),
            optimized=OPTIMIZER["enabled"],
            optimize_runs=OPTIMIZER["runs"],
        )
        for contracts in output.get("contracts", {}).values():
            for contract in contracts.values():  # crytic-compile expects these keys
                contract.setdefault("evm", {"bytecode": _NO_CODE, "deployedBytecode": _NO_CODE})
        parse_standard_json_output(output, unit, solc_working_dir=str(self._repo_root))

    def clean(self, **_kwargs: str) -> None:
        pass

    @staticmethod
    def is_supported(target: str, **_kwargs: str) -> bool:
        return False  # never picked by auto-detection; only passed in explicitly

    def is_dependency(self, path: str) -> bool:
        return "node_modules" in Path(path).parts

    def _guessed_tests(self) -> list[str]:
        return []


# --------------------------------------------------------------------------------------------------
# Findings and their reasons


@dataclass(frozen=True)
class Disable:
    """One ``slither-disable-*`` comment in a project file."""

    file: str
    line: int
    kind: str
    checks: tuple[str, ...]
    reason: str | None


@dataclass
class Finding:
    check: str
    impact: str
    confidence: str
    file: str
    line: int
    description: str
    accepted_by: Disable | None = None
    reasonless: Disable | None = None

    @property
    def blocking(self) -> bool:
        return self.impact in FAILING_IMPACTS and self.accepted_by is None


class Sources:
    """Project source lines and the disable comments in them."""

    def __init__(self, repo_root: Path) -> None:
        self.repo_root = repo_root
        self.lines: dict[str, list[str]] = {}
        self.disables: list[Disable] = []
        self.used: set[Disable] = set()
        for folder in PROJECT_DIRS:
            for path in sorted((repo_root / folder).glob("*.sol")):
                rel = path.relative_to(repo_root).as_posix()
                text = path.read_text(encoding="utf-8").splitlines()
                self.lines[rel] = text
                for number, line in enumerate(text, start=1):
                    match = _DISABLE.match(line)
                    if match:
                        checks = tuple(c for c in match["checks"].split(",") if c)
                        self.disables.append(
                            Disable(rel, number, match["kind"], checks, match["reason"])
                        )

    def relative(self, absolute: str) -> str | None:
        """Repository-relative path of a project file, None for anything else (dependencies)."""
        try:
            rel = Path(absolute).resolve().relative_to(self.repo_root).as_posix()
        except ValueError:
            return None
        return rel if rel in self.lines else None

    def disables_covering(self, check: str, file: str, lines: Sequence[int]) -> list[Disable]:
        """Disable comments for ``check`` on the line above ``lines`` or around them."""
        found: list[Disable] = []
        first, last = min(lines), max(lines)
        open_blocks: dict[str, Disable] = {}
        for d in (d for d in self.disables if d.file == file):
            applies = check in d.checks or "all" in d.checks
            if d.kind == "next-line" and d.line == first - 1 and applies:
                found.append(d)
            elif d.kind == "start":
                for c in d.checks:
                    open_blocks[c] = d
            elif d.kind == "end":
                for c in d.checks:
                    start = open_blocks.pop(c, None)
                    if start is None or c not in (check, "all"):
                        continue
                    if start.line < first and last < d.line:
                        found.append(start)
        return found


def collect_findings(results: Iterable[dict[str, Any]], sources: Sources) -> list[Finding]:
    findings: list[Finding] = []
    for result in results:
        located: list[tuple[str, list[int]]] = []
        for element in result.get("elements", []):
            mapping = element.get("source_mapping") or {}
            rel = sources.relative(mapping.get("filename_absolute", ""))
            lines = mapping.get("lines") or []
            if rel is not None and lines:
                located.append((rel, lines))
        if not located:
            continue  # only about dependencies (OpenZeppelin): not ours to fix or explain
        # Point at the most specific element (the flagged statement rather than its function).
        file, lines = min(located, key=lambda located_lines: len(located_lines[1]))
        finding = Finding(
            check=result["check"],
            impact=result["impact"],
            confidence=result["confidence"],
            file=file,
            line=min(lines),
            description=result["description"].strip(),
        )
        for rel, element_lines in located:
            for disable in sources.disables_covering(finding.check, rel, element_lines):
                sources.used.add(disable)
                if disable.reason and finding.accepted_by is None:
                    finding.accepted_by = disable
                elif not disable.reason:
                    finding.reasonless = disable
        findings.append(finding)
    findings.sort(key=lambda f: (IMPACT_ORDER.index(f.impact), f.file, f.line, f.check))
    return findings


# --------------------------------------------------------------------------------------------------
# Running


def run_slither(repo_root: Path) -> list[dict[str, Any]]:
    crytic = CryticCompile(SolcJsPlatform(repo_root), cwd=str(repo_root))
    # show_ignored_findings: Slither would drop disabled findings silently; this script decides
    # itself (it needs the reason, and counts what was accepted).
    slither = Slither(crytic, show_ignored_findings=True)
    for name in dir(all_detectors):
        detector = getattr(all_detectors, name)
        if isinstance(detector, type) and issubclass(detector, AbstractDetector):
            slither.register_detector(detector)
    return [result for batch in slither.run_detectors() for result in batch]


def report(findings: Sequence[Finding], sources: Sources) -> int:
    out = sys.stdout
    for finding in findings:
        status = "accepted" if finding.accepted_by else "UNEXPLAINED" if finding.blocking else ""
        out.write(
            f"[{finding.impact.upper()}] {finding.check} (confidence {finding.confidence})"
            f"  {finding.file}:{finding.line}  {status}".rstrip()
            + "\n"
        )
        for text in finding.description.splitlines():
            if text.strip():
                out.write(f"    {text.strip()}\n")
        if finding.accepted_by:
            out.write(
                f"    reason ({finding.accepted_by.file}:{finding.accepted_by.line}): "
                f"{finding.accepted_by.reason}\n"
            )
        elif finding.reasonless:
            out.write(
                f"    note: the disable comment at {finding.reasonless.file}:"
                f"{finding.reasonless.line} gives no reason (add `-- <reason>`), so it accepts "
                "nothing\n"
            )
        out.write("\n")
    for disable in sources.disables:
        if disable.kind != "end" and disable not in sources.used:
            out.write(
                f"note: unused `slither-disable-{disable.kind} {','.join(disable.checks)}` at "
                f"{disable.file}:{disable.line} (nothing to accept there any more; remove it)\n"
            )
    accepted = sum(1 for f in findings if f.accepted_by)
    high = sum(1 for f in findings if f.blocking and f.impact == "High")
    medium = sum(1 for f in findings if f.blocking and f.impact == "Medium")
    minor = sum(1 for f in findings if not f.accepted_by and f.impact not in FAILING_IMPACTS)
    out.write(
        f"slither: {high} high, {medium} medium unexplained "
        f"({minor} low/informational/optimization, {accepted} accepted with reasons)\n"
    )
    return 1 if high or medium else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo-root",
        type=Path,
        default=Path(__file__).resolve().parents[2],
        help="repository root (default: two levels above this script)",
    )
    args = parser.parse_args(argv)
    repo_root: Path = args.repo_root.resolve()
    try:
        check_settings_match_build(repo_root)
        results = run_slither(repo_root)
    except AuditError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    sources = Sources(repo_root)
    return report(collect_findings(results, sources), sources)


if __name__ == "__main__":
    sys.exit(main())
