"""The README's and docs/'s command lines are real: every ``chainsense ...`` line shown in a code
block names an existing command and only options that command has, and the lines with concrete
values parse as given (types, choices, required options). The docs site builds in strict mode."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chainsense.cli import app

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"```(?:sh|bash|console|shell)?\n(.*?)```", re.DOTALL)
_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_.]*\b|\.\.\.|…|\[|\||\$|<")


def _command_lines() -> list[tuple[str, str]]:
    """``(where, line)`` for every ``chainsense`` command line in a shell code block."""
    found = []
    for page in PAGES:
        for block in _BLOCK.findall(page.read_text(encoding="utf-8")):
            text = block.replace("\\\n", " ")
            for raw in text.splitlines():
                line = raw.split(" #")[0].strip()
                line = re.sub(r"^.*?\$\((?=chainsense )", "", line).rstrip(")")
                line = line.removeprefix(".venv/bin/")
                if line.startswith("chainsense "):
                    found.append((page.name, line))
    return found


LINES = _command_lines()


def _root() -> Any:
    import typer

    return typer.main.get_command(app)


def _walk(tokens: list[str]) -> tuple[Any, list[str], list[str]]:
    """The command the tokens name, its own arguments, and the command path."""
    import click

    ctx_obj = _root()
    path: list[str] = []
    rest = list(tokens)
    while hasattr(ctx_obj, "commands") or hasattr(ctx_obj, "list_commands"):
        group_opts = {o: p for p in ctx_obj.params for o in p.opts}
        while rest and rest[0] in group_opts:
            param = group_opts[rest.pop(0)]
            if not getattr(param, "is_flag", False) and rest:
                rest.pop(0)
        if not rest:
            break
        ctx = click.Context(ctx_obj)
        sub = ctx_obj.get_command(ctx, rest[0])
        if sub is None:
            break
        path.append(rest.pop(0))
        ctx_obj = sub
    return ctx_obj, rest, path


def _segments(line: str) -> list[list[str]]:
    """The line's tokens, then each ``| sub ...`` alternative as a sibling command's tokens."""
    first, *alternatives = [s.strip() for s in line.split(" | ")]
    tokens = shlex.split(first)[1:]
    out = [tokens]
    _, _, path = _walk(tokens)
    for alt in alternatives:
        alt_tokens = shlex.split(alt)
        if path and alt_tokens:
            out.append([*path[:-1], *alt_tokens])
    return out


def test_the_pages_show_commands() -> None:
    assert len(LINES) >= 30
    assert {where for where, _ in LINES} >= {"README.md", "cli.md", "getting-started.md"}


@pytest.mark.parametrize(("where", "line"), LINES, ids=[f"{w}:{ln[:60]}" for w, ln in LINES])
def test_each_command_exists_and_has_the_options_shown(where: str, line: str) -> None:
    for tokens in _segments(line):
        command, rest, path = _walk(tokens)
        assert path, f"{where}: no such command: {line}"
        if hasattr(command, "commands") and rest and not rest[0].startswith("-"):
            sub = rest[0]
            if not re.fullmatch(r"[a-z]+(\|[a-z]+)*", sub) or "|" not in sub:
                pytest.fail(f"{where}: {' '.join(path)} has no command {sub!r}: {line}")
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for token in rest:
            option = token.strip("[]").split("=")[0]
            if option.startswith("-") and option not in ("-", "--"):
                assert option in known, f"{where}: {' '.join(path)} has no option {option}"


CONCRETE = [(w, ln) for w, ln in LINES if not _PLACEHOLDER.search(ln.removeprefix("chainsense"))]


@pytest.mark.parametrize(("where", "line"), CONCRETE, ids=[f"{w}:{ln[:60]}" for w, ln in CONCRETE])
def test_lines_with_concrete_values_parse(where: str, line: str) -> None:
    command, rest, path = _walk(shlex.split(line)[1:])
    # parses the arguments (types, ranges, required options) without running the command
    command.make_context(" ".join(["chainsense", *path]), list(rest))


def test_concrete_lines_are_found() -> None:
    assert any("device send" in line for _, line in CONCRETE)
    assert any("apikey create" in line for _, line in CONCRETE)


@pytest.mark.slow
def test_the_docs_site_builds_in_strict_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "index.html").exists()
